"""Token-level similarity maps through the projection head (MaskCLIP / BioViL-style).

Instead of following a gradient, each token of a target layer is carried on its own into
the joint image-text space and compared with the caption there: the map is, per token, the
target (e.g. the cosine with the caption's embedding) of that token's normalised embedding.

- The last stage (`model.layernorm`, 8 x 8 tokens on the demo): each token's projection.
  The image embedding is the projection of the tokens' mean, so these are exactly the parts
  that the image's similarity averages.
- An earlier layer (`model.encoder.layers.K.blocks.J`, `model.encoder.layers.K`,
  `model.embeddings`): each token goes through the remaining layers alone, as MaskCLIP does
  with CLIP's last attention layer: in every remaining Swin block the token attends only to
  itself (its value, then the attention's output projection; no other token mixes in), then
  the block's MLP; a patch merging sees the token in all four of its 2 x 2 positions; then
  the final norm and the projection head. The map keeps the layer's resolution (32 x 32 at
  stage 0 on the demo) where a CAM of the last stage has 8 x 8.
- ResNet profile (`model.layer4`): each location through the final linear layer (`fc`).

Why written here: pytorch-grad-cam has no gradient-free text-similarity method, and
MaskCLIP's code is for CLIP's ViT, not MedCLIP's Swin. `TokenSimilarityCAM` subclasses
pytorch-grad-cam's `BaseCAM` so that `CamExplainer`, the shift smoothing (`aug_smooth`) and
several target layers (maps scaled to [0, 1] and averaged) work unchanged.

Example:
    >>> with CamExplainer(encoder.vision_model, "tokensimilarity", "model.layernorm") as cam:  # doctest: +SKIP
    ...     maps = cam(pixel_values, [SimilarityTarget(text_embedding)] * len(pixel_values))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

TOKEN_LAYERS = (
    "model.layernorm",
    "model.encoder.layers.K.blocks.J",
    "model.encoder.layers.K",
    "model.embeddings",
    "model.layer4 (ResNet)",
)


def swin_block_per_token(block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A HF `SwinLayer` with each token attending only to itself: (..., C) -> (..., C)."""
    attention = block.attention
    hidden = tokens + attention.output.dense(attention.self.value(block.layernorm_before(tokens)))
    return hidden + block.output.dense(block.intermediate(block.layernorm_after(hidden)))


def patch_merging_per_token(merging: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A HF `SwinPatchMerging` applied to a token standing in all four of its 2 x 2 cells."""
    return merging.reduction(merging.norm(torch.cat([tokens] * 4, dim=-1)))


def _swin_steps(vision_encoder: nn.Module, stage: int, block: int) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The per-token steps from block `block` of stage `stage` (both included) to the joint space."""
    swin = vision_encoder.model
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for index, layer in enumerate(swin.encoder.layers):
        if index < stage:
            continue
        for position, swin_block in enumerate(layer.blocks):
            if index > stage or position >= block:
                steps.append(lambda x, b=swin_block: swin_block_per_token(b, x))
        if layer.downsample is not None:
            steps.append(lambda x, m=layer.downsample: patch_merging_per_token(m, x))
    steps.append(swin.layernorm)
    steps.append(vision_encoder.projection_head)
    return steps


def token_steps(vision_encoder: nn.Module, layer_name: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """What carries one token of `layer_name` (a canonical path, `explain.layers`) into the
    joint space, step by step. Raises ValueError naming the layers it can carry."""
    swin = getattr(vision_encoder, "model", None)
    is_swin = hasattr(vision_encoder, "projection_head") and hasattr(swin, "encoder") and hasattr(swin, "layernorm")
    if is_swin:
        if layer_name == "model.layernorm":
            return [vision_encoder.projection_head]
        if layer_name == "model.embeddings":
            return _swin_steps(vision_encoder, 0, 0)
        if match := re.fullmatch(r"model\.encoder\.layers\.(\d+)\.blocks\.(\d+)", layer_name):
            return _swin_steps(vision_encoder, int(match[1]), int(match[2]) + 1)
        if match := re.fullmatch(r"model\.encoder\.layers\.(\d+)(\.downsample)?", layer_name):
            # a stage's output is after its patch merging: the next stage's input
            return _swin_steps(vision_encoder, int(match[1]) + 1, 0)
    elif layer_name == "model.layer4" and isinstance(getattr(swin, "fc", None), nn.Linear):
        return [swin.fc]
    raise ValueError(
        f"tokensimilarity cannot carry layer {layer_name!r} of {type(vision_encoder).__name__} to the joint space; "
        f"it takes {', '.join(TOKEN_LAYERS)}"
    )


class TokenProjector:
    """Tokens (B, L, C) of one target layer -> their embeddings (B, L, D), unnormalised."""

    def __init__(self, vision_encoder: nn.Module, layer_name: str) -> None:
        self.layer_name = layer_name
        self.steps = token_steps(vision_encoder, layer_name)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            tokens = step(tokens)
        return tokens


class _LayerOutputs:
    """Stands in for pytorch-grad-cam's `ActivationsAndGradients`: records each target layer's
    output by layer (not in forward order, which may differ from the layers' order), on its
    device, unreshaped."""

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module]) -> None:
        self.model = model
        self.outputs: dict[int, torch.Tensor] = {}
        self.activations: list[torch.Tensor] = []  # read by nothing here; kept for BaseCAM's interface
        self.gradients: list[torch.Tensor] = []
        self.handles = [
            layer.register_forward_hook(lambda module, inputs, output, k=k: self.outputs.__setitem__(k, output))
            for k, layer in enumerate(target_layers)
        ]

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.outputs = {}
        return self.model(pixel_values)

    def clear(self) -> None:
        self.outputs = {}

    def release(self) -> None:
        self.clear()
        for handle in self.handles:
            handle.remove()
        self.handles = []


class TokenSimilarityCAM(BaseCAM):
    """A gradient-free "CAM": per token of each target layer, the target of the token's
    normalised embedding in the joint space (module docstring); each layer's map is scaled
    to [0, 1] at the input's size, several layers' maps averaged, as pytorch-grad-cam does.

    Args:
        model: what pytorch-grad-cam runs (`ImageEmbeddingModel`: its `vision_encoder` is used).
        target_layers: the modules whose outputs are the tokens (CamExplainer's taps).
        reshape_transform: tokens (B, L, C) -> maps (B, C, H, W) (Swin), or None (CNN maps).
        layer_names: the canonical path of each target layer (`explain.layers`), in the same order.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        layer_names: Sequence[str] = (),
    ) -> None:
        super().__init__(model, list(target_layers), reshape_transform, uses_gradients=False)
        if len(layer_names) != len(target_layers):
            raise ValueError(f"{len(target_layers)} target layers but {len(layer_names)} layer names")
        self.activations_and_grads.release()
        self.activations_and_grads = _LayerOutputs(model, target_layers)
        self.projectors = [TokenProjector(model.vision_encoder, name) for name in layer_names]

    def forward(
        self, input_tensor: torch.Tensor, targets: Sequence[Callable] | None, eigen_smooth: bool = False
    ) -> np.ndarray:
        if targets is None:
            raise ValueError("tokensimilarity needs a target per image (a caption or a head)")
        input_tensor = input_tensor.to(self.device)
        size = self.get_target_width_height(input_tensor)
        per_layer = []
        with torch.no_grad():
            self.outputs = self.activations_and_grads(input_tensor)
            for k, projector in enumerate(self.projectors):
                output = self.activations_and_grads.outputs[k]
                grid = self.reshape_transform(output) if self.reshape_transform is not None else output
                batch, _, height, width = grid.shape
                embedded = F.normalize(projector(grid.flatten(2).transpose(1, 2)), dim=-1)  # (B, H*W, D)
                values = torch.stack([target(embedded[i]) for i, target in enumerate(targets)])
                maps = values.reshape(batch, height, width).float().cpu().numpy()
                per_layer.append(scale_cam_image(maps, size)[:, None])
        return self.aggregate_multi_layers(per_layer)
