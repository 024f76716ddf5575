"""Honest statistics for the residual experiments: bootstrap CIs and paired tests.

Everything here is deterministic given the seed, and vectorised over resamples where the
statistic allows it (ROC AUC, accuracy, mean), so that resampling is a few array operations
rather than a Python loop per resample. Reused by the explainability pipeline.

- `bootstrap_ci(data, statistic, n_resamples, seed)`: percentile CI of one statistic,
  where `data` is a 1-D array of values or a pair `(y_true, y_score)`.
- `paired_bootstrap_test(y_true, score_a, score_b, statistic, ...)`: the difference
  statistic(a) - statistic(b) on the SAME resampled rows, its CI and a two-sided p-value.
- `delong_test(y_true, score_a, score_b)`: DeLong's test for two correlated ROC AUCs
  (Sun & Xu 2014 fast algorithm); an analytic cross-check of the paired bootstrap.

Both bootstraps take `groups` (e.g. patient ids): whole groups are then drawn with
replacement (a cluster bootstrap), because a patient's images share the patient's disease
and anatomy, and resampling them as independent rows would make every interval too narrow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

Statistic = str | Callable[..., float]

# Statistics with a vectorised implementation over a (resamples x rows) index matrix.
_PAIR_STATISTICS = ("roc_auc", "accuracy")
_VALUE_STATISTICS = ("mean", "median")
# Resample matrices are built in blocks of about this many cells, to bound memory.
_BLOCK_CELLS = 4_000_000
# The power of the minimum detectable difference that paired tests report.
MDD_POWER = 0.8


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (ties count one half); NaN if one class."""
    values = _auc_rows(np.asarray(y_true, dtype=bool)[None, :], np.asarray(y_score, dtype=float)[None, :])
    return float(values[0])


def accuracy(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where (score >= threshold) equals the label."""
    y_true = np.asarray(y_true, dtype=bool)
    return float(np.mean((np.asarray(y_score, dtype=float) >= threshold) == y_true))


def _auc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC of every row of label matrix `y` (bool) and score matrix `s`; NaN if one class."""
    ranks = scipy_stats.rankdata(s, axis=1)
    n_pos = y.sum(axis=1).astype(float)
    n_neg = y.shape[1] - n_pos
    rank_sum = np.where(y, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def _rows_statistic(name: str, threshold: float) -> Callable[..., np.ndarray]:
    if name == "roc_auc":
        return _auc_rows
    if name == "accuracy":
        return lambda y, s: np.mean((s >= threshold) == y, axis=1)
    if name == "mean":
        return lambda v: np.mean(v, axis=1)
    if name == "median":
        return lambda v: np.median(v, axis=1)
    raise ValueError(
        f"unknown statistic {name!r}: use one of {_PAIR_STATISTICS + _VALUE_STATISTICS} or a callable"
    )


def _as_arrays(data: Any) -> tuple[np.ndarray, ...]:
    """Split `data` into (values,) or (y_true, y_score), checked for equal length and NaN."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"data must be values or a pair (y_true, y_score); got a tuple of {len(data)}")
        y_true = np.asarray(data[0], dtype=float)
        y_score = np.asarray(data[1], dtype=float)
        if y_true.ndim != 1 or y_true.shape != y_score.shape:
            raise ValueError(f"y_true and y_score must be 1-D of equal length; got {y_true.shape} and {y_score.shape}")
        if not (np.isfinite(y_true).all() and np.isfinite(y_score).all()):
            raise ValueError("y_true / y_score contain NaN or inf")
        if not np.isin(y_true, (0.0, 1.0)).all():
            raise ValueError(f"y_true must hold 0/1 labels; found {sorted(set(np.unique(y_true)) - {0.0, 1.0})[:5]}")
        return y_true.astype(bool), y_score
    values = np.asarray(data, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D; got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or inf")
    return (values,)


def _index_blocks(
    n: int, n_resamples: int, rng: np.random.Generator, groups: np.ndarray | None
) -> Any:
    """(first resample, indices) blocks: a (resamples x n) matrix of rows drawn with
    replacement, or with `groups` a list of row arrays, each the rows of as many groups as
    there are, drawn with replacement."""
    if groups is None:
        block = max(1, _BLOCK_CELLS // n)
        for start in range(0, n_resamples, block):
            stop = min(n_resamples, start + block)
            yield start, rng.integers(0, n, size=(stop - start, n))
        return
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must give one group per row: {len(groups)} groups for {n} rows")
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    picks = rng.integers(0, len(members), size=(n_resamples, len(members)))
    yield 0, [np.concatenate([members[g] for g in row]) for row in picks]


def _statistic_of(index: Any, arrays: tuple[np.ndarray, ...], statistic: Statistic, threshold: float) -> np.ndarray:
    """The statistic on each resample of one block of `_index_blocks` (NaN where undefined)."""
    if isinstance(statistic, str) and isinstance(index, np.ndarray):
        return _rows_statistic(statistic, threshold)(*(a[index] for a in arrays))
    out = np.empty(len(index), dtype=float)
    for b, row in enumerate(index):
        if isinstance(statistic, str):
            out[b] = _rows_statistic(statistic, threshold)(*(a[row][None, :] for a in arrays))[0]
            continue
        try:
            out[b] = statistic(*(a[row] for a in arrays))
        except ValueError:  # e.g. sklearn's AUC on a one-class resample
            out[b] = np.nan
    return out


def _resampled(
    arrays: tuple[np.ndarray, ...],
    statistic: Statistic,
    n_resamples: int,
    seed: int,
    threshold: float,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """The statistic on `n_resamples` bootstrap resamples (rows, or whole groups, drawn with
    replacement).

    Resample b draws the same row indices for every array given, which is what makes a
    paired comparison paired. Resamples where the statistic is undefined give NaN.
    """
    n = len(arrays[0])
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if isinstance(statistic, str):
        _rows_statistic(statistic, threshold)  # fail early on an unknown name
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples, dtype=float)
    for start, index in _index_blocks(n, n_resamples, rng, groups):
        out[start:start + len(index)] = _statistic_of(index, arrays, statistic, threshold)
    return out


def _point(arrays: tuple[np.ndarray, ...], statistic: Statistic, threshold: float) -> float:
    if isinstance(statistic, str):
        return float(_rows_statistic(statistic, threshold)(*(a[None, :] for a in arrays))[0])
    return float(statistic(*arrays))


def bootstrap_ci(
    data: Any,
    statistic: Statistic = "mean",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    threshold: float = 0.5,
    groups: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Percentile bootstrap confidence interval of a statistic.

    Args:
        data: a 1-D array of values, or a pair `(y_true, y_score)` of equal length.
        statistic: "roc_auc" or "accuracy" (pairs), "mean" or "median" (values), or a
            callable taking the same arrays and returning a float.
        n_resamples: bootstrap resamples (rows drawn with replacement).
        seed: seed of numpy's default generator; the same seed gives the same interval.
        confidence: coverage of the interval, e.g. 0.95.
        threshold: decision threshold for "accuracy".
        groups: one group id per row (e.g. the patient): whole groups are drawn with
            replacement (a cluster bootstrap); None draws rows.

    Returns:
        estimate (on the full sample), low, high, confidence, n_resamples, n_valid (the
        resamples where the statistic was defined: an AUC resample with one class is not)
        and resampled ("rows" or "groups").
    """
    arrays = _as_arrays(data)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    estimate = _point(arrays, statistic, threshold)
    values = _resampled(arrays, statistic, n_resamples, seed, threshold, groups)
    valid = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(valid, [alpha, 1 - alpha]) if len(valid) else (np.nan, np.nan))
    return {
        "estimate": estimate,
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "n_resamples": int(n_resamples),
        "n_valid": int(len(valid)),
        "resampled": "rows" if groups is None else "groups",
    }


def paired_bootstrap_test(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    statistic: Statistic = "roc_auc",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    threshold: float = 0.5,
    groups: np.ndarray | None = None,
) -> dict[str, float | int | str]:
    """Paired bootstrap of statistic(a) - statistic(b) on the same rows (or, with `groups`,
    the same whole groups drawn with replacement).

    Each resample draws one set of rows and evaluates both scores on it, so the
    correlation between the two models (same images, same labels) is kept.
    The two-sided p-value is twice the share of resampled differences on the far side of
    zero, capped at 1 (the percentile-bootstrap test). 0.0 means that no resample crossed
    zero: read it as p < 1 / n_valid, not as p = 0.

    The power statement: `standard_error` is the bootstrap standard deviation of the
    difference, and `minimum_detectable_difference` = (z_(1 - alpha/2) + z_power) x that
    standard error, the smallest true difference this test set would detect with
    probability `power` (MDD_POWER) at the two-sided level 1 - confidence (normal
    approximation to the bootstrap distribution).
    """
    y_true, score_a = _as_arrays((y_true, score_a))
    _, score_b = _as_arrays((y_true.astype(float), score_b))
    if isinstance(statistic, str):
        _rows_statistic(statistic, threshold)  # fail early on an unknown name
    estimate = _point((y_true, score_a), statistic, threshold) - _point((y_true, score_b), statistic, threshold)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples, dtype=float)
    for start, index in _index_blocks(len(y_true), n_resamples, rng, groups):
        a = _statistic_of(index, (y_true, score_a), statistic, threshold)
        b = _statistic_of(index, (y_true, score_b), statistic, threshold)
        diffs[start:start + len(index)] = a - b
    valid = diffs[np.isfinite(diffs)]
    alpha = (1 - confidence) / 2
    if len(valid):
        low, high = np.quantile(valid, [alpha, 1 - alpha])
        p_value = min(1.0, 2 * min(np.mean(valid <= 0), np.mean(valid >= 0)))
        standard_error = float(np.std(valid, ddof=1)) if len(valid) > 1 else np.nan
    else:
        low = high = p_value = standard_error = np.nan
    detectable = (scipy_stats.norm.ppf(1 - alpha) + scipy_stats.norm.ppf(MDD_POWER)) * standard_error
    return {
        "method": "paired bootstrap",
        "statistic": statistic if isinstance(statistic, str) else getattr(statistic, "__name__", "callable"),
        "difference": estimate,
        "low": float(low),
        "high": float(high),
        "p_value": float(p_value),
        "standard_error": float(standard_error),
        "minimum_detectable_difference": float(detectable),
        "power": MDD_POWER,
        "confidence": confidence,
        "n_resamples": int(n_resamples),
        "n_valid": int(len(valid)),
        "resampled": "rows" if groups is None else "groups",
    }


def _midrank(x: np.ndarray) -> np.ndarray:
    return scipy_stats.rankdata(x, method="average")


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float | str]:
    """DeLong's test of AUC(a) - AUC(b) for two scores of the same cases.

    The fast O(n log n) form of Sun & Xu (2014), IEEE Signal Processing Letters 21(11).
    Returns both AUCs, their difference, its standard error, z and a two-sided p-value.
    """
    y_true, score_a = _as_arrays((y_true, score_a))
    _, score_b = _as_arrays((y_true.astype(float), score_b))
    m, n = int(y_true.sum()), int((~y_true).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 positives and 2 negatives; got {m} and {n}")
    aucs, v10, v01 = [], [], []
    for scores in (score_a, score_b):
        positives, negatives = scores[y_true], scores[~y_true]
        tx, ty = _midrank(positives), _midrank(negatives)
        tz = _midrank(np.concatenate([positives, negatives]))
        auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
        aucs.append(auc)
        v10.append((tz[:m] - tx) / n)  # structural components of the positives
        v01.append(1.0 - (tz[m:] - ty) / m)  # and of the negatives
    s10 = np.cov(np.vstack(v10))
    s01 = np.cov(np.vstack(v01))
    covariance = s10 / m + s01 / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = aucs[0] - aucs[1]
    if variance <= 0:
        z, p_value = (0.0, 1.0) if difference == 0 else (np.inf, 0.0)
    else:
        z = difference / np.sqrt(variance)
        p_value = float(2 * scipy_stats.norm.sf(abs(z)))
    return {
        "method": "DeLong",
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": float(difference),
        "std_error": float(np.sqrt(max(variance, 0.0))),
        "z": float(z),
        "p_value": float(p_value),
    }
