"""Pointing game, Otsu IoU, regions from masks and boxes, and per-finding summaries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip_residuals.data.preprocess import heatmap_to_original
from medclip_residuals.explain.scoring import (
    LocalizationError,
    centred_gaussian_heatmap,
    finding_regions,
    iou,
    localization_region,
    otsu_mask,
    pointing_hit,
    score_heatmap,
    summarise_scores,
)


def _box(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def test_pointing_game_hits_misses_and_tolerance() -> None:
    heat = np.zeros((20, 20), dtype=np.float32)
    heat[5, 5] = 1.0
    assert pointing_hit(heat, _box((20, 20), 4, 4, 8, 8))
    assert not pointing_hit(heat, _box((20, 20), 7, 7, 12, 12))
    # the region starts 2 px right and 2 px below: distance sqrt(8) ~ 2.83 px
    assert pointing_hit(heat, _box((20, 20), 7, 7, 12, 12), tolerance_px=3)
    assert not pointing_hit(heat, _box((20, 20), 7, 7, 12, 12), tolerance_px=2)
    # a flat map points nowhere
    assert not pointing_hit(np.ones((20, 20)), np.ones((20, 20), dtype=bool))


def test_otsu_and_iou_known_answers() -> None:
    heat = np.zeros((20, 20), dtype=np.float32)
    heat[0:10, 0:10] = 0.9  # two levels: Otsu separates them exactly
    heat += np.linspace(0, 0.05, 400, dtype=np.float32).reshape(20, 20)
    prediction = otsu_mask(heat)
    assert np.array_equal(prediction, _box((20, 20), 0, 0, 10, 10))
    truth = _box((20, 20), 0, 5, 10, 15)  # overlaps 50 of 150 pixels
    assert iou(prediction, truth) == pytest.approx(50 / 150)
    assert math.isnan(iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)))
    assert not otsu_mask(np.full((5, 5), 0.3)).any()


def test_score_heatmap_perfect_and_empty() -> None:
    truth = _box((16, 16), 4, 4, 8, 8)
    perfect = score_heatmap(truth.astype(np.float32), truth)
    assert perfect == {"hit": True, "iou": 1.0, "pred_empty": False, "truth_empty": False}
    flat = score_heatmap(np.zeros((16, 16), np.float32), truth)
    assert flat == {"hit": False, "iou": 0.0, "pred_empty": True, "truth_empty": False}


def test_upsampling_removes_the_padding() -> None:
    # a 40 x 80 image is padded to 80 x 80 (20 rows above and below) then resized to 8 x 8:
    # model rows 2..5 hold the image. Heat on model pixel (3, 6) is image rows 10..19,
    # columns 60..69.
    heat = np.zeros((8, 8), dtype=np.float32)
    heat[3, 6] = 1.0
    original = heatmap_to_original(heat, (40, 80))
    assert original.shape == (40, 80)
    row, col = np.unravel_index(np.argmax(original), original.shape)
    assert 10 <= row <= 19 and 60 <= col <= 69
    assert pointing_hit(original, _box((40, 80), 10, 60, 20, 70))


def test_centred_gaussian_floor_peaks_in_the_middle() -> None:
    floor = centred_gaussian_heatmap(10)
    assert floor.shape == (10, 10)
    assert set(zip(*np.where(floor == floor.max()))) == {(4, 4), (4, 5), (5, 4), (5, 5)}


def test_regions_from_masks_and_boxes(tmp_path: Path) -> None:
    mask = np.zeros((12, 16), dtype=np.uint8)
    mask[2:5, 3:6] = 255
    mask_path = tmp_path / "m.png"
    Image.fromarray(mask).save(mask_path)
    table = pd.DataFrame([
        {"image_id": "a", "finding": "Pneumonia", "mask_path": str(mask_path), "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan},
        {"image_id": "a", "finding": "Pneumonia", "mask_path": "", "x": 10.0, "y": 8.0, "w": 3.0, "h": 2.0},
        {"image_id": "b", "finding": "Edema", "mask_path": "", "x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0},
    ])
    regions = finding_regions(table, "a", (12, 16))
    assert list(regions) == ["Pneumonia"]
    expected = _box((12, 16), 2, 3, 5, 6) | _box((12, 16), 8, 10, 10, 13)
    assert np.array_equal(regions["Pneumonia"], expected)


def test_bad_localizations_name_the_file(tmp_path: Path) -> None:
    empty_path = tmp_path / "empty_mask.png"
    Image.fromarray(np.zeros((12, 16), dtype=np.uint8)).save(empty_path)
    row = {"image_id": "a", "finding": "Pneumonia", "mask_path": str(empty_path)}
    with pytest.raises(LocalizationError, match=r"empty_mask\.png.*empty"):
        localization_region(row, (12, 16))
    with pytest.raises(LocalizationError, match=r"empty_mask\.png.*12x16, but the image is 10x16"):
        localization_region(row, (10, 16))
    with pytest.raises(LocalizationError, match="neither a mask_path nor a complete box"):
        localization_region({"image_id": "a", "finding": "Edema", "mask_path": "", "x": 1.0, "y": np.nan, "w": 2, "h": 2}, (12, 16))
    with pytest.raises(LocalizationError, match="covers no pixel"):
        localization_region({"image_id": "a", "finding": "Edema", "mask_path": "", "x": 20, "y": 1, "w": 2, "h": 2}, (12, 16))


def test_summary_rates_with_and_without_empty_predictions() -> None:
    scores = pd.DataFrame({
        "target_group": ["caption"] * 4,
        "finding": ["Pneumonia"] * 4,
        "hit": [True, True, True, False],
        "iou": [0.5, 0.7, 0.3, 0.0],
        "pred_empty": [False, False, False, True],
        "truth_empty": [False] * 4,
        "floor_hit": [False, True, False, False],
        "floor_iou": [0.1, 0.1, 0.1, 0.1],
        "floor_pred_empty": [False] * 4,
    })
    summary = summarise_scores(scores, n_resamples=200, seed=0).iloc[0]
    assert summary["n"] == 4
    assert summary["hit_rate"] == pytest.approx(0.75)
    assert summary["miou"] == pytest.approx(1.5 / 4)
    assert summary["miou_nonempty"] == pytest.approx(0.5)
    assert summary["n_nonempty"] == 3
    assert summary["floor_hit_rate"] == pytest.approx(0.25)
    assert summary["hit_rate_low"] <= 0.75 <= summary["hit_rate_high"]
    again = summarise_scores(scores, n_resamples=200, seed=0).iloc[0]
    assert again["hit_rate_low"] == summary["hit_rate_low"]  # deterministic given the seed
