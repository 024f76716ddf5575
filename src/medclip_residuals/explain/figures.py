"""Figures of the explainability pipeline: the caption heatmap grid.

Example:
    >>> figure = plot_caption_grid(source, plan, scores, manifest, localizations,  # doctest: +SKIP
    ...                            sample_size=6, seed=0)
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medclip_residuals.data.images import read_image
from medclip_residuals.data.preprocess import heatmap_to_original
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapStore
from medclip_residuals.explain.plan import sample_images
from medclip_residuals.explain.scoring import finding_regions
from medclip_residuals.explain.smoothing import shift_grid


def short_title(text: str, width: int = 30, lines: int = 2) -> str:
    """A caption wrapped for a subplot title, at most `lines` lines."""
    wrapped = textwrap.wrap(str(text), width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "…"
    return "\n".join(wrapped)


def _cell_title(heatmap_scores: pd.DataFrame, row: int) -> str:
    """The dominant region of one heatmap and, where scored, its best hit / IoU."""
    rows = heatmap_scores[heatmap_scores["row"] == row]
    label = rows["region"].iloc[0] if len(rows) else ""
    scored = rows[rows["finding"] != ""]
    if len(scored):
        label += f"\nhit {int(scored['hit'].max())}  IoU {scored['iou'].max():.2f}"
    return label


def _suptitle(metadata: dict) -> str:
    contrast = metadata.get("contrast_caption")
    target = f", caption minus {contrast!r}" if contrast else ""
    shifts = list(metadata.get("shift_smoothing_px", [0]))
    smoothing = f", mean of {len(shift_grid(shifts))} shifted copies" if shifts != [0] else ""
    return (
        f"Caption heatmaps ({metadata.get('method', '')} on {metadata.get('target_layer', '')}{smoothing}{target});\n"
        "white: ground truth, +: maximum"
    )


def plot_caption_grid(
    source: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    heatmap_scores: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    *,
    sample_size: int,
    seed: int,
) -> Figure:
    """A grid: one row per sampled image, its X-ray, then each caption's heatmap overlaid.

    The ground-truth region is outlined in white, the heatmap's maximum marked with a
    cross; each title gives the dominant region and, where scored, hit / IoU.

    Args:
        source: the plan's maps (`explain.plan.heatmaps_of_plan`).
        heatmap_plan: the plan; its caption rows are drawn.
        heatmap_scores: `explain.evaluate.score_plan`'s table.
        image_manifest: image_id and image_path per image.
        image_localizations: the ground-truth regions.
        sample_size: images drawn (a seeded sample, localized ones first).
        seed: the sample's seed.
    """
    captions = heatmap_plan[heatmap_plan["kind"] == "caption"]
    ids = sorted(captions["image_id"].unique())
    localized = set(image_localizations["image_id"].astype(str))
    chosen = sample_images(ids, sample_size, seed, localized, prefer_localized=True)
    columns = ["report"] + [t for t in captions["target_id"].unique() if t != "caption:report"]
    columns = [c for c in columns if (captions["target_id"] == c).any() or c == "report"]
    titles = {"report": "the image's report"}
    for column in columns:
        if column.startswith("caption:") and column != "caption:report":
            titles[column] = captions.loc[captions["target_id"] == column, "text"].iloc[0]

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
                continue
            row = int(match["row"].iloc[0])
            original = heatmap_to_original(source.rows([row])[0], hw)  # random access: one map
            axis.imshow(original, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            peak = np.unravel_index(int(np.argmax(original)), hw)
            axis.plot(peak[1], peak[0], "w+", markersize=10, markeredgewidth=2)
            if truth.any():
                axis.contour(truth, levels=[0.5], colors="white", linewidths=0.8)
            label = _cell_title(heatmap_scores, row)
            if column == "report":
                label = f"{short_title(match['text'].iloc[0])}\n{label}"
            elif r == 0:
                label = f"{short_title(titles[column])}\n{label}"
            axis.set_title(label, fontsize=7)
        for axis in axes[r]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(_suptitle(source.metadata), fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.55 / figure.get_figheight()))  # room for the suptitle
    return figure
