"""Residual regression 1 nodes: r = i - w, and the classifier on r against the same one on i alone.

The split, the targets and the classifier come from the study_design pipeline
(`data_split`, `residual_targets`, params:study_design), shared with residual_2. Both
models get the same classifier and settings: nothing is tuned to make the residual win.
Statistics: ROC AUC on the test split with a percentile-bootstrap CI; the difference
AUC(residual_1) - AUC(image) by a PAIRED bootstrap, with DeLong's test as a cross-check.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medclip_residuals.models.classifiers import fit_per_target
from medclip_residuals.models.evaluation import evaluate_residual_1_against_image
from medclip_residuals.models.figures import plot_roc_curves
from medclip_residuals.models.heads import ResidualHead, heads_to_tensors, logistic_head_from_sklearn
from medclip_residuals.models.residuals import residual_1_vectors
from medclip_residuals.pipelines.study_design.params import StudyDesignParams


def compute_residuals_1(image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame) -> pd.DataFrame:
    """r = i - w for every image (image_id, e000.., float32)."""
    return residual_1_vectors(image_embeddings, phenotype_sentence_embeddings)


def train_residual_1(
    image_embeddings: pd.DataFrame,
    residuals_1: pd.DataFrame,
    image_manifest: pd.DataFrame,
    data_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per target: the classifier on i (baseline) and on r = i - w (residual_1).

    Returns the heads for TensorDictDataset (names "<target>/image": LogisticHead on i,
    "<target>/residual_1": ResidualHead(i, w) = head(i - w)) and the predictions of both
    on every labelled image (image_id, split, target, model, y_true, probability).
    """
    p = StudyDesignParams.parse(params, "study_design")
    policy = residual_targets["uncertainty_policy"]
    models, predictions = fit_per_target(
        {"image": (image_embeddings, "image_embeddings"), "residual_1": (residuals_1, "residuals_1")},
        image_manifest,
        data_split,
        residual_targets["targets"],
        policy,
        p.classifier,
        seed,
    )
    heads: dict[str, Any] = {}
    for (target, model_name), model in models.items():
        head = logistic_head_from_sklearn(model)
        heads[f"{target}/{model_name}"] = head if model_name == "image" else ResidualHead(head)
    tensors, metadata = heads_to_tensors(heads)
    metadata.update(
        targets=list(residual_targets["targets"]),
        uncertainty_policy=policy,
        inputs={"image": "i (image embedding)", "residual_1": "i and w (phenotype sentence embedding); r = i - w"},
    )
    return {"tensors": tensors, "metadata": metadata}, predictions


def evaluate_residual_1(
    residual_1_predictions: pd.DataFrame, residual_targets: dict[str, Any], params: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Test-split ROC AUC of image vs residual_1 per target, CIs and the paired difference."""
    p = StudyDesignParams.parse(params, "study_design")
    return evaluate_residual_1_against_image(residual_1_predictions, residual_targets, p.bootstrap, seed)


def plot_residual_1_roc(residual_1_predictions: pd.DataFrame, residual_1_metrics: dict[str, Any]) -> Figure:
    """The slide "Residual Regression 1: ROC Curve": image-only and residual curves per target."""
    return plot_roc_curves(
        residual_1_predictions, residual_1_metrics, ["image", "residual_1"], "Residual Regression 1: ROC Curve"
    )
