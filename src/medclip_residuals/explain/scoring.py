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
- grounding: which of an image's regions hold a map's maximum (`peak_findings`), and from
  that, per caption, `caption_specificity` (on images with two kinds of finding or more: of
  the maps whose maximum lies in one of the image's regions, the share in the region of the
  finding the caption names; a map that ignores the caption scores about 0.5) and
  `distractor_rates` (maps of captions naming a finding the image does not have: the share
  whose maximum still lies in a present finding's region, beside the true captions' hit rate).
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


def peak_position(heatmap: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the maximum (the first, row-major, on ties); None for a constant map."""
    if is_constant(heatmap):
        return None
    row, col = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    return int(row), int(col)


def pointing_hit(heatmap: np.ndarray, truth: np.ndarray, tolerance_px: float = 0.0) -> bool:
    """Pointing game on one image: does the maximum of `heatmap` fall in `truth` (both (H, W))?

    With ties the first maximum (row-major) counts. `tolerance_px` grows the region by
    that many pixels (Euclidean) before the test.
    """
    if heatmap.shape != truth.shape:
        raise ValueError(f"heatmap {heatmap.shape} and region {truth.shape} differ in shape")
    peak = peak_position(heatmap)
    if peak is None or not truth.any():
        return False
    if truth[peak]:
        return True
    if tolerance_px <= 0:
        return False
    distance = ndimage.distance_transform_edt(~truth.astype(bool))
    return bool(distance[peak] <= tolerance_px)


class PeakRegions:
    """Which of one image's regions hold a map's maximum (within `tolerance_px`), by the same
    rule as `pointing_hit`; each region's distance map is computed once per image."""

    def __init__(self, regions: dict[str, np.ndarray], tolerance_px: float = 0.0) -> None:
        self.regions, self.tolerance_px = regions, float(tolerance_px)
        self._distances: dict[str, np.ndarray] = {}

    def __call__(self, heatmap: np.ndarray) -> list[str]:
        """The findings (sorted) whose region holds the maximum of `heatmap`; [] for none."""
        peak = peak_position(heatmap)
        if peak is None:
            return []
        inside = []
        for finding, region in self.regions.items():
            if region.shape != heatmap.shape:
                raise ValueError(f"heatmap {heatmap.shape} and region {region.shape} differ in shape")
            if region[peak]:
                inside.append(finding)
            elif self.tolerance_px > 0 and region.any():
                if finding not in self._distances:
                    self._distances[finding] = ndimage.distance_transform_edt(~region.astype(bool))
                if self._distances[finding][peak] <= self.tolerance_px:
                    inside.append(finding)
        return sorted(inside)


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


# ------------------------------------------------------------------ grounding


def _rate_ci(values: Sequence[float], n_resamples: int, seed: int, confidence: float) -> dict[str, float | int]:
    """Estimate, low, high and n of a share; NaN with n = 0 when there is nothing."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"estimate": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    ci = bootstrap_ci(values, "mean", n_resamples=n_resamples, seed=seed, confidence=confidence)
    return {"estimate": float(ci["estimate"]), "low": float(ci["low"]), "high": float(ci["high"]), "n": len(values)}


def caption_specificity(
    maps: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Caption specificity per group, overall (finding "all") and per named finding.

    `maps` has one row per caption heatmap with columns group, named (the findings the
    caption names), localized (the image's localized findings) and peak (those whose region
    holds the map's maximum). Eligible: images with two localized kinds or more, captions
    naming exactly one finding, present on the image. Counted: eligible maps whose maximum
    lies in one of the image's regions. Specificity: the share of counted maps whose maximum
    lies in the named finding's region (a map that lies in both counts as following the
    caption). Chance is about 0.5 on an image with two findings.

    Columns: group, finding, specificity (+ _low, _high), n (counted maps), n_eligible,
    n_images (counted maps' images).
    """
    records = []
    for row in maps.itertuples(index=False):
        named, localized, peak = list(row.named), set(row.localized), set(row.peak)
        if len(localized) < 2 or len(named) != 1 or named[0] not in localized:
            continue
        follows = named[0] in peak
        counted = follows or bool(peak & (localized - {named[0]}))
        records.append({"group": row.group, "finding": named[0], "image_id": row.image_id,
                        "counted": counted, "follows": follows})
    columns = ["group", "finding", "specificity", "specificity_low", "specificity_high", "n", "n_eligible", "n_images"]
    if not records:
        return pd.DataFrame(columns=columns)
    eligible = pd.DataFrame(records)
    rows = []
    for group, frame in eligible.groupby("group", sort=True):
        for finding, part in [("all", frame), *sorted(frame.groupby("finding"), key=lambda item: item[0])]:
            counted = part[part["counted"]]
            ci = _rate_ci(counted["follows"].astype(float), n_resamples, seed, confidence)
            rows.append({"group": group, "finding": finding, "specificity": ci["estimate"],
                         "specificity_low": ci["low"], "specificity_high": ci["high"], "n": ci["n"],
                         "n_eligible": len(part), "n_images": int(counted["image_id"].nunique())})
    return pd.DataFrame(rows, columns=columns)


def distractor_rates(
    maps: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Distractor hit rate beside the true-caption hit rate, per group: overall and per
    present finding.

    `maps` as for `caption_specificity`, plus `absent` (the caption names findings and the
    image has none of them, localized or labelled). Only images with a localized finding count.

    - overall ("all"): distractor maps whose maximum lies in any present finding's region,
      beside the true captions' hit rate (one value per (map, named present finding));
    - per present finding F: distractor maps on images with F whose maximum lies in F's
      region, beside the maps of captions naming F on images with F whose maximum lies there.

    Columns: group, finding, distractor_hit_rate (+ _low, _high), n_distractor,
    true_hit_rate (+ _low, _high), n_true, ratio (distractor / true).
    """
    distractor: list[dict] = []
    true: list[dict] = []
    for row in maps.itertuples(index=False):
        localized, peak = set(row.localized), set(row.peak)
        if not localized:
            continue
        if row.absent:
            distractor.append({"group": row.group, "finding": "all", "hit": bool(peak & localized)})
            distractor.extend({"group": row.group, "finding": f, "hit": f in peak} for f in localized)
        for finding in set(row.named) & localized:
            true.append({"group": row.group, "finding": "all", "hit": finding in peak})
            true.append({"group": row.group, "finding": finding, "hit": finding in peak})
    columns = ["group", "finding", "distractor_hit_rate", "distractor_hit_rate_low", "distractor_hit_rate_high",
               "n_distractor", "true_hit_rate", "true_hit_rate_low", "true_hit_rate_high", "n_true", "ratio"]
    if not distractor:
        return pd.DataFrame(columns=columns)
    distractor_frame = pd.DataFrame(distractor)
    true_frame = pd.DataFrame(true, columns=["group", "finding", "hit"])
    rows = []
    for (group, finding), part in distractor_frame.groupby(["group", "finding"], sort=True):
        match = true_frame[(true_frame["group"] == group) & (true_frame["finding"] == finding)]
        d = _rate_ci(part["hit"].astype(float), n_resamples, seed, confidence)
        t = _rate_ci(match["hit"].astype(float), n_resamples, seed, confidence)
        ratio = d["estimate"] / t["estimate"] if t["n"] and t["estimate"] > 0 else math.nan
        rows.append({"group": group, "finding": finding,
                     "distractor_hit_rate": d["estimate"], "distractor_hit_rate_low": d["low"],
                     "distractor_hit_rate_high": d["high"], "n_distractor": d["n"],
                     "true_hit_rate": t["estimate"], "true_hit_rate_low": t["low"],
                     "true_hit_rate_high": t["high"], "n_true": t["n"], "ratio": ratio})
    frame = pd.DataFrame(rows, columns=columns)
    # "all" first within each group
    frame["_order"] = frame["finding"] != "all"
    return frame.sort_values(["group", "_order", "finding"]).drop(columns="_order").reset_index(drop=True)
