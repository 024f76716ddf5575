"""Nodes of the embedding pipeline."""

from __future__ import annotations

import logging

import pandas as pd

from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.utils.frames import matrix_to_embeddings

logger = logging.getLogger(__name__)


def embed_images(
    medclip_encoder: MedCLIPEncoder, image_manifest: pd.DataFrame, device: str, params: dict
) -> pd.DataFrame:
    """Embed every image of the manifest: one row per image_id, 512 L2-normalised floats."""
    medclip_encoder.to(device)
    matrix = embed_image_files(
        medclip_encoder,
        image_manifest["image_path"].tolist(),
        batch_size=int(params["batch_size"]),
        num_workers=int(params["num_workers"]),
        bf16=bool(params["bf16"]),
    )
    return matrix_to_embeddings(image_manifest["image_id"].astype(str).to_numpy(), matrix)


def embed_captions(
    medclip_encoder: MedCLIPEncoder, image_manifest: pd.DataFrame, device: str, params: dict
) -> pd.DataFrame:
    """Embed each image's report/caption; images with an empty report have no row (logged)."""
    reports = image_manifest["report"].fillna("").astype(str).str.strip()
    with_report = image_manifest.loc[reports != ""]
    skipped = len(image_manifest) - len(with_report)
    if skipped:
        logger.info("caption_embeddings: %d images have an empty report and get no caption embedding", skipped)
    medclip_encoder.to(device)
    matrix = medclip_encoder.encode_texts(
        reports.loc[with_report.index].tolist(), batch_size=int(params["text_batch_size"])
    )
    return matrix_to_embeddings(with_report["image_id"].astype(str).to_numpy(), matrix)


def embed_phenotype_vocabulary(medclip_encoder: MedCLIPEncoder, device: str, params: dict) -> pd.DataFrame:
    """Embed the phenotype vocabulary of the parameters: one row per phrase, in their order."""
    vocabulary = [str(p).strip() for p in params.get("phenotype_vocabulary") or []]
    if not vocabulary:
        raise ValueError("embedding.phenotype_vocabulary is empty: list at least one phrase")
    empty = [i for i, phrase in enumerate(vocabulary) if not phrase]
    if empty:
        raise ValueError(f"embedding.phenotype_vocabulary has empty phrases at positions {empty}")
    duplicates = sorted({p for p in vocabulary if vocabulary.count(p) > 1})
    if duplicates:
        raise ValueError(f"embedding.phenotype_vocabulary lists these phrases twice: {duplicates}")
    medclip_encoder.to(device)
    matrix = medclip_encoder.encode_texts(vocabulary, batch_size=int(params["text_batch_size"]))
    return matrix_to_embeddings(vocabulary, matrix, id_column="phrase")
