"""Typed parameters of the study_design pipeline (conf/base/parameters_study_design.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.data.study_split import StudySplitSettings
from medclip_residuals.data.targets import TargetPolicy
from medclip_residuals.models.classifiers import ClassifierSettings
from medclip_residuals.models.evaluation import BootstrapSettings
from medclip_residuals.utils.params import Parameters


@dataclass(frozen=True)
class StudyDesignParams(Parameters):
    """params:study_design: the study's one split and what every residual head shares.

    The targets ("auto", one name or a list) and the automatic choice's thresholds, the
    uncertainty policy of CheXpert targets, the split into roles, the one classifier of every
    head, and the bootstrap of every confidence interval.
    """

    targets: str | tuple[str, ...]
    auto_exclude: tuple[str, ...]
    min_positives: int
    min_negatives: int
    uncertainty_policy: TargetPolicy
    split: StudySplitSettings
    classifier: ClassifierSettings
    bootstrap: BootstrapSettings
