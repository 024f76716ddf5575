"""The token-level similarity method: each token carried alone into the joint space (the
`swin` fixture: a tiny Swin shaped like MedCLIP's ViT vision model, tests/explain/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medclip_residuals.explain.cam import CamExplainer, resolve_cam_method
from medclip_residuals.explain.targets import SimilarityTarget
from medclip_residuals.explain.token_similarity import TokenProjector, TokenSimilarityCAM

LAYERS = ["model.embeddings", "model.encoder.layers.0.blocks.0", "model.encoder.layers.0",
          "model.encoder.layers.1.blocks.0", "model.layernorm"]


def _layer_output(swin, pixels: torch.Tensor, name: str) -> torch.Tensor:
    """The first tensor a module of `swin` outputs on `pixels`."""
    captured = {}

    def keep(module: torch.nn.Module, inputs: object, output: object) -> None:
        captured["x"] = output[0] if isinstance(output, tuple) else output

    handle = swin.get_submodule(name).register_forward_hook(keep)
    try:
        with torch.no_grad():
            swin(pixels)
    finally:
        handle.remove()
    return captured["x"]


def test_last_stage_tokens_average_to_the_image_embedding(swin) -> None:
    pixels = torch.rand(2, 3, 64, 64)
    tokens = _layer_output(swin, pixels, "model.layernorm")
    with torch.no_grad():
        projected = TokenProjector(swin, "model.layernorm")(tokens)
        torch.testing.assert_close(projected.mean(dim=1), swin(pixels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", LAYERS)
def test_on_a_uniform_image_each_token_carries_to_the_image_embedding(swin, layer: str) -> None:
    # every token of a uniform image is the same at every layer (no absolute position embedding),
    # so attending only to itself is what attention does, and a merge sees four equal tokens
    pixels = torch.full((1, 3, 64, 64), 0.3)
    tokens = _layer_output(swin, pixels, layer)
    with torch.no_grad():
        projected = TokenProjector(swin, layer)(tokens)[0]
        expected = swin(pixels)[0].expand_as(projected)
    torch.testing.assert_close(projected, expected, atol=1e-4, rtol=1e-4)


def test_the_map_peaks_on_the_token_the_caption_matches(swin) -> None:
    torch.manual_seed(2)
    pixels = torch.rand(1, 3, 64, 64)
    tokens = _layer_output(swin, pixels, "model.layernorm")  # (1, 16, C): a 4 x 4 grid of 16-px cells
    with torch.no_grad():
        projected = F.normalize(TokenProjector(swin, "model.layernorm")(tokens)[0], dim=-1)
    assert tokens.shape[1] == 16
    for cell in range(16):
        with CamExplainer(swin, "tokensimilarity", "model.layernorm", progress=False) as cam:
            heat = cam(pixels, [SimilarityTarget(projected[cell])])[0]
        assert heat.shape == (64, 64) and heat.min() == pytest.approx(0.0) and heat.max() == pytest.approx(1.0)
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        assert (row // 16) * 4 + col // 16 == cell


def test_several_layers_and_shift_smoothing(swin) -> None:
    pixels = torch.rand(2, 3, 64, 64)
    text = np.random.default_rng(0).standard_normal(512)
    with CamExplainer(swin, "maskclip", LAYERS[1:4:2], progress=False, shifts_px=[-4, 0, 4]) as cam:
        assert isinstance(cam.cam, TokenSimilarityCAM) and not cam.cam.uses_gradients
        maps = cam(pixels, [SimilarityTarget(text)] * 2)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and 0 <= maps.min() < maps.max() <= 1
    assert resolve_cam_method("token_similarity") is TokenSimilarityCAM


def test_a_layer_it_cannot_carry_is_named(swin) -> None:
    with pytest.raises(ValueError, match=r"cannot carry layer 'model.pooler'.*model.layernorm"):
        CamExplainer(swin, "tokensimilarity", "model.pooler", progress=False)
