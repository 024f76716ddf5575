"""Shift smoothing: the shifted image and the grid of shifts (the maps: tests/explain/test_cam.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclip_residuals.explain.smoothing import shift_grid, shift_image


def test_shift_image_moves_content_and_replicates_edges() -> None:
    image = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    moved = shift_image(image, 1, -2)  # one row down, two columns left
    np.testing.assert_array_equal(moved[0, 0, 1:, :3].numpy(), image[0, 0, :4, 2:].numpy())
    np.testing.assert_array_equal(moved[0, 0, 0, :3].numpy(), image[0, 0, 0, 2:].numpy())  # top row replicated
    np.testing.assert_array_equal(moved[0, 0, 1:, 3:].numpy(), image[0, 0, :4, 4:].repeat(1, 2).numpy())
    assert shift_image(image, 0, 0) is image
    with pytest.raises(ValueError, match="does not fit"):
        shift_image(image, 5, 0)
    assert shift_grid([-1, 0, 1]) == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    with pytest.raises(ValueError, match="twice"):
        shift_grid([0, 0])
