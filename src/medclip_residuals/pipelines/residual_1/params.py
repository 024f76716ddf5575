"""Typed parameters of the residual_1 pipeline (conf/base/parameters_residual_1.yml).

The split, targets, classifier and bootstrap residual_1 shares with residual_2 are
study_design's (params:study_design); residual_1's own are the phenotype sweep's grid."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.models.sweep import SweepSettings
from medclip_residuals.utils.params import Parameters


@dataclass(frozen=True)
class Residual1Params(Parameters):
    """params:residual_1."""

    sweep: SweepSettings
