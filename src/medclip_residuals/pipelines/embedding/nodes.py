"""Nodes of the embedding pipeline: images, captions and the phenotype vocabulary through the encoder."""

from __future__ import annotations

from typing import Any

import pandas as pd

from medclip_residuals.distributed.embedding import embed_images_sharded
from medclip_residuals.distributed.engine import active_engine
from medclip_residuals.models.compute import plan_compute
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.report_text import caption_texts, log_over_limit
from medclip_residuals.utils.frames import matrix_to_embeddings

from .params import EmbeddingParams


def embed_images(
    medclip_encoder: MedCLIPEncoder, image_manifest: pd.DataFrame, device: str, params: dict[str, Any]
) -> pd.DataFrame:
    """Embed every image of the manifest: one row per image_id, 512 L2-normalised floats.

    With a Dask cluster configured (conf/<env>/dask.yml), over shards of the manifest on its
    workers, reusing unchanged rows of the latest version (`distributed.embedding`).
    """
    p = EmbeddingParams.parse(params, "embedding")
    engine = active_engine()
    if engine is not None:
        # the shards' size and cache keys need numbers: `auto` settled here, by this process's device
        plan = plan_compute(device, bf16=p.bf16, batch_size=p.batch_size)
        return embed_images_sharded(engine, medclip_encoder, image_manifest, device, batch_size=plan.batch_size,
                                    num_workers=p.num_workers, bf16=plan.bf16)
    medclip_encoder.to(device)
    matrix = embed_image_files(
        medclip_encoder, image_manifest["image_path"].tolist(), batch_size=p.batch_size,
        num_workers=p.num_workers, bf16=p.bf16, threads=p.torch_threads, channels_last=p.channels_last,
    )
    return matrix_to_embeddings(image_manifest["image_id"].astype(str).to_numpy(), matrix)


def embed_captions(
    medclip_encoder: MedCLIPEncoder, image_manifest: pd.DataFrame, device: str, params: dict[str, Any]
) -> pd.DataFrame:
    """Embed each image's report/caption; images with an empty report have no row (logged).

    `report_text` chooses what is embedded: `whole` (the report as written) or `impression`
    (its IMPRESSION section where one exists, else the whole report). The log says how many
    texts were the impression and how many exceed the tokenizer's limit (`text_max_length`),
    which the encoder truncates: the end of the report is lost.
    """
    p = EmbeddingParams.parse(params, "embedding")
    image_ids, texts = caption_texts(image_manifest, p.report_text)
    log_over_limit(
        medclip_encoder, texts, f"caption_embeddings (report_text '{p.report_text}')",
        hint="; report_text: impression embeds the IMPRESSION section instead" if p.report_text == "whole" else "",
    )
    medclip_encoder.to(device)
    matrix = medclip_encoder.encode_texts(texts, batch_size=p.text_batch_size)
    return matrix_to_embeddings(image_ids, matrix)


def embed_phenotype_vocabulary(medclip_encoder: MedCLIPEncoder, device: str, params: dict[str, Any]) -> pd.DataFrame:
    """Embed the phenotype vocabulary of the parameters: one row per phrase, in their order."""
    p = EmbeddingParams.parse(params, "embedding")
    medclip_encoder.to(device)
    matrix = medclip_encoder.encode_texts(p.phrases, batch_size=p.text_batch_size)
    return matrix_to_embeddings(p.phrases, matrix, id_column="phrase")
