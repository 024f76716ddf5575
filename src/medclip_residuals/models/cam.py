"""Class activation maps on the MedCLIP vision encoder, through pytorch-grad-cam.

- `resolve_cam_method(name)`: a CAM method by name -> its pytorch-grad-cam class.
- `resolve_target_layer(vision_encoder, name)`: a dotted module path of the vision
  encoder ("model.encoder.layers.0.blocks.1", "model.layernorm", "model.layer4" for the
  ResNet profile; negative list indices allowed: "model.encoder.layers.-1.blocks.-1").
  `resolve_target_layers` takes several ("a + b" or a list): their maps are averaged.
- `swin_reshape_transform(tokens, input_hw)`: Swin's (B, L, C) tokens -> (B, C, H, W),
  with (H, W) the stage's real grid, derived from L and the input size.
- `CamExplainer`: many images per call, one target per image, a progress bar; optional
  shift smoothing (maps of shifted copies of the image, shifted back and averaged, through
  pytorch-grad-cam's `aug_smooth`).

Which tensor a layer name stands for: the module's output, or the first tensor of it when
the module returns a tuple (HF Swin blocks and stages do). That is the tensor the rest of
the network reads, so gradients reach it. For a Swin *stage* with patch merging
("model.encoder.layers.0") it is therefore the merged tokens, on the next stage's grid;
name the stage's last block ("model.encoder.layers.0.blocks.-1") for the stage's own grid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
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
from tqdm.auto import tqdm

from medclip_residuals.models.heatmap import ImageEmbeddingModel

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
}
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}


def resolve_cam_method(name: str) -> type[BaseCAM]:
    """The pytorch-grad-cam class for a method name (case, '-', '_' and spaces ignored)."""
    key = re.sub(r"[\s_\-]", "", str(name).lower())
    key = _ALIASES.get(key, key)
    if key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(CAM_METHODS)}")
    return CAM_METHODS[key]


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
        child = None
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            if -len(module) <= index < len(module):
                index %= len(module)
                child, part = module[index], str(index)
        elif part in dict(module.named_children()):
            child = getattr(module, part)
        if child is None:
            valid = candidate_layer_names(vision_encoder)
            raise ValueError(
                f"target layer {name!r} does not exist in {type(vision_encoder).__name__} "
                f"(no {'.'.join(canonical + [part])!r}). Valid layer names: {', '.join(valid)}"
            )
        canonical.append(part)
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

    The transform only sees the tensor; `input_hw` is set before each batch.
    """

    def __init__(self, input_hw: Sequence[int] | None = None) -> None:
        self.input_hw = tuple(input_hw) if input_hw is not None else None

    def __call__(self, activation: torch.Tensor) -> torch.Tensor:
        if activation.ndim == 4:
            return activation
        if self.input_hw is None:
            raise RuntimeError("ActivationReshape.input_hw is not set")
        return swin_reshape_transform(activation, self.input_hw)


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


def shift_image(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (B, C, H, W) moved by (dy, dx) pixels (down, right), the edges replicated."""
    if dy == 0 and dx == 0:
        return images
    height, width = images.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"a shift of ({dy}, {dx}) px does not fit an image of {height}x{width}")
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + height, left : left + width]


class Shift(ttach.base.DualTransform):
    """Test-time translation for pytorch-grad-cam's `aug_smooth`: the image is shifted by
    each (dy, dx), its map shifted back, and the maps averaged. ttach (grad-cam's own
    test-time-augmentation library) has flips, scales and intensities but no translation.

    Why: a Swin stage's map is quantised to its token grid (4 input px at stage 0) and its
    windows, so the maximum of one map jumps between neighbouring tokens on a finding's
    edge; averaging over small shifts keeps the heat that follows the finding.
    """

    identity_param = (0, 0)

    def __init__(self, shifts: Sequence[tuple[int, int]]) -> None:
        super().__init__("shift", [(int(dy), int(dx)) for dy, dx in shifts])

    def apply_aug_image(self, image: torch.Tensor, shift: tuple[int, int] = (0, 0), **kwargs: object) -> torch.Tensor:
        return shift_image(image, shift[0], shift[1])

    def apply_deaug_mask(self, mask: torch.Tensor, shift: tuple[int, int] = (0, 0), **kwargs: object) -> torch.Tensor:
        return shift_image(mask, -shift[0], -shift[1])

    def apply_deaug_label(self, label: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return label

    def apply_deaug_keypoints(self, keypoints: torch.Tensor, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError("Shift moves images and maps only")


def shift_grid(shifts_px: Sequence[int]) -> list[tuple[int, int]]:
    """Every (dy, dx) pair of the per-axis shifts, e.g. [-6, 0, 6] -> 9 pairs."""
    values = [int(v) for v in shifts_px]
    if not values:
        raise ValueError("shift smoothing needs at least one shift (use [0] for none)")
    if len(set(values)) != len(values):
        raise ValueError(f"shift smoothing lists a shift twice: {values}")
    return [(dy, dx) for dy in values for dx in values]


class CamExplainer:
    """Heatmaps for many images, one target per image, through one pytorch-grad-cam object.

    The explained model is `ImageEmbeddingModel(vision_encoder)` (the L2-normalised image
    embedding); targets are callables on one image's embedding (see models/heatmap.py).
    The method and the layer are checked when the explainer is made, before any heatmap.

    While explaining, the encoder's parameters are frozen and the input asks for a
    gradient instead: backward then computes only activation gradients (no weight
    gradients), which is all a CAM needs.
    """

    def __init__(
        self,
        vision_encoder: nn.Module,
        method: str = "gradcam",
        target_layer: str | Sequence[str] = "model.layernorm",
        batch_size: int = 16,
        progress: bool = True,
        device: torch.device | str | None = None,
        shifts_px: Sequence[int] = (0,),
    ) -> None:
        self.method_class = resolve_cam_method(method)
        self.method = method
        self.layer_names, layers = resolve_target_layers(vision_encoder, target_layer)
        self.layer_name = layer_label(self.layer_names)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.progress = progress
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
        self.cam = self.method_class(model=self.model, target_layers=self._taps, reshape_transform=self.reshape)
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
            with self._frozen():
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
        for start in tqdm(starts, desc=description, unit="batch", disable=not self.progress):
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
