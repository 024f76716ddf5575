"""The log of a run that is not on a terminal: no progress-bar carriage returns, no known noise."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_logged_run_has_no_carriage_returns_and_no_omegaconf_noise(demo_run):
    _, result = demo_run
    log = result.stdout + result.stderr
    assert "\r" not in log
    assert "register_new_resolver" not in log
    # the progress bars became log lines: the heatmaps' end, and each training epoch's own line
    assert "hirescam heatmaps: 100%" in " ".join(log.split())
    assert "encoder_training: epoch 2/2 mean loss" in " ".join(log.split())
