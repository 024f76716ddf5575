"""Heatmap interpretation: patient-side naming, zones, heart, and caption agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medclip_residuals.explain.interpretation import (
    Region,
    RegionGeometry,
    StatedLocation,
    dominant_region,
    location_agrees,
    parse_location,
    region_labels,
)


@pytest.fixture(scope="module")
def regions(base_params) -> RegionGeometry:
    """conf/base's region geometry."""
    return RegionGeometry.parse(base_params("explainability")["regions"], "explainability.regions")


def _blob(hw: tuple[int, int], centre_yx: tuple[float, float], sigma: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    cy, cx = centre_yx[0] * hw[0], centre_yx[1] * hw[1]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_blob_on_the_images_right_is_the_patients_left(regions: RegionGeometry) -> None:
    region = dominant_region(_blob((100, 120), (0.65, 0.8)), regions)
    assert (region.side, region.zone) == ("left", "lower")
    assert region.phrase == "left lower lung"
    assert region.share > 0.9


def test_blob_on_the_images_left_upper_is_the_patients_right_upper(regions: RegionGeometry) -> None:
    assert dominant_region(_blob((100, 100), (0.2, 0.2)), regions).phrase == "right upper lung"
    assert dominant_region(_blob((100, 100), (0.45, 0.2)), regions).phrase == "right middle lung"


def test_heart_and_outside(regions: RegionGeometry) -> None:
    assert dominant_region(_blob((100, 100), (0.6, 0.55), sigma=4), regions).phrase == "heart"
    assert dominant_region(_blob((100, 100), (0.97, 0.5), sigma=2), regions).phrase == "outside the lungs"
    flat = dominant_region(np.zeros((10, 10), np.float32), regions)
    assert math.isnan(flat.share) and flat.phrase == "outside the lungs"


def test_region_geometry_is_a_parameter(base_params) -> None:
    def geometry(**overrides: list[float]) -> RegionGeometry:
        return RegionGeometry.parse(base_params("explainability", regions=overrides)["regions"], "regions")

    labels, names = region_labels((10, 10), geometry(lungs=[0.0, 0.0, 1.0, 1.0], heart=[0.4, 0.4, 0.6, 0.6]))
    assert names[labels[0, 0]] == ("right", "upper")
    assert names[labels[9, 9]] == ("left", "lower")
    assert names[labels[5, 5]] == ("", "heart")
    with pytest.raises(ValueError, match="region 'heart'"):
        geometry(heart=[0.6, 0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="zone_boundaries"):
        geometry(zone_boundaries=[0.6, 0.4])


@pytest.mark.parametrize(
    ("caption", "side", "zone"),
    [
        ("there is some pneumonia near the heart", "", "heart"),
        ("there is pleural effusion on the lower lung", "", "lower"),
        ("Left upper lobe opacity.", "left", "upper"),
        ("right basilar atelectasis", "right", "lower"),
        ("bilateral effusions", "bilateral", ""),
        ("no acute cardiopulmonary process", "", ""),
        ("", "", ""),
    ],
)
def test_parse_location(caption: str, side: str, zone: str) -> None:
    assert parse_location(caption) == StatedLocation(side=side, zone=zone)


def test_agreement() -> None:
    left_lower = Region("left", "lower", 0.8)
    assert location_agrees(left_lower, StatedLocation("left", "lower")) == 1.0
    assert location_agrees(left_lower, StatedLocation("right", "")) == 0.0
    assert location_agrees(left_lower, StatedLocation("", "lower")) == 1.0
    assert location_agrees(left_lower, StatedLocation("bilateral", "lower")) == 1.0
    assert location_agrees(left_lower, StatedLocation("", "heart")) == 0.0
    assert location_agrees(Region("", "heart", 0.6), StatedLocation("", "heart")) == 1.0
    assert math.isnan(location_agrees(left_lower, StatedLocation("", "")))
