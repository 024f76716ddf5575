"""CAM targets: a head's probability on the embedding, the cosine to a caption, and its
contrast (the `setting` fixture: tests/explain/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclip_residuals.explain.heatmap_model import HeatMapModel, ImageEmbeddingModel
from medclip_residuals.explain.targets import HeadTarget, SimilarityTarget
from medclip_residuals.models.heads import logistic_head_from_sklearn

DIM = 512


def test_head_target_on_the_embedding_equals_the_model(setting: dict) -> None:
    head = logistic_head_from_sklearn(setting["logistic"])
    model = HeatMapModel.residual(setting["vision"], head)
    embedder = ImageEmbeddingModel(setting["vision"])
    with torch.no_grad():
        rows = embedder(setting["images"])
        whole = model(setting["images"], torch.from_numpy(setting["w"]))
    for k in range(6):
        target = HeadTarget(model, setting["w"][k], label=f"img{k}")  # w is kept as float32
        with torch.no_grad():
            assert float(target(rows[k])) == pytest.approx(float(whole[k]), abs=1e-6)
    with pytest.raises(ValueError, match="needs the image's w"):
        HeadTarget(model, None)


def test_similarity_target_is_the_cosine(setting: dict) -> None:
    text = np.random.default_rng(3).standard_normal(DIM)
    target = SimilarityTarget(text * 7.0)  # any scale: the text embedding is normalised
    row = torch.from_numpy(setting["embeddings"][0]).float()
    expected = float(np.dot(setting["embeddings"][0], text) / np.linalg.norm(text))
    assert float(target(row)) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="all zeros"):
        SimilarityTarget(np.zeros(DIM), label="empty")


def test_contrast_target_is_the_difference_of_cosines(setting: dict) -> None:
    rng = np.random.default_rng(4)
    text, contrast = rng.standard_normal(DIM), rng.standard_normal(DIM)
    row = setting["embeddings"][1]
    target = SimilarityTarget(text * 3.0, label="caption", contrast_embedding=contrast * 0.5)
    expected = np.dot(row, text) / np.linalg.norm(text) - np.dot(row, contrast) / np.linalg.norm(contrast)
    assert float(target(torch.from_numpy(row).float())) == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ValueError, match="embeds like the contrast caption"):
        SimilarityTarget(text, label="same", contrast_embedding=2.0 * text)
    with pytest.raises(ValueError, match="contrast text embedding contains NaN"):
        SimilarityTarget(text, contrast_embedding=np.full(DIM, np.nan))
