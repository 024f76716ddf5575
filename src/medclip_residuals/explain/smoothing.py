"""Shift smoothing: maps of shifted copies of an image, shifted back and averaged.

pytorch-grad-cam's `aug_smooth` runs a CAM on test-time-augmented copies of the image (a
ttach transform) and averages the de-augmented maps; ttach has flips, scales and
intensities but no translation, so `Shift` is that transform.

Example:
    >>> shift_grid([-6, 0, 6])[:2]
    [(-6, -6), (-6, 0)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import ttach


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
