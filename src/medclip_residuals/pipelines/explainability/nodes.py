"""Explainability: Grad-CAM heatmaps for captions and for the regression heads, scored
against the ground-truth regions, interpreted, and drawn as a grid.

Flow: `plan_heatmaps` (which image x target pairs; every bad parameter fails here, before
any model runs) -> `compute_heatmaps` (pytorch-grad-cam, batched, one or several target
layers, optionally shift-smoothed; a generator node: the maps go to disk `chunk_size` at a
time, see datasets/heatmap_store.py) -> `score_heatmaps` (reads them back chunk by chunk;
pointing game, Otsu mIoU, centred-Gaussian floor, interpretation; per-finding bootstrap
CIs) -> `plot_caption_heatmap_grid`.

Targets (models/heatmap.py): a caption's target is the cosine similarity of the image
embedding to the caption's text embedding, minus that to `contrast_caption` when set; a
head's target is its probability through `HeatMapModel` (residual heads subtract the
image's own `w` inside).
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.explain.interpretation import (
    StatedLocation,
    dominant_region,
    location_agrees,
    parse_location,
)
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapChunk, HeatmapStore
from medclip_residuals.explain.scoring import (
    centred_gaussian_heatmap,
    finding_regions,
    localizations_by_image,
    score_heatmap,
    summarise_scores,
    upsample_heatmap,
)
from medclip_residuals.models.cam import CamExplainer, layer_label, resolve_cam_method, resolve_target_layers, shift_grid
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.heads import heads_from_tensors
from medclip_residuals.models.heatmap import HeadTarget, HeatMapModel, SimilarityTarget
from medclip_residuals.utils.frames import embeddings_to_matrix

logger = logging.getLogger(__name__)

HEAD_VARIANTS = ("image", "residual_1", "residual_2")
PLAN_COLUMNS = ["row", "image_id", "target_id", "kind", "group", "text", "head", "findings"]


class ExplainabilityParameterError(ValueError):
    """A `params:explainability` value is missing or wrong."""


def _check_params(params: Mapping[str, Any]) -> None:
    resolve_cam_method(params.get("method", "gradcam"))
    captions = params.get("captions") or []
    for index, caption in enumerate(captions):
        if not isinstance(caption, str) or not caption.strip():
            raise ExplainabilityParameterError(
                f"params:explainability.captions[{index}] is an empty phrase ({caption!r}); "
                "remove it or write the caption"
            )
    contrast = params.get("contrast_caption")
    if contrast is not None and (not isinstance(contrast, str) or not contrast.strip()):
        raise ExplainabilityParameterError(
            f"params:explainability.contrast_caption is an empty phrase ({contrast!r}); write one or use null"
        )
    unknown = set(params.get("heads") or []) - set(HEAD_VARIANTS)
    if unknown:
        raise ExplainabilityParameterError(
            f"params:explainability.heads names unknown variants {sorted(unknown)}; use {list(HEAD_VARIANTS)}"
        )
    if params.get("head_images", "localized") not in ("localized", "all"):
        raise ExplainabilityParameterError("params:explainability.head_images must be 'localized' or 'all'")
    if int(params.get("batch_size", 16)) < 1:
        raise ExplainabilityParameterError("params:explainability.batch_size must be >= 1")
    _chunk_size(params)
    shifts = params.get("shift_smoothing_px", [0])
    if not isinstance(shifts, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in shifts):
        raise ExplainabilityParameterError(
            f"params:explainability.shift_smoothing_px must be a list of whole pixels, e.g. [-6, 0, 6]; got {shifts!r}"
        )
    try:
        shift_grid(shifts)
    except ValueError as error:
        raise ExplainabilityParameterError(f"params:explainability.shift_smoothing_px: {error}") from None


def findings_named_in(text: str, synonyms: Mapping[str, str] | None = None) -> list[str]:
    """CheXpert findings a caption names (whole words, any case), plus synonym phrases."""
    lowered = f" {str(text).lower()} "
    named = [name for name in CHEXPERT_FINDINGS if re.search(rf"\b{re.escape(name.lower())}\b", lowered)]
    for phrase, finding in (synonyms or {}).items():
        if re.search(rf"\b{re.escape(str(phrase).lower())}\b", lowered) and finding not in named:
            named.append(finding)
    return named


def _head_names(heads: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(name, finding, variant) of every head in a TensorDictDataset of heads."""
    if not heads:
        return []
    out = []
    for name in heads.get("metadata", {}).get("heads", {}):
        finding, _, variant = name.rpartition("/")
        if finding and variant in HEAD_VARIANTS:
            out.append((name, finding, variant))
    return out


def plan_heatmaps(
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    residual_1_heads: dict[str, Any] | None,
    residual_2_heads: dict[str, Any] | None,
    params: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Which (image, target) pairs get a heatmap, one row each, in computation order.

    Targets: the image's own report (group "report", when non-empty), every caption of
    `params.captions` (group "phrase"), and the heads named in `params.heads` (groups
    "image", "residual_1", "residual_2") on the images where the head's finding is
    localized (`head_images: localized`) or on every image (`all`). `findings` lists, per
    row, the localized findings its heatmap is scored against (a caption: those it names,
    or, for a report that names none, all of the image's; a head: its own). Images are the manifest's, sorted by
    image_id; `max_images` keeps a seeded sample (localized images first when
    `prefer_localized`). Every parameter is checked here, before any model runs.
    """
    _check_params(params)
    synonyms = params.get("finding_synonyms") or {}
    localized: dict[str, set[str]] = {}
    for image_id, finding in image_localizations[["image_id", "finding"]].astype(str).itertuples(index=False):
        localized.setdefault(image_id, set()).add(finding)

    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).sort_values("image_id")
    ids = manifest["image_id"].tolist()
    max_images = params.get("max_images")
    if max_images is not None and int(max_images) < len(ids):
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(len(ids)))
        if params.get("prefer_localized", True):
            order.sort(key=lambda k: ids[k] not in localized)  # stable: keeps the seeded order
        keep = set(ids[k] for k in order[: int(max_images)])
        manifest = manifest[manifest["image_id"].isin(keep)]

    wanted_variants = set(params.get("heads") or [])
    heads = [h for h in _head_names(residual_1_heads) + _head_names(residual_2_heads) if h[2] in wanted_variants]
    head_images = params.get("head_images", "localized")
    captions = [str(c).strip() for c in (params.get("captions") or [])]

    rows = []
    for image_id, report in manifest[["image_id", "report"]].astype(str).itertuples(index=False):
        found = localized.get(image_id, set())
        if params.get("include_report_captions", True) and report.strip():
            # the localized findings the report names; all of them when it names none
            named = [f for f in findings_named_in(report, synonyms) if f in found] or sorted(found)
            rows.append((image_id, "caption:report", "caption", "report", report.strip(), "", named))
        for index, caption in enumerate(captions):
            named = [f for f in findings_named_in(caption, synonyms) if f in found]
            rows.append((image_id, f"caption:{index}", "caption", "phrase", caption, "", named))
        for name, finding, variant in heads:
            if head_images == "all" or finding in found:
                rows.append((image_id, f"head:{name}", "head", variant, "", name, [finding] if finding in found else []))
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS[1:])
    plan.insert(0, "row", np.arange(len(plan), dtype=np.int64))
    if plan.empty:
        raise ExplainabilityParameterError(
            "nothing to explain: no image has a report, params:explainability.captions is empty and no head was chosen"
        )
    return plan


class _ImageCache:
    """Preprocessed images by path, the most recent few kept (the plan is image-ordered)."""

    def __init__(self, size: int, capacity: int = 64) -> None:
        self.size, self.capacity = size, capacity
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, path: str) -> torch.Tensor:
        if path not in self._items:
            self._items[path] = preprocess_image(path, self.size)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        self._items.move_to_end(path)
        return self._items[path]


def _phenotype_w(table: pd.DataFrame | None) -> dict[str, np.ndarray]:
    if table is None or len(table) == 0:
        return {}
    ids, matrix = embeddings_to_matrix(table)
    return dict(zip(ids, matrix))


def compute_heatmaps(
    medclip_encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    residual_1_heads: dict[str, Any] | None,
    residual_2_heads: dict[str, Any] | None,
    params: dict[str, Any],
    device: str,
) -> Iterator[HeatmapChunk]:
    """Heatmaps (S, S) on the model input for every row of the plan, yielded in chunks.

    A generator node: Kedro saves each `HeatmapChunk` (`chunk_size` rows of float16 maps,
    in plan order) as it comes, so that memory holds one chunk, not every map (see
    `datasets/heatmap_store.py`). Batches are formed over the whole plan, independently
    of the chunks, so the chunk size never changes a map. Every chunk carries the run's
    metadata (method, target layer, image size, image ids and target ids in row order).
    """
    _check_params(params)
    method = params.get("method", "gradcam")
    layer = params.get("target_layer", "model.layernorm")
    vision = medclip_encoder.vision_model
    layer_names, _ = resolve_target_layers(vision, layer)  # a clear error before any work
    layer_name = layer_label(layer_names)
    torch_device = resolve_device(device)
    medclip_encoder.to(torch_device)

    paths = dict(zip(image_manifest["image_id"].astype(str), image_manifest["image_path"].astype(str)))
    missing = sorted(set(heatmap_plan["image_id"]) - set(paths))
    if missing:
        raise ValueError(f"heatmap_plan names images that image_manifest lacks: {missing[:5]}")

    texts = sorted(set(heatmap_plan.loc[heatmap_plan["kind"] == "caption", "text"]))
    text_embeddings = dict(zip(texts, medclip_encoder.encode_texts(texts))) if texts else {}
    contrast = params.get("contrast_caption")
    contrast_embedding = medclip_encoder.encode_texts([contrast])[0] if contrast and texts else None
    # a caption that is the contrast phrase itself (a normal study's report) keeps its plain target
    plain_texts = {t for t in texts if contrast and t.strip().lower() == contrast.strip().lower()}

    head_modules: dict[str, torch.nn.Module] = {}
    for stored in (residual_1_heads, residual_2_heads):
        if stored:
            head_modules.update(heads_from_tensors(stored["tensors"], stored["metadata"]))
    models: dict[str, HeatMapModel] = {}
    w_by_image = _phenotype_w(phenotype_sentence_embeddings)

    def target_for(row: Any) -> Any:
        if row.kind == "caption":
            contrast_for_row = None if row.text in plain_texts else contrast_embedding
            return SimilarityTarget(text_embeddings[row.text], label=row.text, contrast_embedding=contrast_for_row)
        if row.head not in head_modules:
            raise KeyError(f"head {row.head!r} is not in residual_1_heads / residual_2_heads")
        if row.head not in models:
            head = head_modules[row.head].to(torch_device).requires_grad_(False)  # no weight gradients
            if torch_device.type == "mps":
                head = head.float()  # MPS has no float64
            models[row.head] = HeatMapModel(vision, head)
        model = models[row.head]
        w = None
        if model.needs_w:
            if row.image_id not in w_by_image:
                raise KeyError(
                    f"phenotype_sentence_embeddings has no w for image {row.image_id!r} (needed by head {row.head!r})"
                )
            w = w_by_image[row.image_id]
        return HeadTarget(model, w, label=row.head)

    size = int(medclip_encoder.image_size)
    images = _ImageCache(size)
    batch_size = int(params.get("batch_size", 16))
    chunk_size = _chunk_size(params)
    shifts = list(params.get("shift_smoothing_px", [0]))
    if max(abs(v) for v in shifts) >= size:
        raise ExplainabilityParameterError(f"params:explainability.shift_smoothing_px {shifts} must stay below the {size}-px input")
    n_plain = int(heatmap_plan["text"].isin(plain_texts).sum()) if plain_texts else 0
    total = len(heatmap_plan)
    metadata = {
        "method": method,
        "target_layer": layer_name,
        "shift_smoothing_px": [int(v) for v in shifts],
        "contrast_caption": contrast if contrast_embedding is not None else None,
        "n_plain_contrast_targets": n_plain,
        "image_size": size,
        "profile": getattr(medclip_encoder, "profile", ""),
        "image_id": heatmap_plan["image_id"].tolist(),
        "target_id": heatmap_plan["target_id"].tolist(),
    }
    logger.info("compute_heatmaps: %d heatmaps, written in chunks of %d (%.1f MB each as float16)",
                total, chunk_size, chunk_size * size * size * 2 / 2**20)
    pending: list[np.ndarray] = []  # batch outputs not yet yielded, fewer than chunk_size + batch_size rows
    pending_rows, next_start = 0, 0
    rows = list(heatmap_plan.itertuples(index=False))
    with CamExplainer(
        vision, method, layer_names, batch_size=batch_size, progress=False, device=torch_device, shifts_px=shifts
    ) as explainer:
        for start in tqdm(range(0, total, batch_size), desc=f"{method} heatmaps", unit="batch"):
            batch = rows[start : start + batch_size]
            pixels = torch.stack([images(paths[row.image_id]) for row in batch])
            maps = explainer.explain_batch(pixels, [target_for(row) for row in batch])
            pending.append(np.asarray(maps, dtype=np.float16))
            pending_rows += len(batch)
            while pending_rows >= chunk_size or (pending_rows and next_start + pending_rows == total):
                block = np.concatenate(pending)
                out, rest = block[:chunk_size], block[chunk_size:]
                pending, pending_rows = ([rest] if len(rest) else []), len(rest)
                yield HeatmapChunk(next_start, out, total, metadata)
                next_start += len(out)
    logger.info(
        "%d heatmaps (%s on %s, %d shift(s) averaged) for %d images",
        total, method, layer_name, len(explainer.shifts), heatmap_plan["image_id"].nunique(),
    )
    if n_plain:
        logger.info("%d caption heatmap(s) whose caption is the contrast caption %r used the plain similarity", n_plain, contrast)


def _chunk_size(params: Mapping[str, Any]) -> int:
    value = params.get("chunk_size", 256)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ExplainabilityParameterError(
            f"params:explainability.chunk_size must be a whole number of heatmaps >= 1, got {value!r}"
        )
    return value


def as_heatmap_source(heatmaps: Any) -> HeatmapStore | ArrayHeatmaps:
    """What `score_heatmaps` and the grid read: a `HeatmapStore`, or maps held in memory
    (an `ArrayHeatmaps`, or a TensorDictDataset payload saved before the chunked store)."""
    if isinstance(heatmaps, HeatmapChunk):
        raise TypeError(
            f"heatmaps is one chunk (rows {heatmaps.start}-{heatmaps.start + len(heatmaps) - 1} of {heatmaps.total}): "
            "compute_heatmaps yields chunks, which only an appending dataset keeps; declare `heatmaps` as "
            "medclip_residuals.datasets.heatmap_store.HeatmapStoreDataset (a MemoryDataset keeps only the last chunk)"
        )
    if hasattr(heatmaps, "chunks") and hasattr(heatmaps, "rows"):
        return heatmaps
    if isinstance(heatmaps, Mapping) and "heatmaps" in (heatmaps.get("tensors") or {}):
        return ArrayHeatmaps(heatmaps["tensors"]["heatmaps"], heatmaps.get("metadata"))
    raise TypeError(f"heatmaps must be a HeatmapStore or ArrayHeatmaps, got {type(heatmaps).__name__}")


def _check_alignment(heatmaps: Any, heatmap_plan: pd.DataFrame) -> HeatmapStore | ArrayHeatmaps:
    source = as_heatmap_source(heatmaps)
    stored = source.metadata
    if (
        len(source) != len(heatmap_plan)
        or not np.array_equal(heatmap_plan["row"].to_numpy(), np.arange(len(heatmap_plan)))
        or stored.get("target_id", heatmap_plan["target_id"].tolist()) != heatmap_plan["target_id"].tolist()
        or stored.get("image_id", heatmap_plan["image_id"].tolist()) != heatmap_plan["image_id"].tolist()
    ):
        raise ValueError(
            f"heatmaps ({len(source)}) and heatmap_plan ({len(heatmap_plan)} rows) do not belong to the same run"
        )
    return source


def score_heatmaps(
    heatmaps: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-heatmap scores and interpretation, and the metrics summary.

    Scores table: one row per (heatmap, scored finding) (a heatmap with nothing to score
    gets one row with finding "" and NaN scores): hit, iou, pred_empty, truth_empty, the
    same for the centred-Gaussian floor, the dominant region (phrase, side, zone, share),
    the location the caption states (for a head: the image's report) and whether the
    region agrees with it, and with the localization's own side/zone where known.
    The maps are read chunk by chunk (`chunk_size` rows), in plan order.
    """
    source = _check_alignment(heatmaps, heatmap_plan)
    scoring = params.get("scoring") or {}
    tolerance = float(scoring.get("hit_tolerance_px", 0))
    floor_map = centred_gaussian_heatmap(source.map_shape[-1], float(scoring.get("floor_sigma_fraction", 0.25)))
    regions_geometry = params.get("regions") or None

    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    localizations = image_localizations.assign(image_id=image_localizations["image_id"].astype(str))
    truth_location: dict[tuple[str, str], tuple[str, str]] = {}
    for row in localizations.itertuples(index=False):
        side, zone = str(getattr(row, "side", "") or ""), str(getattr(row, "zone", "") or "")
        truth_location[(row.image_id, str(row.finding))] = (
            "" if side == "nan" else side, "" if zone == "nan" else zone
        )

    localizations_of = localizations_by_image(localizations)
    chunk_size = _chunk_size(params)
    # rows as dicts cost ~2.5 KB each: each chunk's become a frame (~10x smaller) as they fill
    frames: list[pd.DataFrame] = []
    records: list[dict[str, Any]] = []
    current_image, regions, floor_scores, original_hw = None, {}, {}, None
    for row, heatmap in zip(heatmap_plan.itertuples(index=False), _maps_in_order(source, chunk_size)):
        if len(records) >= chunk_size:
            frames.append(pd.DataFrame(records))
            records = []
        if row.image_id != current_image:
            current_image = row.image_id
            info = manifest.loc[row.image_id]
            original_hw = (int(info["height"]), int(info["width"]))
            regions = finding_regions(localizations_of(row.image_id), row.image_id, original_hw)
            floor_original = upsample_heatmap(floor_map, original_hw)
            floor_scores = {f: score_heatmap(floor_original, mask, tolerance) for f, mask in regions.items()}
            report = str(info.get("report", ""))
        original = upsample_heatmap(heatmap, original_hw)
        region = dominant_region(original, regions_geometry)
        stated = parse_location(row.text if row.kind == "caption" else report)
        base = {
            "row": row.row, "image_id": row.image_id, "target_id": row.target_id, "kind": row.kind,
            "group": row.group, "text": row.text, "head": row.head,
            "region": region.phrase, "region_side": region.side, "region_zone": region.zone,
            "region_share": region.share, "stated_side": stated.side, "stated_zone": stated.zone,
            "location_agrees": location_agrees(region, stated),
        }
        findings = list(row.findings)
        if not findings:
            records.append({**base, "finding": ""})
            continue
        for finding in findings:
            score = score_heatmap(original, regions[finding], tolerance)
            floor = floor_scores[finding]
            truth_side, truth_zone = truth_location.get((row.image_id, finding), ("", ""))
            truth = StatedLocation(truth_side, truth_zone)
            records.append({
                **base, "finding": finding, **score,
                "floor_hit": floor["hit"], "floor_iou": floor["iou"], "floor_pred_empty": floor["pred_empty"],
                "truth_side": truth_side, "truth_zone": truth_zone,
                "region_matches_truth": location_agrees(region, truth),
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
    metrics = summarise_metrics(scores, heatmap_plan, image_manifest, image_localizations, source, params, seed)
    return scores, metrics


def _maps_in_order(source: HeatmapStore | ArrayHeatmaps, chunk_size: int) -> Iterator[np.ndarray]:
    """Every map of `source` in row order, one chunk in memory at a time."""
    for _, chunk in source.chunks(chunk_size):
        yield from chunk


def _rate(values: pd.Series) -> float | None:
    values = values.dropna().astype(float)
    return float(values.mean()) if len(values) else None


def summarise_metrics(
    scores: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    heatmaps: HeatmapStore | ArrayHeatmaps,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The metrics JSON: per group and per (group, finding) hit rate and mIoU with CIs,
    beside the floor; interpretation agreement; counts, including the images left out."""
    scoring = params.get("scoring") or {}
    n_resamples = int(scoring.get("n_resamples", 1000))
    confidence = float(scoring.get("confidence", 0.95))
    scored = scores[scores["finding"] != ""]
    localized_ids = set(image_localizations["image_id"].astype(str))
    explained_ids = set(heatmap_plan["image_id"])

    def table(columns: Sequence[str]) -> list[dict[str, Any]]:
        if scored.empty:
            return []
        frame = summarise_scores(scored, columns, n_resamples=n_resamples, seed=seed, confidence=confidence)
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
    metadata = heatmaps.metadata
    return {
        "method": metadata.get("method"),
        "target_layer": metadata.get("target_layer"),
        "shift_smoothing_px": metadata.get("shift_smoothing_px", [0]),
        "contrast_caption": metadata.get("contrast_caption"),
        "n_plain_contrast_targets": metadata.get("n_plain_contrast_targets", 0),
        "image_size": metadata.get("image_size"),
        "scoring": {
            "hit": "maximum of the heatmap, upsampled to the original image, inside the region",
            "hit_tolerance_px": float(scoring.get("hit_tolerance_px", 0)),
            "iou_threshold": "Otsu on the 8-bit rescaled heatmap (CheXlocalize)",
            "miou": "over all scored heatmaps, an empty prediction counting 0",
            "miou_nonempty": "over scored heatmaps whose prediction and truth are non-empty",
            "floor": f"centred Gaussian heatmap, sigma = {float(scoring.get('floor_sigma_fraction', 0.25))} x side",
            "confidence": confidence,
            "n_resamples": n_resamples,
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
        "interpretation": agreement,
    }


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


def _short(text: str, width: int = 30, lines: int = 2) -> str:
    """A caption wrapped for a subplot title, at most `lines` lines."""
    import textwrap

    wrapped = textwrap.wrap(str(text), width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "…"
    return "\n".join(wrapped)


def plot_caption_heatmap_grid(
    heatmaps: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    heatmap_scores: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> Figure:
    """A grid: one row per sampled image, its X-ray, then each caption's heatmap overlaid.

    The ground-truth region is outlined in white, the heatmap's maximum marked with a
    cross; each title gives the dominant region and, where scored, hit / IoU.
    """
    from medclip_residuals.data.images import read_image

    source = _check_alignment(heatmaps, heatmap_plan)
    captions = heatmap_plan[heatmap_plan["kind"] == "caption"]
    grid = params.get("grid") or {}
    sample_size = int(grid.get("sample_size", 6))
    ids = sorted(captions["image_id"].unique())
    localized = set(image_localizations["image_id"].astype(str))
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(ids)))
    order.sort(key=lambda k: ids[k] not in localized)
    chosen = sorted(ids[k] for k in order[:sample_size])
    columns = ["report"] + [t for t in captions["target_id"].unique() if t != "caption:report"]
    columns = [c for c in columns if (captions["target_id"] == c).any() or c == "report"]
    titles = {"report": "the image's report"}
    titles.update({t: captions.loc[captions["target_id"] == t, "text"].iloc[0] for t in columns if t.startswith("caption:") and t != "caption:report"})

    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    localizations = image_localizations.assign(image_id=image_localizations["image_id"].astype(str))
    n_rows, n_cols = max(1, len(chosen)), 1 + len(columns)
    figure = Figure(figsize=(2.6 * n_cols, 2.8 * n_rows))
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for r, image_id in enumerate(chosen):
        info = manifest.loc[image_id]
        image = read_image(info["image_path"])
        hw = image.shape
        regions = finding_regions(localizations, image_id, hw)
        truth = np.zeros(hw, dtype=bool)
        for mask in regions.values():
            truth |= mask
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].set_title(f"{image_id}\n{', '.join(regions) or 'no localization'}", fontsize=7)
        for c, column in enumerate(columns, start=1):
            axis = axes[r, c]
            axis.imshow(image, cmap="gray")
            target_id = "caption:report" if column == "report" else column
            match = heatmap_plan[(heatmap_plan["image_id"] == image_id) & (heatmap_plan["target_id"] == target_id)]
            if match.empty:
                axis.set_title("(no caption)", fontsize=7)
            else:
                original = upsample_heatmap(source.rows([int(match["row"].iloc[0])])[0], hw)  # random access: one map
                axis.imshow(original, cmap="jet", alpha=0.45, vmin=0, vmax=1)
                peak = np.unravel_index(int(np.argmax(original)), hw)
                axis.plot(peak[1], peak[0], "w+", markersize=10, markeredgewidth=2)
                if truth.any():
                    axis.contour(truth, levels=[0.5], colors="white", linewidths=0.8)
                rows = heatmap_scores[heatmap_scores["row"] == int(match["row"].iloc[0])]
                label = rows["region"].iloc[0] if len(rows) else ""
                scored = rows[rows["finding"] != ""]
                if len(scored):
                    label += f"\nhit {int(scored['hit'].max())}  IoU {scored['iou'].max():.2f}"
                if column == "report":
                    label = f"{_short(match['text'].iloc[0])}\n{label}"
                elif r == 0:
                    label = f"{_short(titles[column])}\n{label}"
                axis.set_title(label, fontsize=7)
        for axis in axes[r]:
            axis.set_xticks([])
            axis.set_yticks([])
    metadata = source.metadata
    contrast = metadata.get("contrast_caption")
    target = f", caption minus {contrast!r}" if contrast else ""
    shifts = list(metadata.get("shift_smoothing_px", [0]))
    smoothing = f", mean of {len(shift_grid(shifts))} shifted copies" if shifts != [0] else ""
    figure.suptitle(
        f"Caption heatmaps ({metadata.get('method', '')} on {metadata.get('target_layer', '')}{smoothing}{target});\n"
        "white: ground truth, +: maximum",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.55 / figure.get_figheight()))  # room for the suptitle
    return figure
