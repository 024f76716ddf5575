"""Nodes of the embedding pipeline."""

from __future__ import annotations

import logging

import pandas as pd

from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.report_text import (
    check_report_text_mode,
    over_limit_summary,
    select_report_texts,
    token_lengths,
)
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
    """Embed each image's report/caption; images with an empty report have no row (logged).

    `params["report_text"]` chooses what is embedded: `whole` (the report as written) or
    `impression` (its IMPRESSION section where one exists, else the whole report). The log
    says how many texts were the impression and how many exceed the tokenizer's limit
    (`text_max_length`), which the encoder truncates: the end of the report is lost.
    """
    mode = check_report_text_mode(params.get("report_text", "whole"), "params:embedding.report_text")
    reports = image_manifest["report"].fillna("").astype(str).str.strip()
    with_report = image_manifest.loc[reports != ""]
    skipped = len(image_manifest) - len(with_report)
    if skipped:
        logger.info("caption_embeddings: %d images have an empty report and get no caption embedding", skipped)
    texts, n_impression = select_report_texts(reports.loc[with_report.index].tolist(), mode)
    if mode == "impression":
        logger.info(
            "caption_embeddings: report_text 'impression': %d of %d reports embedded as their IMPRESSION "
            "section, %d (no IMPRESSION section) as the whole report",
            n_impression, len(texts), len(texts) - n_impression,
        )
    log_over_limit(
        medclip_encoder, texts, f"caption_embeddings (report_text '{mode}')",
        hint="; report_text: impression embeds the IMPRESSION section instead" if mode == "whole" else "",
    )
    medclip_encoder.to(device)
    matrix = medclip_encoder.encode_texts(texts, batch_size=int(params["text_batch_size"]))
    return matrix_to_embeddings(with_report["image_id"].astype(str).to_numpy(), matrix)


def log_over_limit(medclip_encoder: MedCLIPEncoder, texts: list[str], what: str, hint: str = "") -> dict[str, int]:
    """Count the texts longer than the encoder's token limit and log it (a warning if any)."""
    summary = over_limit_summary(token_lengths(medclip_encoder.tokenizer, texts), medclip_encoder.text_max_length)
    level = logging.WARNING if summary["n_over_limit"] else logging.INFO
    logger.log(
        level,
        "%s: %d of %d texts exceed the tokenizer limit of %d tokens (text_max_length) and are truncated "
        "to it (longest %d tokens)%s",
        what, summary["n_over_limit"], summary["n_texts"], summary["limit"], summary["max_tokens"],
        hint if summary["n_over_limit"] else "",
    )
    return summary


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
