"""Embedding throughput: the project's batched path against the naive notebook way.

Same machine, same full-size MedCLIP-ViT architecture (Swin-T + BERT-base configurations,
random weights: speed does not depend on the values), one run. Prints images/s of both
paths, their ratio, and the fraction of the machine's limit: measured matmul FLOP/s divided
by the vision model's FLOPs per image.

    .venv/bin/python benchmarks/embedding_throughput.py            # CPU here; GPU if present
    .venv/bin/python benchmarks/embedding_throughput.py --bf16 --n-images 512 --batch-size 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, SwinConfig

from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.medclip_loader import VIT, build_medclip_model
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


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
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
    return 2 * n**3 / best


def vision_flops_per_image(encoder: MedCLIPEncoder) -> float:
    pixel_values = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=encoder.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder.encode_images(pixel_values)
    return float(counter.get_total_flops())


def naive_images_per_s(encoder: MedCLIPEncoder, paths: list[str]) -> float:
    """One image at a time through MedCLIP's own `encode_image`, autograd on (a quick notebook)."""
    model = encoder.model.eval()
    model.encode_image(pixel_values=preprocess_image(paths[0], 224).unsqueeze(0).to(encoder.device))
    synchronize(encoder.device)
    start = time.perf_counter()
    for path in paths:
        pixel_values = preprocess_image(path, 224).unsqueeze(0).to(encoder.device)
        model.encode_image(pixel_values=pixel_values).detach().cpu()
    synchronize(encoder.device)
    return len(paths) / (time.perf_counter() - start)


def project_images_per_s(encoder: MedCLIPEncoder, paths: list[str], batch_size: int, workers: int, bf16: bool) -> float:
    embed_image_files(encoder, paths[:batch_size], batch_size, 0, bf16, progress=False)  # warm-up
    synchronize(encoder.device)
    start = time.perf_counter()
    embed_image_files(encoder, paths, batch_size, workers, bf16, progress=False)
    synchronize(encoder.device)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-images", type=int, default=96)
    parser.add_argument("--n-naive", type=int, default=32, help="images for the (slow) naive path")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in the project's path")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = resolve_device(args.device)
    encoder = full_size_encoder(device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), max(args.n_images, args.n_naive))
        flops_image = vision_flops_per_image(encoder)
        limit = matmul_flops_per_s(device, torch.bfloat16 if args.bf16 else torch.float32)
        naive = naive_images_per_s(encoder, paths[: args.n_naive])
        project = project_images_per_s(encoder, paths[: args.n_images], args.batch_size, args.workers, args.bf16)

    limit_images = limit / flops_image
    print(f"device                      {device} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"model                       MedCLIP-ViT (Swin-T 224 px), {flops_image / 1e9:.2f} GFLOP per image")
    print(f"matmul limit                {limit / 1e9:.1f} GFLOP/s ({'bf16' if args.bf16 else 'fp32'}) -> {limit_images:.1f} images/s")
    print(f"naive (1 image, autograd)   {naive:.2f} images/s over {args.n_naive} images")
    print(
        f"project (batch {args.batch_size}, {args.workers} workers{', bf16' if args.bf16 else ''}) "
        f"{project:.2f} images/s over {args.n_images} images"
    )
    print(f"speed-up                    {project / naive:.2f}x (target >= 3x)")
    print(f"fraction of limit           {project / limit_images:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
