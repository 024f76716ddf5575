"""Phenotyping nodes: score every image against the phenotype vocabulary, keep its top k,
embed the chosen phenotypes as one text embedding `w` per image, and evaluate the top-k.

The work is done by `medclip_residuals.models.phenotypes`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from medclip_residuals.data.study_split import images_in_role, role_summary
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.phenotypes import (
    TextEncoder,
    checked_top_k,
    choose_phenotypes,
    long_phenotype_table,
    phenotype_metrics,
    phenotype_w,
    top_k_arrays,
    top_k_scores,
    top_k_table,
    vocabulary_matrix,
    w_table,
)
from medclip_residuals.pipelines.phenotyping.params import PhenotypingParams
from medclip_residuals.utils.frames import check_ids_known, embeddings_to_matrix


def score_phenotypes(
    image_embeddings: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    params: dict[str, Any],
    device: str,
) -> pd.DataFrame:
    """Top-k phenotype phrases of every image by s = W i, computed in chunks of images.

    Returns one row per image: image_id, index_1..index_k (vocabulary positions, best
    first) and score_1..score_k.
    """
    p = PhenotypingParams.parse(params, "phenotyping")
    phrases, vocabulary = vocabulary_matrix(phenotype_embeddings)
    ids, images = embeddings_to_matrix(image_embeddings, dataset="image_embeddings")
    check_ids_known(ids, image_manifest, "image_embeddings")
    k = checked_top_k(p.top_k, len(phrases))
    indices, scores = top_k_scores(images, vocabulary, k, p.chunk_size, resolve_device(device))
    return top_k_table(ids, indices, scores)


def make_phenotype_table(phenotype_scores: pd.DataFrame, phenotype_embeddings: pd.DataFrame) -> pd.DataFrame:
    """The top-k as a long table: image_id, rank (1 = best), phenotype, phrase_index, score."""
    return long_phenotype_table(phenotype_scores, phenotype_embeddings)


def embed_phenotypes(
    phenotype_scores: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    report_mentions: pd.DataFrame,
    medclip_encoder: TextEncoder | None,
    params: dict[str, Any],
) -> pd.DataFrame:
    """The phenotype text embedding `w` of every image, by params:phenotyping.strategy.

    The phrases are the image's top-k (source "predicted") or what its report affirms
    (source "report"); strategy sentence embeds "The phenotype are: {list}", mean averages
    the phrase embeddings, concat puts the k of them side by side (k x D columns: residual_1
    refuses it, residual_2 maps i to k x D).

    Returns image_id, phenotypes (the phrases, joined with ", "), phenotype_source
    (predicted / report / report_filled / fallback) and e000.. (float32).
    """
    p = PhenotypingParams.parse(params, "phenotyping")
    phrases, vocabulary = vocabulary_matrix(phenotype_embeddings)
    ids, indices, _ = top_k_arrays(phenotype_scores)
    check_ids_known(ids, image_manifest, "phenotype_scores")
    k = checked_top_k(p.top_k, len(phrases))
    if indices.shape[1] != k:
        raise ValueError(f"phenotype_scores holds the top {indices.shape[1]} but params:phenotyping.top_k is {k}")
    chosen, sources = choose_phenotypes(
        ids,
        indices,
        phrases,
        report_mentions,
        source=p.source,
        phrase_order=p.phrase_order,
        report_fallback=p.report_fallback,
        report_uncertain=p.report_uncertain,
        meanings=p.evaluation,
    )
    matrix, sources, chosen = phenotype_w(
        chosen,
        sources,
        indices,
        phrases,
        vocabulary,
        medclip_encoder,
        strategy=p.strategy,
        sentence_template=p.sentence_template,
        separator=p.separator,
    )
    return w_table(ids, chosen, sources, matrix, phrases)


def evaluate_phenotypes(
    phenotype_scores: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    study_split: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """On the study's test role: precision, recall and hit rate at k of the top-k against the
    images' true findings and locations, next to their exact chance values; and where each
    `w` came from."""
    p = PhenotypingParams.parse(params, "phenotyping")
    test = images_in_role(study_split, "test")

    def on_test(frame: pd.DataFrame) -> pd.DataFrame:
        if "image_id" not in frame.columns:  # e.g. a dataset without localizations
            return frame
        return frame[frame["image_id"].astype(str).isin(test)].reset_index(drop=True)

    metrics = phenotype_metrics(
        on_test(phenotype_scores),
        phenotype_embeddings,
        on_test(phenotype_sentence_embeddings),
        on_test(image_manifest),
        on_test(image_localizations),
        strategy=p.strategy,
        source=p.source,
        meanings=p.evaluation,
    )
    return {"role": role_summary(study_split, "test"), **metrics}
