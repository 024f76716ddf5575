"""A grid of demo phantoms to look at: captions as titles, finding masks outlined.

`select_grid_images` picks studies that show the dataset's variety; `plot_phantom_grid`
draws them, for a person to judge whether they look like chest films.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from medclip_residuals.data.phantom_text import MODELLED_FINDINGS, SLIDE_EFFUSION, SLIDE_PNEUMONIA
from medclip_residuals.utils.params import ParameterError, Parameters

OUTLINE_COLOURS = {
    "Pneumonia": "#ff4040",
    "Consolidation": "#ff9f1c",
    "Pleural Effusion": "#2ec4f6",
    "Cardiomegaly": "#ffd500",
    "Lung Lesion": "#ff3df5",
    "Pneumothorax": "#38f56e",
    "Edema": "#8c7bff",
    "Atelectasis": "#00bfa5",
}


@dataclass(frozen=True)
class ImageGrid(Parameters):
    """The grid's shape (`demo_data.grid`)."""

    rows: int
    cols: int

    def check(self, where: str) -> None:
        """At least one row and one column."""
        for key in ("rows", "cols"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{where}.{key}: must be an integer >= 1 (got {getattr(self, key)!r})")


def _as_image(value: Image.Image | Callable[[], Image.Image]) -> Image.Image:
    # a PartitionedDataset loads lazily: each partition is a function that loads it
    return value if isinstance(value, Image.Image) else value()


def select_grid_images(manifest: pd.DataFrame, localizations: pd.DataFrame, count: int) -> list[str]:
    """Pick image ids that show the variety of the dataset: a normal study, each finding,
    the two captions of the slides, a study with two findings and an uncertain one."""
    ids = list(manifest["image_id"])
    reports = dict(zip(manifest["image_id"], manifest["report"]))
    per_image = localizations.groupby("image_id")["finding"].apply(list).to_dict()
    chosen: list[str] = []

    def take(candidates: list[str]) -> None:
        for image_id in candidates:
            if image_id not in chosen:
                chosen.append(image_id)
                return

    take([i for i in ids if i not in per_image])
    for finding in MODELLED_FINDINGS:
        take([i for i in ids if per_image.get(i) == [finding]])
    for phrase in (SLIDE_PNEUMONIA, SLIDE_EFFUSION):
        take([i for i in ids if reports[i] == phrase])
    take([i for i in ids if len(per_image.get(i, [])) == 2])
    labels = [c for c in MODELLED_FINDINGS if c in manifest.columns]
    take([i for i, row in zip(ids, manifest[labels].astype(str).to_numpy()) if "-1" in row])
    for image_id in ids:
        if len(chosen) >= count:
            break
        take([image_id])
    return chosen[:count]


def plot_phantom_grid(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame,
    images: Mapping[str, Image.Image | Callable[[], Image.Image]],
    masks: Mapping[str, Image.Image | Callable[[], Image.Image]],
    grid: ImageGrid,
) -> Figure:
    """A `grid.rows` x `grid.cols` figure of the studies `select_grid_images` picks, each
    titled with its caption and with its finding masks outlined.

    Args:
        manifest, localizations: the demo's tables (image_id, report; image_id, finding, mask_path).
        images: image_id -> image (or a function that loads it, as a PartitionedDataset gives).
        masks: "<image_id>_<finding slug>" -> mask, likewise.
        grid: the figure's shape.
    """
    rows, cols = grid.rows, grid.cols
    selected = select_grid_images(manifest, localizations, rows * cols)
    reports = dict(zip(manifest["image_id"], manifest["report"]))
    fig = Figure(figsize=(2.6 * cols, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image_id in zip(axes, selected):
        ax.imshow(np.asarray(_as_image(images[image_id])), cmap="gray", vmin=0, vmax=255)
        for row in localizations[localizations["image_id"] == image_id].itertuples():
            key = str(row.mask_path).rsplit("/", 1)[-1].removesuffix(".png")
            if key in masks:
                mask = np.asarray(_as_image(masks[key])) > 0
                ax.contour(mask, levels=[0.5], colors=[OUTLINE_COLOURS.get(row.finding, "red")], linewidths=0.8)
        ax.set_title(textwrap.fill(str(reports[image_id]), 34), fontsize=7)
        ax.text(2, 2, image_id, color="yellow", fontsize=6, va="top")
    handles = [
        ax.plot([], [], color=colour, label=name)[0]
        for name, colour in OUTLINE_COLOURS.items()
        for ax in axes[:1]
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle("Demo phantoms: captions as titles, finding masks outlined (patient's left on the image's right)", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig
