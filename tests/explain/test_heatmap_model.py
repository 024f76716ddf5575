"""HeatMapModel: the outputs are the heads' own probabilities (the `setting` fixture:
tests/explain/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclip_residuals.explain.heatmap_model import HeatMapModel, as_probability
from medclip_residuals.models.heads import (
    ResidualHead,
    logistic_head_from_sklearn,
    ridge_map_from_sklearn,
)


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


def test_probability_shapes() -> None:
    assert as_probability(torch.tensor([[0.2, 0.8]])).tolist() == pytest.approx([0.8])
    assert as_probability(torch.tensor([[0.3]])).tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="regression head must return"):
        as_probability(torch.zeros(2, 3))
