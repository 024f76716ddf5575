"""Scoring the residual heads on the test split: AUC and accuracy with CIs, paired comparisons.

All models of a target are scored on the same test images (`scores_on_test_split` refuses
otherwise). Confidence intervals are percentile bootstraps over the test role, drawing whole
patients (`bootstrap.resample: patients`) or images; a difference between two models is a
PAIRED bootstrap (the same resampled patients for both), with DeLong's test beside it for
AUC as an analytic cross-check over images (`medclip_residuals.stats`).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1] * 10)
    >>> settings = BootstrapSettings(n_resamples=50, confidence=0.95, resample="patients")
    >>> block = auc_block(y, y * 0.5 + 0.25, np.repeat(np.arange(10), 2), settings, seed=0)
    >>> block["estimate"], block["n_resamples"], block["resampled"]
    (1.0, 50, 'groups')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from medclip_residuals.stats import bootstrap_ci, delong_test, paired_bootstrap_test, roc_auc
from medclip_residuals.utils.params import ParameterError, Parameters

MODEL_LABELS = {
    "image": "image only: logistic(i)",
    "residual_1": "residual 1: logistic(i - w)",
    "residual_2": "residual 2: logistic(f(i) - w)",
}
RESIDUAL_2_MODELS = ("image", "residual_1", "residual_2")


@dataclass(frozen=True)
class BootstrapSettings(Parameters):
    """Percentile-bootstrap resamples, the CIs' coverage, and what is resampled: whole
    patients (a cluster bootstrap: a patient's images share the patient's disease) or images."""

    n_resamples: int
    confidence: float
    resample: Literal["patients", "images"]

    def groups(self, patients: np.ndarray) -> np.ndarray | None:
        """The groups the bootstrap draws: the patients, or None (images one by one)."""
        return patients if self.resample == "patients" else None

    def check(self, where: str) -> None:
        if self.n_resamples < 1:
            raise ParameterError(f"{where}.n_resamples must be >= 1, got {self.n_resamples}")
        if not 0 < self.confidence < 1:
            raise ParameterError(f"{where}.confidence must lie in (0, 1), got {self.confidence}")


def scores_on_test_split(
    predictions: pd.DataFrame, target: str, models: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """y_true, each model's probabilities on the test role and each row's patient (the image
    itself where predictions carry no patient_id), rows aligned by image_id."""
    test = predictions[(predictions["target"] == target) & (predictions["role"] == "test")]
    wide = test.pivot(index="image_id", columns="model", values="probability")
    missing = [m for m in models if m not in wide.columns]
    if missing:
        raise ValueError(f"predictions for target {target!r} lack model(s) {missing}")
    if wide[list(models)].isna().any().any():
        raise ValueError(f"target {target!r}: the models were not evaluated on the same test images")
    rows = test.drop_duplicates("image_id").set_index("image_id").loc[wide.index]
    patients = rows["patient_id"].astype(str).to_numpy() if "patient_id" in rows else wide.index.astype(str).to_numpy()
    return rows["y_true"].to_numpy().astype(int), {m: wide[m].to_numpy() for m in models}, patients


def auc_block(
    y: np.ndarray, score: np.ndarray, patients: np.ndarray, bootstrap: BootstrapSettings, seed: int
) -> dict[str, Any]:
    """ROC AUC with its percentile-bootstrap CI (patients or images resampled)."""
    return bootstrap_ci(
        (y, score), "roc_auc", bootstrap.n_resamples, seed, bootstrap.confidence, groups=bootstrap.groups(patients)
    )


def compare_auc(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, patients: np.ndarray, bootstrap: BootstrapSettings, seed: int
) -> dict[str, Any]:
    """AUC(a) - AUC(b): paired bootstrap (primary; patients or images resampled) and DeLong
    (cross-check over images, or why not)."""
    result = paired_bootstrap_test(
        y, a, b, "roc_auc", bootstrap.n_resamples, seed, bootstrap.confidence, groups=bootstrap.groups(patients)
    )
    try:
        result["delong"] = delong_test(y, a, b)
    except ValueError as err:
        result["delong"] = f"not computed: {err}"
    return result


def _bootstrap_record(bootstrap: BootstrapSettings, seed: int) -> dict[str, Any]:
    return {"n_resamples": bootstrap.n_resamples, "confidence": bootstrap.confidence, "resample": bootstrap.resample,
            "seed": seed}


def evaluate_residual_1_against_image(
    predictions: pd.DataFrame, residual_targets: dict[str, Any], bootstrap: BootstrapSettings, seed: int
) -> dict[str, Any]:
    """Per target: test ROC AUC of image and residual_1 with CIs, head_train AUCs, and the
    paired difference AUC(residual_1) - AUC(image) with its CI, p-value and the smallest
    difference the test set could detect; the target selection alongside."""
    per_target = {}
    for target in residual_targets["targets"]:
        y, scores, patients = scores_on_test_split(predictions, target, ["image", "residual_1"])
        train = predictions[(predictions["target"] == target) & (predictions["role"] == "head_train")]
        train_auc = {m: roc_auc(g["y_true"].to_numpy(), g["probability"].to_numpy()) for m, g in train.groupby("model")}
        per_target[target] = {
            "n_test": int(len(y)),
            "n_test_positive": int(y.sum()),
            "n_test_patients": int(len(set(patients))),
            "auc": {m: auc_block(y, s, patients, bootstrap, seed) for m, s in scores.items()},
            "train_auc": train_auc,
            "residual_1_minus_image": compare_auc(y, scores["residual_1"], scores["image"], patients, bootstrap, seed),
        }
    return {
        "models": {m: MODEL_LABELS[m] for m in ("image", "residual_1")},
        "classifier": "StandardScaler + LogisticRegression (same settings for both models)",
        "confidence_interval": f"percentile bootstrap over the test role's {bootstrap.resample}",
        "paired_test": (
            "paired bootstrap of the AUC difference (the same resampled test images for both models); "
            "DeLong's test alongside as a cross-check; minimum_detectable_difference: the difference "
            "this test set detects with power 0.8 at the 5% level, from the bootstrap standard error"
        ),
        "bootstrap": _bootstrap_record(bootstrap, seed),
        "targets": per_target,
        "selection": {k: residual_targets[k] for k in ("targets", "skipped", "selection", "uncertainty_policy")},
        "counts": residual_targets.get("counts", {}),
    }


def evaluate_residual_2_against_others(
    predictions: pd.DataFrame,
    map_fit: dict[str, Any],
    targets: Sequence[str],
    threshold: float,
    bootstrap: BootstrapSettings,
    seed: int,
) -> dict[str, Any]:
    """Per target: test accuracy (at `threshold`) and AUC with CIs of image, residual_1 and
    residual_2, the majority-class accuracy, and paired tests of residual_2 against the others.

    Args:
        predictions: residual_1's and residual_2's predictions together.
        map_fit: the fit diagnostics of the map f, reported as they are.
    """
    n_resamples, confidence = bootstrap.n_resamples, bootstrap.confidence
    models = list(RESIDUAL_2_MODELS)
    per_target = {}
    for target in targets:
        y, scores, patients = scores_on_test_split(predictions, target, models)
        groups = bootstrap.groups(patients)
        prevalence = float(y.mean())
        per_target[target] = {
            "n_test": int(len(y)),
            "n_test_positive": int(y.sum()),
            "majority_class_accuracy": max(prevalence, 1 - prevalence),
            "accuracy": {
                m: bootstrap_ci((y, s), "accuracy", n_resamples, seed, confidence, threshold, groups=groups)
                for m, s in scores.items()
            },
            "auc": {m: auc_block(y, s, patients, bootstrap, seed) for m, s in scores.items()},
            "comparisons": {
                f"residual_2_minus_{other}": {
                    "auc": compare_auc(y, scores["residual_2"], scores[other], patients, bootstrap, seed),
                    "accuracy": paired_bootstrap_test(
                        y, scores["residual_2"], scores[other], "accuracy", n_resamples, seed, confidence, threshold,
                        groups=groups,
                    ),
                }
                for other in ("image", "residual_1")
            },
        }
    return {
        "models": {m: MODEL_LABELS[m] for m in models},
        "map": map_fit,
        "threshold": threshold,
        "confidence_interval": f"percentile bootstrap over the test role's {bootstrap.resample}",
        "paired_test": (
            "paired bootstrap of the difference (the same resampled test images for both models); "
            "DeLong's test alongside for AUC"
        ),
        "bootstrap": _bootstrap_record(bootstrap, seed),
        "targets": per_target,
    }
