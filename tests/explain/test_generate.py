"""Regrouping batches of maps into the store's chunks (the maps themselves: the pipeline tests)."""

from __future__ import annotations

import numpy as np

from medclip_residuals.explain.generate import rechunk


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
