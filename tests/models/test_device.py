"""resolve_device: auto picks CUDA, then MPS, then CPU; an explicit missing device is an error."""

import pytest
import torch

from medclip_residuals.models import device as device_module
from medclip_residuals.models.device import resolve_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has (or lacks) CUDA devices and MPS."""

    def set_machine(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(device_module, "_mps_available", lambda: mps)

    return set_machine


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(0, False, "cpu"), (0, True, "mps"), (2, True, "cuda"), (1, False, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


def test_explicit_devices(machine):
    machine(cuda=2)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_missing_devices_are_errors_not_fallbacks(machine):
    machine(cuda=1, mps=False)
    with pytest.raises(ValueError, match=r"cuda:3.*1 CUDA device"):
        resolve_device("cuda:3")
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")
    machine(cuda=0)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu-please")
