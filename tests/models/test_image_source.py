"""models/image_source.py: images cached within the memory budget, streamed beyond it, the same values."""

from __future__ import annotations

import numpy as np
import torch

from medclip_residuals.models.image_source import image_source


def test_image_source_caches_within_the_budget_and_streams_the_same_values_beyond(tmp_path, caplog):
    from PIL import Image

    paths = []
    for index in range(5):
        path = tmp_path / f"img{index}.png"
        pixels = np.random.default_rng(index).integers(0, 256, (20 + index, 24), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    # 5 images of 32 x 32 float16 = 10 KB = 0.0098 MB
    with caplog.at_level("INFO"):
        cached = image_source(paths, 32, cache_mb=0.0098, workers=0, desc="training")
        streamed = image_source(paths, 32, cache_mb=0.0097, workers=0, desc="training")
        unlimited = image_source(paths, 32, cache_mb=None, workers=0, desc="training")
    assert type(cached).__name__ == "CachedImages" and type(unlimited).__name__ == "CachedImages"
    assert type(streamed).__name__ == "StreamedImages" and len(streamed) == 5
    assert "5 training images streamed from disk per batch (0 DataLoader workers)" in caplog.text
    assert "cached in memory (0.0 MB as float16, no limit)" in caplog.text
    batches = [torch.tensor([3, 0]), torch.tensor([4, 1, 2])]
    state = torch.random.get_rng_state()
    for a, b in zip(cached.batches(batches), streamed.batches(batches), strict=True):
        assert a.dtype == b.dtype == torch.float32 and a.shape[1:] == (1, 32, 32)
        assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)  # streaming leaves torch's global RNG alone
