"""The residual heads' models: the one classifier, per-target fitting, and the map f: i -> w.

Every head of residual_1 and residual_2 (image only, residual_1, residual_2's g) is the same
classifier with the same settings (`ClassifierSettings`, from params:study_design.classifier),
so that nothing is tuned to make one model win. residual_2's map f is a ridge regression (one
alpha, or several chosen by leave-one-out CV) or an MLP (`MapSettings`), fitted on the
training split only. Fitted models become torch modules through `models.heads`.

Example:
    >>> settings = ClassifierSettings(C=1.0, max_iter=5000, class_weight=None, standardize=True)
    >>> [name for name, _ in logistic_model(settings, seed=0).steps]
    ['standardscaler', 'logisticregression']
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medclip_residuals.data.targets import target_rows
from medclip_residuals.models.heads import heads_from_tensors
from medclip_residuals.utils.frames import embeddings_to_matrix
from medclip_residuals.utils.params import ParameterError, Parameters

logger = logging.getLogger(__name__)

# The roles whose images the residual heads are fitted on (head_train) and scored on.
HEAD_ROLES = ("head_train", "validation", "test")


@dataclass(frozen=True)
class ClassifierSettings(Parameters):
    """The one classifier of every head: (StandardScaler +) L2 LogisticRegression."""

    C: float  # scikit-learn's name: the inverse regularisation strength
    max_iter: int
    class_weight: Literal["balanced"] | dict[int, float] | None
    standardize: bool


@dataclass(frozen=True)
class MLPSettings(Parameters):
    """MLPRegressor settings of the map's MLP option."""

    hidden_layer_sizes: tuple[int, ...]
    activation: Literal["identity", "logistic", "tanh", "relu"]
    alpha: float
    max_iter: int


@dataclass(frozen=True)
class MapSettings(Parameters):
    """The map f: i -> w of residual_2: ridge (alphas chosen by LOO CV when several) or an MLP."""

    model: Literal["ridge", "mlp"]
    ridge_alphas: tuple[float, ...]
    mlp: MLPSettings

    def check(self, where: str) -> None:
        if not self.ridge_alphas:
            raise ParameterError(f"{where}.ridge_alphas: give at least one alpha")


# ---------------------------------------------------------------- the classifier


def logistic_model(settings: ClassifierSettings, seed: int) -> Any:
    """The one classifier of every head: StandardScaler + LogisticRegression (L2)."""
    model = LogisticRegression(
        C=settings.C, max_iter=settings.max_iter, class_weight=settings.class_weight, random_state=seed
    )
    return make_pipeline(StandardScaler(), model) if settings.standardize else model


def fit_target(
    features: pd.DataFrame,
    ids: np.ndarray,
    y: np.ndarray,
    is_train: np.ndarray,
    target: str,
    dataset: str,
    settings: ClassifierSettings,
    seed: int,
) -> tuple[Any, np.ndarray]:
    """Fit the classifier on the `is_train` rows of `features`; (model, probabilities of all rows).

    Args:
        features: an embedding table (image_id, e000..) holding every image of `ids`.
        ids, y, is_train: the labelled images of `target` and which of them the head is fitted
            on (the study's head_train role).
        dataset: the features' catalog name, for messages.
    """
    frame = features.set_index(features["image_id"].astype(str))
    missing = [i for i in ids if i not in frame.index]
    if missing:
        raise ValueError(f"{dataset}: {len(missing)} image ids of study_split are missing, e.g. {missing[:3]}")
    _, x = embeddings_to_matrix(frame.loc[list(ids)].reset_index(drop=True), dataset=dataset)
    classes = np.unique(y[is_train])
    if len(classes) < 2:
        raise ValueError(
            f"target {target!r} has one class ({classes.tolist()}) in the head_train role: cannot fit {dataset}'s model"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=ConvergenceWarning)
        model = logistic_model(settings, seed).fit(x[is_train], y[is_train])
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.warning("%s model for %r did not converge: raise classifier.max_iter", dataset, target)
    return model, model.predict_proba(x)[:, 1]


def predictions_frame(
    ids: np.ndarray,
    roles: np.ndarray,
    patients: np.ndarray,
    target: str,
    y: np.ndarray,
    model_name: str,
    probability: np.ndarray,
) -> pd.DataFrame:
    """One model's predictions: image_id, role (of the study split), patient_id, target,
    model, y_true, probability."""
    return pd.DataFrame(
        {
            "image_id": ids,
            "role": roles,
            "patient_id": patients,
            "target": target,
            "model": model_name,
            "y_true": y.astype(np.int8),
            "probability": probability.astype(np.float64),
        }
    )


def fit_per_target(
    features: Mapping[str, tuple[pd.DataFrame, str]],
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    targets: Sequence[str],
    policy: str,
    settings: ClassifierSettings,
    seed: int,
) -> tuple[dict[tuple[str, str], Any], pd.DataFrame]:
    """For every target, the classifier on each kind of features (fitted on the head_train
    role), and their predictions on the labelled images of head_train, validation and test.

    Args:
        features: model name -> (embedding table, its catalog name), e.g.
            {"image": (image_embeddings, "image_embeddings")}.
        study_split: the study's roles (the encoder_train role is left out: the encoder has
            seen those images).
        targets, policy: from `residual_targets` (study_design).

    Returns:
        the fitted models keyed (target, model name), targets in order and then models,
        and the predictions (`predictions_frame` rows).
    """
    heads_split = study_split[study_split["role"].isin(HEAD_ROLES)]
    models: dict[tuple[str, str], Any] = {}
    frames = []
    for target in targets:
        ids, y, roles, patients = target_rows(image_manifest, heads_split, target, policy)
        is_train = roles == "head_train"
        for model_name, (table, dataset) in features.items():
            model, probability = fit_target(table, ids, y, is_train, target, dataset, settings, seed)
            models[(target, model_name)] = model
            frames.append(predictions_frame(ids, roles, patients, target, y, model_name, probability))
    return models, pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- the map f: i -> w


def map_estimator(settings: MapSettings, seed: int) -> Any:
    """The unfitted regressor of f: Ridge, RidgeCV (several alphas) or StandardScaler + MLP."""
    if settings.model == "ridge":
        alphas = [float(a) for a in settings.ridge_alphas]
        # several alphas: chosen by efficient leave-one-out CV on the training split only
        return Ridge(alpha=alphas[0]) if len(alphas) == 1 else RidgeCV(alphas=alphas)
    mlp = settings.mlp
    return make_pipeline(
        StandardScaler(),
        MLPRegressor(
            hidden_layer_sizes=tuple(mlp.hidden_layer_sizes),
            activation=mlp.activation,
            alpha=mlp.alpha,
            max_iter=mlp.max_iter,
            random_state=seed,
        ),
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def fit_map(
    images: np.ndarray, w: np.ndarray, roles: np.ndarray, settings: MapSettings, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Fit f: i -> w on the head_train rows only; (fitted estimator, fit diagnostics).

    Diagnostics: model, in/out features, n_train, R^2 and the mean cosine of f(i) to w on
    head_train and (when there are test rows) test, and the ridge alpha used.
    """
    is_train, is_test = roles == "head_train", roles == "test"
    if is_train.sum() < 2:
        raise ValueError(f"study_split has {int(is_train.sum())} head_train images: too few to fit f: i -> w")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=ConvergenceWarning)
        estimator = map_estimator(settings, seed).fit(images[is_train], w[is_train])
    if any(issubclass(c.category, ConvergenceWarning) for c in caught):
        logger.warning("residual_2: the map f: i -> w did not converge; raise map.mlp.max_iter")
    predicted = estimator.predict(images)
    diagnostics: dict[str, Any] = {
        "model": settings.model,
        "in_features": int(images.shape[1]),
        "out_features": int(w.shape[1]),
        "n_train": int(is_train.sum()),
        "r2_train": float(r2_score(w[is_train], predicted[is_train])),
        "cosine_train": _cosine(predicted[is_train], w[is_train]),
    }
    if is_test.any():
        diagnostics["r2_test"] = float(r2_score(w[is_test], predicted[is_test])) if is_test.sum() > 1 else None
        diagnostics["cosine_test"] = _cosine(predicted[is_test], w[is_test])
    if hasattr(estimator, "alpha_"):
        diagnostics["ridge_alpha"] = float(estimator.alpha_)
    elif isinstance(estimator, Ridge):
        diagnostics["ridge_alpha"] = float(estimator.alpha)
    return estimator, diagnostics


def load_map(residual_2_map: Mapping[str, Any]) -> torch.nn.Module:
    """The torch module f of a stored residual_2_map ({"tensors", "metadata"})."""
    heads = heads_from_tensors(residual_2_map["tensors"], residual_2_map["metadata"])
    if "map" not in heads:
        raise ValueError("residual_2_map holds no head named 'map'")
    return heads["map"]


def apply_map(module: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """f(i) for every row of `images`, as numpy."""
    with torch.no_grad():
        return module(torch.tensor(images)).numpy()
