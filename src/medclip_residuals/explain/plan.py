"""The heatmap plan: which (image, target) pairs get a heatmap, one row each, in order.

Targets: the image's own report (group "report", when non-empty), every caption (group
"phrase"), and the chosen heads (groups "image", "residual_1", "residual_2") on the images
where the head's finding is localized (`head_images="localized"`) or on every image
(`"all"`). `findings` lists, per row, the localized findings its heatmap is scored against
(a caption: those it names, or, for a report that names none, all of the image's; a head:
its own).

The maps that `explain/generate.py` makes follow the plan row for row; `heatmaps_of_plan`
checks that a set of maps belongs to a plan before anything reads them.

Example:
    >>> plan = build_plan(manifest, localizations, [], captions=["there is pneumonia"],  # doctest: +SKIP
    ...                   include_report_captions=True, finding_synonyms={}, head_images="localized",
    ...                   max_images=None, prefer_localized=True, seed=0)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapChunk, HeatmapStore

HeadVariant = Literal["image", "residual_1", "residual_2"]
HEAD_VARIANTS: tuple[str, ...] = get_args(HeadVariant)
PLAN_COLUMNS = ["row", "image_id", "target_id", "kind", "group", "text", "head", "findings"]


def findings_named_in(text: str, synonyms: Mapping[str, str] | None = None) -> list[str]:
    """CheXpert findings a caption names (whole words, any case), plus synonym phrases."""
    lowered = f" {str(text).lower()} "
    named = [name for name in CHEXPERT_FINDINGS if re.search(rf"\b{re.escape(name.lower())}\b", lowered)]
    for phrase, finding in (synonyms or {}).items():
        if re.search(rf"\b{re.escape(str(phrase).lower())}\b", lowered) and finding not in named:
            named.append(finding)
    return named


def head_names(heads: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(name, finding, variant) of every head in a TensorDictDataset of heads."""
    if not heads:
        return []
    out = []
    for name in heads.get("metadata", {}).get("heads", {}):
        finding, _, variant = name.rpartition("/")
        if finding and variant in HEAD_VARIANTS:
            out.append((name, finding, variant))
    return out


def localized_findings(image_localizations: pd.DataFrame) -> dict[str, set[str]]:
    """image_id -> the findings localized on that image."""
    localized: dict[str, set[str]] = {}
    for image_id, finding in image_localizations[["image_id", "finding"]].astype(str).itertuples(index=False):
        localized.setdefault(image_id, set()).add(finding)
    return localized


def sample_images(
    image_ids: Sequence[str], size: int, seed: int, localized: Collection[str], prefer_localized: bool
) -> list[str]:
    """A seeded sample of `size` ids, sorted; with `prefer_localized`, localized ids first.

    Args:
        image_ids: the ids to draw from, in a fixed order (sorted), each once.
        size: how many to keep (all of them when there are fewer).
        seed: the seed of the permutation.
        localized: the ids that have a localized finding.
        prefer_localized: take the localized ids before the others (in the seeded order).
    """
    order = list(np.random.default_rng(seed).permutation(len(image_ids)))
    if prefer_localized:
        order.sort(key=lambda k: image_ids[k] not in localized)  # stable: keeps the seeded order
    return sorted(image_ids[k] for k in order[:size])


def build_plan(
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    heads: Sequence[tuple[str, str, str]],
    *,
    captions: Sequence[str],
    include_report_captions: bool,
    finding_synonyms: Mapping[str, str],
    head_images: Literal["localized", "all"],
    max_images: int | None,
    prefer_localized: bool,
    seed: int,
) -> pd.DataFrame:
    """The plan (columns `PLAN_COLUMNS`), one row per heatmap, image by image.

    Images are the manifest's, sorted by image_id; `max_images` keeps a seeded sample
    (`sample_images`).

    Args:
        image_manifest: image_id and report per image.
        image_localizations: image_id and finding per localized region.
        heads: (name, finding, variant) of the heads to explain (`head_names`).
        captions: the phrases explained on every image.
        include_report_captions: also explain each image's own report (when non-empty).
        finding_synonyms: extra phrase -> finding pairs for `findings_named_in`.
        head_images: "localized": a head's maps only where its finding is localized; "all".
        max_images: None: every image; N: a seeded sample of N.
        prefer_localized: the sample takes localized images first.
        seed: the sample's seed.
    """
    localized = localized_findings(image_localizations)
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).sort_values("image_id")
    ids = manifest["image_id"].tolist()
    if max_images is not None and max_images < len(ids):
        keep = set(sample_images(ids, max_images, seed, localized, prefer_localized))
        manifest = manifest[manifest["image_id"].isin(keep)]
    phrases = [caption.strip() for caption in captions]

    rows = []
    for image_id, report in manifest[["image_id", "report"]].astype(str).itertuples(index=False):
        found = localized.get(image_id, set())
        if include_report_captions and report.strip():
            # the localized findings the report names; all of them when it names none
            named = [f for f in findings_named_in(report, finding_synonyms) if f in found] or sorted(found)
            rows.append((image_id, "caption:report", "caption", "report", report.strip(), "", named))
        for index, caption in enumerate(phrases):
            named = [f for f in findings_named_in(caption, finding_synonyms) if f in found]
            rows.append((image_id, f"caption:{index}", "caption", "phrase", caption, "", named))
        for name, finding, variant in heads:
            if head_images == "all" or finding in found:
                rows.append((image_id, f"head:{name}", "head", variant, "", name, [finding] if finding in found else []))
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS[1:])
    plan.insert(0, "row", np.arange(len(plan), dtype=np.int64))
    return plan


def as_heatmap_source(heatmaps: Any) -> HeatmapStore | ArrayHeatmaps:
    """What scoring and the grid read: a `HeatmapStore`, or maps held in memory
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


def heatmaps_of_plan(heatmaps: Any, heatmap_plan: pd.DataFrame) -> HeatmapStore | ArrayHeatmaps:
    """The maps as a source (`as_heatmap_source`), once checked to be this plan's, row for row."""
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
