"""One encoder-training step, timed: float32 against bf16 autocast, with and without the local
(token-to-text) loss term (`encoder_training.local_alignment`, switched on with weight 1 where
the parameters leave it off), side by side in one run.

The demo encoder of conf/base (MedCLIP's classes on the small Swin/BERT of
parameters_encoder.yml) and the training settings of parameters_encoder_training.yml, on
random pixels and demo-like reports (speed does not depend on the values). Each variant runs
`--warmup` steps, then `--steps` timed steps of `fit_contrastive`'s own loop (augmentation,
tokenising, forward, loss, backward, AdamW); the variants' passes are interleaved
`--repeats` times and each one's best ms per step is printed, with the share of the step
spent in the forward pass and in backward + optimiser (a profile of one step), and the
ratio to float32. bf16 is timed only where the CPU computes it natively (models/compute.py)
unless --force-bf16.

    .venv/bin/python benchmarks/training_step.py
    .venv/bin/python benchmarks/training_step.py --batch-size 32 --steps 10 --repeats 3
    .venv/bin/python benchmarks/training_step.py --local-layer model.encoder.layers.1.blocks.-1

The figure `make run` pays: epochs x (training images // batch_size) x ms per step; a
run's own figure is `encoder_training_metrics.training_seconds`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from medclip_residuals.models.compute import plan_compute
from medclip_residuals.models.embed import autocast_context
from medclip_residuals.models.medclip_loader import EncoderParams, build_demo_encoder
from medclip_residuals.models.training import LocalAlignment, fit_contrastive
from medclip_residuals.pipelines.encoder_training.params import EncoderTrainingParams

REPORTS = [
    "there is some pneumonia near the heart",
    "there is pleural effusion on the lower lung. the heart is enlarged",
    "the lungs are clear",
    "there is a nodule in the right upper lung, and there is atelectasis at the left base",
    "there is a pneumothorax on the left",
    "there is pulmonary edema. there is cardiomegaly",
]


def load_parameters() -> tuple[EncoderParams, EncoderTrainingParams]:
    from kedro.config import OmegaConfigLoader

    root = os.path.join(os.path.dirname(__file__), "..", "conf")
    params = OmegaConfigLoader(root, base_env="base", default_run_env="base")["parameters"]
    return (EncoderParams.parse(params["encoder"], "encoder"),
            EncoderTrainingParams.parse(params["encoder_training"], "encoder_training"))


def time_variant(encoder_params: EncoderParams, settings: EncoderTrainingParams, steps: int, warmup: int) -> dict:
    """ms per step (median) of `steps` timed steps after `warmup`, and forward + backward alone."""
    torch.manual_seed(0)
    n = max(steps, warmup) * settings.batch_size
    reports = [REPORTS[i % len(REPORTS)] for i in range(n)]
    encoder = build_demo_encoder(encoder_params.demo, reports, seed=0)
    size = encoder.image_size
    pixels = torch.randn(n, 1, size, size)
    one_epoch = dataclasses.replace(settings, epochs=1, warmup_epochs=0)
    # warmup: fit_contrastive's own steps; an epoch is n // batch_size steps
    fit_contrastive(encoder, pixels[: warmup * settings.batch_size], reports[: warmup * settings.batch_size],
                    one_epoch, seed=0)
    history = fit_contrastive(encoder, pixels[: steps * settings.batch_size], reports[: steps * settings.batch_size],
                              one_epoch, seed=0)
    seconds = history["seconds"].diff().dropna()
    step_ms = 1000 * float(seconds.median()) if len(seconds) else float("nan")

    # forward and backward alone (train mode), same inputs: the rest of a step is the
    # augmentation, tokenising, the loss, clipping and AdamW
    encoder.model.train()
    images = pixels[: settings.batch_size]
    tokens = encoder.tokenize(reports[: settings.batch_size])
    bf16 = plan_compute(encoder.device, bf16=settings.bf16).bf16
    forwards = []
    for _ in range(max(3, steps // 2)):
        started = time.perf_counter()
        with autocast_context(encoder.device, bf16):
            image_embeddings = encoder.encode_images(images)
            text_embeddings = encoder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
        (image_embeddings @ text_embeddings.t()).sum().backward()
        forwards.append(time.perf_counter() - started)
        encoder.model.zero_grad(set_to_none=True)
    return {"step_ms": step_ms, "forward_backward_ms": 1000 * min(forwards)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=None, help="default: parameters_encoder_training.yml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--force-bf16", action="store_true", help="also time bf16 where the CPU only emulates it")
    parser.add_argument("--local-layer", default=None,
                        help="the local term's layer (default: the parameters', null: the last stage)")
    args = parser.parse_args()

    encoder_params, settings = load_parameters()
    if args.batch_size:
        settings = dataclasses.replace(settings, batch_size=args.batch_size)
    native_bf16 = plan_compute(torch.device("cpu"), bf16="auto").bf16
    # the local term as configured, switched on (weight 1) where the parameters leave it off
    local = settings.local_alignment or LocalAlignment(weight=1.0, pool_temperature=0.1, layer=None)
    local = dataclasses.replace(local, weight=local.weight or 1.0, layer=args.local_layer or local.layer)
    variants = {"float32, global loss": dataclasses.replace(settings, bf16=False, local_alignment=None),
                "float32, global + local loss": dataclasses.replace(settings, bf16=False, local_alignment=local)}
    if native_bf16 or args.force_bf16:
        variants["bf16, global loss"] = dataclasses.replace(settings, bf16=True, local_alignment=None)
        variants["bf16, global + local loss"] = dataclasses.replace(settings, bf16=True, local_alignment=local)

    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, variant in variants.items():
            result = time_variant(encoder_params, variant, args.steps, args.warmup)
            if name not in best or result["step_ms"] < best[name]["step_ms"]:
                best[name] = result

    print(f"encoder training step, batch {settings.batch_size}, image {encoder_params.demo.image_size} px, "
          f"{torch.get_num_threads()} torch threads; bf16 native on this CPU: {native_bf16}; "
          f"local term on {local.layer or 'the last stage'}")
    base = best["float32, global loss"]["step_ms"]
    for name, result in best.items():
        print(f"  {name:<30} {result['step_ms']:7.1f} ms/step  ({base / result['step_ms']:.2f}x float32 global)  "
              f"forward+backward alone {result['forward_backward_ms']:.1f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} (compare figures of one run)")


if __name__ == "__main__":
    main()
