"""Scoring heatmaps against ground-truth regions: pointing game and Otsu mIoU.

Every score is computed on the ORIGINAL image: a heatmap on the (size x size) model input
is mapped back with `data.preprocess.heatmap_to_original` (the one home of that mapping),
which undoes the resize and the square padding, so that the padded border never counts.

- hit (pointing game): the heatmap's maximum lies inside the finding's region, or within
  `tolerance_px` pixels of it. A constant heatmap points nowhere and is a miss.
- IoU: the heatmap thresholded with Otsu's method on its 8-bit rescaling (as CheXlocalize
  does) against the region. A constant map gives an empty prediction.
  mIoU is reported twice: over all heatmaps (an empty prediction scores 0), and over the
  heatmaps whose prediction and truth are both non-empty.
- floor: the same scores for a centred Gaussian heatmap, to show whether the heat means
  more than "findings tend to be in the middle".
- per-finding summaries with 95% bootstrap intervals (`medclip_residuals.stats.bootstrap_ci`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from medclip_residuals.data.images import read_mask
from medclip_residuals.stats import bootstrap_ci


class LocalizationError(ValueError):
    """A localization row cannot give a region (empty mask, wrong size, empty box)."""


def centred_gaussian_heatmap(size: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """A (size, size) Gaussian bump at the centre, sigma = sigma_fraction * size: the floor."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    squared = coords[:, None] ** 2 + coords[None, :] ** 2
    return np.exp(-squared / (2 * sigma_fraction**2)).astype(np.float32)


def is_constant(heatmap: np.ndarray) -> bool:
    """True when a map has no maximum to point at (all values equal, or not finite)."""
    finite = np.isfinite(heatmap)
    return not finite.any() or float(np.nanmax(heatmap) - np.nanmin(heatmap)) <= 1e-12


def pointing_hit(heatmap: np.ndarray, truth: np.ndarray, tolerance_px: float = 0.0) -> bool:
    """Pointing game on one image: does the maximum of `heatmap` fall in `truth` (both (H, W))?

    With ties the first maximum (row-major) counts. `tolerance_px` grows the region by
    that many pixels (Euclidean) before the test.
    """
    if heatmap.shape != truth.shape:
        raise ValueError(f"heatmap {heatmap.shape} and region {truth.shape} differ in shape")
    if is_constant(heatmap) or not truth.any():
        return False
    row, col = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    if truth[row, col]:
        return True
    if tolerance_px <= 0:
        return False
    distance = ndimage.distance_transform_edt(~truth.astype(bool))
    return bool(distance[row, col] <= tolerance_px)


def otsu_mask(heatmap: np.ndarray) -> np.ndarray:
    """Binary prediction: the map rescaled to 0..255 and thresholded with Otsu (CheXlocalize)."""
    if is_constant(heatmap):
        return np.zeros(heatmap.shape, dtype=bool)
    low, high = float(np.nanmin(heatmap)), float(np.nanmax(heatmap))
    scaled = np.nan_to_num((heatmap - low) / (high - low) * 255.0, nan=0.0)
    _, binary = cv2.threshold(scaled.astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return binary > 0


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; NaN when both are empty."""
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return math.nan
    return float(np.logical_and(prediction, truth).sum() / union)


def score_heatmap(
    heatmap_original: np.ndarray, truth: np.ndarray, tolerance_px: float = 0.0
) -> dict[str, float | bool]:
    """hit, iou (empty prediction -> 0), pred_empty, truth_empty for one map and one region."""
    prediction = otsu_mask(heatmap_original)
    pred_empty, truth_empty = not prediction.any(), not truth.any()
    overlap = iou(prediction, truth)
    return {
        "hit": pointing_hit(heatmap_original, truth, tolerance_px),
        "iou": 0.0 if math.isnan(overlap) else overlap,
        "pred_empty": pred_empty,
        "truth_empty": truth_empty,
    }


# ------------------------------------------------------------------ ground-truth regions


def _is_set(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def localization_region(row: pd.Series | dict, original_hw: Sequence[int]) -> np.ndarray:
    """The (H, W) boolean region of one localization row: its mask file, or its box.

    Raises LocalizationError naming the file (or the image and box) when the mask is empty,
    has another size than the image, or the box covers no pixel.
    """
    height, width = int(original_hw[0]), int(original_hw[1])
    mask_path = row.get("mask_path", "")
    if _is_set(mask_path):
        path = os.fspath(mask_path)
        mask = read_mask(path)
        if mask.shape != (height, width):
            raise LocalizationError(
                f"{path}: mask of {row.get('finding')!r} for image {row.get('image_id')!r} is "
                f"{mask.shape[0]}x{mask.shape[1]}, but the image is {height}x{width}"
            )
        if not mask.any():
            raise LocalizationError(
                f"{path}: mask of {row.get('finding')!r} for image {row.get('image_id')!r} is empty (no non-zero pixel)"
            )
        return mask
    box = [row.get(key) for key in ("x", "y", "w", "h")]
    if not all(_is_set(v) for v in box):
        raise LocalizationError(
            f"localization of {row.get('finding')!r} for image {row.get('image_id')!r} has neither a mask_path "
            f"nor a complete box (x, y, w, h = {box})"
        )
    x, y, w, h = (float(v) for v in box)
    left, top = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    right, bottom = min(width, int(math.ceil(x + w))), min(height, int(math.ceil(y + h)))
    if right <= left or bottom <= top:
        raise LocalizationError(
            f"box (x={x}, y={y}, w={w}, h={h}) of {row.get('finding')!r} for image {row.get('image_id')!r} "
            f"covers no pixel of the {height}x{width} image"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def localizations_by_image(localizations: pd.DataFrame) -> Callable[[str], pd.DataFrame]:
    """image_id -> that image's localization rows, grouped once (scoring walks every image:
    filtering the whole table per image would cost images x localizations)."""
    groups = {str(key): rows for key, rows in localizations.groupby(localizations["image_id"].astype(str), sort=False)}
    empty = localizations.iloc[:0]
    return lambda image_id: groups.get(str(image_id), empty)


def finding_regions(
    localizations: pd.DataFrame, image_id: str, original_hw: Sequence[int]
) -> dict[str, np.ndarray]:
    """Finding -> the union of that finding's regions on one image."""
    regions: dict[str, np.ndarray] = {}
    rows = localizations[localizations["image_id"].astype(str) == str(image_id)]
    for _, row in rows.iterrows():
        region = localization_region(row, original_hw)
        finding = str(row["finding"])
        regions[finding] = regions[finding] | region if finding in regions else region
    return regions


# ------------------------------------------------------------------ summaries


def summarise_scores(
    scores: pd.DataFrame,
    group_columns: Sequence[str] = ("target_group", "finding"),
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Hit rate and mIoU (all, non-empty) per group with bootstrap CIs, beside the floor.

    `scores` has one row per scored heatmap with columns hit, iou, pred_empty, truth_empty,
    floor_hit, floor_iou, floor_pred_empty. Rows are resampled per group (images are the
    unit: one row per image within a group).
    """
    rows = []
    for group_keys, group in scores.groupby(list(group_columns), sort=True, dropna=False):
        keys = group_keys if isinstance(group_keys, tuple) else (group_keys,)
        record: dict[str, object] = dict(zip(group_columns, keys))
        record["n"] = len(group)
        for prefix, hit_col, iou_col, empty_col in (
            ("", "hit", "iou", "pred_empty"),
            ("floor_", "floor_hit", "floor_iou", "floor_pred_empty"),
        ):
            nonempty = ~(group[empty_col].astype(bool) | group["truth_empty"].astype(bool))
            for name, values in (
                ("hit_rate", group[hit_col].astype(float).to_numpy()),
                ("miou", group[iou_col].astype(float).to_numpy()),
                ("miou_nonempty", group.loc[nonempty, iou_col].astype(float).to_numpy()),
            ):
                column = f"{prefix}{name}"
                if len(values) == 0:
                    record.update({column: math.nan, f"{column}_low": math.nan, f"{column}_high": math.nan})
                    continue
                ci = bootstrap_ci(values, "mean", n_resamples=n_resamples, seed=seed, confidence=confidence)
                record.update({column: ci["estimate"], f"{column}_low": ci["low"], f"{column}_high": ci["high"]})
            record[f"{prefix}n_nonempty"] = int(nonempty.sum())
        rows.append(record)
    return pd.DataFrame(rows)
