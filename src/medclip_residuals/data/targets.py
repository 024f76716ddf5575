"""The study's targets: CheXpert labels as 0/1 targets, the split by patient, the target choice.

The residual heads (residual_1, residual_2) are fitted and scored on one split and one list
of targets, made once by the `study_design` pipeline:

- `split_by_patient`: train/test by patient, stratified by the candidate targets, seeded;
- `select_targets`: the explicit targets, or every candidate with enough positives and
  negatives on both sides of the split, with the reasons others were left out;
- `target_rows`: the labelled images of one target, for fitting and scoring.

Labels become targets through `data.labels.apply_uncertainty` (the project's one
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
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from medclip_residuals.data.labels import CHEXPERT_FINDINGS, apply_uncertainty

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


def labelled_manifest(image_manifest: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """image_manifest indexed by image_id (as strings), in the order of `ids`."""
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str))
    return manifest.set_index("image_id").reindex(ids)


def candidate_targets(
    image_manifest: pd.DataFrame, targets: str | Sequence[str], auto_exclude: Sequence[str]
) -> tuple[list[str], bool]:
    """(target names, explicit?): a list of names, or "auto" (every CheXpert label column
    of the manifest, less auto_exclude).

    Raises:
        ValueError: an explicit target that the manifest lacks.
    """
    labels = [c for c in CHEXPERT_FINDINGS if c in image_manifest.columns]
    if targets == "auto":
        exclude = set(auto_exclude)
        return [c for c in labels if c not in exclude], False
    if isinstance(targets, str):
        targets = [targets]
    missing = [t for t in targets if t not in image_manifest.columns]
    if missing:
        raise ValueError(
            f"params:study_design.targets names {missing}, which image_manifest lacks "
            f"(label columns there: {labels})"
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


def split_by_patient(
    image_manifest: pd.DataFrame, ids: np.ndarray, candidates: Sequence[str], test_size: float, seed: int
) -> pd.DataFrame:
    """One train/test split of the images `ids`, by patient, stratified, seeded.

    StratifiedGroupKFold with round(1 / test_size) folds; the first fold is the test set.
    The stratification key is each image's pattern of positive candidate targets (uncertain
    counts as negative here), with patterns rarer than the number of folds pooled, so that
    every target's prevalence is kept on both sides. Without candidates, a plain group split.

    Returns:
        image_id, patient_id, split ("train" / "test"), rows in the order of `ids`.
    """
    manifest = labelled_manifest(image_manifest, ids)
    patients = patient_ids(manifest, ids)
    n_splits = max(2, round(1 / test_size))
    n_patients = len(set(patients))
    if n_patients < n_splits:
        raise ValueError(f"{n_patients} patients cannot be split into {n_splits} folds (test_size {test_size})")
    if candidates:
        positives = np.column_stack(
            [np.nan_to_num(target_labels(manifest[c], "u_zeros")) for c in candidates]
        ).astype(int)
        keys = pd.Series(["".join(map(str, row)) for row in positives])
        counts = keys.map(pd.Series(patients).groupby(keys.to_numpy()).nunique())
        keys[counts.to_numpy() < n_splits] = "rare"
        if (keys == "rare").any() and pd.Series(patients[keys == "rare"]).nunique() < n_splits:
            keys[keys == "rare"] = keys.mode().iloc[0] if (keys != "rare").any() else "all"
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test_rows = next(splitter.split(np.zeros(len(ids)), keys.to_numpy(), groups=patients))
    else:  # no labels: a plain group split
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        _, test_rows = next(splitter.split(np.zeros(len(ids)), groups=patients))
    split = np.full(len(ids), "train", dtype=object)
    split[test_rows] = "test"
    return pd.DataFrame({"image_id": ids, "patient_id": patients.astype(str), "split": split.astype(str)})


def label_counts(y: np.ndarray, raw: np.ndarray) -> dict[str, int]:
    """Positives, negatives and what became of uncertain and unmentioned labels."""
    return {
        "positive": int(np.sum(y == 1)),
        "negative": int(np.sum(y == 0)),
        "uncertain_dropped": int(np.sum(np.isnan(y))),
        "uncertain": int(np.sum(raw == -1)),
        "not_mentioned_as_negative": int(np.sum(np.isnan(raw))),
    }


def _one_class_error(target: str, side: str, counts: dict[str, int], policy: str) -> ValueError:
    return ValueError(
        f"target {target!r} has only one class in the {side} split "
        f"({counts['positive']} positive, {counts['negative']} negative, policy {policy}): "
        "a classifier cannot be trained or evaluated; choose other targets"
    )


def select_targets(
    image_manifest: pd.DataFrame,
    data_split: pd.DataFrame,
    candidates: Sequence[str],
    explicit: bool,
    min_positives: int,
    min_negatives: int,
    policy: str,
) -> dict[str, Any]:
    """The target diseases, and why others were left out.

    Explicit targets must have both classes in each split: one class is an error. Otherwise
    a candidate is kept with at least min_positives positives and min_negatives negatives in
    train and in test.

    Returns:
        targets, skipped (name -> reason), uncertainty_policy, selection (how they were
        chosen) and counts (per target and split, `label_counts`).
    """
    manifest = labelled_manifest(image_manifest, data_split["image_id"].astype(str).to_numpy())
    is_train = (data_split["split"] == "train").to_numpy()
    chosen, skipped, counts = [], {}, {}
    for target in candidates:
        raw = manifest[target].to_numpy(dtype=float)
        y = target_labels(raw, policy)
        counts[target] = {
            "train": label_counts(y[is_train], raw[is_train]),
            "test": label_counts(y[~is_train], raw[~is_train]),
        }
        train, test = counts[target]["train"], counts[target]["test"]
        if explicit:
            for side, c in (("training", train), ("test", test)):
                if c["positive"] == 0 or c["negative"] == 0:
                    raise _one_class_error(target, side, c, policy)
            if min(train["positive"], test["positive"]) < min_positives:
                logger.warning("target %r has few positives (train %d, test %d)", target, train["positive"], test["positive"])
            chosen.append(target)
        elif min(train["positive"], test["positive"]) < min_positives or min(train["negative"], test["negative"]) < min_negatives:
            skipped[target] = (
                f"too few examples: positives train {train['positive']} / test {test['positive']}, "
                f"negatives train {train['negative']} / test {test['negative']} "
                f"(need >= {min_positives} positives and >= {min_negatives} negatives in each)"
            )
        else:
            chosen.append(target)
    if not chosen:
        raise ValueError(
            "no target disease has enough examples for the residual heads: "
            + "; ".join(f"{t}: {why}" for t, why in skipped.items())
            + ". Lower params:study_design.min_positives or name targets explicitly."
        )
    return {
        "targets": chosen,
        "skipped": skipped,
        "uncertainty_policy": policy,
        "selection": "explicit" if explicit else f"auto (>= {min_positives} positives, >= {min_negatives} negatives per split)",
        "counts": counts,
    }


def target_rows(
    image_manifest: pd.DataFrame, data_split: pd.DataFrame, target: str, policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, 0/1 labels, is_train) of the images that have a label for `target`."""
    ids = data_split["image_id"].astype(str).to_numpy()
    y = target_labels(labelled_manifest(image_manifest, ids)[target], policy)
    keep = ~np.isnan(y)
    return ids[keep], y[keep].astype(int), (data_split["split"] == "train").to_numpy()[keep]
