"""What runs on a Dask worker: one shard of images through the project's own batched paths.

The encoder reaches a worker once, through a worker plugin (`plugin.EncoderPlugin`, set up
on every worker, and on every worker that joins later), which puts it into this module's
cache under its fingerprint; a shard task names the fingerprint, and `worker_encoder` moves
the cached model to the worker's device once. A worker holds one model whatever the number
of shards it runs.

A shard that fails because of an image returns a `ShardFailure` naming it instead of raising:
a bad file fails the same way every time, so Dask's retries would only repeat the failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from medclip_residuals.data.images import ImageDecodeError
from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.models.encoder import MedCLIPEncoder

_ENCODERS: dict[str, MedCLIPEncoder] = {}  # fingerprint -> encoder, in this worker process
_DEVICES: dict[str, str] = {}  # fingerprint -> the device it was moved to
_LOCK = threading.Lock()


@dataclass
class ShardResult:
    """A finished shard's rows and where they were made."""

    rows: np.ndarray
    worker: str
    pid: int
    seconds: float


@dataclass
class ShardFailure:
    """A shard that cannot be made because of one of its images."""

    image_path: str
    reason: str
    worker: str


def worker_address() -> str:
    """This worker's address, or the process id outside a worker (a test calling a task)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return f"pid {os.getpid()}"


def cache_encoder(fingerprint: str, encoder: MedCLIPEncoder) -> None:
    """Keep `encoder` in this worker under its fingerprint (the plugin's setup)."""
    with _LOCK:
        _ENCODERS[fingerprint] = encoder
        _DEVICES.pop(fingerprint, None)


def forget_encoder(fingerprint: str) -> None:
    """Drop the encoder of this fingerprint (the plugin's teardown: the node is done)."""
    with _LOCK:
        _ENCODERS.pop(fingerprint, None)
        _DEVICES.pop(fingerprint, None)


def worker_encoder(fingerprint: str, device: str) -> MedCLIPEncoder:
    """The cached encoder of this fingerprint on `device` (moved there once)."""
    with _LOCK:
        encoder = _ENCODERS.get(fingerprint)
        if encoder is None:
            # a worker that joined before the plugin reached it; Dask retries the shard
            raise RuntimeError(f"worker {worker_address()} has no encoder {fingerprint} (its plugin is not set up)")
        if _DEVICES.get(fingerprint) != device:
            encoder.to(device)
            _DEVICES[fingerprint] = device
        return encoder


def first_bad_image(paths: Sequence[str], size: int) -> ImageDecodeError | None:
    """The first image of `paths` that does not decode, or None (the failure was not an image's)."""
    for path in paths:
        try:
            preprocess_image(path, size)
        except ImageDecodeError as error:
            return error
    return None


def _threads(torch_threads: int | None) -> None:
    if torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def embed_shard(
    fingerprint: str,
    paths: Sequence[str],
    *,
    batch_size: int,
    num_workers: int,
    bf16: bool,
    device: str,
    torch_threads: int | None,
) -> ShardResult | ShardFailure:
    """Embed one shard of image files with `models.embed.embed_image_files` (DataLoader,
    inference mode): (k, 512) float32 rows in the order of `paths`."""
    from medclip_residuals.models.embed import embed_image_files

    start = time.perf_counter()
    _threads(torch_threads)
    model = worker_encoder(fingerprint, device)
    try:
        rows = embed_image_files(model, list(paths), batch_size=batch_size, num_workers=num_workers, bf16=bf16,
                                 progress=False)
    except Exception:
        bad = first_bad_image(paths, model.image_size)
        if bad is None:
            raise  # not an image's fault: Dask retries the shard
        return ShardFailure(bad.path, bad.reason, worker_address())
    return ShardResult(rows, worker_address(), os.getpid(), time.perf_counter() - start)


def heatmap_shard(
    fingerprint: str,
    heads: Mapping[str, torch.nn.Module],
    image_manifest: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    w_by_image: Mapping[str, np.ndarray],
    captions: Any,
    *,
    method: str,
    target_layer: str | Sequence[str],
    shifts_px: Sequence[int],
    contrast_caption: str | None,
    batch_size: int,
    device: str,
    torch_threads: int | None,
    bf16: bool | str = False,
    caption_gate: str = "none",
) -> ShardResult | ShardFailure:
    """Heatmaps of one shard of plan rows with `explain.generate.generate_heatmaps` (the
    caption embeddings computed once by the client): (k, S, S) float16 in plan order."""
    from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
    from medclip_residuals.explain.generate import generate_heatmaps

    start = time.perf_counter()
    _threads(torch_threads)
    model = worker_encoder(fingerprint, device)
    try:
        maps = ArrayHeatmaps.collect(generate_heatmaps(
            model, image_manifest, heatmap_plan, heads=heads, w_by_image=w_by_image, method=method,
            target_layer=target_layer, shifts_px=shifts_px, contrast_caption=contrast_caption,
            batch_size=batch_size, chunk_size=max(1, len(heatmap_plan)), device=device, bf16=bf16,
            caption_gate=caption_gate, captions=captions,
            progress=False,
        )).heatmaps
    except ImageDecodeError as error:
        return ShardFailure(error.path, error.reason, worker_address())
    return ShardResult(np.asarray(maps), worker_address(), os.getpid(), time.perf_counter() - start)
