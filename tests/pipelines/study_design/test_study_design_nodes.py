"""study_design nodes: the split by patient and the choice of targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.pipelines.study_design.nodes import select_targets, split_by_patient
from medclip_residuals.utils.params import ParameterError


def test_split_by_patient_is_grouped_stratified_and_seeded(study, study_design_params):
    split = split_by_patient(study["image_manifest"], study["image_embeddings"], study_design_params, 1234)
    assert split["image_id"].tolist() == study["image_embeddings"]["image_id"].tolist()
    sides = split.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all(), "a patient on both sides of the split"
    assert split["split"].eq("test").mean() == pytest.approx(1 / 3, abs=0.05)  # round(1 / 0.3) = 3 folds
    labels = study["image_manifest"].set_index("image_id").loc[split["image_id"], "Pleural Effusion"].to_numpy()
    train, test = labels[split["split"] == "train"], labels[split["split"] == "test"]
    assert abs(train.mean() - test.mean()) < 0.05  # stratified
    again = split_by_patient(study["image_manifest"], study["image_embeddings"], study_design_params, 1234)
    pd.testing.assert_frame_equal(split, again)
    other = split_by_patient(study["image_manifest"], study["image_embeddings"], study_design_params, 99)
    assert not other["split"].equals(split["split"])


def test_split_without_patient_ids_and_with_unknown_images(study, study_design_params):
    manifest = study["image_manifest"].drop(columns=["patient_id"])
    split = split_by_patient(manifest, study["image_embeddings"], study_design_params, 0)
    assert split["patient_id"].str.startswith("image:").all()
    with pytest.raises(ValueError, match="not in image_manifest"):
        split_by_patient(study["image_manifest"].iloc[5:], study["image_embeddings"], study_design_params, 0)


def test_split_size_must_lie_between_0_and_1(study, study_design_params):
    bad = dict(study_design_params, split={"test_size": 1.5})
    with pytest.raises(ParameterError, match=r"study_design.split.test_size must lie in \(0, 1\), got 1.5"):
        split_by_patient(study["image_manifest"], study["image_embeddings"], bad, 0)


def test_select_targets_auto_and_explicit(study, study_design_params):
    split = split_by_patient(study["image_manifest"], study["image_embeddings"], study_design_params, 1234)
    chosen = select_targets(study["image_manifest"], split, study_design_params)
    assert chosen["targets"] == ["Edema", "Pneumonia", "Atelectasis", "Pleural Effusion"]  # CheXpert order
    assert "Cardiomegaly" in chosen["skipped"] and "too few" in chosen["skipped"]["Cardiomegaly"]
    dropped = chosen["counts"]["Pneumonia"]["train"]["uncertain_dropped"] + chosen["counts"]["Pneumonia"]["test"]["uncertain_dropped"]
    assert dropped == int((study["image_manifest"]["Pneumonia"] == -1).sum())
    u_ones = select_targets(study["image_manifest"], split, dict(study_design_params, uncertainty_policy="u_ones"))
    assert u_ones["counts"]["Pneumonia"]["train"]["uncertain_dropped"] == 0
    # Cardiomegaly's 6 positives are images 0-5 (patients 0-2): pick a split with none in train
    only_test = split.assign(split=np.where(split.index < 6, "test", "train"))
    with pytest.raises(ValueError, match="'Cardiomegaly' has only one class in the training split"):
        select_targets(study["image_manifest"], only_test, dict(study_design_params, targets=["Cardiomegaly"]))
    with pytest.raises(ValueError, match=r"names \['Fibrosis'\], which image_manifest lacks"):
        select_targets(study["image_manifest"], split, dict(study_design_params, targets=["Fibrosis"]))
    with pytest.raises(ValueError, match="no target disease has enough examples"):
        select_targets(study["image_manifest"], split, dict(study_design_params, min_positives=1000))
