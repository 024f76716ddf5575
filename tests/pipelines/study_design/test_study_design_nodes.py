"""study_design nodes: the study's one split into roles, and the choice of targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.data.study_split import ROLES
from medclip_residuals.pipelines.study_design.nodes import make_study_split, select_targets
from medclip_residuals.utils.params import ParameterError


def with_split(params: dict, **split) -> dict:
    return {**params, "split": {**params["split"], **split}}


def test_every_patient_has_one_role_in_the_planned_shares(study, study_design_params):
    split = make_study_split(study["image_manifest"], study_design_params, 1234)
    assert split["image_id"].tolist() == sorted(study["image_manifest"]["image_id"])
    assert (split.groupby("patient_id")["role"].nunique() == 1).all(), "a patient in two roles"
    assert set(split["role"]) == {"head_train", "validation", "test"}  # encoder_train's share is 0 here
    shares = split.drop_duplicates("patient_id")["role"].value_counts(normalize=True)
    assert shares["head_train"] == pytest.approx(0.6, abs=0.05)
    assert shares["validation"] == pytest.approx(0.1, abs=0.05)
    assert shares["test"] == pytest.approx(0.3, abs=0.05)


def test_the_split_is_stratified_and_seeded(study, study_design_params):
    split = make_study_split(study["image_manifest"], study_design_params, 1234)
    labels = study["image_manifest"].set_index("image_id").loc[split["image_id"], "Pleural Effusion"].to_numpy()
    prevalence = {role: labels[(split["role"] == role).to_numpy()].mean() for role in ("head_train", "test")}
    assert abs(prevalence["head_train"] - prevalence["test"]) < 0.05
    pd.testing.assert_frame_equal(split, make_study_split(study["image_manifest"], study_design_params, 1234))
    assert not make_study_split(study["image_manifest"], study_design_params, 99)["role"].equals(split["role"])


def test_every_role_gets_patients_with_encoder_training(study, study_design_params):
    params = with_split(study_design_params, fractions={"encoder_train": 0.5, "head_train": 0.2, "validation": 0.1, "test": 0.2})
    split = make_study_split(study["image_manifest"], params, 0)
    assert set(split["role"]) == set(ROLES)
    assert split.drop_duplicates("patient_id")["role"].value_counts(normalize=True)["encoder_train"] == pytest.approx(0.5, abs=0.05)


def test_images_without_patient_ids_are_their_own_patients(study, study_design_params):
    split = make_study_split(study["image_manifest"].drop(columns=["patient_id"]), study_design_params, 0)
    assert split["patient_id"].str.startswith("image:").all()


def test_a_manifest_split_column_wins(study, study_design_params):
    manifest = study["image_manifest"].copy()
    patient_number = manifest["patient_id"].str[1:].astype(int)
    manifest["split"] = np.select([patient_number < 20, patient_number < 30], ["test", "validate"], "train")
    split = make_study_split(manifest, study_design_params, 0).merge(manifest[["image_id", "split"]], on="image_id")
    assert (split.loc[split["split"] == "test", "role"] == "test").all()
    assert (split.loc[split["split"] == "validate", "role"] == "validation").all()
    assert set(split.loc[split["split"] == "train", "role"]) == {"head_train"}  # encoder_train's share is 0
    # with encoder training, the official train patients are shared by encoder_train and head_train
    params = with_split(study_design_params, fractions={"encoder_train": 0.4, "head_train": 0.3, "validation": 0.1, "test": 0.2})
    split = make_study_split(manifest, params, 0).merge(manifest[["image_id", "split"]], on="image_id")
    assert set(split.loc[split["split"] == "train", "role"]) == {"encoder_train", "head_train"}
    assert (split.loc[split["split"] == "test", "role"] == "test").all()


def test_a_manifest_split_column_is_checked(study, study_design_params):
    manifest = study["image_manifest"].copy()
    manifest["split"] = "train"
    manifest.loc[0, "split"] = "test"  # image 0 and 1 are patient p0000
    with pytest.raises(ValueError, match=r"puts patient 'p0000' in \['test', 'train'\] at once"):
        make_study_split(manifest, study_design_params, 0)
    manifest["split"] = "train"
    manifest.loc[4, "split"] = "holdout"
    with pytest.raises(ValueError, match=r"value\(s\) \['holdout'\] .*e\.g\. image_id 'img0004'"):
        make_study_split(manifest, study_design_params, 0)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"fractions": {"encoder_train": 0.5, "head_train": 0.5, "validation": 0.1, "test": 0.1}}, "must sum to 1"),
        ({"fractions": {"encoder_train": 0.9, "head_train": 0.0, "validation": 0.0, "test": 0.1}}, "head_train and test need a share"),
        ({"folds": 1}, "folds must be >= 2"),
        ({"manifest_roles": {"train": ["training"]}}, "'training' is not one of"),
    ],
)
def test_split_parameters_are_checked(study, study_design_params, split, message):
    with pytest.raises(ParameterError, match=message):
        make_study_split(study["image_manifest"], with_split(study_design_params, **split), 0)


def test_select_targets_auto_and_explicit(study, study_design_params, study_split):
    chosen = select_targets(study["image_manifest"], study_split, study_design_params)
    assert chosen["targets"] == ["Edema", "Pneumonia", "Atelectasis", "Pleural Effusion"]  # CheXpert order
    assert chosen["kinds"] == dict.fromkeys(chosen["targets"], "finding")
    assert "Cardiomegaly" in chosen["skipped"] and "too few" in chosen["skipped"]["Cardiomegaly"]
    counts = chosen["counts"]["Pneumonia"]
    assert set(counts) == {"head_train", "validation", "test"}
    assert sum(c["left_out"] for c in counts.values()) == int((study["image_manifest"]["Pneumonia"] == -1).sum())
    u_ones = select_targets(study["image_manifest"], study_split, dict(study_design_params, uncertainty_policy="u_ones"))
    assert u_ones["counts"]["Pneumonia"]["head_train"]["left_out"] == 0
    # Cardiomegaly's 6 positives are images 0-5 (patients 0-2): a split with none in head_train
    only_test = study_split.assign(role=np.where(study_split.index < 6, "test", "head_train"))
    with pytest.raises(ValueError, match="'Cardiomegaly' has only one class in the head_train role"):
        select_targets(study["image_manifest"], only_test, dict(study_design_params, targets=["Cardiomegaly"]))
    with pytest.raises(ValueError, match=r"names \['Fibrosis'\], which image_manifest lacks"):
        select_targets(study["image_manifest"], study_split, dict(study_design_params, targets=["Fibrosis"]))
    with pytest.raises(ValueError, match="no target has enough examples"):
        select_targets(study["image_manifest"], study_split, dict(study_design_params, min_positives=1000))


def test_an_outcome_column_is_a_target_with_unknowns_left_out(study, study_design_params, study_split):
    manifest = study["image_manifest"].copy()
    rng = np.random.default_rng(0)
    outcome = np.where(rng.random(len(manifest)) < 0.4, "1", "0").astype(object)
    outcome[:10] = ""  # unknown in the record
    manifest["outcome:icu_admission"] = outcome
    chosen = select_targets(manifest, study_split, dict(study_design_params, targets=["outcome:icu_admission"]))
    assert chosen["kinds"] == {"outcome:icu_admission": "outcome"}
    counts = chosen["counts"]["outcome:icu_admission"]
    assert sum(c["left_out"] for c in counts.values()) == 10
    assert sum(c["positive"] + c["negative"] for c in counts.values()) == len(manifest) - 10
    auto = select_targets(manifest, study_split, study_design_params)
    assert "outcome:icu_admission" in auto["targets"]
    manifest.loc[3, "outcome:icu_admission"] = "yes"
    with pytest.raises(ValueError, match=r"'outcome:icu_admission' must hold 1, 0 or empty .* image_id 'img0003': 'yes'"):
        select_targets(manifest, study_split, dict(study_design_params, targets=["outcome:icu_admission"]))
