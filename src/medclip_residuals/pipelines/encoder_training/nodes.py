"""Nodes of encoder_training: train with the CLIP loss on the study's encoder_train role,
plot, and evaluate zero-shot on the validation and test roles (never seen in training).

The library code lives in models/training.py (the loss, schedule, augmentation and loop),
models/zero_shot.py (the held-out metric), models/image_source.py (cached or streamed
images), models/embed.py (the embedding path) and data/study_split.py (the roles).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from medclip_residuals.data.study_split import role_fingerprint, role_summary, rows_in_role
from medclip_residuals.models.embed import embed_image_source
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.image_source import ImageSource, image_source
from medclip_residuals.models.medclip_loader import EncoderParams
from medclip_residuals.models.training import (
    build_start_encoder,
    center_projection_heads,
    fit_contrastive,
    history_summary,
    label_matrix,
    loss_curve_figure,
    set_temperature,
    temperature_of,
    text_groups,
    training_pairs,
)
from medclip_residuals.models.zero_shot import finding_labels, json_safe, zero_shot_scores

from .params import EncoderTrainingParams

logger = logging.getLogger(__name__)


def train_encoder(
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    encoder_params: dict[str, Any],
    params: dict[str, Any],
    seed: int,
    device: str,
) -> tuple[MedCLIPEncoder, pd.DataFrame, pd.DataFrame]:
    """Fine-tune MedCLIP with the CLIP loss on the image/report pairs of the encoder_train role.

    Returns the trained encoder (on the CPU), the history, one row per step (epoch, step,
    loss, learning_rate, temperature, seconds since the start, image caching included), and
    the pairs it was trained on (image_id, patient_id). The images are cached while they fit
    `image_cache_mb`, else streamed from disk per batch.
    """
    start = EncoderParams.parse(encoder_params, "encoder")
    p = EncoderTrainingParams.parse(params, "encoder_training")
    torch.manual_seed(seed)
    rows = training_pairs(image_manifest, study_split)
    reports = rows["report"].astype(str).tolist()
    encoder = build_start_encoder(start, reports, seed).to(device)
    if p.temperature_init is not None:
        set_temperature(encoder, p.temperature_init)

    started = time.perf_counter()
    pixels = image_source(rows["image_path"].tolist(), encoder.image_size, p.image_cache_mb, p.cache_workers, "training")
    cached = time.perf_counter() - started
    logger.info(
        "encoder_training: %d training images (%d patients, %d distinct reports), images ready in %.1f s",
        len(rows), rows["patient_id"].nunique(), int(text_groups(reports).max()) + 1, cached,
    )
    if p.center_projections:
        spread = center_projection_heads(encoder, pixels, reports)
        logger.info("encoder_training: centred the projection heads, mean cosine %s",
                    ", ".join(f"{key} {value:.3f}" for key, value in spread.items()))
    on_epoch_end = (_validation_curve(image_manifest, study_split, p, encoder.image_size)
                    if p.validation_every_epochs else None)
    history = fit_contrastive(encoder, pixels, reports, p, seed, on_epoch_end=on_epoch_end, labels=label_matrix(rows))
    history["seconds"] += cached
    started_from = {"started_from": dict(encoder.trained_on)} if encoder.trained_on else {}
    # hooks.RunProvenanceHook adds the data_root when the encoder is saved
    encoder.trained_on = {
        "images": int(len(rows)),
        "patients": int(rows["patient_id"].nunique()),
        "encoder_train_fingerprint": role_fingerprint(study_split, "encoder_train"),
        **started_from,
    }
    pairs = rows[["image_id", "patient_id"]].astype(str).reset_index(drop=True)
    return encoder.to("cpu"), history, pairs


def _held_out_role(
    image_manifest: pd.DataFrame, study_split: pd.DataFrame, role: str, p: EncoderTrainingParams, image_size: int
) -> tuple[pd.DataFrame, dict[str, np.ndarray], ImageSource]:
    """A held-out role's rows, their finding labels and their images (cached or streamed)."""
    rows = rows_in_role(image_manifest, study_split, role)
    labels = finding_labels(rows, p.evaluation.findings, p.evaluation.exclude)
    images = image_source(rows["image_path"].tolist(), image_size, p.image_cache_mb, p.cache_workers, role)
    return rows, labels, images


def _zero_shot(
    encoder: MedCLIPEncoder, labels: dict[str, np.ndarray], images: ImageSource, p: EncoderTrainingParams, label: str
) -> dict[str, Any]:
    """`zero_shot_scores` of `images`, logged under `label`."""
    embeddings = embed_image_source(encoder, images, p.evaluation.batch_size)
    return zero_shot_scores(encoder, embeddings, labels, p.evaluation, label)


def _validation_curve(
    image_manifest: pd.DataFrame, study_split: pd.DataFrame, p: EncoderTrainingParams, image_size: int
) -> Callable[[int, MedCLIPEncoder], None] | None:
    """An epoch callback that logs the validation role's zero-shot AUCs every
    `validation_every_epochs` epochs (None without validation images). The images are
    decoded once, before the first epoch, not at every evaluation."""
    if not (study_split["role"] == "validation").any():
        return None
    _, labels, images = _held_out_role(image_manifest, study_split, "validation", p, image_size)

    def evaluate(epoch: int, encoder: MedCLIPEncoder) -> None:
        if epoch % p.validation_every_epochs == 0:
            _zero_shot(encoder, labels, images, p, f"epoch {epoch} validation")

    return evaluate


def plot_loss_curve(history: pd.DataFrame) -> Figure:
    """The training loss per step and its mean per epoch, with the learning rate."""
    return loss_curve_figure(history)


def evaluate_encoder(
    medclip_encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    study_split: pd.DataFrame,
    history: pd.DataFrame,
    params: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """Per finding, the ROC AUC of each image's similarity to a prompt naming it ("there is
    pneumonia"), on the test role (the reported figures, top level) and on the validation role
    (for choices, under `validation`). Logged, and returned as metrics (NaN as null)."""
    p = EncoderTrainingParams.parse(params, "encoder_training")
    encoder = medclip_encoder.to(device)

    def scores_on(role: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        rows, labels, images = _held_out_role(image_manifest, study_split, role, p, encoder.image_size)
        return rows, _zero_shot(encoder, labels, images, p, role)

    test_rows, test_scores = scores_on("test")
    validation_rows, validation_scores = scores_on("validation") if (study_split["role"] == "validation").any() else (None, None)
    metrics = {
        "profile": encoder.profile,
        "role": role_summary(study_split, "test"),
        "held_out_images": int(len(test_rows)),
        "held_out_patients": int(test_rows["patient_id"].nunique()) if len(test_rows) else 0,
        "train_images": int((study_split["role"] == "encoder_train").sum()),
        **history_summary(history),
        "temperature": temperature_of(encoder.model),
        **test_scores,
        "validation": None if validation_scores is None else {
            "role": role_summary(study_split, "validation"),
            **{key: validation_scores[key] for key in ("auc", "positives", "negatives", "min_auc", "meets_target")},
        },
    }
    return json_safe(metrics)
