"""Typed parameters of the residual_2 pipeline (conf/base/parameters_residual_2.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.models.classifiers import MapSettings
from medclip_residuals.utils.params import Parameters


@dataclass(frozen=True)
class Residual2Params(Parameters):
    """params:residual_2: the map f: i -> w and the accuracy threshold. The split, targets,
    classifier g and bootstrap are study_design's (params:study_design)."""

    map: MapSettings
    threshold: float
