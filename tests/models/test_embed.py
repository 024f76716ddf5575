"""models/embed.py: the one embedding loop, fed by image files or by cached/streamed pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medclip_residuals.models.embed import embed_batches, embed_image_files, embed_image_source
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


def _pngs(folder, n: int) -> list[str]:
    paths = []
    for index in range(n):
        path = folder / f"img{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (30, 24), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_image_files_give_the_same_numbers_however_the_pass_is_planned(tmp_path, tiny_demo_encoder):
    encoder = tiny_demo_encoder(["there is pneumonia"], seed=0)
    paths = _pngs(tmp_path, 5)
    reference = embed_image_files(encoder, paths, 2, num_workers=0, bf16=False, progress=False, threads=1,
                                  channels_last=False)
    assert reference.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-6)
    auto = embed_image_files(encoder, paths, "auto", num_workers="auto", bf16=False, progress=False)
    one_worker = embed_image_files(encoder, paths, 2, num_workers=1, bf16=False, progress=False, threads=1)
    channels_last = embed_image_files(encoder, paths, 2, 0, False, False, threads=1, channels_last=True)
    np.testing.assert_allclose(auto, reference, atol=1e-6)
    np.testing.assert_array_equal(one_worker, reference)  # decoding in a worker changes nothing
    np.testing.assert_allclose(channels_last, reference, atol=1e-6)


def test_bf16_embeddings_point_where_float32_ones_do(tmp_path, tiny_demo_encoder):
    encoder = tiny_demo_encoder(["there is pneumonia"], seed=0)
    paths = _pngs(tmp_path, 4)
    float32 = embed_image_files(encoder, paths, 4, 0, bf16=False, progress=False)
    bf16 = embed_image_files(encoder, paths, 4, 0, bf16=True, progress=False)
    assert not np.array_equal(bf16, float32)
    assert (bf16 * float32).sum(axis=1).min() > 0.98
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-6)
