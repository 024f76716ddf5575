"""The demo's grid figure: which studies it shows, and its shape's parameters."""

from __future__ import annotations

import pandas as pd
import pytest

from medclip_residuals.data.phantom_grid import ImageGrid, select_grid_images
from medclip_residuals.utils.params import ParameterError


def test_grid_selection_shows_the_variety() -> None:
    manifest = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "report": ["the lungs are clear", "x", "there is some pneumonia near the heart", "y", "z"],
            "Pneumonia": ["0", "1", "1", "0", "-1"],
        }
    )
    localizations = pd.DataFrame(
        {"image_id": ["b", "c", "d", "e"], "finding": ["Edema", "Pneumonia", "Cardiomegaly", "Pneumonia"]}
    )
    assert select_grid_images(manifest, localizations, 3) == ["a", "c", "d"]
    assert select_grid_images(manifest, localizations, 10) == ["a", "c", "d", "b", "e"]



def test_grid_shape_needs_a_row_and_a_column() -> None:
    assert ImageGrid.parse({"rows": 2, "cols": 3}, "demo_data.grid") == ImageGrid(2, 3)
    with pytest.raises(ParameterError, match=r"demo_data\.grid\.rows: must be an integer >= 1"):
        ImageGrid.parse({"rows": 0, "cols": 3}, "demo_data.grid")
