"""Class activation maps on the MedCLIP vision encoder, through pytorch-grad-cam.

- `resolve_cam_method(name)`: a CAM method by name -> its pytorch-grad-cam class (or
  `tokensimilarity`: the gradient-free token-level similarity of explain/token_similarity.py).
- `CamExplainer`: many images per call, one target per image (explain/targets.py), one or
  several target layers (explain/layers.py), optional shift smoothing (explain/smoothing.py).

This module holds the hooks; the layer lookup, the token layout and the smoothing are the
maths beside it.

Example:
    >>> with CamExplainer(encoder.vision_model, "hirescam", "model.encoder.layers.0.blocks.-1") as cam:  # doctest: +SKIP
    ...     maps = cam(pixel_values, [SimilarityTarget(text_embedding)] * len(pixel_values))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import ttach
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from medclip_residuals.explain.heatmap_model import ImageEmbeddingModel
from medclip_residuals.explain.layers import ActivationReshape, layer_label, resolve_target_layers
from medclip_residuals.explain.smoothing import Shift, shift_grid
from medclip_residuals.explain.token_similarity import TokenSimilarityCAM
from medclip_residuals.models.embed import autocast_context
from medclip_residuals.utils.progress import progress_bar

CAM_METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "xgradcam": XGradCAM,
    "eigengradcam": EigenGradCAM,
    "gradcamelementwise": GradCAMElementWise,
    "tokensimilarity": TokenSimilarityCAM,
}
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++", "maskclip": "tokensimilarity"}


def resolve_cam_method(name: str) -> type[BaseCAM]:
    """The pytorch-grad-cam class for a method name (case, '-', '_' and spaces ignored)."""
    key = re.sub(r"[\s_\-]", "", str(name).lower())
    key = _ALIASES.get(key, key)
    if key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(CAM_METHODS)}")
    return CAM_METHODS[key]


def _first_tensor(output: object) -> torch.Tensor | None:
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    return getattr(output, "last_hidden_state", None)


class _Tap(nn.Identity):
    """Stands in for a module whose output is a tuple: pytorch-grad-cam hooks a module's
    output and can only follow gradients on a tensor, so the tuple's first tensor is
    passed through this identity, and the identity is what pytorch-grad-cam hooks."""


class CamExplainer:
    """Heatmaps for many images, one target per image, through one pytorch-grad-cam object.

    The explained model is `ImageEmbeddingModel(vision_encoder)` (the L2-normalised image
    embedding); targets are callables on one image's embedding (see explain/targets.py).
    The method and the layer are checked when the explainer is made, before any heatmap.

    While explaining, the encoder's parameters are frozen and the input asks for a
    gradient instead: backward then computes only activation gradients (no weight
    gradients), which is all a CAM needs.

    Args:
        vision_encoder: MedCLIP's vision model (pixel values -> embedding).
        method: a CAM method name (`resolve_cam_method`).
        target_layer: a layer path, several joined by '+', or a list (`resolve_target_layers`).
        batch_size: images per pytorch-grad-cam call (and ScoreCAM's batch of masked copies).
        progress: show a progress bar over the batches.
        device: where to run; None: the encoder's device.
        shifts_px: per-axis shifts of the shift smoothing; (0,): none.
        bf16: run the CAM's forward and backward passes under bf16 autocast (the maps are
            computed from float32 copies of the activations and gradients).
    """

    def __init__(
        self,
        vision_encoder: nn.Module,
        method: str,
        target_layer: str | Sequence[str],
        batch_size: int = 16,
        progress: bool = True,
        device: torch.device | str | None = None,
        shifts_px: Sequence[int] = (0,),
        bf16: bool = False,
    ) -> None:
        self.method_class = resolve_cam_method(method)
        self.method = method
        self.layer_names, layers = resolve_target_layers(vision_encoder, target_layer)
        self.layer_name = layer_label(self.layer_names)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.progress = progress
        self.bf16 = bool(bf16)
        self.model = ImageEmbeddingModel(vision_encoder).eval()
        self.device = torch.device(device) if device is not None else next(vision_encoder.parameters()).device
        self.model.to(self.device)
        self._taps = [_Tap() for _ in layers]
        self._active = False  # only this explainer's own calls go through its taps
        self._hooks = [
            layer.register_forward_hook(self._pass_through(tap, name))
            for layer, tap, name in zip(layers, self._taps, self.layer_names)
        ]
        self.reshape = ActivationReshape()
        # several layers: pytorch-grad-cam scales each layer's map to [0, 1] and averages them
        extra = {"layer_names": self.layer_names} if issubclass(self.method_class, TokenSimilarityCAM) else {}
        self.cam = self.method_class(
            model=self.model, target_layers=self._taps, reshape_transform=self.reshape, **extra
        )
        self.cam.batch_size = self.batch_size  # ScoreCAM's batch of masked copies
        self.shifts = shift_grid(shifts_px)
        self.aug_smooth = self.shifts != [(0, 0)]
        if self.aug_smooth:
            self.cam.tta_transforms = ttach.Compose([Shift(self.shifts)])

    def _pass_through(self, tap: _Tap, name: str) -> Callable:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if not self._active:
                return
            tensor = _first_tensor(output)
            if tensor is None:
                raise TypeError(f"target layer {name!r} returns {type(output).__name__}, not a tensor")
            tap(tensor)  # returns the same tensor: the tap's hooks see what flows on

        return hook

    @contextmanager
    def _frozen(self) -> Iterator[None]:
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)

    def explain_batch(self, pixel_values: torch.Tensor, targets: Sequence[Callable]) -> np.ndarray:
        """Heatmaps (B, H, W) in [0, 1] at the input's size for one batch."""
        if len(targets) != pixel_values.shape[0]:
            raise ValueError(f"{pixel_values.shape[0]} images but {len(targets)} targets: one target per image")
        batch = pixel_values.detach().to(self.device, dtype=torch.float32)
        if self.cam.uses_gradients:
            batch.requires_grad_(True)
        self.reshape.input_hw = tuple(batch.shape[-2:])
        self._active = True
        try:
            with self._frozen(), autocast_context(self.device, self.bf16):
                maps = self.cam(input_tensor=batch, targets=list(targets), aug_smooth=self.aug_smooth)
        finally:
            self._active = False
            self.cam.activations_and_grads.clear()
        return np.asarray(maps, dtype=np.float32)

    def __call__(
        self,
        pixel_values: torch.Tensor | Sequence[torch.Tensor],
        targets: Sequence[Callable],
        description: str = "heatmaps",
    ) -> np.ndarray:
        """Heatmaps (N, H, W) for N images (a tensor (N, C, H, W) or N tensors (C, H, W))."""
        count = len(pixel_values)
        if count != len(targets):
            raise ValueError(f"{count} images but {len(targets)} targets: one target per image")
        if count == 0:
            return np.zeros((0, 0, 0), dtype=np.float32)
        maps = []
        starts = range(0, count, self.batch_size)
        for start in progress_bar(starts, desc=description, unit="batch", disable=not self.progress):
            stop = min(start + self.batch_size, count)
            chunk = pixel_values[start:stop]
            batch = chunk if torch.is_tensor(chunk) else torch.stack(list(chunk))
            maps.append(self.explain_batch(batch, targets[start:stop]))
        return np.concatenate(maps, axis=0)

    def close(self) -> None:
        """Remove every hook this explainer put on the encoder."""
        for hook in self._hooks:
            hook.remove()
        self.cam.activations_and_grads.release()

    def __enter__(self) -> CamExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
