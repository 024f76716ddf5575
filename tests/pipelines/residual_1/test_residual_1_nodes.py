"""residual_1 nodes: label policy, split, target choice, residual arithmetic, heads, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.models.heads import heads_from_tensors
from medclip_residuals.pipelines.residual_1.nodes import (
    compare_auc,
    compute_residuals_1,
    evaluate_residual_1,
    select_targets,
    split_by_patient,
    target_labels,
    train_residual_1,
)
from medclip_residuals.utils.frames import matrix_to_embeddings


def test_uncertainty_policies():
    raw = np.array([1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(target_labels(raw, "u_ones"), [1, 0, 1, 0])
    np.testing.assert_array_equal(target_labels(raw, "u_zeros"), [1, 0, 0, 0])
    np.testing.assert_array_equal(target_labels(raw, "ignore"), [1, 0, np.nan, 0])
    with pytest.raises(ValueError, match="must be one of"):
        target_labels(raw, "u_maybe")
    with pytest.raises(ValueError, match=r"1, 0, -1 or empty; found \[2.0\]"):
        target_labels(np.array([2.0]), "ignore")


def test_split_by_patient_is_grouped_stratified_and_seeded(study, residual_1_params):
    split = split_by_patient(study["image_manifest"], study["image_embeddings"], residual_1_params, 1234)
    assert split["image_id"].tolist() == study["image_embeddings"]["image_id"].tolist()
    sides = split.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all(), "a patient on both sides of the split"
    assert split["split"].eq("test").mean() == pytest.approx(1 / 3, abs=0.05)  # round(1 / 0.3) = 3 folds
    labels = study["image_manifest"].set_index("image_id").loc[split["image_id"], "Pleural Effusion"].to_numpy()
    train, test = labels[split["split"] == "train"], labels[split["split"] == "test"]
    assert abs(train.mean() - test.mean()) < 0.05  # stratified
    again = split_by_patient(study["image_manifest"], study["image_embeddings"], residual_1_params, 1234)
    pd.testing.assert_frame_equal(split, again)
    other = split_by_patient(study["image_manifest"], study["image_embeddings"], residual_1_params, 99)
    assert not other["split"].equals(split["split"])


def test_split_without_patient_ids_and_with_unknown_images(study, residual_1_params):
    manifest = study["image_manifest"].drop(columns=["patient_id"])
    split = split_by_patient(manifest, study["image_embeddings"], residual_1_params, 0)
    assert split["patient_id"].str.startswith("image:").all()
    with pytest.raises(ValueError, match="not in image_manifest"):
        split_by_patient(study["image_manifest"].iloc[5:], study["image_embeddings"], residual_1_params, 0)


def test_select_targets_auto_and_explicit(study, residual_1_params):
    split = split_by_patient(study["image_manifest"], study["image_embeddings"], residual_1_params, 1234)
    chosen = select_targets(study["image_manifest"], split, residual_1_params)
    assert chosen["targets"] == ["Edema", "Pneumonia", "Atelectasis", "Pleural Effusion"]  # CheXpert order
    assert "Cardiomegaly" in chosen["skipped"] and "too few" in chosen["skipped"]["Cardiomegaly"]
    dropped = chosen["counts"]["Pneumonia"]["train"]["uncertain_dropped"] + chosen["counts"]["Pneumonia"]["test"]["uncertain_dropped"]
    assert dropped == int((study["image_manifest"]["Pneumonia"] == -1).sum())
    u_ones = select_targets(study["image_manifest"], split, dict(residual_1_params, uncertainty_policy="u_ones"))
    assert u_ones["counts"]["Pneumonia"]["train"]["uncertain_dropped"] == 0
    # Cardiomegaly's 6 positives are images 0-5 (patients 0-2): pick a split with none in train
    only_test = split.assign(split=np.where(split.index < 6, "test", "train"))
    with pytest.raises(ValueError, match="'Cardiomegaly' has only one class in the training split"):
        select_targets(study["image_manifest"], only_test, dict(residual_1_params, targets=["Cardiomegaly"]))
    with pytest.raises(ValueError, match=r"names \['Fibrosis'\], which image_manifest lacks"):
        select_targets(study["image_manifest"], split, dict(residual_1_params, targets=["Fibrosis"]))
    with pytest.raises(ValueError, match="no target disease has enough examples"):
        select_targets(study["image_manifest"], split, dict(residual_1_params, min_positives=1000))


def test_residuals_are_i_minus_w_aligned_by_id():
    images = matrix_to_embeddings(["a", "b"], np.array([[1.0, 2.0], [3.0, 5.0]]))
    w = matrix_to_embeddings(["b", "a"], np.array([[0.5, 0.5], [1.0, 1.0]]))  # other order
    r = compute_residuals_1(images, w)
    assert r["image_id"].tolist() == ["a", "b"]
    np.testing.assert_array_equal(r[["e000", "e001"]].to_numpy(), [[0.0, 1.0], [2.5, 4.5]])
    with pytest.raises(ValueError, match="different image ids: 1 in image_embeddings only"):
        compute_residuals_1(images, w.iloc[:1])
    with pytest.raises(ValueError, match="'concat' gives k x D"):
        compute_residuals_1(images, matrix_to_embeddings(["a", "b"], np.ones((2, 4))))
    broken = w.copy()
    broken.loc[0, "e001"] = np.nan
    with pytest.raises(ValueError, match=r"phenotype_sentence_embeddings: row 0 \(image_id='b'\), column 'e001'"):
        compute_residuals_1(images, broken)


def test_heads_reproduce_the_predictions(study, residual_1_params):
    split = split_by_patient(study["image_manifest"], study["image_embeddings"], residual_1_params, 1234)
    targets = select_targets(study["image_manifest"], split, dict(residual_1_params, targets=["Pneumonia"]))
    residuals = compute_residuals_1(study["image_embeddings"], study["phenotype_sentence_embeddings"])
    heads, predictions = train_residual_1(
        study["image_embeddings"], residuals, study["image_manifest"], split, targets, residual_1_params, 1234
    )
    assert set(predictions["model"]) == {"image", "residual_1"}
    assert set(predictions["split"]) == {"train", "test"}
    modules = heads_from_tensors(heads["tensors"], heads["metadata"])
    assert sorted(modules) == ["Pneumonia/image", "Pneumonia/residual_1"]
    image = study["image_embeddings"].set_index("image_id")
    w = study["phenotype_sentence_embeddings"].set_index("image_id").filter(regex=r"^e\d+$")
    for model, module in modules.items():
        rows = predictions[predictions["model"] == model.split("/")[1]]
        i = torch.tensor(image.loc[rows["image_id"]].to_numpy())
        with torch.no_grad():
            if model.endswith("image"):
                probability = module(i)
            else:
                probability = module(i, torch.tensor(w.loc[rows["image_id"]].to_numpy()))
        np.testing.assert_allclose(probability.numpy(), rows["probability"], atol=1e-6)


def test_evaluation_known_answer():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1] * 5)
    perfect = y * 0.8 + 0.1
    backwards = 1 - perfect
    frames = [
        pd.DataFrame({"image_id": [f"i{j}" for j in range(len(y))], "split": "test", "target": "T", "model": m, "y_true": y, "probability": p})
        for m, p in (("image", backwards), ("residual_1", perfect))
    ]
    metrics = evaluate_residual_1(
        pd.concat(frames), {"targets": ["T"], "skipped": {}, "selection": "explicit", "uncertainty_policy": "ignore"},
        {"bootstrap": {"n_resamples": 100}}, 0,
    )
    block = metrics["targets"]["T"]
    assert block["auc"]["residual_1"]["estimate"] == 1.0 and block["auc"]["image"]["estimate"] == 0.0
    assert block["residual_1_minus_image"]["difference"] == 1.0
    assert block["residual_1_minus_image"]["delong"]["difference"] == 1.0
    assert block["n_test"] == 40 and block["n_test_positive"] == 20


def test_a_model_compared_with_itself_does_not_differ():
    """Paired bootstrap and DeLong of a model against itself: difference 0, p-value 1."""
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 30)
    score = y * 0.5 + rng.random(len(y))
    result = compare_auc(y, score, score.copy(), {"n_resamples": 300}, 0)
    assert result["difference"] == 0.0 and result["low"] == 0.0 and result["high"] == 0.0
    assert result["p_value"] == 1.0 and result["n_valid"] == 300
    assert result["delong"]["difference"] == 0.0 and result["delong"]["p_value"] == 1.0
    # Too few positives for DeLong: the paired bootstrap still runs, DeLong says why not.
    few = compare_auc(np.array([1, 0, 0, 0, 0]), np.arange(5.0), np.arange(5.0)[::-1], {"n_resamples": 50}, 0)
    assert few["delong"] == "not computed: DeLong's test needs at least 2 positives and 2 negatives; got 1 and 4"
