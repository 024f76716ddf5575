"""`params:demo_data` as one typed, frozen object (conf/base/parameters_demo_data.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.data.phantom import PhantomParams
from medclip_residuals.data.phantom_grid import ImageGrid


@dataclass(frozen=True)
class DemoDataParams(PhantomParams):
    """The phantom generator's settings (`PhantomParams`, the YAML's top-level keys, so that
    `--params demo_data.n_images=...` keeps working) and the grid figure's shape.

    Example (in a notebook, `kedro jupyter`):
        params = DemoDataParams.parse(catalog.load("params:demo_data"), "demo_data")
        params.n_images, params.grid.rows  # (4000, 4) with conf/base
    """

    grid: ImageGrid
