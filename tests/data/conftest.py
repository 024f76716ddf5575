"""Fixtures shared by the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medclip_residuals.data.phantom import PhantomParams


@pytest.fixture(scope="session")
def phantom_params(base_params) -> Callable[..., PhantomParams]:
    """Factory: conf/base's demo_data settings (less the grid figure's) with overrides."""

    def make(**overrides: object) -> PhantomParams:
        raw = base_params("demo_data", **overrides)
        del raw["grid"]
        return PhantomParams.parse(raw, "demo_data")

    return make
