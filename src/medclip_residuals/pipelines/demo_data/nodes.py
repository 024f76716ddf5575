"""Nodes of the `demo_data` pipeline: draw the phantom dataset, and a grid of it to look at."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from medclip_residuals.data.folders import DEMO_MARKER_HEADER
from medclip_residuals.data.phantom import GENERATOR_VERSION, generate_dataset, resolve_params
from medclip_residuals.data.phantom_text import MODELLED_FINDINGS, SLIDE_EFFUSION, SLIDE_PNEUMONIA

_OUTLINE_COLOURS = {
    "Pneumonia": "#ff4040",
    "Consolidation": "#ff9f1c",
    "Pleural Effusion": "#2ec4f6",
    "Cardiomegaly": "#ffd500",
    "Lung Lesion": "#ff3df5",
    "Pneumothorax": "#38f56e",
    "Edema": "#8c7bff",
    "Atelectasis": "#00bfa5",
}


def generate_demo_data(
    params: dict[str, Any],
) -> tuple[str, pd.DataFrame, pd.DataFrame, dict[str, Image.Image], dict[str, Image.Image]]:
    """Draw the phantom dataset: the demo marker, manifest, localizations, images and masks.

    Images are keyed by image_id and masks by "<image_id>_<finding slug>", the partition
    names of `images/` and `masks/` under data_root. The marker says which generator, seed
    and size made the folder (and that it is the demo's own, safe to overwrite); it comes
    first so that Kedro saves it first, and a run stopped half-way leaves a folder that the
    next demo_data run may still write into (data/folders.py).
    """
    cfg = resolve_params(params)
    manifest, localizations, images, masks = generate_dataset(cfg)
    marker = (
        f"{DEMO_MARKER_HEADER} (procedural chest X-ray phantoms)\n"
        f"version: {GENERATOR_VERSION}\n"
        f"seed: {cfg['seed']}\n"
        f"n_images: {cfg['n_images']}\n"
        f"image_size: {cfg['image_size']}\n"
    )
    return marker, manifest, localizations, images, masks


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


def plot_demo_image_grid(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame,
    demo_images: dict[str, Any],
    demo_masks: dict[str, Any],
    params: dict[str, Any],
) -> Figure:
    """A grid of generated images, each titled with its caption and with its finding masks
    outlined, for a person to judge whether they look like chest films."""
    grid = params.get("grid", {}) if params else {}
    rows, cols = int(grid.get("rows", 4)), int(grid.get("cols", 4))
    selected = select_grid_images(manifest, localizations, rows * cols)
    reports = dict(zip(manifest["image_id"], manifest["report"]))
    fig = Figure(figsize=(2.6 * cols, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image_id in zip(axes, selected):
        ax.imshow(np.asarray(_as_image(demo_images[image_id])), cmap="gray", vmin=0, vmax=255)
        for row in localizations[localizations["image_id"] == image_id].itertuples():
            key = str(row.mask_path).rsplit("/", 1)[-1].removesuffix(".png")
            if key in demo_masks:
                mask = np.asarray(_as_image(demo_masks[key])) > 0
                ax.contour(mask, levels=[0.5], colors=[_OUTLINE_COLOURS.get(row.finding, "red")], linewidths=0.8)
        ax.set_title(textwrap.fill(str(reports[image_id]), 34), fontsize=7)
        ax.text(2, 2, image_id, color="yellow", fontsize=6, va="top")
    handles = [
        ax.plot([], [], color=colour, label=name)[0]
        for name, colour in _OUTLINE_COLOURS.items()
        for ax in axes[:1]
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle("Demo phantoms: captions as titles, finding masks outlined (patient's left on the image's right)", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig
