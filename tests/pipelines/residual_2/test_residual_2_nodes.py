"""residual_2 nodes: f fitted on the head_train role only, r = f(i) - w, heads, metrics (on
study_design's roles and targets, against residual_1's predictions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medclip_residuals.models.heads import ResidualHead, heads_from_tensors
from medclip_residuals.pipelines.phenotyping.nodes import embed_phenotypes, score_phenotypes
from medclip_residuals.pipelines.residual_1.nodes import compute_residuals_1, train_residual_1
from medclip_residuals.pipelines.residual_2.nodes import (
    compute_residuals_2,
    evaluate_residual_2,
    fit_embedding_map,
    plot_residual_2_accuracy,
    train_residual_2,
)
from medclip_residuals.pipelines.study_design.nodes import select_targets

SEED = 1234


@pytest.fixture
def split(study_split):
    return study_split


def _matrices(study, split):
    i = study["image_embeddings"].filter(regex=r"^e\d+$").to_numpy()
    w = study["phenotype_sentence_embeddings"].filter(regex=r"^e\d+$").to_numpy()
    return i, w, (split["role"] == "head_train").to_numpy()


def test_map_is_fitted_on_the_head_train_role_only(study, split, residual_2_params):
    fitted = fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split, residual_2_params, SEED)
    changed_w = study["phenotype_sentence_embeddings"].copy()
    test_rows = (split["role"] != "head_train").to_numpy()
    changed_w.loc[test_rows, "e000"] += 5.0  # the validation and test images' w must not matter
    refitted = fit_embedding_map(study["image_embeddings"], changed_w, split, residual_2_params, SEED)
    for name, array in fitted["tensors"].items():
        np.testing.assert_array_equal(array, refitted["tensors"][name])
    fit = fitted["metadata"]["fit"]
    assert fit["n_train"] == int((~test_rows).sum()) and fit["ridge_alpha"] in (0.1, 1.0, 10.0)
    assert fit["r2_train"] > fit["r2_test"]


def test_residuals_2_are_ridge_prediction_minus_w(study, split, base_params):
    params = base_params("residual_2", map={"model": "ridge", "ridge_alphas": [0.5]})
    fitted = fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split, params, SEED)
    residuals = compute_residuals_2(study["image_embeddings"], study["phenotype_sentence_embeddings"], fitted)
    i, w, train = _matrices(study, split)
    expected = Ridge(alpha=0.5).fit(i[train], w[train]).predict(i) - w
    np.testing.assert_allclose(residuals.filter(regex=r"^e\d+$").to_numpy(), expected, atol=1e-5)
    assert residuals["image_id"].tolist() == study["image_embeddings"]["image_id"].tolist()


def test_mlp_option_matches_sklearn(study, split, base_params):
    mlp = {"hidden_layer_sizes": [16], "activation": "tanh", "max_iter": 30}
    params = base_params("residual_2", map={"model": "mlp", "mlp": mlp})
    fitted = fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split, params, SEED)
    assert fitted["metadata"]["heads"]["map"]["kind"] == "mlp"
    residuals = compute_residuals_2(study["image_embeddings"], study["phenotype_sentence_embeddings"], fitted)
    i, w, train = _matrices(study, split)
    reference = make_pipeline(
        StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=30, alpha=1e-4, random_state=SEED)
    )
    with pytest.warns(Warning):
        reference.fit(i[train], w[train])
    np.testing.assert_allclose(residuals.filter(regex=r"^e\d+$").to_numpy(), reference.predict(i) - w, atol=1e-5)
    with pytest.raises(ValueError, match="residual_2.map.model: 'svm' is not one of"):
        fit_embedding_map(
            study["image_embeddings"], study["phenotype_sentence_embeddings"], split, base_params("residual_2", map={"model": "svm"}), SEED
        )


def test_concat_w_gives_wider_residuals(study, split, phenotyping_params, residual_2_params):
    params = dict(phenotyping_params, strategy="concat")
    scores = score_phenotypes(study["image_embeddings"], study["phenotype_embeddings"], study["image_manifest"], params, "cpu")
    w = embed_phenotypes(scores, study["phenotype_embeddings"], study["image_manifest"], study["report_mentions"], None, params)
    fitted = fit_embedding_map(study["image_embeddings"], w, split, residual_2_params, SEED)
    assert fitted["metadata"]["heads"]["map"]["config"] == {"in_features": 64, "out_features": 128}
    residuals = compute_residuals_2(study["image_embeddings"], w, fitted)
    assert residuals.filter(regex=r"^e\d+$").shape == (len(w), 128)


def test_heads_reproduce_predictions_and_share_the_map(study, split, study_design_params, residual_2_params):
    targets = select_targets(study["image_manifest"], split, dict(study_design_params, targets=["Pneumonia", "Edema"]))
    fitted = fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split, residual_2_params, SEED)
    residuals = compute_residuals_2(study["image_embeddings"], study["phenotype_sentence_embeddings"], fitted)
    heads, predictions = train_residual_2(residuals, study["image_manifest"], split, targets, fitted, study_design_params, SEED)
    assert sorted(name.split("/")[0] for name in heads["tensors"]) == ["Edema", "Edema", "Pneumonia", "Pneumonia", "map", "map"]
    modules = heads_from_tensors(heads["tensors"], heads["metadata"])
    assert modules["Pneumonia/residual_2"].map is modules["Edema/residual_2"].map is modules["map"]
    image = study["image_embeddings"].set_index("image_id").filter(regex=r"^e\d+$")
    w = study["phenotype_sentence_embeddings"].set_index("image_id").filter(regex=r"^e\d+$")
    for target in ("Pneumonia", "Edema"):
        rows = predictions[predictions["target"] == target]
        head = modules[f"{target}/residual_2"]
        assert isinstance(head, ResidualHead)
        with torch.no_grad():
            probability = head(torch.tensor(image.loc[rows["image_id"]].to_numpy()), torch.tensor(w.loc[rows["image_id"]].to_numpy()))
        np.testing.assert_allclose(probability.numpy(), rows["probability"], atol=1e-6)


def test_evaluation_and_plot(study, split, study_design_params, residual_2_params):
    targets = select_targets(study["image_manifest"], split, dict(study_design_params, targets=["Pneumonia"]))
    r1 = compute_residuals_1(study["image_embeddings"], study["phenotype_sentence_embeddings"])
    _, predictions_1 = train_residual_1(study["image_embeddings"], r1, study["image_manifest"], split, targets, study_design_params, SEED)
    fitted = fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split, residual_2_params, SEED)
    r2 = compute_residuals_2(study["image_embeddings"], study["phenotype_sentence_embeddings"], fitted)
    _, predictions_2 = train_residual_2(r2, study["image_manifest"], split, targets, fitted, study_design_params, SEED)
    metrics = evaluate_residual_2(predictions_1, predictions_2, fitted, targets, split, residual_2_params, study_design_params, SEED)
    block = metrics["targets"]["Pneumonia"]
    y = predictions_2.query("role == 'test'")["y_true"].to_numpy()
    assert block["majority_class_accuracy"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    for model in ("image", "residual_1", "residual_2"):
        assert block["accuracy"][model]["low"] <= block["accuracy"][model]["estimate"] <= block["accuracy"][model]["high"]
    assert set(block["comparisons"]) == {"residual_2_minus_image", "residual_2_minus_residual_1"}
    figure = plot_residual_2_accuracy(metrics)
    assert len(figure.axes[0].patches) == 3  # one bar per model
    assert figure.axes[0].get_title() == "Residual Regression 2: Results"
    # residual_1 predictions from another split cannot be compared
    shifted = predictions_1.assign(image_id=predictions_1["image_id"] + "x")
    with pytest.raises(ValueError, match="not evaluated on the same test images"):
        evaluate_residual_2(shifted, predictions_2, fitted, targets, split, residual_2_params, study_design_params, SEED)


def test_mismatched_ids_are_an_error(study, split, residual_2_params):
    with pytest.raises(ValueError, match="different image ids"):
        fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"].iloc[3:], split, residual_2_params, SEED)
    with pytest.raises(ValueError, match="study_split and image_embeddings have different image ids"):
        fit_embedding_map(study["image_embeddings"], study["phenotype_sentence_embeddings"], split.iloc[:-1], residual_2_params, SEED)
