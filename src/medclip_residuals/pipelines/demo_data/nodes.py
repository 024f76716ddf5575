"""Nodes of the `demo_data` pipeline: draw the phantom dataset, and a grid of it to look at."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from medclip_residuals.data.phantom import demo_marker, generate_dataset
from medclip_residuals.data.phantom_grid import plot_phantom_grid
from medclip_residuals.pipelines.demo_data.params import DemoDataParams


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
    p = DemoDataParams.parse(params, "demo_data")
    manifest, localizations, images, masks = generate_dataset(p)
    return demo_marker(p), manifest, localizations, images, masks


def plot_demo_image_grid(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame,
    demo_images: dict[str, Any],
    demo_masks: dict[str, Any],
    params: dict[str, Any],
) -> Figure:
    """A grid of generated images, each titled with its caption and with its finding masks
    outlined, for a person to judge whether they look like chest films."""
    p = DemoDataParams.parse(params, "demo_data")
    return plot_phantom_grid(manifest, localizations, demo_images, demo_masks, p.grid)
