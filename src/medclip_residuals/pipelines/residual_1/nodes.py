"""Residual regression 1: r = i - w, and logistic regression on r against one on i alone.

One train/test split by patient (`data_split`, stratified, seeded) serves residual_1 and
residual_2. Targets are chosen by `select_targets` (explicit list, or every finding with
enough positives and negatives in both splits) and listed in the metrics. Both models get
the same classifier and settings: nothing is tuned to make the residual win.

Statistics: ROC AUC on the test split with a 95% percentile-bootstrap CI; the difference
AUC(residual_1) - AUC(image) by a PAIRED bootstrap (the same resampled test images for both
models) with DeLong's test as an analytic cross-check.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.models.heads import ResidualHead, heads_to_tensors, logistic_head_from_sklearn
from medclip_residuals.pipelines.phenotyping.tables import (
    aligned,
    check_ids_known,
    checked_embeddings,
)
from medclip_residuals.stats import bootstrap_ci, delong_test, paired_bootstrap_test, roc_auc
from medclip_residuals.utils.frames import embedding_columns

logger = logging.getLogger(__name__)

POLICIES = ("u_ones", "u_zeros", "ignore")
MODEL_LABELS = {
    "image": "image only: logistic(i)",
    "residual_1": "residual 1: logistic(i - w)",
    "residual_2": "residual 2: logistic(f(i) - w)",
}


# ---------------------------------------------------------------- labels and targets


def target_labels(values: pd.Series | np.ndarray, policy: str) -> np.ndarray:
    """CheXpert labels (1, 0, -1, NaN) as 0/1 floats under an uncertainty policy.

    NaN (not mentioned) counts as negative, as in CheXpert training. -1 (uncertain) becomes
    1 (u_ones), 0 (u_zeros), or NaN (ignore: the row is left out for this target).
    """
    if policy not in POLICIES:
        raise ValueError(f"uncertainty_policy must be one of {POLICIES}, got {policy!r}")
    y = np.asarray(values, dtype=float).copy()
    bad = ~(np.isnan(y) | np.isin(y, (1.0, 0.0, -1.0)))
    if bad.any():
        raise ValueError(f"label values must be 1, 0, -1 or empty; found {sorted({float(v) for v in y[bad]})[:5]}")
    uncertain = y == -1.0
    y[np.isnan(y)] = 0.0
    y[uncertain] = {"u_ones": 1.0, "u_zeros": 0.0, "ignore": np.nan}[policy]
    return y


def _labelled(image_manifest: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str))
    return manifest.set_index("image_id").reindex(ids)


def _candidates(image_manifest: pd.DataFrame, params: dict[str, Any]) -> tuple[list[str], bool]:
    """(target names, explicit?) from params targets: a list, or "auto"."""
    targets = params.get("targets", "auto")
    labels = [c for c in CHEXPERT_FINDINGS if c in image_manifest.columns]
    if targets in (None, "auto"):
        exclude = set(params.get("auto_exclude") or [])
        return [c for c in labels if c not in exclude], False
    if isinstance(targets, str):
        targets = [targets]
    missing = [t for t in targets if t not in image_manifest.columns]
    if missing:
        raise ValueError(
            f"params:residual_1.targets names {missing}, which image_manifest lacks "
            f"(label columns there: {labels})"
        )
    return list(targets), True


def split_by_patient(
    image_manifest: pd.DataFrame, image_embeddings: pd.DataFrame, params: dict[str, Any], seed: int
) -> pd.DataFrame:
    """One train/test split of the embedded images, by patient, stratified, seeded.

    StratifiedGroupKFold with round(1 / test_size) folds; the first fold is the test set.
    The stratification key is each image's pattern of positive candidate targets (after the
    uncertainty policy; uncertain counts as negative here), with patterns rarer than the
    number of folds pooled, so that every target's prevalence is kept on both sides.
    Images without a patient_id are their own patient. Returns image_id, patient_id, split.
    """
    ids, _ = checked_embeddings(image_embeddings, "image_embeddings")
    check_ids_known(ids, image_manifest, "image_embeddings")
    manifest = _labelled(image_manifest, ids)
    patients = (
        manifest["patient_id"].astype(str).where(manifest["patient_id"].notna(), "")
        if "patient_id" in manifest.columns
        else pd.Series("", index=manifest.index)
    )
    patients = np.where(patients.str.strip() == "", "image:" + pd.Series(ids).to_numpy(), patients.to_numpy())
    test_size = float((params.get("split") or {}).get("test_size", 0.25))
    if not 0 < test_size < 1:
        raise ValueError(f"params:residual_1.split.test_size must lie in (0, 1), got {test_size}")
    n_splits = max(2, round(1 / test_size))
    n_patients = len(set(patients))
    if n_patients < n_splits:
        raise ValueError(f"{n_patients} patients cannot be split into {n_splits} folds (test_size {test_size})")
    candidates, _ = _candidates(image_manifest, params)
    if candidates:
        positives = np.column_stack(
            [np.nan_to_num(target_labels(manifest[c], "u_zeros")) for c in candidates]
        ).astype(int)
        keys = pd.Series(["".join(map(str, row)) for row in positives])
        counts = keys.map(pd.Series(patients).groupby(keys.to_numpy()).nunique())
        keys[counts.to_numpy() < n_splits] = "rare"
        if (keys == "rare").any() and pd.Series(patients[keys == "rare"]).nunique() < n_splits:
            keys[keys == "rare"] = keys.mode().iloc[0] if (keys != "rare").any() else "all"
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test_rows = next(splitter.split(np.zeros(len(ids)), keys.to_numpy(), groups=patients))
    else:  # no labels: a plain group split
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        _, test_rows = next(splitter.split(np.zeros(len(ids)), groups=patients))
    split = np.full(len(ids), "train", dtype=object)
    split[test_rows] = "test"
    return pd.DataFrame({"image_id": ids, "patient_id": patients.astype(str), "split": split.astype(str)})


def _counts(y: np.ndarray, raw: np.ndarray) -> dict[str, int]:
    return {
        "positive": int(np.sum(y == 1)),
        "negative": int(np.sum(y == 0)),
        "uncertain_dropped": int(np.sum(np.isnan(y))),
        "uncertain": int(np.sum(raw == -1)),
        "not_mentioned_as_negative": int(np.sum(np.isnan(raw))),
    }


def select_targets(image_manifest: pd.DataFrame, data_split: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """The target diseases of residual_1 and residual_2, and why others were left out.

    Explicit targets (params targets: [..]) must have both classes in each split: one class
    is an error. "auto" keeps every label column (less auto_exclude) with at least
    min_positives positives and min_negatives negatives in train and in test.
    """
    policy = params.get("uncertainty_policy", "ignore")
    candidates, explicit = _candidates(image_manifest, params)
    min_pos = int(params.get("min_positives", 30))
    min_neg = int(params.get("min_negatives", 30))
    manifest = _labelled(image_manifest, data_split["image_id"].astype(str).to_numpy())
    is_train = (data_split["split"] == "train").to_numpy()
    chosen, skipped, counts = [], {}, {}
    for target in candidates:
        raw = manifest[target].to_numpy(dtype=float)
        y = target_labels(raw, policy)
        counts[target] = {"train": _counts(y[is_train], raw[is_train]), "test": _counts(y[~is_train], raw[~is_train])}
        train, test = counts[target]["train"], counts[target]["test"]
        if explicit:
            for side, c in (("training", train), ("test", test)):
                if c["positive"] == 0 or c["negative"] == 0:
                    raise ValueError(
                        f"target {target!r} has only one class in the {side} split "
                        f"({c['positive']} positive, {c['negative']} negative, policy {policy}): "
                        "a classifier cannot be trained or evaluated; choose other targets"
                    )
            if min(train["positive"], test["positive"]) < min_pos:
                logger.warning("target %r has few positives (train %d, test %d)", target, train["positive"], test["positive"])
            chosen.append(target)
        elif min(train["positive"], test["positive"]) < min_pos or min(train["negative"], test["negative"]) < min_neg:
            skipped[target] = (
                f"too few examples: positives train {train['positive']} / test {test['positive']}, "
                f"negatives train {train['negative']} / test {test['negative']} "
                f"(need >= {min_pos} positives and >= {min_neg} negatives in each)"
            )
        else:
            chosen.append(target)
    if not chosen:
        raise ValueError(
            "no target disease has enough examples for residual_1: "
            + "; ".join(f"{t}: {why}" for t, why in skipped.items())
            + ". Lower params:residual_1.min_positives or name targets explicitly."
        )
    return {
        "targets": chosen,
        "skipped": skipped,
        "uncertainty_policy": policy,
        "selection": "explicit" if explicit else f"auto (>= {min_pos} positives, >= {min_neg} negatives per split)",
        "counts": counts,
    }


# ---------------------------------------------------------------- residuals and models


def compute_residuals_1(image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame) -> pd.DataFrame:
    """r = i - w for every image (image_id, e000.., float32)."""
    ids, images = checked_embeddings(image_embeddings, "image_embeddings")
    checked_embeddings(phenotype_sentence_embeddings, "phenotype_sentence_embeddings")  # rows as given
    w_frame = aligned(phenotype_sentence_embeddings, ids, "phenotype_sentence_embeddings", "image_embeddings")
    _, w = checked_embeddings(w_frame, "phenotype_sentence_embeddings")
    if w.shape[1] != images.shape[1]:
        raise ValueError(
            f"residual_1 needs w as wide as i: image_embeddings has {images.shape[1]} columns, "
            f"phenotype_sentence_embeddings {w.shape[1]} (strategy 'concat' gives k x D: use "
            "'sentence' or 'mean' for residual_1)"
        )
    frame = pd.DataFrame(images - w, columns=embedding_columns(images.shape[1]))
    frame.insert(0, "image_id", ids)
    return frame


def logistic_model(params: dict[str, Any], seed: int):
    """The one classifier of every head: StandardScaler + LogisticRegression (L2)."""
    settings = dict(params.get("logistic") or {})
    standardize = bool(settings.pop("standardize", True))
    model = LogisticRegression(
        C=float(settings.pop("C", 1.0)),
        max_iter=int(settings.pop("max_iter", 2000)),
        class_weight=settings.pop("class_weight", None),
        random_state=seed,
        **settings,
    )
    return make_pipeline(StandardScaler(), model) if standardize else model


def target_rows(
    image_manifest: pd.DataFrame, data_split: pd.DataFrame, target: str, policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, 0/1 labels, is_train) of the images that have a label for `target`."""
    ids = data_split["image_id"].astype(str).to_numpy()
    y = target_labels(_labelled(image_manifest, ids)[target], policy)
    keep = ~np.isnan(y)
    return ids[keep], y[keep].astype(int), (data_split["split"] == "train").to_numpy()[keep]


def fit_target(
    features: pd.DataFrame,
    ids: np.ndarray,
    y: np.ndarray,
    is_train: np.ndarray,
    target: str,
    dataset: str,
    params: dict[str, Any],
    seed: int,
):
    """Fit the logistic model on the train rows of `features`; (model, probabilities of all rows)."""
    frame = features.set_index(features["image_id"].astype(str))
    missing = [i for i in ids if i not in frame.index]
    if missing:
        raise ValueError(f"{dataset}: {len(missing)} image ids of data_split are missing, e.g. {missing[:3]}")
    _, x = checked_embeddings(frame.loc[list(ids)].reset_index(drop=True), dataset)
    classes = np.unique(y[is_train])
    if len(classes) < 2:
        raise ValueError(
            f"target {target!r} has one class ({classes.tolist()}) in the training split: cannot fit {dataset}'s model"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category=ConvergenceWarning)
        model = logistic_model(params, seed).fit(x[is_train], y[is_train])
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.warning("%s model for %r did not converge: raise logistic.max_iter", dataset, target)
    return model, model.predict_proba(x)[:, 1]


def predictions_frame(ids, split, target, y, model_name, probability) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": ids,
            "split": split,
            "target": target,
            "model": model_name,
            "y_true": y.astype(np.int8),
            "probability": probability.astype(np.float64),
        }
    )


def train_residual_1(
    image_embeddings: pd.DataFrame,
    residuals_1: pd.DataFrame,
    image_manifest: pd.DataFrame,
    data_split: pd.DataFrame,
    residual_targets: dict[str, Any],
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per target: logistic regression on i (baseline) and on r = i - w (residual_1).

    Returns the heads for TensorDictDataset (names "<target>/image": LogisticHead on i,
    "<target>/residual_1": ResidualHead(i, w) = head(i - w)) and the predictions of both
    on every labelled image (image_id, split, target, model, y_true, probability).
    """
    policy = residual_targets["uncertainty_policy"]
    heads: dict[str, Any] = {}
    frames = []
    for target in residual_targets["targets"]:
        ids, y, is_train = target_rows(image_manifest, data_split, target, policy)
        split = np.where(is_train, "train", "test")
        for model_name, features, dataset in (
            ("image", image_embeddings, "image_embeddings"),
            ("residual_1", residuals_1, "residuals_1"),
        ):
            model, probability = fit_target(features, ids, y, is_train, target, dataset, params, seed)
            head = logistic_head_from_sklearn(model)
            heads[f"{target}/{model_name}"] = head if model_name == "image" else ResidualHead(head)
            frames.append(predictions_frame(ids, split, target, y, model_name, probability))
    tensors, metadata = heads_to_tensors(heads)
    metadata.update(
        targets=list(residual_targets["targets"]),
        uncertainty_policy=policy,
        inputs={"image": "i (image embedding)", "residual_1": "i and w (phenotype sentence embedding); r = i - w"},
    )
    return {"tensors": tensors, "metadata": metadata}, pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- evaluation


def scores_on_test_split(predictions: pd.DataFrame, target: str, models: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """y_true and each model's test probabilities, rows aligned by image_id."""
    test = predictions[(predictions["target"] == target) & (predictions["split"] == "test")]
    wide = test.pivot(index="image_id", columns="model", values="probability")
    missing = [m for m in models if m not in wide.columns]
    if missing:
        raise ValueError(f"predictions for target {target!r} lack model(s) {missing}")
    if wide[models].isna().any().any():
        raise ValueError(f"target {target!r}: the models were not evaluated on the same test images")
    y = test.drop_duplicates("image_id").set_index("image_id").loc[wide.index, "y_true"].to_numpy()
    return y.astype(int), {m: wide[m].to_numpy() for m in models}


def auc_block(y: np.ndarray, score: np.ndarray, bootstrap: dict[str, Any], seed: int) -> dict[str, Any]:
    return bootstrap_ci((y, score), "roc_auc", int(bootstrap.get("n_resamples", 1000)), seed, float(bootstrap.get("confidence", 0.95)))


def compare_auc(y: np.ndarray, a: np.ndarray, b: np.ndarray, bootstrap: dict[str, Any], seed: int) -> dict[str, Any]:
    """AUC(a) - AUC(b): paired bootstrap (primary) and DeLong (cross-check)."""
    result = paired_bootstrap_test(
        y, a, b, "roc_auc", int(bootstrap.get("n_resamples", 1000)), seed, float(bootstrap.get("confidence", 0.95))
    )
    try:
        result["delong"] = delong_test(y, a, b)
    except ValueError as err:
        result["delong"] = f"not computed: {err}"
    return result


def evaluate_residual_1(
    residual_1_predictions: pd.DataFrame, residual_targets: dict[str, Any], params: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Test-split ROC AUC of image vs residual_1 per target, CIs and the paired difference."""
    bootstrap = params.get("bootstrap") or {}
    per_target = {}
    for target in residual_targets["targets"]:
        y, scores = scores_on_test_split(residual_1_predictions, target, ["image", "residual_1"])
        train = residual_1_predictions[
            (residual_1_predictions["target"] == target) & (residual_1_predictions["split"] == "train")
        ]
        train_auc = {m: roc_auc(g["y_true"].to_numpy(), g["probability"].to_numpy()) for m, g in train.groupby("model")}
        per_target[target] = {
            "n_test": int(len(y)),
            "n_test_positive": int(y.sum()),
            "auc": {m: auc_block(y, s, bootstrap, seed) for m, s in scores.items()},
            "train_auc": train_auc,
            "residual_1_minus_image": compare_auc(y, scores["residual_1"], scores["image"], bootstrap, seed),
        }
    return {
        "models": {m: MODEL_LABELS[m] for m in ("image", "residual_1")},
        "classifier": "StandardScaler + LogisticRegression (same settings for both models)",
        "confidence_interval": "percentile bootstrap over test images",
        "paired_test": (
            "paired bootstrap of the AUC difference (the same resampled test images for both models); "
            "DeLong's test alongside as a cross-check"
        ),
        "bootstrap": {"n_resamples": int(bootstrap.get("n_resamples", 1000)), "confidence": float(bootstrap.get("confidence", 0.95)), "seed": seed},
        "targets": per_target,
        "selection": {k: residual_targets[k] for k in ("targets", "skipped", "selection", "uncertainty_policy")},
        "counts": residual_targets.get("counts", {}),
    }


def _grid(n: int) -> tuple[int, int]:
    columns = min(3, n)
    return (n + columns - 1) // columns, columns


def plot_roc_curves(
    predictions: pd.DataFrame, metrics: dict[str, Any], models: list[str], title: str
) -> Figure:
    """One ROC panel per target with every model's curve and AUC [CI] in the legend."""
    targets = list(metrics["targets"])
    rows, columns = _grid(len(targets))
    figure = Figure(figsize=(4.2 * columns, 4.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[len(targets):]:
        ax.set_visible(False)
    for ax, target in zip(axes.ravel(), targets):
        y, scores = scores_on_test_split(predictions, target, models)
        for model in models:
            fpr, tpr, _ = roc_curve(y, scores[model])
            auc = metrics["targets"][target]["auc"][model]
            ax.plot(fpr, tpr, lw=1.8, label=f"{MODEL_LABELS[model]}\nAUC {auc['estimate']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]")
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey")
        ax.set(title=f"{target} (test n={len(y)}, {int(y.sum())} positive)", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=7)
    figure.suptitle(title)
    return figure


def plot_residual_1_roc(residual_1_predictions: pd.DataFrame, residual_1_metrics: dict[str, Any]) -> Figure:
    """The slide "Residual Regression 1: ROC Curve": image-only and residual curves per target."""
    return plot_roc_curves(residual_1_predictions, residual_1_metrics, ["image", "residual_1"], "Residual Regression 1: ROC Curve")
