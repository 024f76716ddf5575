"""Grad-CAM throughput: the project's batched path against pytorch-grad-cam one image at a time.

Same model, same layer, same targets, one run. The baseline is pytorch-grad-cam as its
README shows it: one CAM object made once, then called with one image and one target at a
time (the encoder's weights trainable, as loaded). The project's path is
`CamExplainer`: many images per call, one target each, the weights frozen while the input
asks for a gradient (backward then skips every weight gradient). A third row isolates the
freezing (the project's path with batch_size 1). The maps of the two paths are compared.

Models (random weights: speed does not depend on the values):
  --profile medclip_vit   MedCLIP-ViT's vision geometry: Swin-T, 224 px, window 7 (default)
  --profile demo          the demo profile of conf/base/parameters_encoder.yml (128 px)

    .venv/bin/python benchmarks/gradcam_throughput.py
    .venv/bin/python benchmarks/gradcam_throughput.py --profile demo --n-images 64 --batch-size 32
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import BertConfig, SwinConfig

from medclip_residuals.explain.cam import CamExplainer, resolve_cam_method
from medclip_residuals.explain.heatmap_model import ImageEmbeddingModel
from medclip_residuals.explain.layers import resolve_target_layer, swin_reshape_transform
from medclip_residuals.explain.targets import SimilarityTarget
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.medclip_loader import VIT, build_demo_encoder, build_medclip_model
from medclip_residuals.models.tokenizer import build_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def vision_model(profile: str, seed: int) -> tuple[torch.nn.Module, int]:
    """MedCLIP's vision encoder (MedCLIPVisionModelViT) and its input size."""
    torch.manual_seed(seed)
    if profile == "demo":
        params = yaml.safe_load((ROOT / "conf/base/parameters_encoder.yml").read_text())["encoder"]["demo"]
        encoder = build_demo_encoder(params, ["there is some pneumonia near the heart"], seed=seed)
        return encoder.vision_model, encoder.image_size
    tokenizer = build_word_tokenizer(["there is some pneumonia near the heart"], max_length=16)
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32)  # the text model plays no part in a heatmap
    model = build_medclip_model(VIT, SwinConfig(image_size=224), text, tokenizer)
    return model.vision_model, 224


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device) -> tuple[np.ndarray, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    maps = run()
    synchronize(device)
    return maps, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["medclip_vit", "demo"], default="medclip_vit")
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--layer", default="model.layernorm",
                        help="a layer whose output is a tensor (plain pytorch-grad-cam cannot follow a tuple)")
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round; the best counts")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    vision, size = vision_model(args.profile, args.seed)
    vision.to(device).eval()
    method = resolve_cam_method(args.method)
    layer_name, layer = resolve_target_layer(vision, args.layer)

    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.n_images, 3, size, size, generator=generator).to(device)
    texts = torch.randn(args.n_images, 512, generator=generator)
    targets = [SimilarityTarget(text) for text in texts]

    # Baseline: pytorch-grad-cam as documented: a CAM object made once, then one image and
    # one target per call. Each path puts its hooks on only while it runs.
    def run_baseline() -> np.ndarray:
        baseline_cam = method(model=ImageEmbeddingModel(vision), target_layers=[layer],
                              reshape_transform=partial(swin_reshape_transform, input_hw=(size, size)))
        try:
            return np.concatenate(
                [baseline_cam(input_tensor=images[k : k + 1], targets=[targets[k]]) for k in range(args.n_images)]
            )
        finally:
            baseline_cam.activations_and_grads.release()

    def run_project(batch_size: int) -> np.ndarray:
        with CamExplainer(vision, args.method, layer_name, batch_size=batch_size, progress=False, device=device) as explainer:
            return explainer(images, targets)

    paths = {
        "pytorch-grad-cam, one image per call (baseline)": run_baseline,
        "project, batch_size 1, weights frozen": partial(run_project, 1),
        f"project, batch_size {args.batch_size}, weights frozen (CamExplainer)": partial(run_project, args.batch_size),
    }
    # The machine may be shared: the paths take turns, round after round, and each keeps
    # its best round (as timeit does); the first round also warms up, untimed.
    best: dict[str, tuple[float, float]] = {}
    maps: dict[str, np.ndarray] = {}
    for round_index in range(args.rounds + 1):
        for name, run in paths.items():
            result, wall, cpu = timed(run, device)
            maps[name] = result
            if round_index == 0:
                continue  # warm-up
            previous = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(previous[0], wall), min(previous[1], cpu))
    baseline_maps, frozen_maps, project_maps = maps.values()

    n = args.n_images
    print(f"model: {args.profile} vision encoder ({size} px), {type(vision).__name__}; device {device}, "
          f"{torch.get_num_threads()} CPU threads; {args.method} on {layer_name}; {n} images, one target each; "
          f"best of {args.rounds} rounds")
    print(f"{'path':<62}{'wall s':>8}{'heatmaps/s':>12}{'speed-up':>10}{'CPU s':>8}{'speed-up':>10}")
    base_wall, base_cpu = best[next(iter(best))]
    for name, (wall, cpu) in best.items():
        print(f"{name:<62}{wall:>8.2f}{n / wall:>12.2f}{base_wall / wall:>9.2f}x{cpu:>8.2f}{base_cpu / cpu:>9.2f}x")
    print(f"largest difference between the project's and the baseline's maps: {float(np.abs(project_maps - baseline_maps).max()):.2e}")
    print(f"largest difference, batch_size 1 vs {args.batch_size}: {float(np.abs(project_maps - frozen_maps).max()):.2e}")


if __name__ == "__main__":
    main()
