"""A seeded split of a manifest's patients into `train` and `test` (no patient on both sides).

Example:
    >>> manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["p1", "p1", "p2"]})
    >>> split_by_patient(manifest, test_fraction=0.5, seed=0)["split"].tolist()
    ['test', 'test', 'train']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TRAIN, TEST = "train", "test"


def require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """A ValueError naming the columns `frame` (called `name`) lacks, if any."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")


def split_by_patient(image_manifest: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Assign every patient to `train` or `test`: a seeded shuffle of the sorted patient ids,
    `test_fraction` of them (rounded, at least one on each side) to `test`.

    Returns one row per image, in the manifest's order: image_id, patient_id, split.
    """
    require_columns(image_manifest, ("image_id", "patient_id"), "image_manifest")
    patients = np.array(sorted(image_manifest["patient_id"].astype(str).unique()))
    if len(patients) < 2:
        raise ValueError(f"image_manifest has {len(patients)} patient(s); a train/test split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test = min(len(patients) - 1, max(1, round(test_fraction * len(patients))))
    test_patients = set(patients[order[:n_test]])
    split = image_manifest[["image_id", "patient_id"]].astype(str).copy()
    split["split"] = np.where(split["patient_id"].isin(test_patients), TEST, TRAIN)
    return split.reset_index(drop=True)


def rows_in_split(image_manifest: pd.DataFrame, split: pd.DataFrame, which: str) -> pd.DataFrame:
    """The manifest rows whose image the split puts on side `which`, sorted by image_id."""
    chosen = set(split.loc[split["split"] == which, "image_id"].astype(str))
    rows = image_manifest[image_manifest["image_id"].astype(str).isin(chosen)]
    return rows.sort_values("image_id").reset_index(drop=True)
