"""MedCLIP's image preprocessing, and its inverse geometry for heatmaps and masks.

The recipe of `medclip.dataset.MedCLIPFeatureExtractor` (medclip 0.0.3), re-implemented
because that class no longer runs on current transformers:

1. grey image;
2. padded with black to a square of side max(size, H, W), the image centred with offsets
   int((side - W) / 2), int((side - H) / 2) (an image smaller than `size` is padded, not
   enlarged);
3. resized to size x size with bicubic resampling (its center crop to 224 is then a no-op);
4. scaled to [0, 1], normalised with MedCLIP's mean and std, repeated to 3 channels.

MedCLIP does steps 2-3 on 8-bit images; here they run on float32 (16-bit and DICOM keep
their precision) and the result is clipped to [0, 1] as an 8-bit image would be.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medclip_residuals.data.images import read_image

MEDCLIP_MEAN = 0.5862785803043838
MEDCLIP_STD = 0.27950088968644304
DEFAULT_SIZE = 224


@dataclass(frozen=True)
class PadResizeGeometry:
    """Where an (H, W) image lies in the size x size model input."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        """Side of the padded square, before the resize."""
        return max(self.size, self.height, self.width)

    @property
    def top(self) -> int:
        return (self.side - self.height) // 2

    @property
    def left(self) -> int:
        return (self.side - self.width) // 2

    @property
    def scale(self) -> float:
        """Model pixels per original pixel."""
        return self.size / self.side

    def image_box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the original image, in model pixel coordinates."""
        s = self.scale
        return (self.left * s, self.top * s, (self.left + self.width) * s, (self.top + self.height) * s)


def _check_size(size: int) -> int:
    if int(size) != size or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    return int(size)


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (H, W), got shape {array.shape}")
    return array


def _pad_to_square(grey: np.ndarray, geometry: PadResizeGeometry) -> np.ndarray:
    canvas = np.zeros((geometry.side, geometry.side), dtype=np.float32)
    canvas[geometry.top:geometry.top + geometry.height, geometry.left:geometry.left + geometry.width] = grey
    return canvas


def _resize(array: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    if array.shape == (size, size):
        return array.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    return np.asarray(image.resize((size, size), resample=resample), dtype=np.float32)


def pad_and_resize(grey: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Grey (H, W) in [0, 1] -> (size, size) float32 in [0, 1]: MedCLIP's pad and bicubic resize."""
    size = _check_size(size)
    grey = _as_2d(grey, "image").astype(np.float32, copy=False)
    geometry = PadResizeGeometry(grey.shape[0], grey.shape[1], size)
    resized = _resize(_pad_to_square(grey, geometry), size, Image.Resampling.BICUBIC)
    return np.clip(resized, 0.0, 1.0)  # bicubic overshoot, clipped as in 8-bit


def preprocess_array(grey: np.ndarray, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Grey (H, W) in [0, 1] -> MedCLIP pixel values, a float32 tensor (3, size, size)."""
    square = pad_and_resize(grey, size)
    normalised = (square - np.float32(MEDCLIP_MEAN)) / np.float32(MEDCLIP_STD)
    return torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32)).unsqueeze(0).repeat(3, 1, 1)


def preprocess_image(path: str | os.PathLike, size: int = DEFAULT_SIZE) -> torch.Tensor:
    """Decode an image file and preprocess it as MedCLIP does: a float32 tensor (3, size, size)."""
    return preprocess_array(read_image(path), size)


class XrayImageDataset(Dataset):
    """Preprocessed images from a list of paths; item i is (i, tensor (3, size, size)).

    Picklable, so that a DataLoader can decode with worker processes.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], size: int = DEFAULT_SIZE) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.size = _check_size(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, preprocess_image(self.paths[index], self.size)


def heatmap_to_original(heatmap: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Map a (size, size) heatmap on the model input back onto the original (H, W) image.

    Undoes the resize and the padding: the padded border is cut away and the image's part
    of the heatmap is resampled (bilinear) to H x W. Returns float32 (H, W).
    """
    heatmap = _as_2d(heatmap, "heatmap")
    if heatmap.shape[0] != heatmap.shape[1]:
        raise ValueError(f"heatmap must be square (size, size), got shape {heatmap.shape}")
    height, width = (int(v) for v in original_hw)
    if height < 1 or width < 1:
        raise ValueError(f"original_hw must be positive (H, W), got {original_hw!r}")
    geometry = PadResizeGeometry(height, width, heatmap.shape[0])
    image = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))
    resized = image.resize((width, height), resample=Image.Resampling.BILINEAR, box=geometry.image_box())
    return np.asarray(resized, dtype=np.float32)


def original_to_model_coords(mask: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Map an (H, W) mask of the original image onto the (size, size) model input.

    Pads and resizes as the preprocessing does; each model pixel gets the fraction of its
    area that the mask covers (box filter), a float32 in [0, 1] for a binary mask.
    """
    size = _check_size(size)
    mask = _as_2d(mask, "mask").astype(np.float32)
    geometry = PadResizeGeometry(mask.shape[0], mask.shape[1], size)
    return _resize(_pad_to_square(mask, geometry), size, Image.Resampling.BOX)
