"""data/patient_split.py: the seeded patient split of encoder training."""

from __future__ import annotations

import pandas as pd
import pytest

from medclip_residuals.data.patient_split import split_by_patient


def _manifest(n_patients: int = 10, per_patient: int = 3) -> pd.DataFrame:
    rows = [
        {"image_id": f"p{p}_{i}", "patient_id": f"p{p}", "image_path": f"/x/p{p}_{i}.png", "report": "r"}
        for p in range(n_patients) for i in range(per_patient)
    ]
    return pd.DataFrame(rows)


def test_split_is_by_patient_seeded_and_sized():
    manifest = _manifest()
    split = split_by_patient(manifest, 0.3, seed=7)
    assert split["image_id"].tolist() == manifest["image_id"].tolist()
    sides = split.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    assert split.drop_duplicates("patient_id")["split"].value_counts().to_dict() == {"train": 7, "test": 3}
    pd.testing.assert_frame_equal(split, split_by_patient(manifest, 0.3, seed=7))
    assert not split.equals(split_by_patient(manifest, 0.3, seed=8))
    with pytest.raises(ValueError, match="at least 2"):
        split_by_patient(_manifest(n_patients=1), 0.2, seed=0)
    with pytest.raises(ValueError, match="patient_id"):
        split_by_patient(manifest.drop(columns="patient_id"), 0.2, seed=0)
