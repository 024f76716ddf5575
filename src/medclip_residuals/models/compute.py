"""How a model pass shares the machine: decoding workers, torch threads, bf16, channels-last.

One set of rules for every pass that feeds images to MedCLIP's vision model (the embedding
pipeline today; encoder training and the Grad-CAM pass can call `plan_compute` the same way):

- the cores are the ones this process may run on (`os.sched_getaffinity`: a container's or
  `taskset`'s limit, not the host's count);
- on the CPU the model is the work: decoding and preprocessing a chest X-ray take a few
  milliseconds against tens for a Swin-T forward pass, so decoding gets no worker process on
  a machine of up to `CPU_CORES_WITHOUT_WORKERS` cores (the main process decodes between two
  batches) and one worker per `CPU_CORES_PER_WORKER` cores above that, and torch gets the
  cores the workers leave (at most torch's own count, which respects OMP_NUM_THREADS). Two
  workers beside two threads on two cores stall the threads at every parallel region
  (benchmarks/embedding_throughput.py --compare; figures in docs/PARAMETERS.md);
- on CUDA or MPS the accelerator is the work and the CPU only decodes: a worker per core but
  one (at most `ACCELERATOR_MAX_WORKERS`), torch's threads what is left;
- a worker keeps one batch ready (`prefetch_factor` 1): more batches in flight only hold memory;
- batch size `auto`: small on a CPU, where a batch's activations should stay in the cache,
  large on an accelerator;
- bf16 autocast `auto` means where the hardware computes it natively (CUDA's bf16, a CPU with
  AVX-512 BF16 or AMX); channels-last `auto` means on CUDA, where convolutions gain from it.

Example:
    >>> plan = plan_compute("cpu", workers="auto", threads="auto", bf16=False, channels_last="auto")  # doctest: +SKIP
    >>> with plan.applied():  # torch threads set for the block, then restored  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from medclip_residuals.models.device import resolve_device

AUTO = "auto"
Auto = Literal["auto"]
CPU_CORES_WITHOUT_WORKERS = 4
CPU_CORES_PER_WORKER = 8
ACCELERATOR_MAX_WORKERS = 8
# Images per batch for `auto`: on a CPU a small batch keeps Swin-T's activations in the cache
# (2 cores, MedCLIP-ViT, one run: batch 4 ran 17.6 images/s, 8 16.3, 16 15.5, 32 12.5, 64 10.9);
# an accelerator needs large batches to be busy.
CPU_BATCH_SIZE = 4
ACCELERATOR_BATCH_SIZE = 64


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


def cpu_supports_bf16() -> bool:
    """True when oneDNN can run bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def device_supports_bf16(device: torch.device) -> bool:
    """bf16 computed natively: CUDA with bf16, or a CPU with AVX-512 BF16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_supports_bf16()
    return False


@dataclass(frozen=True)
class ComputePlan:
    """What a pass runs with; `applied()` sets torch's threads for a block."""

    device: torch.device
    cores: int
    workers: int  # DataLoader worker processes that decode (0: the main process decodes)
    threads: int  # torch intra-op threads of the main process
    bf16: bool  # bf16 autocast
    channels_last: bool
    batch_size: int | None = None  # images per batch, when the plan was asked for one

    @property
    def prefetch_factor(self) -> int | None:
        """Batches each worker keeps ready: one in flight (DataLoader wants None without workers)."""
        return 1 if self.workers else None

    def describe(self) -> str:
        batches = f"batches of {self.batch_size}, " if self.batch_size else ""
        return (
            f"{self.device}, {self.cores} core(s): {batches}{self.workers} decoding worker(s), {self.threads} torch "
            f"thread(s), {'bf16 autocast' if self.bf16 else 'float32'}"
            f"{', channels-last' if self.channels_last else ''}"
        )

    @contextmanager
    def applied(self) -> Iterator[ComputePlan]:
        """torch.set_num_threads(threads) for the block, the previous count restored after."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            torch.set_num_threads(before)


def plan_compute(
    device: str | torch.device,
    *,
    workers: int | Auto = AUTO,
    threads: int | Auto = AUTO,
    bf16: bool | Auto = False,
    channels_last: bool | Auto = AUTO,
    batch_size: int | Auto | None = None,
    cores: int | None = None,
) -> ComputePlan:
    """Size workers and threads to the cores there are; settle bf16 and channels-last.

    Args:
        device: where the model runs ("auto", "cpu", "cuda:0", ...).
        workers, threads: a number, or `auto` (the module's rules).
        bf16: True, False, or `auto` (where the device computes bf16 natively). An explicit
            True is kept (a CPU without native bf16 emulates it, slowly, with the same numbers).
        channels_last: True, False, or `auto` (on CUDA).
        batch_size: a number, `auto` (`CPU_BATCH_SIZE` on a CPU, `ACCELERATOR_BATCH_SIZE` on
            CUDA or MPS), or None (the caller batches by itself).
        cores: the cores to plan for (default: `usable_cores()`).
    """
    device = resolve_device(device)
    cores = usable_cores() if cores is None else max(1, int(cores))
    accelerator = device.type in ("cuda", "mps")
    if workers == AUTO:
        if accelerator:
            workers = min(cores - 1, ACCELERATOR_MAX_WORKERS)
        else:
            workers = 0 if cores <= CPU_CORES_WITHOUT_WORKERS else cores // CPU_CORES_PER_WORKER
    if threads == AUTO:
        # torch's own count already says what OMP_NUM_THREADS (or an earlier set_num_threads) allows
        threads = max(1, min(cores - workers, torch.get_num_threads()))
    if bf16 == AUTO:
        bf16 = device_supports_bf16(device)
    if channels_last == AUTO:
        channels_last = device.type == "cuda"
    if batch_size == AUTO:
        batch_size = ACCELERATOR_BATCH_SIZE if accelerator else CPU_BATCH_SIZE
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0 or threads < 1:
        raise ValueError(f"workers must be >= 0 and threads >= 1, got workers={workers}, threads={threads}")
    return ComputePlan(device=device, cores=cores, workers=int(workers), threads=int(threads),
                       bf16=bool(bf16), channels_last=bool(channels_last),
                       batch_size=None if batch_size is None else int(batch_size))
