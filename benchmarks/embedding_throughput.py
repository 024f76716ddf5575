"""Embedding throughput: the project's batched path against the naive notebook way, side by side.

Same machine, same full-size MedCLIP-ViT architecture (Swin-T + BERT-base configurations,
random weights: speed does not depend on the values), one run. Prints images/s of

- the naive way: one image at a time through MedCLIP's own `encode_image`, autograd on;
- the project's path, `embed_image_files`, as the embedding pipeline runs it (`auto`: workers
  and torch threads sized by models/compute.plan_compute to this process's cores);
- with `--compare`: the same path with the workers and threads of before (2 workers, torch's
  own thread count), with one decoding worker, with bf16 autocast, and with channels-last pixels;

their ratio, and each one's fraction of the machine's limit: measured matmul FLOP/s (float32,
or bf16 for the bf16 pass, with the pass's threads) divided by the vision model's FLOPs per
image. The bf16 pass also prints its agreement with float32: the cosine between the two
embeddings of each image (min and mean). Each figure is the best of `--repeats` passes, the
passes of all paths (and the matmul limits) interleaved, so that a busy neighbour slows every
path alike; the load average at the end is printed (on a shared machine compare the figures
of one run, not across runs).

    .venv/bin/python benchmarks/embedding_throughput.py            # CPU here; GPU if present
    .venv/bin/python benchmarks/embedding_throughput.py --n-images 128 --n-naive 32 --compare  # batch auto: 4 on a CPU
    # agreement on a trained encoder and real images (e.g. after `make run`):
    .venv/bin/python benchmarks/embedding_throughput.py --compare \\
        --encoder-folder data/06_models/medclip_encoder/<version>/medclip_encoder --images data/01_raw/demo_cxr/images
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, SwinConfig

from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.models.compute import plan_compute
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.medclip_loader import VIT, build_medclip_model, load_encoder_folder
from medclip_residuals.models.tokenizer import build_word_tokenizer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def full_size_encoder(device: torch.device) -> MedCLIPEncoder:
    """MedCLIP-ViT at its published size: Swin-T (224 px, window 7) and a BERT-base text model."""
    tokenizer = build_word_tokenizer(["there is some pneumonia near the heart"], max_length=77)
    model = build_medclip_model(VIT, SwinConfig(image_size=224), BertConfig(vocab_size=len(tokenizer)), tokenizer)
    return MedCLIPEncoder(model=model, tokenizer=tokenizer, profile="medclip_vit", image_size=224).to(device)


def write_images(folder: Path, n: int, side: int = 512) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = (rng.random((side, side)) * 255).astype(np.uint8)
        path = folder / f"img{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n matmul with `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best


def vision_flops_per_image(encoder: MedCLIPEncoder) -> float:
    pixel_values = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=encoder.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder.encode_images(pixel_values)
    return float(counter.get_total_flops())


def naive_pass(encoder: MedCLIPEncoder, paths: list[str]) -> float:
    """One image at a time through MedCLIP's own `encode_image`, autograd on (a quick notebook)."""
    model = encoder.model.eval()
    synchronize(encoder.device)
    start = time.perf_counter()
    for path in paths:
        pixel_values = preprocess_image(path, encoder.image_size).unsqueeze(0).to(encoder.device)
        model.encode_image(pixel_values=pixel_values).detach().cpu()
    synchronize(encoder.device)
    return len(paths) / (time.perf_counter() - start)


def project_pass(encoder: MedCLIPEncoder, paths: list[str], batch_size: int, **settings: object) -> tuple[float, np.ndarray]:
    synchronize(encoder.device)
    start = time.perf_counter()
    embeddings = embed_image_files(encoder, paths, batch_size, progress=False, **settings)
    synchronize(encoder.device)
    return len(paths) / (time.perf_counter() - start), embeddings


def main() -> None:  # noqa: PLR0915 - one script that prints one report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-images", type=int, default=96)
    parser.add_argument("--n-naive", type=int, default=32, help="images for the (slow) naive path")
    parser.add_argument("--batch-size", default="auto", help="images per batch of the project's path, or auto")
    parser.add_argument("--workers", default="auto", help="DataLoader workers of the project's path, or auto")
    parser.add_argument("--threads", default="auto", help="torch threads of the project's path, or auto")
    parser.add_argument("--repeats", type=int, default=2, help="passes of each path; the best is printed")
    parser.add_argument("--compare", action="store_true",
                        help="also the old 2 workers, bf16 autocast (with its agreement) and channels-last")
    parser.add_argument("--encoder-folder", help="a saved encoder (encoder_training's folder) instead of the full-size random one")
    parser.add_argument("--images", help="a folder of images to embed instead of written noise")
    args = parser.parse_args()

    def count_or_auto(value: str) -> int | str:
        return value if value == "auto" else int(value)

    torch.manual_seed(0)
    device = resolve_device(args.device)
    encoder = load_encoder_folder(args.encoder_folder, device) if args.encoder_folder else full_size_encoder(device)
    plan = plan_compute(device, workers=count_or_auto(args.workers), threads=count_or_auto(args.threads),
                        bf16=False, channels_last="auto", batch_size=count_or_auto(args.batch_size))
    batch_size = plan.batch_size
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            paths = sorted(str(p) for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            paths = paths[: max(args.n_images, args.n_naive)]
        else:
            paths = write_images(Path(tmp), max(args.n_images, args.n_naive))
        flops_image = vision_flops_per_image(encoder)
        project_settings = {"num_workers": plan.workers, "threads": plan.threads, "bf16": False,
                            "channels_last": plan.channels_last}
        paths_to_run: dict[str, Callable[[], tuple[float, np.ndarray | None]]] = {
            "naive": lambda: (naive_pass(encoder, paths[: args.n_naive]), None),
            "project": lambda: project_pass(encoder, paths[: args.n_images], batch_size, **project_settings),
        }
        if args.compare:
            paths_to_run["before (2 workers)"] = lambda: project_pass(
                encoder, paths[: args.n_images], batch_size, num_workers=2, threads=default_threads, bf16=False,
                channels_last=False)
            paths_to_run["1 worker"] = lambda: project_pass(
                encoder, paths[: args.n_images], batch_size, **{**project_settings, "num_workers": 1})
            paths_to_run["bf16 autocast"] = lambda: project_pass(
                encoder, paths[: args.n_images], batch_size, **{**project_settings, "bf16": True})
            paths_to_run["channels-last"] = lambda: project_pass(
                encoder, paths[: args.n_images], batch_size, **{**project_settings, "channels_last": True})
        # warm-up on a few images: the first passes set up the allocator and oneDNN's kernels
        naive_pass(encoder, paths[:2])
        project_pass(encoder, paths[: batch_size], batch_size, **project_settings)
        best: dict[str, float] = dict.fromkeys(paths_to_run, 0.0)
        embeddings: dict[str, np.ndarray] = {}
        limit, limit_bf16 = 0.0, 0.0
        for _ in range(args.repeats):
            # the limit is measured between the passes too, under the same neighbours
            limit = max(limit, matmul_flops_per_s(device, torch.float32, plan.threads))
            if args.compare:
                limit_bf16 = max(limit_bf16, matmul_flops_per_s(device, torch.bfloat16, plan.threads))
            for name, run in paths_to_run.items():
                images_per_s, output = run()
                best[name] = max(best[name], images_per_s)
                if output is not None:
                    embeddings[name] = output

    limit_images = limit / flops_image
    what = f"saved encoder {args.encoder_folder}" if args.encoder_folder else "MedCLIP-ViT (Swin-T 224 px, random weights)"
    print(f"device                       {device} (torch {torch.__version__}), {plan.cores} usable core(s)")
    print(f"model                        {what}, {flops_image / 1e9:.2f} GFLOP per image")
    print(f"images                       {args.images or 'written noise PNGs, 512 x 512'}")
    print(f"matmul limit float32         {limit / 1e9:.1f} GFLOP/s with {plan.threads} thread(s) -> {limit_images:.1f} images/s")
    if args.compare:
        print(f"matmul limit bf16            {limit_bf16 / 1e9:.1f} GFLOP/s -> {limit_bf16 / flops_image:.1f} images/s")
    print(f"naive (1 image, autograd)    {best['naive']:.2f} images/s over {args.n_naive} images")
    print(f"project ({plan.describe()})")
    print(f"                             {best['project']:.2f} images/s over {args.n_images} images")
    print(f"speed-up over naive          {best['project'] / best['naive']:.2f}x (goal >= 1.0x)")
    print(f"fraction of matmul limit     {best['project'] / limit_images:.2f} (goal >= 0.6)")
    if args.compare:
        print(f"before: 2 workers, {default_threads} threads  {best['before (2 workers)']:.2f} images/s "
              f"({best['before (2 workers)'] / best['naive']:.2f}x naive)")
        print(f"1 decoding worker, {plan.threads} threads  {best['1 worker']:.2f} images/s "
              f"({best['1 worker'] / best['naive']:.2f}x naive)")
        print(f"channels-last                {best['channels-last']:.2f} images/s "
              f"({best['channels-last'] / best['naive']:.2f}x naive)")
        cosine = (embeddings["bf16 autocast"] * embeddings["project"]).sum(axis=1)
        print(f"bf16 autocast                {best['bf16 autocast']:.2f} images/s "
              f"({best['bf16 autocast'] / best['naive']:.2f}x naive, {best['bf16 autocast'] * flops_image / limit_bf16:.2f} "
              f"of the bf16 limit)")
        print(f"bf16 vs float32 embeddings   cosine min {cosine.min():.5f}, mean {cosine.mean():.5f} over {len(cosine)} images")
    print(f"repeats                      best of {args.repeats}, paths and limits interleaved; "
          f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
