"""The project's one image-embedding path: batches of preprocessed images through the encoder.

`embed_batches` is the loop (eval mode, `torch.inference_mode`, optional bf16 autocast and
channels-last input); its two feeds are image files through a DataLoader
(`embed_image_files`: the embedding pipeline and its benchmark) and the cached or streamed
pixels of training and evaluation (`embed_image_source`: encoder_training's held-out metric).
How the files' pass uses the machine (decoding workers, torch threads, bf16, channels-last)
is `models/compute.plan_compute`: sized to the cores there are unless given.

Example:
    >>> matrix = embed_image_files(encoder, paths, batch_size="auto", num_workers="auto", bf16=False)  # doctest: +SKIP
    >>> matrix.shape  # (len(paths), 512), rows L2-normalised
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from medclip_residuals.data.preprocess import XrayImageDataset
from medclip_residuals.models.compute import AUTO, Auto, plan_compute
from medclip_residuals.models.encoder import MedCLIPEncoder, eval_mode
from medclip_residuals.models.image_source import ImageSource
from medclip_residuals.utils.progress import progress_bar

logger = logging.getLogger(__name__)


def autocast_context(device: torch.device, bf16: bool):
    """bf16 autocast where the device supports it; a no-op otherwise (said once in the log)."""
    if not bf16:
        return nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        logger.warning("bf16 requested but %s does not support it: running in float32", device)
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def embed_batches(
    encoder: MedCLIPEncoder,
    batches: Iterable[torch.Tensor],
    bf16: bool,
    progress: Any | None = None,
    *,
    channels_last: bool = False,
) -> np.ndarray:
    """Embed batches of preprocessed images, in order: (N, 512) float32, as the encoder gives them.

    Args:
        encoder: the model runs in eval mode under `torch.inference_mode`, one batch at a time.
        batches: (B, C, S, S) pixel values (one channel or three: MedCLIP repeats a grey one).
        bf16: bf16 autocast (see `autocast_context`); False keeps float32 numbers.
        progress: a bar advanced by each batch's size, if any.
        channels_last: the pixels in channels-last memory order (same numbers; a layout that
            convolutions on CUDA prefer).
    """
    chunks = []
    precision = autocast_context(encoder.device, bf16) if bf16 else nullcontext()
    with eval_mode(encoder.model), torch.inference_mode(), precision:
        for batch in batches:
            pixel_values = batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
            chunks.append(encoder.encode_images(pixel_values).float().cpu().numpy())
            if progress is not None:
                progress.update(len(pixel_values))
    if not chunks:
        return np.zeros((0, encoder.embed_dim), dtype=np.float32)
    return np.concatenate(chunks)


def embed_image_files(
    encoder: MedCLIPEncoder,
    paths: Sequence[str],
    batch_size: int | Auto,
    num_workers: int | Auto,
    bf16: bool | Auto,
    progress: bool = True,
    *,
    threads: int | Auto = AUTO,
    channels_last: bool | Auto = AUTO,
) -> np.ndarray:
    """Embed image files: (N, 512) float32, rows L2-normalised, in the order of `paths`.

    Args:
        batch_size: images per batch, or `auto` (`plan_compute`: small on a CPU).
        num_workers, threads: DataLoader workers that decode and torch threads that run the
            model, or `auto` (`plan_compute`: sized to this process's cores).
        bf16, channels_last: True, False or `auto` (`plan_compute`).
        progress: a progress bar (log lines when the output is not a terminal).
    """
    plan = plan_compute(encoder.device, workers=num_workers, threads=threads, bf16=bf16, channels_last=channels_last,
                        batch_size=batch_size)
    logger.info("embedding %d images: %s", len(paths), plan.describe())
    loader = DataLoader(
        XrayImageDataset(paths, size=encoder.image_size),
        batch_size=plan.batch_size,
        shuffle=False,
        num_workers=plan.workers,
        prefetch_factor=plan.prefetch_factor,
        pin_memory=encoder.device.type == "cuda",
        persistent_workers=False,
    )

    def pixel_batches() -> Iterator[torch.Tensor]:
        for _, pixel_values in loader:
            yield pixel_values.to(encoder.device, non_blocking=True)

    with plan.applied(), progress_bar(total=len(paths), desc="embedding images", unit="img", disable=not progress) as bar:
        output = embed_batches(encoder, pixel_batches(), plan.bf16, bar, channels_last=plan.channels_last)
    # bf16 rounding leaves norms slightly off 1: renormalise in float32.
    output /= np.linalg.norm(output, axis=1, keepdims=True).clip(min=1e-12)
    return output


def embed_image_source(encoder: MedCLIPEncoder, source: ImageSource, batch_size: int) -> np.ndarray:
    """L2-normalised embeddings (N, 512) of cached or streamed images, in float32, in order."""
    indices = [torch.arange(start, min(start + batch_size, len(source))) for start in range(0, len(source), batch_size)]
    return embed_batches(encoder, source.batches(indices), bf16=False)
