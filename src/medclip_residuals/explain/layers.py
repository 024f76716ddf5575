"""Target layers of the MedCLIP vision encoder, and Swin's tokens laid out as feature maps.

- `resolve_target_layer(vision_encoder, name)`: a dotted module path of the vision
  encoder ("model.encoder.layers.0.blocks.1", "model.layernorm", "model.layer4" for the
  ResNet profile; negative list indices allowed: "model.encoder.layers.-1.blocks.-1").
  `resolve_target_layers` takes several ("a + b" or a list): their maps are averaged.
- `swin_reshape_transform(tokens, input_hw)`: Swin's (B, L, C) tokens -> (B, C, H, W),
  with (H, W) the stage's real grid, derived from L and the input size.

Which tensor a layer name stands for: the module's output, or the first tensor of it when
the module returns a tuple (HF Swin blocks and stages do). That is the tensor the rest of
the network reads, so gradients reach it. For a Swin *stage* with patch merging
("model.encoder.layers.0") it is therefore the merged tokens, on the next stage's grid;
name the stage's last block ("model.encoder.layers.0.blocks.-1") for the stage's own grid.

Example:
    >>> names, modules = resolve_target_layers(vision, "model.encoder.layers.0.blocks.-1")  # doctest: +SKIP
    >>> names  # doctest: +SKIP
    ['model.encoder.layers.0.blocks.1']
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import nn

# Modules worth naming as a target layer: those whose output is a spatial feature map.
_SUGGESTED = re.compile(
    r"^(model\.)?("
    r"embeddings|layernorm|encoder\.layers\.\d+(\.blocks\.\d+|\.downsample)?"  # HF Swin
    r"|layer[1-4](\.\d+)?|conv1|bn1|relu|maxpool"  # torchvision ResNet
    r")$"
)


def candidate_layer_names(vision_encoder: nn.Module) -> list[str]:
    """The module paths of `vision_encoder` that make sensible CAM target layers."""
    names = [name for name, _ in vision_encoder.named_modules() if name and _SUGGESTED.match(name)]
    return names or [name for name, _ in vision_encoder.named_modules() if name]


def resolve_target_layer(vision_encoder: nn.Module, name: str) -> tuple[str, nn.Module]:
    """Find a module by dotted path; return its canonical path and the module.

    Raises ValueError listing the valid names when the path does not exist.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("the CAM target layer name is empty")
    module: nn.Module = vision_encoder
    canonical: list[str] = []
    for part in name.strip().split("."):
        child, key = None, part
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            if -len(module) <= index < len(module):
                index %= len(module)
                child, key = module[index], str(index)  # the canonical (non-negative) index
        elif part in dict(module.named_children()):
            child = getattr(module, part)
        if child is None:
            valid = candidate_layer_names(vision_encoder)
            raise ValueError(
                f"target layer {name!r} does not exist in {type(vision_encoder).__name__} "
                f"(no {'.'.join(canonical + [part])!r}). Valid layer names: {', '.join(valid)}"
            )
        canonical.append(key)
        module = child
    return ".".join(canonical), module


def resolve_target_layers(vision_encoder: nn.Module, names: str | Sequence[str]) -> tuple[list[str], list[nn.Module]]:
    """One or several target layers: a dotted path, a list of them, or paths joined by '+'.

    pytorch-grad-cam computes one map per layer, scales each to [0, 1] and averages them.
    Raises ValueError for an empty selection or any unknown name.
    """
    if isinstance(names, str):
        names = names.split("+") if names.strip() else []
    names = [str(name).strip() for name in names]
    if not names or not all(names):
        raise ValueError(f"the CAM target layer name is empty ({names!r})")
    resolved = [resolve_target_layer(vision_encoder, name) for name in names]
    canonical = [name for name, _ in resolved]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"target layers {canonical} name a layer twice")
    return canonical, [module for _, module in resolved]


def layer_label(names: Sequence[str]) -> str:
    """Target layers as one string: 'a' or 'a + b'."""
    return " + ".join(names)


def token_grid(num_tokens: int, input_hw: Sequence[int]) -> tuple[int, int]:
    """The (H, W) grid of a Swin stage holding `num_tokens` tokens for an input of `input_hw`.

    HF Swin pads the input to a multiple of the patch size and each patch merging pads to
    an even grid, so stage k has ceil(H / s) x ceil(W / s) tokens with s = patch * 2**k:
    the first stride s whose grid has `num_tokens` cells is the stage's grid.
    """
    height, width = int(input_hw[0]), int(input_hw[1])
    for stride in range(1, max(height, width) + 1):
        grid = (math.ceil(height / stride), math.ceil(width / stride))
        if grid[0] * grid[1] == num_tokens:
            return grid
        if grid[0] * grid[1] < num_tokens:
            break
    raise ValueError(f"{num_tokens} tokens do not tile an input of {height}x{width} at any stride")


def swin_reshape_transform(tokens: torch.Tensor, input_hw: Sequence[int]) -> torch.Tensor:
    """Swin tokens (B, L, C) -> a feature map (B, C, H, W) on the stage's real grid."""
    if tokens.ndim != 3:
        raise ValueError(f"expected Swin tokens of shape (B, L, C), got {tuple(tokens.shape)}")
    height, width = token_grid(tokens.shape[1], input_hw)
    return tokens.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)


class ActivationReshape:
    """pytorch-grad-cam's `reshape_transform`: (B, L, C) tokens -> maps, CNN maps unchanged.

    The transform only sees the tensor; `input_hw` is set before each batch. pytorch-grad-cam
    applies it to the activations and to their gradients and then computes the map in NumPy,
    so a bf16 tensor (a pass under bf16 autocast) comes back as float32.
    """

    def __init__(self, input_hw: Sequence[int] | None = None) -> None:
        self.input_hw = tuple(input_hw) if input_hw is not None else None

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.dtype == torch.bfloat16:
            activation = activation.float()
        if activation.ndim == 4:
            return activation
        if self.input_hw is None:
            raise RuntimeError("ActivationReshape.input_hw is not set")
        return swin_reshape_transform(activation, self.input_hw)
