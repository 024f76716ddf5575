"""HeatMapModel and CAM targets: the outputs are the heads' own probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge
from torch import nn

from medclip_residuals.models.heads import (
    ResidualHead,
    logistic_head_from_sklearn,
    ridge_map_from_sklearn,
)
from medclip_residuals.models.heatmap import (
    HeadTarget,
    HeatMapModel,
    ImageEmbeddingModel,
    SimilarityTarget,
    as_probability,
)

DIM = 512


class TinyVision(nn.Module):
    """A small conv encoder ending in a 512-d (unnormalised) embedding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.projection = nn.Linear(16, DIM)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(self.model(pixel_values))


@pytest.fixture(scope="module")
def setting() -> dict:
    """A vision encoder, images, their normalised embeddings, w's, and fitted sklearn heads."""
    vision = TinyVision().eval()
    torch.manual_seed(1)
    images = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        embeddings = F.normalize(vision(images), dim=-1).double().numpy()
    rng = np.random.default_rng(0)
    train_x = rng.standard_normal((40, DIM))
    train_y = np.arange(40) % 2
    w = rng.standard_normal((6, DIM)) * 0.1
    logistic = LogisticRegression(max_iter=500).fit(train_x, train_y)
    ridge = Ridge(alpha=1.0).fit(train_x, rng.standard_normal((40, DIM)))
    return {"vision": vision, "images": images, "embeddings": embeddings, "w": w,
            "logistic": logistic, "ridge": ridge}


def test_image_head_output_is_the_heads_probability(setting: dict) -> None:
    head = logistic_head_from_sklearn(setting["logistic"])
    model = HeatMapModel(setting["vision"], head)
    assert not model.needs_w and model.variant == "image"
    with torch.no_grad():
        probability = model(setting["images"]).numpy()
    expected = setting["logistic"].predict_proba(setting["embeddings"])[:, 1]
    assert probability.shape == (6,)
    np.testing.assert_allclose(probability, expected, atol=1e-6)


def test_residual_1_subtracts_w_inside(setting: dict) -> None:
    head = logistic_head_from_sklearn(setting["logistic"])
    model = HeatMapModel.residual(setting["vision"], head)
    assert model.needs_w and model.variant == "residual_1"
    w = torch.from_numpy(setting["w"])
    with torch.no_grad():
        probability = model(setting["images"], w).numpy()
    expected = setting["logistic"].predict_proba(setting["embeddings"] - setting["w"])[:, 1]
    np.testing.assert_allclose(probability, expected, atol=1e-6)
    with pytest.raises(ValueError, match="needs the image's w"):
        model(setting["images"])


def test_residual_2_applies_f_first(setting: dict) -> None:
    head = logistic_head_from_sklearn(setting["logistic"])
    model = HeatMapModel(setting["vision"], ResidualHead(head, ridge_map_from_sklearn(setting["ridge"])))
    assert model.variant == "residual_2"
    with torch.no_grad():
        probability = model(setting["images"], torch.from_numpy(setting["w"])).numpy()
    mapped = setting["ridge"].predict(setting["embeddings"])
    expected = setting["logistic"].predict_proba(mapped - setting["w"])[:, 1]
    np.testing.assert_allclose(probability, expected, atol=1e-6)


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


def test_probability_shapes() -> None:
    assert as_probability(torch.tensor([[0.2, 0.8]])).tolist() == pytest.approx([0.8])
    assert as_probability(torch.tensor([[0.3]])).tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="regression head must return"):
        as_probability(torch.zeros(2, 3))
