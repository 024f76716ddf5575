"""Bootstrap confidence intervals and paired tests: known answers and agreement with references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medclip_residuals.stats import accuracy, bootstrap_ci, delong_test, paired_bootstrap_test, roc_auc


def scored_sample(n=300, separation=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    return y, rng.normal(size=n) + separation * y


def test_roc_auc_and_accuracy_match_sklearn_with_ties():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    score = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.9, 0.2, 0.1])
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    assert accuracy(y, score) == pytest.approx(np.mean((score >= 0.5) == y))
    assert np.isnan(roc_auc(np.ones(4), np.arange(4.0)))


def test_bootstrap_ci_of_a_mean_has_the_textbook_width():
    rng = np.random.default_rng(1)
    values = rng.normal(loc=3.0, scale=2.0, size=400)
    ci = bootstrap_ci(values, "mean", n_resamples=2000, seed=7)
    assert ci["estimate"] == pytest.approx(values.mean())
    assert ci["low"] < 3.0 < ci["high"]
    textbook = 2 * 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert ci["high"] - ci["low"] == pytest.approx(textbook, rel=0.1)
    assert ci["n_valid"] == 2000


def test_bootstrap_is_seeded_and_callable_agrees_with_vectorised():
    y, score = scored_sample()
    first = bootstrap_ci((y, score), "roc_auc", n_resamples=300, seed=3)
    assert bootstrap_ci((y, score), "roc_auc", n_resamples=300, seed=3) == first
    assert bootstrap_ci((y, score), "roc_auc", n_resamples=300, seed=4) != first
    with_sklearn = bootstrap_ci((y, score), roc_auc_score, n_resamples=300, seed=3)
    assert with_sklearn["low"] == pytest.approx(first["low"])
    assert with_sklearn["high"] == pytest.approx(first["high"])
    assert first["low"] < first["estimate"] < first["high"]


def test_one_class_resamples_are_counted_not_used():
    y = np.array([0, 0, 0, 0, 1])
    ci = bootstrap_ci((y, np.arange(5.0)), "roc_auc", n_resamples=500, seed=0)
    assert 0 < ci["n_valid"] < 500  # (4/5)^5 of resamples have no positive
    assert ci["estimate"] == 1.0


def test_paired_test_of_identical_and_of_clearly_better_scores():
    y, good = scored_sample(separation=2.0)
    rng = np.random.default_rng(5)
    noise = rng.normal(size=len(y))
    same = paired_bootstrap_test(y, good, good, "roc_auc", 500, seed=0)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    better = paired_bootstrap_test(y, good, noise, "roc_auc", 500, seed=0)
    assert better["difference"] == pytest.approx(roc_auc(y, good) - roc_auc(y, noise))
    assert better["low"] > 0 and better["p_value"] < 0.01
    acc = paired_bootstrap_test(y, 1 / (1 + np.exp(-good)), np.full(len(y), 0.4), "accuracy", 500, seed=0)
    assert acc["difference"] == pytest.approx(accuracy(y, 1 / (1 + np.exp(-good))) - accuracy(y, np.full(len(y), 0.4)))


def _delong_reference(y, a, b):
    """DeLong's variance from its definition (O(m n) kernel), for checking the fast form."""
    y = y.astype(bool)
    out = []
    for score in (a, b):
        pos, neg = score[y][:, None], score[~y][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = y.sum(), (~y).sum()
    s10 = np.cov(np.vstack([o[1] for o in out]))
    s01 = np.cov(np.vstack([o[2] for o in out]))
    cov = s10 / m + s01 / n
    return out[0][0] - out[1][0], np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])


def test_delong_matches_its_definition_and_the_paired_bootstrap():
    y, a = scored_sample(n=250, separation=1.2, seed=2)
    b = a + np.random.default_rng(9).normal(scale=1.5, size=len(y))
    b[:20] = np.round(b[:20])  # ties
    result = delong_test(y, a, b)
    difference, std_error = _delong_reference(y, a, b)
    assert result["difference"] == pytest.approx(difference)
    assert result["std_error"] == pytest.approx(std_error)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a))
    boot = paired_bootstrap_test(y, a, b, "roc_auc", 2000, seed=1)
    bootstrap_se = (boot["high"] - boot["low"]) / (2 * 1.96)
    assert bootstrap_se == pytest.approx(std_error, rel=0.2)
    assert delong_test(y, a, a)["p_value"] == 1.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_ci((np.array([0, 1]), np.array([0.1, 0.2, 0.3])), "roc_auc")
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="0/1 labels"):
        bootstrap_ci((np.array([0, 2]), np.array([0.1, 0.2])), "roc_auc")
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_ci(np.array([1.0, 2.0]), "mode")
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))


def test_singleton_groups_reproduce_the_row_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    a, b = rng.random(80) + 0.3 * y, rng.random(80)
    rows = bootstrap_ci((y, a), "roc_auc", 300, seed=5)
    singletons = bootstrap_ci((y, a), "roc_auc", 300, seed=5, groups=np.arange(80))
    assert (singletons["low"], singletons["high"]) == pytest.approx((rows["low"], rows["high"]), abs=1e-12)
    assert rows["resampled"] == "rows" and singletons["resampled"] == "groups"
    paired_rows = paired_bootstrap_test(y, a, b, "roc_auc", 300, seed=5)
    paired_groups = paired_bootstrap_test(y, a, b, "roc_auc", 300, seed=5, groups=np.arange(80))
    for key in ("low", "high", "p_value", "standard_error"):
        assert paired_groups[key] == pytest.approx(paired_rows[key], abs=1e-12), key


def test_the_cluster_bootstrap_counts_patients_not_images():
    """Five identical images per patient carry one patient's information: resampling whole
    patients gives the interval of one image per patient; resampling images, one too narrow."""
    rng = np.random.default_rng(0)
    per_patient = rng.normal(size=60)
    values = np.repeat(per_patient, 5)
    patients = np.repeat(np.arange(60), 5)
    one_each = bootstrap_ci(per_patient, "mean", 2000, seed=1)
    clustered = bootstrap_ci(values, "mean", 2000, seed=1, groups=patients)
    as_rows = bootstrap_ci(values, "mean", 2000, seed=1)
    width = one_each["high"] - one_each["low"]
    assert clustered["high"] - clustered["low"] == pytest.approx(width, rel=0.1)
    assert as_rows["high"] - as_rows["low"] < 0.6 * width  # about 1 / sqrt(5) of it
    with pytest.raises(ValueError, match="one group per row"):
        bootstrap_ci(values, "mean", 10, seed=1, groups=patients[:-1])
