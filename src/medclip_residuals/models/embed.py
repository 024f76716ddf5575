"""The project's batched image-embedding path (used by the embedding pipeline and its benchmark)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from medclip_residuals.data.preprocess import XrayImageDataset
from medclip_residuals.models.encoder import MedCLIPEncoder, eval_mode

logger = logging.getLogger(__name__)


def autocast_context(device: torch.device, bf16: bool):
    """bf16 autocast where the device supports it; a no-op otherwise (said once in the log)."""
    if not bf16:
        return nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        logger.warning("bf16 requested but %s does not support it: running in float32", device)
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def embed_image_files(
    encoder: MedCLIPEncoder,
    paths: Sequence[str],
    batch_size: int = 64,
    num_workers: int = 2,
    bf16: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Embed image files: (N, 512) float32, rows L2-normalised, in the order of `paths`.

    Worker processes decode and preprocess while the model runs; the model runs in eval
    mode under `torch.inference_mode`, one batch at a time.
    """
    dataset = XrayImageDataset(paths, size=encoder.image_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=encoder.device.type == "cuda",
        persistent_workers=False,
    )
    output = np.zeros((len(dataset), encoder.embed_dim), dtype=np.float32)
    bar = tqdm(total=len(dataset), desc="embedding images", unit="img", disable=not progress)
    with eval_mode(encoder.model), torch.inference_mode(), autocast_context(encoder.device, bf16):
        for indices, pixel_values in loader:
            embeddings = encoder.encode_images(pixel_values.to(encoder.device, non_blocking=True))
            output[indices.numpy()] = embeddings.float().cpu().numpy()
            bar.update(len(indices))
    bar.close()
    # bf16 rounding leaves norms slightly off 1: renormalise in float32.
    output /= np.linalg.norm(output, axis=1, keepdims=True).clip(min=1e-12)
    return output
