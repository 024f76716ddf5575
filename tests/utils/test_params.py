"""utils/params.py: typed, frozen parameter objects that refuse what the YAML does not say."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class Scoring(Parameters):
    n_resamples: int
    confidence: float


@dataclass(frozen=True)
class Example(Parameters):
    method: Literal["gradcam", "hirescam"]
    layers: tuple[str, ...]
    shape: tuple[int, int]
    scoring: Scoring
    contrast: str | None
    weights: dict[str, float]

    def check(self, where: str) -> None:
        if not 0 < self.scoring.confidence < 1:
            raise ParameterError(f"{where}.scoring.confidence must lie in (0, 1), got {self.scoring.confidence}")


RAW = {
    "method": "hirescam",
    "layers": ["a", "b"],
    "shape": [2, 3],
    "scoring": {"n_resamples": 10, "confidence": 0.95},
    "contrast": None,
    "weights": {"x": 1, "y": 0.5},
}


def test_a_complete_mapping_parses_into_typed_frozen_values():
    params = Example.parse(RAW, "example")
    assert params.layers == ("a", "b") and params.shape == (2, 3)
    assert params.scoring == Scoring(10, 0.95)
    assert params.weights == {"x": 1.0, "y": 0.5} and isinstance(params.weights["x"], float)
    assert Example.parse(params, "example") is params
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.method = "gradcam"  # type: ignore[misc]
    assert params.to_dict()["layers"] == ["a", "b"]


def test_an_unknown_key_is_refused_with_the_known_ones():
    with pytest.raises(ParameterError, match=r"example: unknown key 'methd' \(known: contrast, layers, method, scoring, shape, weights\)"):
        Example.parse({**RAW, "methd": "x"}, "example")
    with pytest.raises(ParameterError, match=r"example\.scoring: unknown key 'n'"):
        Example.parse({**RAW, "scoring": {"n_resamples": 1, "confidence": 0.9, "n": 2}}, "example")


def test_a_missing_key_is_named():
    raw = {k: v for k, v in RAW.items() if k != "layers"}
    with pytest.raises(ParameterError, match=r"example: missing layers"):
        Example.parse(raw, "example")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("method", "layercam", r"example\.method: 'layercam' is not one of 'gradcam', 'hirescam'"),
        ("layers", "a", r"example\.layers: expected a list"),
        ("shape", [2, 3, 4], r"example\.shape: expected 2 values, got 3"),
        ("shape", [2, "3"], r"example\.shape\[1\]: expected an integer"),
        ("scoring", {"n_resamples": True, "confidence": 0.9}, r"example\.scoring\.n_resamples: expected an integer"),
        ("contrast", 3, r"example\.contrast: expected str"),
        ("weights", {"x": "heavy"}, r"example\.weights\.x: expected a number"),
    ],
)
def test_a_wrong_value_is_named_with_its_path(key, value, message):
    with pytest.raises(ParameterError, match=message):
        Example.parse({**RAW, key: value}, "example")


def test_cross_field_rules_run_after_the_types():
    with pytest.raises(ParameterError, match=r"example\.scoring\.confidence must lie in \(0, 1\)"):
        Example.parse({**RAW, "scoring": {"n_resamples": 10, "confidence": 1.5}}, "example")
