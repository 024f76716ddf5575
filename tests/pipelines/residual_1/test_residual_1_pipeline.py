"""phenotyping + residual_1 as a SequentialRunner run: planted labels are learnt, random ones not."""

from __future__ import annotations

import copy
import json

import pytest
from matplotlib.figure import Figure

from medclip_residuals.pipelines.phenotyping import create_pipeline as phenotyping
from medclip_residuals.pipelines.residual_1 import create_pipeline as residual_1


@pytest.fixture(scope="module")
def run(study_module, study):
    residual_1_params = copy.deepcopy(study_module.RESIDUAL_1_PARAMS)
    inputs = {k: v for k, v in study.items() if k != "phenotype_sentence_embeddings"}
    inputs.update(
        {
            "params:phenotyping": study_module.PHENOTYPING_PARAMS,
            "params:residual_1": residual_1_params,
            "params:device": "cpu",
            "params:seed": 1234,
        }
    )
    return study_module.run_pipeline(phenotyping() + residual_1(), inputs)


def test_planted_label_is_learnt_and_random_label_is_not(run):
    metrics = run["residual_1_metrics"]
    json.dumps(metrics, allow_nan=False)  # a valid JSON document
    assert metrics["selection"]["targets"] == ["Edema", "Pneumonia", "Atelectasis", "Pleural Effusion"]
    for target in ("Pneumonia", "Pleural Effusion"):
        for model in ("image", "residual_1"):
            auc = metrics["targets"][target]["auc"][model]
            assert auc["estimate"] > 0.8 and auc["low"] <= auc["estimate"] <= auc["high"]
    for model in ("image", "residual_1"):
        auc = metrics["targets"]["Edema"]["auc"][model]
        assert abs(auc["estimate"] - 0.5) < 0.15
        assert auc["low"] < 0.5 < auc["high"]
    difference = metrics["targets"]["Pneumonia"]["residual_1_minus_image"]
    assert difference["method"] == "paired bootstrap" and 0 <= difference["p_value"] <= 1
    assert "p_value" in difference["delong"]


def test_outputs_are_consistent(run, study):
    split = run["data_split"]
    predictions = run["residual_1_predictions"]
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    assert set(predictions.loc[predictions["split"] == "test", "image_id"]) <= test_ids
    assert len(run["residuals_1"]) == len(study["image_embeddings"])
    assert sorted(run["residual_1_heads"]["metadata"]["heads"]) == sorted(
        f"{t}/{m}" for t in ("Edema", "Pneumonia", "Atelectasis", "Pleural Effusion") for m in ("image", "residual_1")
    )
    figure = run["residual_1_roc_plot"]
    assert isinstance(figure, Figure)
    assert sum(ax.get_visible() for ax in figure.axes) == 4
    assert figure.axes[0].get_legend() is not None
