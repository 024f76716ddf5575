"""Residual regression 2: f: i -> w, r = f(i) - w, g: r -> disease.

`f` (ridge regression by default, an MLP as an option) is fitted on the TRAINING split of
residual_1's `data_split` only. `g` is the same classifier as residual_1's (its
`params:residual_1` settings, targets and uncertainty policy), so the three models (image
only, residual_1, residual_2) are compared on the same test images. Accuracy (threshold
0.5) and ROC AUC come with percentile-bootstrap CIs; differences with paired bootstraps
(and DeLong for AUC). The majority-class accuracy is reported next to every accuracy:
with rare diseases, a high accuracy can mean nothing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medclip_residuals.models.heads import ResidualHead, heads_from_tensors, heads_to_tensors, logistic_head_from_sklearn, map_from_sklearn
from medclip_residuals.pipelines.phenotyping.tables import aligned, checked_embeddings
from medclip_residuals.pipelines.residual_1.nodes import (
    MODEL_LABELS,
    predictions_frame,
    scores_on_test_split,
    auc_block,
    compare_auc,
    fit_target,
    target_rows,
)
from medclip_residuals.stats import bootstrap_ci, paired_bootstrap_test
from medclip_residuals.utils.frames import embedding_columns

logger = logging.getLogger(__name__)

MAP_MODELS = ("ridge", "mlp")
MODELS = ["image", "residual_1", "residual_2"]


def _map_estimator(settings: dict[str, Any], seed: int):
    kind = settings.get("model", "ridge")
    if kind == "ridge":
        alphas = settings.get("ridge_alphas", [1.0])
        alphas = [float(a) for a in (alphas if isinstance(alphas, (list, tuple)) else [alphas])]
        # several alphas: chosen by efficient leave-one-out CV on the training split only
        return Ridge(alpha=alphas[0]) if len(alphas) == 1 else RidgeCV(alphas=alphas)
    if kind == "mlp":
        mlp = dict(settings.get("mlp") or {})
        return make_pipeline(
            StandardScaler(),
            MLPRegressor(
                hidden_layer_sizes=tuple(mlp.pop("hidden_layer_sizes", [512])),
                activation=mlp.pop("activation", "relu"),
                alpha=float(mlp.pop("alpha", 1e-4)),
                max_iter=int(mlp.pop("max_iter", 500)),
                random_state=seed,
                **mlp,
            ),
        )
    raise ValueError(f"params:residual_2.map.model must be one of {MAP_MODELS}, got {kind!r}")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def _paired_matrices(
    image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, images = checked_embeddings(image_embeddings, "image_embeddings")
    checked_embeddings(phenotype_sentence_embeddings, "phenotype_sentence_embeddings")  # rows as given
    w_frame = aligned(phenotype_sentence_embeddings, ids, "phenotype_sentence_embeddings", "image_embeddings")
    _, w = checked_embeddings(w_frame, "phenotype_sentence_embeddings")
    return ids, images, w


def fit_embedding_map(
    image_embeddings: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    data_split: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Fit f: i -> w on the training split only; the map as tensors, with fit diagnostics.

    Returns TensorDictDataset data: the map under the head name "map" (RidgeMap or MLPMap)
    and metadata with R^2 and the mean cosine of f(i) to w on train and test.
    """
    ids, images, w = _paired_matrices(image_embeddings, phenotype_sentence_embeddings)
    split = aligned(data_split, ids, "data_split", "image_embeddings")["split"].to_numpy()
    is_train = split == "train"
    if is_train.sum() < 2:
        raise ValueError(f"data_split has {int(is_train.sum())} training images: too few to fit f: i -> w")
    settings = params.get("map") or {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=ConvergenceWarning)
        estimator = _map_estimator(settings, seed).fit(images[is_train], w[is_train])
    if any(issubclass(c.category, ConvergenceWarning) for c in caught):
        logger.warning("residual_2: the map f: i -> w did not converge; raise map.mlp.max_iter")
    predicted = estimator.predict(images)
    module = map_from_sklearn(estimator)
    diagnostics: dict[str, Any] = {
        "model": settings.get("model", "ridge"),
        "in_features": int(images.shape[1]),
        "out_features": int(w.shape[1]),
        "n_train": int(is_train.sum()),
        "r2_train": float(r2_score(w[is_train], predicted[is_train])),
        "cosine_train": _cosine(predicted[is_train], w[is_train]),
    }
    if (~is_train).any():
        diagnostics["r2_test"] = float(r2_score(w[~is_train], predicted[~is_train])) if (~is_train).sum() > 1 else None
        diagnostics["cosine_test"] = _cosine(predicted[~is_train], w[~is_train])
    if hasattr(estimator, "alpha_"):
        diagnostics["ridge_alpha"] = float(estimator.alpha_)
    elif isinstance(estimator, Ridge):
        diagnostics["ridge_alpha"] = float(estimator.alpha)
    tensors, metadata = heads_to_tensors({"map": module})
    metadata["fit"] = diagnostics
    return {"tensors": tensors, "metadata": metadata}


def load_map(residual_2_map: dict[str, Any]) -> torch.nn.Module:
    """The torch module f of a stored residual_2_map."""
    heads = heads_from_tensors(residual_2_map["tensors"], residual_2_map["metadata"])
    if "map" not in heads:
        raise ValueError("residual_2_map holds no head named 'map'")
    return heads["map"]


def compute_residuals_2(
    image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame, residual_2_map: dict[str, Any]
) -> pd.DataFrame:
    """r = f(i) - w for every image, with f rebuilt from the stored (safetensors) map."""
    ids, images, w = _paired_matrices(image_embeddings, phenotype_sentence_embeddings)
    module = load_map(residual_2_map)
    with torch.no_grad():
        predicted = module(torch.tensor(images)).numpy()
    if predicted.shape[1] != w.shape[1]:
        raise ValueError(
            f"residual_2_map gives {predicted.shape[1]} outputs but phenotype_sentence_embeddings has "
            f"{w.shape[1]} columns: was the map fitted on another w?"
        )
    frame = pd.DataFrame((predicted - w).astype(np.float32), columns=embedding_columns(w.shape[1]))
    frame.insert(0, "image_id", ids)
    return frame


def train_residual_2(
    residuals_2: pd.DataFrame,
    image_manifest: pd.DataFrame,
    data_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    residual_2_map: dict[str, Any],
    residual_1_params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per target: g = logistic regression on r = f(i) - w, residual_1's classifier settings.

    Returns the heads ("map": f, stored once; "<target>/residual_2": ResidualHead(i, w) =
    g(f(i) - w)) and predictions (image_id, split, target, model, y_true, probability).
    """
    policy = residual_targets["uncertainty_policy"]
    module = load_map(residual_2_map)
    heads: dict[str, Any] = {"map": module}
    frames = []
    for target in residual_targets["targets"]:
        ids, y, is_train = target_rows(image_manifest, data_split, target, policy)
        model, probability = fit_target(residuals_2, ids, y, is_train, target, "residuals_2", residual_1_params, seed)
        heads[f"{target}/residual_2"] = ResidualHead(logistic_head_from_sklearn(model), module)
        frames.append(predictions_frame(ids, np.where(is_train, "train", "test"), target, y, "residual_2", probability))
    tensors, metadata = heads_to_tensors(heads)
    metadata.update(
        targets=list(residual_targets["targets"]),
        uncertainty_policy=policy,
        fit=residual_2_map["metadata"].get("fit", {}),
        inputs={"residual_2": "i and w (phenotype sentence embedding); r = f(i) - w"},
    )
    return {"tensors": tensors, "metadata": metadata}, pd.concat(frames, ignore_index=True)


def evaluate_residual_2(
    residual_1_predictions: pd.DataFrame,
    residual_2_predictions: pd.DataFrame,
    residual_2_map: dict[str, Any],
    residual_targets: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Accuracy and AUC (with CIs) of image, residual_1 and residual_2 on the test split,
    and paired tests of residual_2 against each of the other two."""
    bootstrap = params.get("bootstrap") or {}
    n_resamples = int(bootstrap.get("n_resamples", 1000))
    confidence = float(bootstrap.get("confidence", 0.95))
    threshold = float(params.get("threshold", 0.5))
    predictions = pd.concat([residual_1_predictions, residual_2_predictions], ignore_index=True)
    per_target = {}
    for target in residual_targets["targets"]:
        y, scores = scores_on_test_split(predictions, target, MODELS)
        prevalence = float(y.mean())
        per_target[target] = {
            "n_test": int(len(y)),
            "n_test_positive": int(y.sum()),
            "majority_class_accuracy": max(prevalence, 1 - prevalence),
            "accuracy": {
                m: bootstrap_ci((y, s), "accuracy", n_resamples, seed, confidence, threshold) for m, s in scores.items()
            },
            "auc": {m: auc_block(y, s, bootstrap, seed) for m, s in scores.items()},
            "comparisons": {
                f"residual_2_minus_{other}": {
                    "auc": compare_auc(y, scores["residual_2"], scores[other], bootstrap, seed),
                    "accuracy": paired_bootstrap_test(
                        y, scores["residual_2"], scores[other], "accuracy", n_resamples, seed, confidence, threshold
                    ),
                }
                for other in ("image", "residual_1")
            },
        }
    return {
        "models": {m: MODEL_LABELS[m] for m in MODELS},
        "map": residual_2_map["metadata"].get("fit", {}),
        "threshold": threshold,
        "confidence_interval": "percentile bootstrap over test images",
        "paired_test": (
            "paired bootstrap of the difference (the same resampled test images for both models); "
            "DeLong's test alongside for AUC"
        ),
        "bootstrap": {"n_resamples": n_resamples, "confidence": confidence, "seed": seed},
        "targets": per_target,
    }


def plot_residual_2_accuracy(residual_2_metrics: dict[str, Any]) -> Figure:
    """The slide "Residual Regression 2: Results": test accuracy per model and target,
    with bootstrap CIs as error bars and the majority-class accuracy as a dashed line."""
    targets = list(residual_2_metrics["targets"])
    figure = Figure(figsize=(max(6.0, 1.0 + 2.2 * len(targets)), 4.6), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(MODELS)
    colors = {"image": "#7f7f7f", "residual_1": "#1f77b4", "residual_2": "#d62728"}
    for j, model in enumerate(MODELS):
        x = np.arange(len(targets)) + (j - (len(MODELS) - 1) / 2) * width
        blocks = [residual_2_metrics["targets"][t]["accuracy"][model] for t in targets]
        heights = np.array([b["estimate"] for b in blocks])
        errors = np.array([[h - b["low"], b["high"] - h] for h, b in zip(heights, blocks)]).T
        bars = ax.bar(x, heights, width, yerr=np.clip(errors, 0, None), capsize=3, label=MODEL_LABELS[model], color=colors[model])
        ax.bar_label(bars, labels=[f"{h:.2f}" for h in heights], fontsize=7, padding=2)
    for i, target in enumerate(targets):
        majority = residual_2_metrics["targets"][target]["majority_class_accuracy"]
        ax.hlines(majority, i - 0.45, i + 0.45, colors="black", linestyles="dashed", lw=1,
                  label="majority class" if i == 0 else None)
    ax.set_xticks(np.arange(len(targets)), [f"{t}\n(n={residual_2_metrics['targets'][t]['n_test']})" for t in targets])
    ax.set(ylabel="test accuracy", ylim=(0, 1.08), title="Residual Regression 2: Results")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False)
    return figure
