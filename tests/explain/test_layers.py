"""Target layer lookup (names, negative indices, several layers) and Swin's token grid
(the `swin` fixture: tests/explain/conftest.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medclip_residuals.explain.cam import CamExplainer
from medclip_residuals.explain.layers import (
    resolve_target_layer,
    resolve_target_layers,
    swin_reshape_transform,
    token_grid,
)


@pytest.mark.parametrize("input_hw", [(64, 64), (60, 52), (62, 58)])
def test_reshape_matches_hf_grid_at_every_stage(swin: nn.Module, input_hw: tuple[int, int]) -> None:
    # HF Swin pads inputs that the patch size or a merge does not divide; its own
    # reshaped_hidden_states are the truth for every stage's (H, W).
    x = torch.randn(2, 3, *input_hw)
    with torch.no_grad():
        out = swin.model(x, output_hidden_states=True)
    assert len(out.hidden_states) == 4  # embeddings + 3 stages
    for tokens, truth in zip(out.hidden_states, out.reshaped_hidden_states):
        mapped = swin_reshape_transform(tokens, input_hw)
        assert mapped.shape == truth.shape
        assert torch.equal(mapped, truth)


def test_token_grid_known_values() -> None:
    assert token_grid(56 * 56, (224, 224)) == (56, 56)
    assert token_grid(7 * 7, (224, 224)) == (7, 7)
    assert token_grid(15 * 13, (60, 52)) == (15, 13)  # patch 4: ceil(60/4) x ceil(52/4)
    assert token_grid(8 * 7, (60, 52)) == (8, 7)  # after a merge that pads 15x13 to 16x14
    with pytest.raises(ValueError, match="do not tile"):
        token_grid(17, (64, 64))


def test_layer_paths_resolve_with_negative_indices(swin: nn.Module) -> None:
    name, module = resolve_target_layer(swin, "model.encoder.layers.-1.blocks.-1")
    assert name == "model.encoder.layers.2.blocks.0"
    assert module is swin.model.encoder.layers[2].blocks[0]
    assert resolve_target_layer(swin, "model.layernorm")[1] is swin.model.layernorm


def test_unknown_layer_lists_valid_names(swin: nn.Module) -> None:
    with pytest.raises(ValueError) as error:
        resolve_target_layer(swin, "model.encoder.layers.7")
    message = str(error.value)
    assert "'model.encoder.layers.7' does not exist" in message
    assert "model.layernorm" in message and "model.encoder.layers.0.blocks.0" in message
    with pytest.raises(ValueError, match="empty"):
        resolve_target_layer(swin, "  ")


def test_several_layers_bad_names_fail(swin: nn.Module) -> None:
    with pytest.raises(ValueError, match="twice"):
        resolve_target_layers(swin, ["model.layernorm", "model.layernorm"])
    with pytest.raises(ValueError, match="empty"):
        resolve_target_layers(swin, [])
    with pytest.raises(ValueError, match="empty"):
        resolve_target_layers(swin, "model.layernorm + ")
    with pytest.raises(ValueError, match="does not exist"):
        CamExplainer(swin, "hirescam", ["model.layernorm", "model.encoder.layers.9"], progress=False)
