"""models/evaluation.py: paired comparisons of two models' AUCs."""

from __future__ import annotations

import numpy as np

from medclip_residuals.models.evaluation import BootstrapSettings, compare_auc


def test_a_model_compared_with_itself_does_not_differ():
    """Paired bootstrap and DeLong of a model against itself: difference 0, p-value 1."""
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 30)
    score = y * 0.5 + rng.random(len(y))
    patients = np.repeat(np.arange(30), 2)
    for resample in ("images", "patients"):
        result = compare_auc(y, score, score.copy(), patients, BootstrapSettings(300, 0.95, resample), 0)
        assert result["difference"] == 0.0 and result["low"] == 0.0 and result["high"] == 0.0
        assert result["resampled"] == {"images": "rows", "patients": "groups"}[resample]
    assert result["difference"] == 0.0 and result["low"] == 0.0 and result["high"] == 0.0
    assert result["p_value"] == 1.0 and result["n_valid"] == 300
    assert result["delong"]["difference"] == 0.0 and result["delong"]["p_value"] == 1.0
    # Too few positives for DeLong: the paired bootstrap still runs, DeLong says why not.
    few = compare_auc(
        np.array([1, 0, 0, 0, 0]), np.arange(5.0), np.arange(5.0)[::-1], np.arange(5), BootstrapSettings(50, 0.95, "images"), 0
    )
    assert few["delong"] == "not computed: DeLong's test needs at least 2 positives and 2 negatives; got 1 and 4"
