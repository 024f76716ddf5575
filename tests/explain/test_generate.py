"""Regrouping batches of maps into the store's chunks (the maps themselves: the pipeline tests), and the caption gate."""

from __future__ import annotations

import numpy as np
import torch

from medclip_residuals.explain.generate import empty_unfit_captions, rechunk
from medclip_residuals.explain.targets import ContrastSetTarget, SimilarityTarget


def test_rechunk_cuts_across_batches_in_row_order() -> None:
    maps = np.arange(11 * 2 * 2, dtype=np.float32).reshape(11, 2, 2)
    batches = [maps[0:4], maps[4:8], maps[8:11]]
    metadata = {"method": "gradcam"}
    chunks = list(rechunk(iter(batches), chunk_size=3, total=11, metadata=metadata))
    assert [(c.start, len(c)) for c in chunks] == [(0, 3), (3, 3), (6, 3), (9, 2)]
    assert all(c.total == 11 and c.metadata is metadata and c.heatmaps.dtype == np.float16 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.heatmaps for c in chunks]), maps.astype(np.float16))
    (whole,) = rechunk(iter(batches), chunk_size=100, total=11, metadata=metadata)
    assert whole.start == 0 and len(whole) == 11


class _Normalised(torch.nn.Module):
    """The 'image' is its own embedding (normalised), so each margin is known."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        flat = pixels.flatten(1) * self.scale
        return flat / flat.norm(dim=1, keepdim=True)


def test_maps_of_captions_the_image_does_not_fit_are_emptied() -> None:
    axis = np.eye(4, dtype=np.float32)
    pixels = torch.tensor([[0.9, 0.1, 0.1, 0.0], [0.1, 0.9, 0.1, 0.0], [0.1, 0.9, 0.1, 0.0]]).view(3, 1, 2, 2)
    targets = [
        ContrastSetTarget(axis[0], axis[1:3], reduce="max"),  # the image is along axis 0: it fits
        ContrastSetTarget(axis[0], axis[1:3], reduce="max"),  # along axis 1: a contrast fits better
        SimilarityTarget(axis[0]),  # a plain caption: nothing to compare with, kept
    ]
    maps = np.ones((3, 5, 5), dtype=np.float32)
    assert empty_unfit_captions(maps, _Normalised(), pixels, targets, "mean") == 1
    assert maps[0].min() == 1 and maps[1].max() == 0 and maps[2].min() == 1
