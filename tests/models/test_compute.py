"""models/compute.py: workers and threads sized to the cores there are; bf16 and channels-last."""

from __future__ import annotations

import os

import pytest
import torch

from medclip_residuals.models import compute
from medclip_residuals.models.compute import plan_compute, usable_cores


@pytest.fixture
def torch_allows(monkeypatch):
    """Pretend torch's own thread count (OMP_NUM_THREADS) is `n`."""

    def allow(n: int) -> None:
        monkeypatch.setattr(compute.torch, "get_num_threads", lambda: n)

    return allow


def test_on_a_small_cpu_the_model_gets_every_core(torch_allows):
    torch_allows(64)
    plan = plan_compute("cpu", cores=2)
    assert (plan.workers, plan.threads, plan.prefetch_factor) == (0, 2, None)
    assert (plan_compute("cpu", cores=4).workers, plan_compute("cpu", cores=4).threads) == (0, 4)


def test_on_a_large_cpu_a_worker_per_eight_cores_keeps_one_batch_in_flight(torch_allows):
    torch_allows(64)
    plan = plan_compute("cpu", cores=16)
    assert (plan.workers, plan.threads, plan.prefetch_factor) == (2, 14, 1)


def test_threads_never_exceed_what_torch_allows(torch_allows):
    torch_allows(1)  # e.g. OMP_NUM_THREADS=1
    assert plan_compute("cpu", cores=16).threads == 1


def test_batch_size_auto_is_small_on_a_cpu_and_a_number_is_kept():
    assert plan_compute("cpu", batch_size="auto").batch_size == compute.CPU_BATCH_SIZE == 4
    assert plan_compute("cpu", batch_size=64).batch_size == 64
    assert plan_compute("cpu").batch_size is None  # the caller batches by itself
    with pytest.raises(ValueError, match="batch_size"):
        plan_compute("cpu", batch_size=0)


def test_numbers_given_are_kept_and_bad_ones_refused(torch_allows):
    torch_allows(64)
    plan = plan_compute("cpu", workers=3, threads=5, cores=2)
    assert (plan.workers, plan.threads) == (3, 5)
    with pytest.raises(ValueError, match="threads"):
        plan_compute("cpu", workers=0, threads=0)


def test_bf16_and_channels_last_auto(monkeypatch):
    monkeypatch.setattr(compute, "cpu_supports_bf16", lambda: True)
    assert plan_compute("cpu", bf16="auto").bf16 is True
    monkeypatch.setattr(compute, "cpu_supports_bf16", lambda: False)
    assert plan_compute("cpu", bf16="auto").bf16 is False
    assert plan_compute("cpu", bf16=True).bf16 is True  # asked for: kept (emulated)
    assert plan_compute("cpu", bf16=False).bf16 is False
    assert plan_compute("cpu", channels_last="auto").channels_last is False
    assert plan_compute("cpu", channels_last=True).channels_last is True


def test_applied_sets_torch_threads_for_the_block_only():
    before = torch.get_num_threads()
    plan = plan_compute("cpu", workers=0, threads=before + 1)
    with plan.applied():
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_usable_cores_is_this_process_affinity():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected
