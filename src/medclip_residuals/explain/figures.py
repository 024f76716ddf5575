"""Figures of the explainability pipeline: the caption heatmap grid.

The grid asks one question: does a caption's map follow the finding the caption names?
Its first rows are images with two localized findings, the maps of the prompts naming each
finding side by side; its last rows are the slide captions, on images that have their
findings and on images that have another finding only. Every region of the image is
outlined in its finding's colour, solid where the caption names it, dashed where it does not.

Example:
    >>> figure = plot_caption_grid(source, plan, scores, manifest, localizations,  # doctest: +SKIP
    ...                            two_finding_images=3, sample_size=4, seed=0)
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medclip_residuals.data.images import read_image
from medclip_residuals.data.preprocess import heatmap_to_original
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapStore
from medclip_residuals.explain.plan import (
    FINDING_GROUP,
    cell_list,
    finding_order,
    localized_findings,
    sample_images,
)
from medclip_residuals.explain.scoring import finding_regions, peak_position
from medclip_residuals.explain.smoothing import shift_grid

# one colour per finding, in CheXpert order of the findings on the figure
OUTLINE_COLOURS = ("white", "cyan", "magenta", "yellow", "lime", "orange", "deepskyblue", "pink")


def short_title(text: str, width: int = 30, lines: int = 2) -> str:
    """A caption wrapped for a subplot title, at most `lines` lines."""
    wrapped = textwrap.wrap(str(text), width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "…"
    return "\n".join(wrapped)


def _peak_label(heatmap_scores: pd.DataFrame, row: int) -> str:
    """Where the map's maximum lies: the findings whose region holds it, or "no region"."""
    rows = heatmap_scores[heatmap_scores["row"] == row]
    if rows.empty or "peak_findings" not in rows:
        return ""
    peak = str(rows["peak_findings"].iloc[0] or "")
    return f"max in: {peak.replace('|', ', ')}" if peak else "max in: no region"


def _suptitle(metadata: dict, contrast_findings: str) -> str:
    contrast = metadata.get("contrast_caption")
    target = f", caption minus {contrast!r}" if contrast else ""
    if contrast_findings != "none":
        target += f", minus the {contrast_findings} of the other findings' prompts"
    shifts = list(metadata.get("shift_smoothing_px", [0]))
    smoothing = f", mean of {len(shift_grid(shifts))} shifted copies" if shifts != [0] else ""
    gate = metadata.get("caption_gate", "none")
    empty = f"; empty: the image fits the caption no better than the {gate} of its contrasts" if gate != "none" else ""
    return (
        f"Caption heatmaps ({metadata.get('method', '')} on {metadata.get('target_layer', '')}{smoothing}{target});\n"
        f"outlines: solid = the finding the caption names, dashed = another finding; +: maximum{empty}"
    )


def paired_finding_prompts(heatmap_plan: pd.DataFrame) -> dict[str, list[tuple[str, int, str]]]:
    """image_id -> (finding, plan row, prompt) of its per-finding prompts naming findings it
    has, for images with two such prompts or more (the first two, in CheXpert order)."""
    prompts = heatmap_plan[(heatmap_plan["group"] == FINDING_GROUP) & (heatmap_plan["kind"] == "caption")]
    chosen: dict[str, list[tuple[str, int, str]]] = {}
    for image_id, rows in prompts.groupby("image_id", sort=True):
        true = {cell_list(r.findings)[0]: (int(r.row), str(r.text)) for r in rows.itertuples() if cell_list(r.findings)}
        if len(true) >= 2:
            chosen[image_id] = [(name, *true[name]) for name in finding_order(true)[:2]]
    return chosen


def slide_images(
    heatmap_plan: pd.DataFrame, localized: dict[str, set[str]], sample_size: int, seed: int
) -> list[str]:
    """Images for the slide captions: half (rounded up) that have a caption's finding, the
    rest with a localized finding that no caption names; each half a seeded sample."""
    phrases = heatmap_plan[(heatmap_plan["group"] == "phrase") & (heatmap_plan["kind"] == "caption")]
    if phrases.empty or sample_size <= 0:
        return []
    named = set().union(*(cell_list(v) for v in phrases["named"])) if "named" in phrases else set()
    ids = sorted(phrases["image_id"].unique())
    having = [i for i in ids if localized.get(i, set()) & named]
    other = [i for i in ids if localized.get(i) and not localized[i] & named]
    first = math.ceil(sample_size / 2)
    chosen_having = sample_images(having, first, seed, set(), prefer_localized=False)
    chosen_other = sample_images(other, sample_size - len(chosen_having), seed, set(), prefer_localized=False)
    return chosen_having + chosen_other


Cell = tuple[str, int | None, list[str]]  # (title, plan row or None, findings the caption names)


def grid_rows(
    heatmap_plan: pd.DataFrame,
    localized: dict[str, set[str]],
    two_finding_images: int,
    sample_size: int,
    seed: int,
) -> tuple[list[tuple[str, list[Cell]]], int]:
    """The grid's rows, each (image_id, cells), and how many lead with two findings."""
    pairs = paired_finding_prompts(heatmap_plan)
    paired = sample_images(sorted(pairs), two_finding_images, seed, set(), prefer_localized=False)
    slides = slide_images(heatmap_plan, localized, sample_size, seed)
    phrases = heatmap_plan[(heatmap_plan["group"] == "phrase") & (heatmap_plan["kind"] == "caption")]
    phrase_ids = list(dict.fromkeys(phrases["target_id"]))
    reports = heatmap_plan[heatmap_plan["target_id"] == "caption:report"].set_index("image_id")

    def report_cell(image_id: str) -> list[Cell]:
        if reports.empty:
            return []
        if image_id not in reports.index:
            return [("(no report)", None, [])]
        match = reports.loc[image_id]
        return [(f"report: {match['text']}", int(match["row"]), cell_list(match["named"]))]

    rows = [(i, [(text, row, [finding]) for finding, row, text in pairs[i]] + report_cell(i)) for i in paired]
    for image_id in slides:
        cells: list[Cell] = []
        for target_id in phrase_ids:
            match = phrases[(phrases["image_id"] == image_id) & (phrases["target_id"] == target_id)]
            cells.append((str(match["text"].iloc[0]), int(match["row"].iloc[0]), cell_list(match["named"].iloc[0])))
        rows.append((image_id, cells + report_cell(image_id)))
    return rows, len(paired)


def plot_caption_grid(
    source: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    heatmap_scores: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    *,
    two_finding_images: int,
    sample_size: int,
    seed: int,
) -> Figure:
    """The grid: rows of images with two findings (X-ray, the prompt of each finding, the
    report), then rows of the slide captions (X-ray, each caption, the report).

    Each map is drawn over its X-ray with every region outlined (solid: named by the caption;
    dashed: not) and its maximum marked; the label under it says which region holds the maximum.

    Args:
        source: the plan's maps (`explain.plan.heatmaps_of_plan`).
        heatmap_plan: the plan.
        heatmap_scores: `explain.evaluate.score_plan`'s table (peak_findings per map).
        image_manifest: image_id and image_path per image.
        image_localizations: the ground-truth regions.
        two_finding_images: rows of images with two localized findings (a seeded sample).
        sample_size: rows of the slide captions (`slide_images`).
        seed: the samples' seed.
    """
    rows, n_paired = grid_rows(
        heatmap_plan, localized_findings(image_localizations), two_finding_images, sample_size, seed
    )
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    localizations = image_localizations.assign(image_id=image_localizations["image_id"].astype(str))
    n_cols = 1 + max([len(cells) for _, cells in rows] or [1])
    figure = Figure(figsize=(2.6 * n_cols, 3.2 * max(1, len(rows))), layout="constrained")
    axes = figure.subplots(max(1, len(rows)), n_cols, squeeze=False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    if not rows:
        axes[0, 0].set_title("no caption heatmap to draw", fontsize=8)
    for r, (image_id, cells) in enumerate(rows):
        image = read_image(manifest.loc[image_id, "image_path"])
        regions = finding_regions(localizations, image_id, image.shape)
        colours = {name: OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)] for k, name in enumerate(finding_order(regions))}
        axes[r, 0].imshow(image, cmap="gray")
        _outline(axes[r, 0], regions, colours, named=list(regions))
        axes[r, 0].set_title(f"{image_id} ({'two findings' if r < n_paired else 'slide captions'})", fontsize=7)
        if regions:
            handles = [Line2D([], [], color=colours[n], label=n) for n in finding_order(regions)]
            axes[r, 0].legend(handles=handles, fontsize=5, loc="lower center", framealpha=0.4)
        for c, (title, row, named) in enumerate(cells, start=1):
            _draw_map(axes[r, c], image, source, heatmap_scores, (title, row, named), regions, colours)
        for c in range(len(cells) + 1, n_cols):
            axes[r, c].axis("off")
    contrast = sorted(set(heatmap_plan.get("contrast_reduce", pd.Series(dtype=str)).dropna()) - {""})
    figure.suptitle(_suptitle(source.metadata, contrast[0] if contrast else "none"), fontsize=9)
    return figure


def _draw_map(
    axis,
    image: np.ndarray,
    source: HeatmapStore | ArrayHeatmaps,
    heatmap_scores: pd.DataFrame,
    cell: Cell,
    regions: dict[str, np.ndarray],
    colours: dict[str, str],
) -> None:
    """One caption's map over its X-ray, the regions outlined, the maximum marked."""
    title, row, named = cell
    axis.imshow(image, cmap="gray")
    if row is None:
        axis.set_title(title, fontsize=7)
        return
    original = heatmap_to_original(source.rows([row])[0].astype(np.float32), image.shape)  # random access: one map
    axis.imshow(original, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    peak = peak_position(original)
    if peak is not None:  # an empty map (the caption gate's "not here") has no maximum to mark
        axis.plot(peak[1], peak[0], "w+", markersize=10, markeredgewidth=2)
    _outline(axis, regions, colours, named)
    axis.set_title(short_title(title, width=34), fontsize=7)
    axis.set_xlabel(_peak_label(heatmap_scores, row), fontsize=7)


def _outline(axis, regions: dict[str, np.ndarray], colours: dict[str, str], named: Sequence[str]) -> None:
    """Every region's outline in its colour: solid where named, dashed where not."""
    for name, mask in regions.items():
        if mask.any():
            style = "solid" if name in named else "dashed"
            axis.contour(mask, levels=[0.5], colors=colours[name], linewidths=0.9, linestyles=style)
