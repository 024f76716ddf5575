"""models/embed.py: the one embedding loop, fed by image files or by cached/streamed pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medclip_residuals.models.embed import embed_batches, embed_image_source
from medclip_residuals.models.image_source import CachedImages, StreamedImages, load_image_tensors


def test_cached_and_streamed_pixels_embed_alike_and_as_the_encoder_does(tmp_path, tiny_demo_encoder):
    encoder = tiny_demo_encoder(["there is pneumonia"], seed=0)
    paths = []
    for index in range(5):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (30, 24), dtype=np.uint8)).save(path)
        paths.append(str(path))
    pixels = load_image_tensors(paths, 32, workers=1)
    cached = embed_image_source(encoder, CachedImages(pixels), batch_size=2)
    streamed = embed_image_source(encoder, StreamedImages(paths, 32, workers=0), batch_size=2)
    assert cached.shape == (5, 512) and cached.dtype == np.float32
    np.testing.assert_array_equal(cached, streamed)
    assert encoder.model.training  # the mode it had
    encoder.model.eval()
    with torch.inference_mode():
        whole = encoder.encode_images(pixels.float()).numpy()
    np.testing.assert_allclose(cached, whole, atol=1e-5)
    assert embed_batches(encoder, [], bf16=False).shape == (0, 512)
