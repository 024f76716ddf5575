"""MedCLIP preprocessing, the Dataset class, and the inverse geometry for heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from medclip_residuals.data.preprocess import (
    MEDCLIP_MEAN,
    MEDCLIP_STD,
    PadResizeGeometry,
    XrayImageDataset,
    heatmap_to_original,
    original_to_model_coords,
    preprocess_array,
    preprocess_image,
)

BLACK = (0.0 - MEDCLIP_MEAN) / MEDCLIP_STD
WHITE = (1.0 - MEDCLIP_MEAN) / MEDCLIP_STD


def test_constants_are_medclips() -> None:
    assert MEDCLIP_MEAN == 0.5862785803043838 and MEDCLIP_STD == 0.27950088968644304


def test_shape_dtype_channels_and_normalisation() -> None:
    grey = np.full((30, 30), 0.75, dtype=np.float32)
    pixels = preprocess_array(grey, size=16)
    assert isinstance(pixels, torch.Tensor) and pixels.dtype == torch.float32
    assert pixels.shape == (3, 16, 16)
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[0], pixels[2])
    torch.testing.assert_close(pixels, torch.full((3, 16, 16), (0.75 - MEDCLIP_MEAN) / MEDCLIP_STD))
    # a grey level equal to MedCLIP's mean lands on 0
    assert preprocess_array(np.full((8, 8), MEDCLIP_MEAN, np.float32), size=8).abs().max() < 1e-6
    assert preprocess_array(grey).shape == (3, 224, 224)  # 224 by default


@pytest.mark.parametrize(("shape", "rows", "cols"), [((20, 40), (10, 30), (0, 40)), ((21, 40), (9, 30), (0, 40)),
                                                     ((40, 15), (0, 40), (12, 27))])
def test_padding_is_black_on_the_short_side_and_centred(shape, rows, cols) -> None:
    # side == size, so no resize: the padding can be checked pixel by pixel
    pixels = preprocess_array(np.ones(shape, dtype=np.float32), size=40)[0].numpy()
    inside = np.zeros((40, 40), dtype=bool)
    inside[rows[0]:rows[1], cols[0]:cols[1]] = True
    np.testing.assert_allclose(pixels[inside], WHITE, atol=1e-6)
    np.testing.assert_allclose(pixels[~inside], BLACK, atol=1e-6)


def test_small_images_are_padded_not_enlarged_like_medclip() -> None:
    pixels = preprocess_array(np.ones((10, 6), dtype=np.float32), size=32)[0].numpy()
    assert np.isclose(pixels, WHITE).sum() == 60  # still 10 x 6 pixels, at offset (11, 13)
    assert np.allclose(pixels[11:21, 13:19], WHITE)


def _medclip_reference(pixels_u8: np.ndarray, size: int) -> np.ndarray:
    """MedCLIPFeatureExtractor's steps on an 8-bit image (pad_img, PIL bicubic resize, /255, normalise)."""
    image = Image.fromarray(pixels_u8)
    x, y = image.size
    side = max(size, x, y)
    padded = Image.new("L", (side, side), 0)
    padded.paste(image, (int((side - x) / 2), int((side - y) / 2)))
    resized = padded.resize((size, size), resample=Image.BICUBIC)
    return (np.asarray(resized, dtype=np.float64) / 255.0 - MEDCLIP_MEAN) / MEDCLIP_STD


def test_matches_the_medclip_recipe_on_an_8bit_image() -> None:
    rows, cols = np.mgrid[0:70, 0:100]
    pixels = (127 + 120 * np.sin(rows / 7.0) * np.cos(cols / 11.0)).astype(np.uint8)
    ours = preprocess_array(pixels / np.float32(255.0), size=48)[0].numpy()
    reference = _medclip_reference(pixels, size=48)
    # differences come from Pillow's 8-bit fixed-point arithmetic only: about one grey level
    grey_levels = np.abs(ours - reference) * MEDCLIP_STD * 255
    assert grey_levels.max() <= 1.5 and grey_levels.mean() <= 0.3


def test_preprocess_image_and_dataset_with_worker_processes(tmp_path: Path) -> None:
    paths = []
    for index in range(4):
        pixels = np.full((12, 20), 40 * index, dtype=np.uint8)
        paths.append(tmp_path / f"img{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    dataset = XrayImageDataset(paths, size=20)
    assert len(dataset) == 4
    index, tensor = dataset[2]
    assert index == 2 and torch.equal(tensor, preprocess_image(paths[2], size=20))
    loader = DataLoader(dataset, batch_size=3, num_workers=1, shuffle=False)
    batches = list(loader)
    assert [b[0].tolist() for b in batches] == [[0, 1, 2], [3]]
    assert batches[0][1].shape == (3, 3, 20, 20)
    # image 3 is grey 120: its centre rows carry that value
    assert batches[1][1][0, 0, 10, 10].item() == pytest.approx((120 / 255 - MEDCLIP_MEAN) / MEDCLIP_STD, abs=1e-5)


def test_geometry_of_a_tall_image() -> None:
    geometry = PadResizeGeometry(height=300, width=200, size=60)
    assert (geometry.side, geometry.top, geometry.left, geometry.scale) == (300, 0, 50, 0.2)
    assert geometry.image_box() == (10.0, 0.0, 50.0, 60.0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_mask_round_trip_original_to_model_and_back() -> None:
    mask = np.zeros((300, 200), dtype=bool)
    mask[120:210, 30:90] = True  # (rows, columns) of the original image
    model = original_to_model_coords(mask, size=60)
    assert model.shape == (60, 60) and model.dtype == np.float32
    # scale 0.2, offset 50 columns: rows 24..42, columns (50 + 30) * 0.2 = 16 .. (50 + 90) * 0.2 = 28
    expected = np.zeros((60, 60), dtype=bool)
    expected[24:42, 16:28] = True
    np.testing.assert_array_equal(model > 0.5, expected)
    assert model.sum() == pytest.approx(mask.sum() * 0.2**2, rel=1e-5)  # area is preserved
    back = heatmap_to_original(model, (300, 200))
    assert back.shape == (300, 200)
    assert _iou(back > 0.5, mask) > 0.93


def test_heatmap_round_trip_model_to_original_and_back() -> None:
    rows, cols = np.mgrid[0:64, 0:64]
    heatmap = np.exp(-((rows - 30) ** 2 + (cols - 36) ** 2) / (2 * 8.0**2)).astype(np.float32)
    original = heatmap_to_original(heatmap, (256, 512))  # wide: padded top and bottom
    geometry = PadResizeGeometry(256, 512, 64)
    assert (geometry.top, geometry.left, geometry.scale) == (128, 0, 0.125)
    # the peak lands where the geometry says: model (30, 36) -> original (30 / 0.125 - 128, 36 / 0.125)
    peak = np.unravel_index(np.argmax(original), original.shape)
    assert abs(peak[0] - (30.5 / 0.125 - 0.5 - 128)) <= 4 and abs(peak[1] - (36.5 / 0.125 - 0.5)) <= 4
    again = original_to_model_coords(original, size=64)
    box = geometry.image_box()
    inside = (slice(int(box[1]), int(box[3])), slice(int(box[0]), int(box[2])))
    np.testing.assert_allclose(again[inside], heatmap[inside], atol=0.02)
    assert np.all(again[:16] == 0) and np.all(again[48:] == 0)  # the padding carries no heat


def test_small_image_round_trip_is_exact() -> None:
    mask = np.zeros((10, 6), dtype=np.float32)
    mask[2:5, 1:4] = 1.0
    model = original_to_model_coords(mask, size=32)
    assert model[11 + 2, 13 + 1] == 1.0 and model.sum() == 9.0
    np.testing.assert_array_equal(heatmap_to_original(model, (10, 6)), mask)


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="square"):
        heatmap_to_original(np.zeros((4, 5)), (10, 10))
    with pytest.raises(ValueError, match="2-D"):
        preprocess_array(np.zeros((4, 4, 3)), size=8)
    with pytest.raises(ValueError, match="positive integer"):
        original_to_model_coords(np.zeros((4, 4)), size=0)
