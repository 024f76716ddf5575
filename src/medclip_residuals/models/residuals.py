"""The residual vectors of the slides: r = i - w (residual_1) and r = f(i) - w (residual_2).

`i` is an image's embedding, `w` its phenotype text embedding (phenotyping), `f` the map
i -> w fitted by residual_2 (`models.classifiers.fit_map`). Both tables come back as
embedding tables (image_id, e000.., float32) in image_embeddings' row order.
"""

from __future__ import annotations

import pandas as pd
import torch

from medclip_residuals.models.classifiers import apply_map
from medclip_residuals.utils.frames import matrix_to_embeddings, paired_embeddings


def residual_1_vectors(image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame) -> pd.DataFrame:
    """r = i - w for every image; w must be as wide as i (not the concat strategy)."""
    ids, images, w = paired_embeddings(image_embeddings, phenotype_sentence_embeddings)
    if w.shape[1] != images.shape[1]:
        raise ValueError(
            f"residual_1 needs w as wide as i: image_embeddings has {images.shape[1]} columns, "
            f"phenotype_sentence_embeddings {w.shape[1]} (strategy 'concat' gives k x D: use "
            "'sentence' or 'mean' for residual_1)"
        )
    return matrix_to_embeddings(ids, images - w)


def residual_2_vectors(
    image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame, embedding_map: torch.nn.Module
) -> pd.DataFrame:
    """r = f(i) - w for every image, f being `embedding_map` (a torch module)."""
    ids, images, w = paired_embeddings(image_embeddings, phenotype_sentence_embeddings)
    predicted = apply_map(embedding_map, images)
    if predicted.shape[1] != w.shape[1]:
        raise ValueError(
            f"residual_2_map gives {predicted.shape[1]} outputs but phenotype_sentence_embeddings has "
            f"{w.shape[1]} columns: was the map fitted on another w?"
        )
    return matrix_to_embeddings(ids, predicted - w)
