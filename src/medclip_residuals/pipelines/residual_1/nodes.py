"""Residual regression 1 nodes: r = i - w, and the classifier on r against the same one on i alone.

The roles, the targets and the classifier come from the study_design pipeline
(`study_split`, `residual_targets`, params:study_design), shared with residual_2: the heads
are fitted on the head_train role and scored on the test role. Both models get the same
classifier and settings: nothing is tuned to make the residual win. Statistics: ROC AUC on
the test role with a percentile-bootstrap CI; the difference AUC(residual_1) - AUC(image) by
a PAIRED bootstrap (with the smallest difference the test role could detect), DeLong's test
as a cross-check.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medclip_residuals.data.study_split import role_summary
from medclip_residuals.models.classifiers import fit_per_target
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.evaluation import evaluate_residual_1_against_image
from medclip_residuals.models.figures import plot_roc_curves
from medclip_residuals.models.heads import ResidualHead, heads_to_tensors, logistic_head_from_sklearn
from medclip_residuals.models.phenotypes import TextEncoder
from medclip_residuals.models.residuals import residual_1_vectors
from medclip_residuals.models.sweep import PhraseSettings, phenotype_sweep
from medclip_residuals.pipelines.phenotyping.params import PhenotypingParams
from medclip_residuals.pipelines.residual_1.params import Residual1Params
from medclip_residuals.pipelines.study_design.params import StudyDesignParams


def compute_residuals_1(image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame) -> pd.DataFrame:
    """r = i - w for every image (image_id, e000.., float32)."""
    return residual_1_vectors(image_embeddings, phenotype_sentence_embeddings)


def train_residual_1(
    image_embeddings: pd.DataFrame,
    residuals_1: pd.DataFrame,
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per target: the classifier on i (baseline) and on r = i - w (residual_1).

    Returns the heads for TensorDictDataset (names "<target>/image": LogisticHead on i,
    "<target>/residual_1": ResidualHead(i, w) = head(i - w)) and the predictions of both
    on the labelled images of head_train, validation and test (image_id, role, target, model,
    y_true, probability).
    """
    p = StudyDesignParams.parse(params, "study_design")
    policy = residual_targets["uncertainty_policy"]
    models, predictions = fit_per_target(
        {"image": (image_embeddings, "image_embeddings"), "residual_1": (residuals_1, "residuals_1")},
        image_manifest,
        study_split,
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
    residual_1_predictions: pd.DataFrame,
    residual_targets: dict[str, Any],
    study_split: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Test-role ROC AUC of image vs residual_1 per target, CIs and the paired difference."""
    p = StudyDesignParams.parse(params, "study_design")
    metrics = evaluate_residual_1_against_image(residual_1_predictions, residual_targets, p.bootstrap, seed)
    return {"role": role_summary(study_split, "test"), **metrics}


def sweep_phenotype_settings(
    image_embeddings: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    report_mentions: pd.DataFrame,
    medclip_encoder: TextEncoder,
    study_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    params: dict[str, Any],
    phenotyping: dict[str, Any],
    study_design: dict[str, Any],
    seed: int,
    device: str,
) -> pd.DataFrame:
    """residual_1 against the image-only head on the test role for every k, strategy and
    source of params:residual_1.sweep (`models.sweep.phenotype_sweep`), one row per target."""
    p = Residual1Params.parse(params, "residual_1")
    ph = PhenotypingParams.parse(phenotyping, "phenotyping")
    design = StudyDesignParams.parse(study_design, "study_design")
    return phenotype_sweep(
        image_embeddings, phenotype_embeddings, image_manifest, report_mentions, medclip_encoder,
        study_split, residual_targets["targets"], residual_targets["uncertainty_policy"],
        sweep=p.sweep,
        phrases_settings=PhraseSettings(
            sentence_template=ph.sentence_template, separator=ph.separator, phrase_order=ph.phrase_order,
            report_uncertain=ph.report_uncertain, report_fallback=ph.report_fallback, meanings=ph.evaluation,
        ),
        classifier=design.classifier, bootstrap=design.bootstrap, seed=seed, device=resolve_device(device),
    )


def plot_residual_1_roc(residual_1_predictions: pd.DataFrame, residual_1_metrics: dict[str, Any]) -> Figure:
    """The slide "Residual Regression 1: ROC Curve": image-only and residual curves per target."""
    return plot_roc_curves(
        residual_1_predictions, residual_1_metrics, ["image", "residual_1"], "Residual Regression 1: ROC Curve"
    )
