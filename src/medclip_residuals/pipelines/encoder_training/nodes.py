"""Nodes of encoder_training: split the patients, train with the CLIP loss, plot, evaluate.

The library code lives in models/training.py (the loss, schedule, augmentation and loop),
models/zero_shot.py (the held-out metric), models/image_source.py (cached or streamed
images), models/embed.py (the embedding path) and data/patient_split.py (the split).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from medclip_residuals.data.patient_split import TEST, TRAIN, rows_in_split, split_by_patient
from medclip_residuals.models.embed import embed_image_source
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.image_source import image_source
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


def split_patients(image_manifest: pd.DataFrame, params: dict[str, Any], seed: int) -> pd.DataFrame:
    """Assign every patient to `train` or `test` (a seeded shuffle; `test_fraction` of patients).

    Returns one row per image: image_id, patient_id, split. No patient is on both sides.
    """
    p = EncoderTrainingParams.parse(params, "encoder_training")
    return split_by_patient(image_manifest, p.test_fraction, seed)


def train_encoder(
    image_manifest: pd.DataFrame,
    encoder_split: pd.DataFrame,
    encoder_params: dict[str, Any],
    params: dict[str, Any],
    seed: int,
    device: str,
) -> tuple[MedCLIPEncoder, pd.DataFrame]:
    """Fine-tune MedCLIP with the CLIP loss on the training patients' image/report pairs.

    Returns the trained encoder (on the CPU) and the history, one row per step:
    epoch, step, loss, learning_rate, temperature, seconds (since the start, image caching included).
    The images are cached while they fit `image_cache_mb`, else streamed from disk per batch.
    """
    start = EncoderParams.parse(encoder_params, "encoder")
    p = EncoderTrainingParams.parse(params, "encoder_training")
    torch.manual_seed(seed)
    rows = training_pairs(image_manifest, encoder_split)
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
    history = fit_contrastive(encoder, pixels, reports, p, seed, labels=label_matrix(rows))
    history["seconds"] += cached
    return encoder.to("cpu"), history


def plot_loss_curve(history: pd.DataFrame) -> Figure:
    """The training loss per step and its mean per epoch, with the learning rate."""
    return loss_curve_figure(history)


def evaluate_encoder(
    medclip_encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    encoder_split: pd.DataFrame,
    history: pd.DataFrame,
    params: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """On the held-out patients' images: per finding, the ROC AUC of the image's similarity
    to a prompt naming it ("there is pneumonia"). Logged, and returned as metrics (NaN as null)."""
    p = EncoderTrainingParams.parse(params, "encoder_training")
    rows = rows_in_split(image_manifest, encoder_split, TEST)
    labels = finding_labels(rows, p.evaluation.findings, p.evaluation.exclude)
    encoder = medclip_encoder.to(device)
    held_out = image_source(rows["image_path"].tolist(), encoder.image_size, p.image_cache_mb, p.cache_workers, "held-out")
    images = embed_image_source(encoder, held_out, p.evaluation.batch_size)
    metrics = {
        "profile": encoder.profile,
        "held_out_images": int(len(rows)),
        "held_out_patients": int(rows["patient_id"].nunique()) if len(rows) else 0,
        "train_images": int((encoder_split["split"] == TRAIN).sum()),
        **history_summary(history),
        "temperature": temperature_of(encoder.model),
        **zero_shot_scores(encoder, images, labels, p.evaluation),
    }
    return json_safe(metrics)
