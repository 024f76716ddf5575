"""phenotyping (report source) + study_design + residual_1 + residual_2 as one SequentialRunner run.

Atelectasis is written in the reports but absent from the images: with w taken from the
reports, the residual models can learn it and the image-only model cannot. Edema is a
random label: every model stays near AUC 0.5.
"""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from medclip_residuals.pipelines.phenotyping import create_pipeline as phenotyping
from medclip_residuals.pipelines.residual_1 import create_pipeline as residual_1
from medclip_residuals.pipelines.residual_2 import create_pipeline as residual_2
from medclip_residuals.pipelines.study_design import create_pipeline as study_design


@pytest.fixture(scope="module")
def run(study_module, study, base_params):
    inputs = {k: v for k, v in study.items() if k != "phenotype_sentence_embeddings"}
    inputs.update(
        {
            "params:phenotyping": base_params("phenotyping", study_module.PHENOTYPING_OVERRIDES, source="report"),
            "params:study_design": base_params(
                "study_design", study_module.STUDY_DESIGN_OVERRIDES, targets=["Atelectasis", "Edema"]
            ),
            "params:residual_1": base_params("residual_1", sweep={"top_k": [1], "strategies": ["mean"]}),
            "params:residual_2": base_params("residual_2", study_module.RESIDUAL_2_OVERRIDES),
            "params:device": "cpu",
            "params:seed": 1234,
        }
    )
    return study_module.run_pipeline(phenotyping() + study_design() + residual_1() + residual_2(), inputs)


def test_planted_label_is_learnt_from_the_residual_and_random_label_is_not(run):
    metrics = run["residual_2_metrics"]
    json.dumps(metrics, allow_nan=False)
    atelectasis = metrics["targets"]["Atelectasis"]
    assert atelectasis["auc"]["residual_2"]["estimate"] > 0.8
    assert atelectasis["auc"]["residual_1"]["estimate"] > 0.8
    image_auc = atelectasis["auc"]["image"]
    assert image_auc["low"] < 0.5 < image_auc["high"]  # not in the images
    assert atelectasis["accuracy"]["residual_2"]["estimate"] > atelectasis["majority_class_accuracy"]
    versus_image = atelectasis["comparisons"]["residual_2_minus_image"]["auc"]
    assert versus_image["low"] > 0 and versus_image["p_value"] < 0.05
    for model in ("image", "residual_1", "residual_2"):
        auc = metrics["targets"]["Edema"]["auc"][model]
        assert abs(auc["estimate"] - 0.5) < 0.15 and auc["low"] < 0.5 < auc["high"]
    assert metrics["map"]["model"] == "ridge" and metrics["map"]["n_train"] > 0


def test_outputs(run, study):
    assert len(run["residuals_2"]) == len(study["image_embeddings"])
    assert set(run["residual_2_predictions"]["model"]) == {"residual_2"}
    assert sorted(run["residual_2_heads"]["metadata"]["heads"]) == ["Atelectasis/residual_2", "Edema/residual_2", "map"]
    figure = run["residual_2_accuracy_plot"]
    assert isinstance(figure, Figure) and len(figure.axes[0].patches) == 6
