"""Residual regression 2 nodes: f: i -> w, r = f(i) - w, g: r -> disease.

`f` (ridge regression by default, an MLP as an option) is fitted on the head_train role of
study_design's `study_split` only. `g` is the one classifier of params:study_design, on the
same targets, so the three models (image only, residual_1, residual_2) are compared on the
same test images. Accuracy (at params:residual_2.threshold) and ROC AUC come with
percentile-bootstrap CIs; differences with paired bootstraps (and DeLong for AUC). The
majority-class accuracy is reported next to every accuracy: with rare diseases, a high
accuracy can mean nothing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medclip_residuals.data.study_split import role_summary
from medclip_residuals.models.classifiers import fit_map, fit_per_target, load_map
from medclip_residuals.models.evaluation import RESIDUAL_2_MODELS, evaluate_residual_2_against_others
from medclip_residuals.models.figures import plot_accuracy_bars
from medclip_residuals.models.heads import ResidualHead, heads_to_tensors, logistic_head_from_sklearn, map_from_sklearn
from medclip_residuals.models.residuals import residual_2_vectors
from medclip_residuals.pipelines.residual_2.params import Residual2Params
from medclip_residuals.pipelines.study_design.params import StudyDesignParams
from medclip_residuals.utils.frames import aligned, paired_embeddings


def fit_embedding_map(
    image_embeddings: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    study_split: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Fit f: i -> w on the head_train role only; the map as tensors, with fit diagnostics.

    Returns TensorDictDataset data: the map under the head name "map" (RidgeMap or MLPMap)
    and metadata with R^2 and the mean cosine of f(i) to w on train and test.
    """
    p = Residual2Params.parse(params, "residual_2")
    ids, images, w = paired_embeddings(image_embeddings, phenotype_sentence_embeddings)
    roles = aligned(study_split, ids, "study_split", "image_embeddings")["role"].to_numpy()
    estimator, diagnostics = fit_map(images, w, roles, p.map, seed)
    tensors, metadata = heads_to_tensors({"map": map_from_sklearn(estimator)})
    metadata["fit"] = diagnostics
    return {"tensors": tensors, "metadata": metadata}


def compute_residuals_2(
    image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame, residual_2_map: dict[str, Any]
) -> pd.DataFrame:
    """r = f(i) - w for every image, with f rebuilt from the stored (safetensors) map."""
    return residual_2_vectors(image_embeddings, phenotype_sentence_embeddings, load_map(residual_2_map))


def train_residual_2(
    residuals_2: pd.DataFrame,
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    residual_2_map: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per target: g = the study's classifier on r = f(i) - w.

    Returns the heads ("map": f, stored once; "<target>/residual_2": ResidualHead(i, w) =
    g(f(i) - w)) and predictions (image_id, role, target, model, y_true, probability).
    """
    p = StudyDesignParams.parse(params, "study_design")
    policy = residual_targets["uncertainty_policy"]
    module = load_map(residual_2_map)
    models, predictions = fit_per_target(
        {"residual_2": (residuals_2, "residuals_2")},
        image_manifest,
        study_split,
        residual_targets["targets"],
        policy,
        p.classifier,
        seed,
    )
    heads: dict[str, Any] = {"map": module}
    for (target, model_name), model in models.items():
        heads[f"{target}/{model_name}"] = ResidualHead(logistic_head_from_sklearn(model), module)
    tensors, metadata = heads_to_tensors(heads)
    metadata.update(
        targets=list(residual_targets["targets"]),
        uncertainty_policy=policy,
        fit=residual_2_map["metadata"].get("fit", {}),
        inputs={"residual_2": "i and w (phenotype sentence embedding); r = f(i) - w"},
    )
    return {"tensors": tensors, "metadata": metadata}, predictions


def evaluate_residual_2(
    residual_1_predictions: pd.DataFrame,
    residual_2_predictions: pd.DataFrame,
    residual_2_map: dict[str, Any],
    residual_targets: dict[str, Any],
    study_split: pd.DataFrame,
    params: dict[str, Any],
    study_design: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Accuracy and AUC (with CIs) of image, residual_1 and residual_2 on the test role,
    and paired tests of residual_2 against each of the other two."""
    p = Residual2Params.parse(params, "residual_2")
    design = StudyDesignParams.parse(study_design, "study_design")
    metrics = evaluate_residual_2_against_others(
        pd.concat([residual_1_predictions, residual_2_predictions], ignore_index=True),
        residual_2_map["metadata"].get("fit", {}),
        residual_targets["targets"],
        p.threshold,
        design.bootstrap,
        seed,
    )
    return {"role": role_summary(study_split, "test"), **metrics}


def plot_residual_2_accuracy(residual_2_metrics: dict[str, Any]) -> Figure:
    """The slide "Residual Regression 2: Results": test accuracy per model and target,
    with bootstrap CIs as error bars and the majority-class accuracy as a dashed line."""
    return plot_accuracy_bars(residual_2_metrics, RESIDUAL_2_MODELS, "Residual Regression 2: Results")
