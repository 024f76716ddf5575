"""The study's targets: manifest columns as 0/1 targets, and the choice of targets.

A target is any binary column of the manifest: a CheXpert finding (1, 0, -1 uncertain,
empty = not mentioned, which counts as negative) or an outcome from the hospital record
(a column named `outcome:<name>`, e.g. `outcome:heart_failure`: 1, 0, or empty = unknown,
which leaves the image out), or another column the parameters name (validated the same way
as an outcome). The residual heads are fitted on the study split's `head_train` role and
scored on `test` (data/study_split.py), with the targets chosen once by `study_design`:

- `select_targets`: the explicit targets, or every candidate with enough positives and
  negatives in head_train and test, with the reasons others were left out;
- `target_rows`: the labelled images of one target, for fitting and scoring.

CheXpert labels become targets through `data.labels.apply_uncertainty` (the project's one
uncertainty policy); a target must be binary, so a policy giving soft labels is refused.

Example:
    >>> target_labels([1.0, -1.0, float("nan"), 0.0], "ignore").tolist()
    [1.0, nan, 0.0, 0.0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from medclip_residuals.data.labels import CHEXPERT_FINDINGS, apply_uncertainty, is_outcome_column, outcome_columns

logger = logging.getLogger(__name__)

# The uncertainty policies (data.labels) that give binary targets.
TargetPolicy = Literal["u_ones", "u_zeros", "ignore"]


def target_labels(values: pd.Series | np.ndarray, policy: str) -> np.ndarray:
    """CheXpert labels (1, 0, -1, NaN) as 0/1 floats (NaN: left out) under an uncertainty policy.

    `apply_uncertainty` with a check that the policy gives binary targets: NaN (not
    mentioned) counts as negative; -1 (uncertain) becomes 1 (u_ones), 0 (u_zeros) or NaN
    (ignore: the row is left out for this target).

    Raises:
        ValueError: an unknown policy, a label other than 1, 0, -1 or NaN, or a policy
            that makes soft (non 0/1) targets.
    """
    y = apply_uncertainty(values, policy)
    soft = ~(np.isnan(y) | np.isin(y, (0.0, 1.0)))
    if soft.any():
        raise ValueError(
            f"uncertainty_policy {policy!r} gives soft labels ({sorted(set(y[soft].tolist()))}): "
            "a target must be 0/1, so use u_ones, u_zeros or ignore"
        )
    return y


def binary_column(values: pd.Series | np.ndarray, column: str, ids: Sequence[str] | None = None) -> np.ndarray:
    """An outcome (or any non-CheXpert) column as 0/1 floats, NaN where unknown (left out).

    Raises:
        ValueError: a value other than 1, 0 or empty, naming the column and the first images.
    """
    raw = pd.Series(values).reset_index(drop=True)
    text = raw.astype(str).str.strip()
    empty = raw.isna().to_numpy() | text.isin(("", "nan", "None")).to_numpy()
    numbers = pd.to_numeric(raw.where(~empty), errors="coerce").to_numpy(dtype=float)
    bad = ~empty & ~np.isin(numbers, (0.0, 1.0))
    if bad.any():
        rows = np.flatnonzero(bad)[:3]
        where = [f"image_id {ids[r]!r}" if ids is not None else f"row {r}" for r in rows]
        raise ValueError(
            f"target column {column!r} must hold 1, 0 or empty (unknown); {int(bad.sum())} value(s) are not, "
            f"e.g. {', '.join(f'{w}: {raw.iloc[r]!r}' for w, r in zip(where, rows, strict=True))}"
        )
    return np.where(empty, np.nan, numbers)


def target_values(manifest: pd.DataFrame, column: str, policy: str) -> np.ndarray:
    """The 0/1/NaN target of `column` for every row of `manifest` (indexed by image_id):
    a CheXpert finding under the uncertainty policy, any other column as 1 / 0 / unknown."""
    if column in CHEXPERT_FINDINGS:
        return target_labels(manifest[column], policy)
    return binary_column(manifest[column], column, [str(i) for i in manifest.index])


def labelled_manifest(image_manifest: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """image_manifest indexed by image_id (as strings), in the order of `ids`."""
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str))
    return manifest.set_index("image_id").reindex(ids)


def candidate_targets(
    image_manifest: pd.DataFrame, targets: str | Sequence[str], auto_exclude: Sequence[str]
) -> tuple[list[str], bool]:
    """(target names, explicit?): a list of names, or "auto" (every CheXpert label column and
    every `outcome:` column of the manifest, less auto_exclude).

    Raises:
        ValueError: an explicit target that the manifest lacks.
    """
    labels = [c for c in CHEXPERT_FINDINGS if c in image_manifest.columns]
    outcomes = outcome_columns(list(image_manifest.columns))
    if targets == "auto":
        exclude = set(auto_exclude)
        return [c for c in [*labels, *outcomes] if c not in exclude], False
    if isinstance(targets, str):
        targets = [targets]
    missing = [t for t in targets if t not in image_manifest.columns]
    if missing:
        raise ValueError(
            f"params:study_design.targets names {missing}, which image_manifest lacks "
            f"(label columns there: {labels}; outcome columns: {outcomes})"
        )
    return list(targets), True


def patient_ids(manifest: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Each image's patient_id; an image without one is its own patient ("image:<id>")."""
    patients = (
        manifest["patient_id"].astype(str).where(manifest["patient_id"].notna(), "")
        if "patient_id" in manifest.columns
        else pd.Series("", index=manifest.index)
    )
    return np.where(patients.str.strip() == "", "image:" + pd.Series(ids).to_numpy(), patients.to_numpy())


def label_counts(y: np.ndarray, raw: np.ndarray) -> dict[str, int]:
    """Positives and negatives, and what became of uncertain and empty labels (an empty
    CheXpert label counts as negative; an empty outcome is unknown and left out)."""
    return {
        "positive": int(np.sum(y == 1)),
        "negative": int(np.sum(y == 0)),
        "left_out": int(np.sum(np.isnan(y))),
        "uncertain": int(np.sum(raw == -1)),
        "empty": int(np.sum(np.isnan(raw))),
    }


def _one_class_error(target: str, role: str, counts: dict[str, int], policy: str) -> ValueError:
    return ValueError(
        f"target {target!r} has only one class in the {role} role "
        f"({counts['positive']} positive, {counts['negative']} negative, policy {policy}): "
        "a classifier cannot be trained or evaluated; choose other targets"
    )


def _raw_numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def select_targets(
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    candidates: Sequence[str],
    explicit: bool,
    min_positives: int,
    min_negatives: int,
    policy: str,
) -> dict[str, Any]:
    """The targets of the residual heads, and why others were left out.

    Counts are made in every role; the heads need both classes where they are fitted
    (`head_train`) and scored (`test`). Explicit targets with one class there are an error;
    otherwise a candidate is kept with at least min_positives positives and min_negatives
    negatives in head_train and in test.

    Returns:
        targets, skipped (name -> reason), uncertainty_policy, selection (how they were
        chosen), kinds (finding / outcome / column) and counts (per target and role).
    """
    ids = study_split["image_id"].astype(str).to_numpy()
    roles = study_split["role"].astype(str).to_numpy()
    manifest = labelled_manifest(image_manifest, ids)
    chosen, skipped, counts, kinds = [], {}, {}, {}
    for target in candidates:
        y = target_values(manifest, target, policy)
        raw = _raw_numbers(manifest[target])
        kinds[target] = "finding" if target in CHEXPERT_FINDINGS else "outcome" if is_outcome_column(target) else "column"
        counts[target] = {role: label_counts(y[roles == role], raw[roles == role]) for role in sorted(set(roles))}
        fit, test = (counts[target].get(role, label_counts(y[:0], raw[:0])) for role in ("head_train", "test"))
        if explicit:
            for role, c in (("head_train", fit), ("test", test)):
                if c["positive"] == 0 or c["negative"] == 0:
                    raise _one_class_error(target, role, c, policy)
            if min(fit["positive"], test["positive"]) < min_positives:
                logger.warning("target %r has few positives (head_train %d, test %d)", target, fit["positive"], test["positive"])
            chosen.append(target)
        elif min(fit["positive"], test["positive"]) < min_positives or min(fit["negative"], test["negative"]) < min_negatives:
            skipped[target] = (
                f"too few examples: positives head_train {fit['positive']} / test {test['positive']}, "
                f"negatives head_train {fit['negative']} / test {test['negative']} "
                f"(need >= {min_positives} positives and >= {min_negatives} negatives in each)"
            )
        else:
            chosen.append(target)
    if not chosen:
        raise ValueError(
            "no target has enough examples for the residual heads: "
            + "; ".join(f"{t}: {why}" for t, why in skipped.items())
            + ". Lower params:study_design.min_positives or name targets explicitly."
        )
    return {
        "targets": chosen,
        "skipped": skipped,
        "uncertainty_policy": policy,
        "selection": "explicit" if explicit else f"auto (>= {min_positives} positives, >= {min_negatives} negatives in head_train and test)",
        "kinds": {t: kinds[t] for t in chosen},
        "counts": counts,
    }


def target_rows(
    image_manifest: pd.DataFrame, study_split: pd.DataFrame, target: str, policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, 0/1 labels, roles, patient ids) of the images that have a label for `target`."""
    ids = study_split["image_id"].astype(str).to_numpy()
    y = target_values(labelled_manifest(image_manifest, ids), target, policy)
    keep = ~np.isnan(y)
    roles = study_split["role"].astype(str).to_numpy()
    patients = study_split["patient_id"].astype(str).to_numpy()
    return ids[keep], y[keep].astype(int), roles[keep], patients[keep]
