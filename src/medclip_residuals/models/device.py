"""Choosing the torch device: `auto` means CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _available() -> list[str]:
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        available.append("mps")
    return available


def _auto() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_present(device: torch.device, spec: object) -> None:
    """A ValueError when this machine lacks `device` (asked for as `spec`)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} was asked for, but CUDA is not available here (available: {_available()})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s) (available: {_available()})")
    elif device.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {spec!r} was asked for, but Apple MPS is not available here (available: {_available()})")
    elif device.type != "cpu":
        raise ValueError(f"device {spec!r} is not supported: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn `auto`, `cpu`, `cuda`, `cuda:1`, `mps` (or a torch.device) into a usable device.

    An explicit device that this machine lacks is an error that says what is available,
    never a silent fallback to the CPU.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text in ("", "auto"):
        return _auto()
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ValueError(
            f"device {spec!r} is not a torch device: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error
    _check_present(device, spec)
    return device
