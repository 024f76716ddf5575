"""Images by index for training and evaluation: decoded once and cached, or streamed from disk.

Both sources hold one channel (MedCLIP's vision models repeat a grey channel to three) as
float16, MedCLIP-normalised, and give float32 batches: a streamed source gives exactly the
cached values, so the choice between them (a memory budget) never changes a number.

Example:
    >>> source = image_source(paths, size=128, cache_mb=2048, workers=2, desc="training")  # doctest: +SKIP
    >>> for pixels in source.batches([torch.tensor([3, 0, 1])]):  # doctest: +SKIP
    ...     pixels.shape  # (3, 1, 128, 128), float32
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

from medclip_residuals.data.images import read_image
from medclip_residuals.data.preprocess import XrayImageDataset, preprocess_array
from medclip_residuals.utils.progress import progress_bar

logger = logging.getLogger(__name__)


def load_image_tensors(paths: Sequence[str], size: int, workers: int, desc: str = "images") -> torch.Tensor:
    """Decode and preprocess `paths` once: (N, 1, size, size) float16, MedCLIP-normalised.

    `workers` threads decode in parallel. One channel is kept: MedCLIP's vision models repeat
    a grey channel to three.
    """

    def one(path: str) -> np.ndarray:
        return preprocess_array(read_image(path), size)[0].numpy().astype(np.float16)

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        arrays = list(progress_bar(pool.map(one, paths), total=len(paths), desc=f"preprocess {desc}", leave=False))
    if not arrays:
        return torch.zeros((0, 1, size, size), dtype=torch.float16)
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1)


class ImageSource(Protocol):
    """Training or held-out images by index: cached in memory or streamed from disk."""

    def __len__(self) -> int: ...

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """float32 (B, 1, S, S) for each index tensor, in order."""
        ...


class CachedImages:
    """Every image decoded once into one float16 tensor (N, 1, S, S)."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        for index in indices:
            yield self.pixels[index].float()


class _OneChannel(XrayImageDataset):
    """Item i: image i as the cache holds it, one channel rounded to float16."""

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return super().__getitem__(index)[1][:1].half()


class StreamedImages:
    """Images decoded from disk per batch (a DataLoader over `preprocess_image`), with the
    cache's exact values (one channel through float16), so that numbers do not change."""

    def __init__(self, paths: Sequence[str], size: int, workers: int) -> None:
        self.dataset = _OneChannel(paths, size)
        self.workers = max(0, int(workers))

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        if not len(indices):
            return
        # A private generator: a DataLoader draws its workers' base seed from it, which from
        # torch's global generator would shift the model's dropout masks (other numbers).
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[index.tolist() for index in indices], num_workers=self.workers,
            collate_fn=torch.stack, generator=torch.Generator().manual_seed(0),
        )
        for batch in loader:
            yield batch.float()


def image_source(
    paths: Sequence[str], size: int, cache_mb: float | None, workers: int, desc: str
) -> CachedImages | StreamedImages:
    """The images cached in memory while they fit `cache_mb` (float16, one channel; None: no
    limit), else streamed from disk per batch; the choice and its reason are logged.

    `workers`: the threads that decode the cache, or the streaming DataLoader's worker
    processes (0: decode in the main process).
    """
    needed_mb = len(paths) * size * size * 2 / 2**20
    if cache_mb is None or needed_mb <= float(cache_mb):
        limit = "no limit" if cache_mb is None else f"image_cache_mb {float(cache_mb):g}"
        logger.info("encoder_training: %d %s images cached in memory (%.1f MB as float16, %s)",
                    len(paths), desc, needed_mb, limit)
        return CachedImages(load_image_tensors(paths, size, workers, desc))
    logger.info(
        "encoder_training: %d %s images streamed from disk per batch (%d DataLoader workers): they need "
        "%.1f MB as float16, over image_cache_mb %g", len(paths), desc, workers, needed_mb, float(cache_mb),
    )
    return StreamedImages(paths, size, workers)


def as_image_source(pixels: torch.Tensor | ImageSource) -> ImageSource:
    """A cached (N, 1, S, S) tensor as an ImageSource; a source unchanged."""
    return CachedImages(pixels) if isinstance(pixels, torch.Tensor) else pixels
