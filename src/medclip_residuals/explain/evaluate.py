"""Every heatmap of a plan scored against the ground truth and interpreted; the metrics.

`score_plan` walks the plan and its maps together, one chunk of maps in memory at a time,
and gives one row per (heatmap, scored finding): the pointing game and Otsu IoU
(explain/scoring.py) beside the centred-Gaussian floor, the image's regions that hold the
map's maximum (`peak_findings`), and the interpretation (explain/interpretation.py).
`summarise_metrics` turns that table into the metrics JSON, with bootstrap intervals per
group and per (group, finding), and the grounding metrics: `caption_specificity` and
`distractor_hit_rate` (explain/scoring.py), from the caption maps (`grounding_maps`).

Example:
    >>> scores = score_plan(source, plan, manifest, localizations, scoring=scoring,  # doctest: +SKIP
    ...                     regions=regions, chunk_size=256)
    >>> metrics = summarise_metrics(scores, plan, manifest, localizations, source.metadata, scoring, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medclip_residuals.data.preprocess import heatmap_to_original
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapStore
from medclip_residuals.explain.interpretation import (
    RegionGeometry,
    StatedLocation,
    dominant_region,
    location_agrees,
    parse_location,
)
from medclip_residuals.explain.plan import cell_list, labelled_findings, localized_findings
from medclip_residuals.explain.scoring import (
    PeakRegions,
    caption_specificity,
    centred_gaussian_heatmap,
    distractor_rates,
    finding_regions,
    localizations_by_image,
    score_heatmap,
    summarise_scores,
)
from medclip_residuals.utils.params import Parameters


@dataclass(frozen=True)
class ScoringSettings(Parameters):
    """How heatmaps are scored (`params:explainability.scoring`).

    Args:
        hit_tolerance_px: a maximum within this many original pixels of the region hits.
        floor_sigma_fraction: the floor's Gaussian sigma, as a fraction of the map's side.
        n_resamples: bootstrap resamples per confidence interval.
        confidence: the intervals' confidence level.
    """

    hit_tolerance_px: float
    floor_sigma_fraction: float
    n_resamples: int
    confidence: float


def truth_locations(localizations: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str]]:
    """(image_id, finding) -> the (side, zone) its localization row states ("" when not)."""
    truth: dict[tuple[str, str], tuple[str, str]] = {}
    for row in localizations.itertuples(index=False):
        side, zone = str(getattr(row, "side", "") or ""), str(getattr(row, "zone", "") or "")
        truth[(str(row.image_id), str(row.finding))] = ("" if side == "nan" else side, "" if zone == "nan" else zone)
    return truth


def _maps_in_order(source: HeatmapStore | ArrayHeatmaps, chunk_size: int) -> Iterator[np.ndarray]:
    """Every map of `source` in row order, one chunk in memory at a time."""
    for _, chunk in source.chunks(chunk_size):
        yield from chunk


def score_plan(
    source: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    *,
    scoring: ScoringSettings,
    regions: RegionGeometry,
    chunk_size: int,
) -> pd.DataFrame:
    """One row per (heatmap, scored finding); a heatmap with nothing to score gets one row
    with finding "" and NaN scores.

    Columns: hit, iou, pred_empty, truth_empty, the same for the centred-Gaussian floor,
    peak_findings (the image's localized findings whose region holds the map's maximum,
    sorted, joined by "|"; "" for none), the dominant region (phrase, side, zone, share), the location the caption states (for
    a head: the image's report) and whether the region agrees with it, and with the
    localization's own side/zone where known.

    Args:
        source: the plan's maps, in plan order (`explain.plan.heatmaps_of_plan`).
        heatmap_plan: the plan.
        image_manifest: image_id, height, width and report per image.
        image_localizations: the ground-truth regions (mask or box, side, zone).
        scoring: the tolerance and the floor.
        regions: the interpretation's regions.
        chunk_size: maps read at a time.
    """
    floor_map = centred_gaussian_heatmap(source.map_shape[-1], scoring.floor_sigma_fraction)
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    localizations = image_localizations.assign(image_id=image_localizations["image_id"].astype(str))
    truth_location = truth_locations(localizations)
    localizations_of = localizations_by_image(localizations)
    # rows as dicts are large: each chunk's become a frame (much smaller) as they fill
    frames: list[pd.DataFrame] = []
    records: list[dict[str, Any]] = []
    current_image, image_regions, floor_scores, original_hw, report = None, {}, {}, None, ""
    peak_regions = PeakRegions({})
    for row, heatmap in zip(heatmap_plan.itertuples(index=False), _maps_in_order(source, chunk_size)):
        if len(records) >= chunk_size:
            frames.append(pd.DataFrame(records))
            records = []
        if row.image_id != current_image:
            current_image = row.image_id
            info = manifest.loc[row.image_id]
            original_hw = (int(info["height"]), int(info["width"]))
            image_regions = finding_regions(localizations_of(row.image_id), row.image_id, original_hw)
            floor_original = heatmap_to_original(floor_map, original_hw)
            floor_scores = {
                f: score_heatmap(floor_original, mask, scoring.hit_tolerance_px) for f, mask in image_regions.items()
            }
            report = str(info.get("report", ""))
            peak_regions = PeakRegions(image_regions, scoring.hit_tolerance_px)
        original = heatmap_to_original(heatmap, original_hw)
        region = dominant_region(original, regions)
        stated = parse_location(row.text if row.kind == "caption" else report)
        base = {
            "row": row.row, "image_id": row.image_id, "target_id": row.target_id, "kind": row.kind,
            "group": row.group, "text": row.text, "head": row.head,
            "region": region.phrase, "region_side": region.side, "region_zone": region.zone,
            "region_share": region.share, "stated_side": stated.side, "stated_zone": stated.zone,
            "location_agrees": location_agrees(region, stated),
            "peak_findings": "|".join(peak_regions(original)),
        }
        findings = list(row.findings)
        if not findings:
            records.append({**base, "finding": ""})
            continue
        for finding in findings:
            score = score_heatmap(original, image_regions[finding], scoring.hit_tolerance_px)
            floor = floor_scores[finding]
            truth_side, truth_zone = truth_location.get((row.image_id, finding), ("", ""))
            records.append({
                **base, "finding": finding, **score,
                "floor_hit": floor["hit"], "floor_iou": floor["iou"], "floor_pred_empty": floor["pred_empty"],
                "truth_side": truth_side, "truth_zone": truth_zone,
                "region_matches_truth": location_agrees(region, StatedLocation(truth_side, truth_zone)),
            })
    if records or not frames:
        frames.append(pd.DataFrame(records))
    scores = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    for column in ("hit", "pred_empty", "truth_empty", "floor_hit", "floor_pred_empty"):
        if column not in scores:
            scores[column] = np.nan
        scores[column] = scores[column].astype(float)  # NaN where nothing was scored
    for column in ("iou", "floor_iou", "region_matches_truth"):
        if column not in scores:
            scores[column] = np.nan
    for column in ("truth_side", "truth_zone"):
        scores[column] = scores[column].fillna("") if column in scores else ""
    return scores


def grounding_maps(
    scores: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
) -> pd.DataFrame:
    """One row per caption heatmap, what the grounding metrics read: row, image_id, group,
    named, localized (the image's localized findings), peak (those holding the maximum) and
    absent (the caption names findings the image has none of, localized or labelled; never
    for a report, which may name a finding to deny it)."""
    captions = heatmap_plan[heatmap_plan["kind"] == "caption"]
    columns = ["row", "image_id", "group", "named", "localized", "peak", "absent"]
    if captions.empty or "named" not in captions:
        return pd.DataFrame(columns=columns)
    localized = localized_findings(image_localizations)
    kinds = set().union(*localized.values()) if localized else set()
    labelled = labelled_findings(image_manifest.assign(image_id=image_manifest["image_id"].astype(str)), kinds)
    peaks = scores.drop_duplicates("row").set_index("row")["peak_findings"]
    rows = []
    for row in captions.itertuples(index=False):
        named = cell_list(row.named)
        found = sorted(localized.get(row.image_id, set()))
        present = set(found) | labelled.get(row.image_id, set())
        peak = [f for f in str(peaks.get(row.row, "") or "").split("|") if f]
        absent = row.group != "report" and bool(named) and not (set(named) & present)
        rows.append((row.row, row.image_id, row.group, named, found, peak, absent))
    return pd.DataFrame(rows, columns=columns)


def _rate(values: pd.Series) -> float | None:
    values = values.dropna().astype(float)
    return float(values.mean()) if len(values) else None


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a frame as JSON-safe dicts (NaN -> None, numpy scalars -> Python)."""
    out = []
    for record in frame.to_dict(orient="records"):
        clean = {}
        for key, value in record.items():
            if isinstance(value, (np.floating, float)):
                clean[key] = None if math.isnan(float(value)) else float(value)
            elif isinstance(value, np.integer):
                clean[key] = int(value)
            else:
                clean[key] = value
        out.append(clean)
    return out


def summarise_metrics(
    scores: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    heatmaps_metadata: Mapping[str, Any],
    scoring: ScoringSettings,
    seed: int,
) -> dict[str, Any]:
    """The metrics JSON: per group and per (group, finding) hit rate and mIoU with CIs,
    beside the floor; interpretation agreement; counts, including the images left out.

    Args:
        scores: `score_plan`'s table.
        heatmap_plan: the plan.
        image_manifest: every image (counted).
        image_localizations: the ground-truth regions (their images counted).
        heatmaps_metadata: the maps' metadata (method, layer, smoothing, contrast, size).
        scoring: the settings the scores were made with; n_resamples and confidence of the CIs.
        seed: the bootstrap's seed.
    """
    scored = scores[scores["finding"] != ""]
    localized_ids = set(image_localizations["image_id"].astype(str))
    explained_ids = set(heatmap_plan["image_id"])

    def table(columns: Sequence[str]) -> list[dict[str, Any]]:
        if scored.empty:
            return []
        frame = summarise_scores(
            scored, columns, n_resamples=scoring.n_resamples, seed=seed, confidence=scoring.confidence
        )
        return json_records(frame)

    agreement = []
    for group, frame in scores.groupby("group", sort=True):
        # one interpretation per heatmap, not per scored finding
        per_map = frame.drop_duplicates("row")
        agreement.append({
            "group": group,
            "n_heatmaps": int(len(per_map)),
            "n_with_stated_location": int(per_map["location_agrees"].notna().sum()),
            "caption_location_agreement": _rate(per_map["location_agrees"]),
            "n_with_truth_location": int(frame["region_matches_truth"].notna().sum()),
            "truth_location_agreement": _rate(frame["region_matches_truth"]),
            "regions": {str(k): int(v) for k, v in per_map["region"].value_counts().items()},
        })
    maps = grounding_maps(scores, heatmap_plan, image_manifest, image_localizations)
    ci_args = {"n_resamples": scoring.n_resamples, "seed": seed, "confidence": scoring.confidence}
    specificity = caption_specificity(maps, **ci_args)
    distractors = distractor_rates(maps, **ci_args)
    metadata = heatmaps_metadata
    contrast_reduce = sorted(set(heatmap_plan.get("contrast_reduce", pd.Series(dtype=str)).dropna()) - {""})
    return {
        "method": metadata.get("method"),
        "target_layer": metadata.get("target_layer"),
        "shift_smoothing_px": metadata.get("shift_smoothing_px", [0]),
        "bf16": bool(metadata.get("bf16", False)),
        "caption_gate": metadata.get("caption_gate", "none"),
        "contrast_caption": metadata.get("contrast_caption"),
        "contrast_findings": contrast_reduce[0] if contrast_reduce else "none",
        "n_plain_contrast_targets": metadata.get("n_plain_contrast_targets", 0),
        "image_size": metadata.get("image_size"),
        "scoring": {
            "hit": "maximum of the heatmap, upsampled to the original image, inside the region",
            "hit_tolerance_px": scoring.hit_tolerance_px,
            "iou_threshold": "Otsu on the 8-bit rescaled heatmap (CheXlocalize)",
            "miou": "over all scored heatmaps, an empty prediction counting 0",
            "miou_nonempty": "over scored heatmaps whose prediction and truth are non-empty",
            "floor": f"centred Gaussian heatmap, sigma = {scoring.floor_sigma_fraction} x side",
            "confidence": scoring.confidence,
            "n_resamples": scoring.n_resamples,
        },
        "counts": {
            "images_in_manifest": int(len(image_manifest)),
            "images_explained": len(explained_ids),
            "heatmaps": int(len(heatmap_plan)),
            "scored_heatmap_findings": int(len(scored)),
            "images_scored": int(scored["image_id"].nunique()) if not scored.empty else 0,
            "images_without_localizations": len(explained_ids - localized_ids),
        },
        "by_group": table(["group"]),
        "by_group_and_finding": table(["group", "finding"]),
        "caption_specificity": {
            "definition": (
                "images with two or more localized kinds of finding, captions naming one of them: of the maps "
                "whose maximum lies in one of the image's regions, the share in the named finding's region "
                "(chance about 0.5)"
            ),
            "rows": json_records(specificity),
        },
        "distractor_hit_rate": {
            "definition": (
                "images with a localized finding, captions naming a finding the image does not have: the share "
                "of maps whose maximum lies in a present finding's region (per finding: in that finding's "
                "region), beside the true captions' hit rate on the same finding"
            ),
            "rows": json_records(distractors),
        },
        "interpretation": agreement,
    }
