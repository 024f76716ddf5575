"""Where does the heat lie? A heatmap's region as a short phrase, and whether it agrees
with the location a caption states.

Regions are simple geometric fractions of the ORIGINAL image (`RegionGeometry`, from
`params:explainability.regions`), not segmentations:

- the lung field is the box `lungs` = [left, top, right, bottom] (fractions of width and
  height); its upper / middle / lower zones are cut at the heights `zone_boundaries`;
- radiological orientation: the image's LEFT half shows the patient's RIGHT lung, and
  the image's right half the patient's left lung (DATA_CONTRACT.md, "Orientation");
- the heart is the box `heart` (the heart and its borders: "near the heart"), a little
  right of the image's midline (the patient's left), in the lower half; it takes
  precedence over the lung zones it overlaps;
- everything else is "outside the lungs".

The region that holds most of the heat is the one with the largest share of the heat
above the map's Otsu threshold (the same binarisation that mIoU uses), so a faint
background spread over a large zone does not outvote a hot spot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medclip_residuals.explain.scoring import is_constant, otsu_mask
from medclip_residuals.utils.params import ParameterError, Parameters

SIDES = ("right", "left")  # patient's side
ZONES = ("upper", "middle", "lower")
OUTSIDE = "outside the lungs"


@dataclass(frozen=True)
class Region:
    """A heatmap's dominant region: side ("left"/"right"/""), zone ("upper"/.../"heart"/"")."""

    side: str
    zone: str
    share: float

    @property
    def phrase(self) -> str:
        if self.zone == "heart":
            return "heart"
        if not self.side:
            return OUTSIDE if self.zone == "" else self.zone
        return f"{self.side} {self.zone} lung"


def _box(spec: Sequence[float], name: str) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in spec)
    if len(values) != 4 or not (0 <= values[0] < values[2] <= 1 and 0 <= values[1] < values[3] <= 1):
        raise ValueError(f"region {name!r} must be [left, top, right, bottom] fractions in [0, 1], got {list(spec)}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class RegionGeometry(Parameters):
    """The regions of the interpretation, as fractions of the original image.

    Set from the demo phantoms' masks; a PA film's anatomy is close to them.

    Args:
        lungs: the lung field box [left, top, right, bottom] (fractions of width and height).
        heart: the box of the heart and its borders, the same way.
        zone_boundaries: the heights where the upper zone ends and the lower zone begins.

    Example:
        >>> RegionGeometry.parse({"lungs": [0.1, 0.1, 0.9, 0.8], "heart": [0.3, 0.5, 0.7, 0.7],
        ...                       "zone_boundaries": [0.35, 0.5]}, "regions").heart
        (0.3, 0.5, 0.7, 0.7)
    """

    lungs: tuple[float, ...]
    heart: tuple[float, ...]
    zone_boundaries: tuple[float, ...]

    def check(self, where: str) -> None:
        try:
            _, top, _, bottom = _box(self.lungs, "lungs")
            _box(self.heart, "heart")
        except ValueError as error:
            raise ParameterError(f"{where}: {error}") from None
        if len(self.zone_boundaries) != 2 or not top < self.zone_boundaries[0] <= self.zone_boundaries[1] < bottom:
            raise ParameterError(
                f"{where}: region 'zone_boundaries' {list(self.zone_boundaries)} must be two heights inside the "
                f"lung box heights ({top}, {bottom}), upper end first"
            )


def region_labels(hw: Sequence[int], regions: RegionGeometry) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """An (H, W) integer map of region indices and the (side, zone) of each index.

    Index 0 is outside the lungs; then the six lung zones (patient's right upper ... left
    lower); the last index is the heart.
    """
    height, width = int(hw[0]), int(hw[1])
    lx0, ly0, lx1, ly1 = regions.lungs
    hx0, hy0, hx1, hy1 = regions.heart
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    names: list[tuple[str, str]] = [("", "")]
    labels = np.zeros((height, width), dtype=np.int8)
    in_lungs = (xx >= lx0) & (xx < lx1) & (yy >= ly0) & (yy < ly1)
    midline = (lx0 + lx1) / 2
    upper_end, lower_start = regions.zone_boundaries
    cuts = [ly0, upper_end, lower_start, ly1]
    for side in SIDES:
        # the patient's right lung is on the image's left
        on_side = xx < midline if side == "right" else xx >= midline
        for k, zone in enumerate(ZONES):
            in_zone = (yy >= cuts[k]) & (yy < cuts[k + 1])
            names.append((side, zone))
            labels[in_lungs & on_side & in_zone] = len(names) - 1
    names.append(("", "heart"))
    labels[(xx >= hx0) & (xx < hx1) & (yy >= hy0) & (yy < hy1)] = len(names) - 1
    return labels, names


def dominant_region(heatmap_original: np.ndarray, regions: RegionGeometry) -> Region:
    """The region holding the largest share of the heat above the map's Otsu threshold."""
    labels, names = region_labels(heatmap_original.shape, regions)
    if is_constant(heatmap_original):
        return Region(side="", zone="", share=math.nan)
    hot = otsu_mask(heatmap_original)
    heat = np.where(hot, np.nan_to_num(heatmap_original - np.nanmin(heatmap_original)), 0.0)
    mass = np.bincount(labels.ravel(), weights=heat.ravel(), minlength=len(names))
    total = mass.sum()
    best = int(np.argmax(mass))
    side, zone = names[best]
    return Region(side=side, zone=zone, share=float(mass[best] / total) if total > 0 else math.nan)


# ------------------------------------------------------------------ captions

_SIDE_WORDS = {"left": r"\bleft\b", "right": r"\bright\b", "bilateral": r"\b(bilateral|both)\b"}
_ZONE_WORDS = {
    "upper": r"\b(upper|apical|apex|apices)\b",
    "middle": r"\b(middle|mid)\b",
    "lower": r"\b(lower|base|bases|basal|basilar|basally)\b",
    "heart": r"\b(heart|cardiac|retrocardiac|pericardial)\b",
}


@dataclass(frozen=True)
class StatedLocation:
    """What a caption says about where: side "left"/"right"/"bilateral"/"" and zone."""

    side: str
    zone: str

    @property
    def stated(self) -> bool:
        return bool(self.side or self.zone)


def parse_location(caption: str) -> StatedLocation:
    """Side and zone that a caption states, in the patient's frame ("" when not stated).

    "there is some pneumonia near the heart" -> zone "heart"; "effusion on the lower
    lung" -> zone "lower"; "left upper lobe opacity" -> side "left", zone "upper".
    Two sides, or "bilateral"/"both", give side "bilateral".
    """
    text = str(caption or "").lower()
    sides = [name for name, pattern in _SIDE_WORDS.items() if re.search(pattern, text)]
    side = "bilateral" if "bilateral" in sides or {"left", "right"} <= set(sides) else (sides[0] if sides else "")
    zones = [name for name, pattern in _ZONE_WORDS.items() if re.search(pattern, text)]
    zone = "heart" if "heart" in zones else (zones[0] if len(zones) == 1 else "")
    return StatedLocation(side=side, zone=zone)


def location_agrees(region: Region, stated: StatedLocation) -> float:
    """1.0 when the region agrees with every part of the stated location, 0.0 when it
    contradicts one, NaN when nothing is stated (or the map points nowhere)."""
    if not stated.stated:
        return math.nan
    if math.isnan(region.share):
        return 0.0
    if stated.zone == "heart":
        return float(region.zone == "heart")
    side_ok = stated.side in ("", "bilateral") or region.side == stated.side
    zone_ok = stated.zone in ("", region.zone)
    return float(side_ok and zone_ok)
