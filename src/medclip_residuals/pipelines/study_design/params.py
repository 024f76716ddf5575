"""Typed parameters of the study_design pipeline (conf/base/parameters_study_design.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.data.targets import TargetPolicy
from medclip_residuals.models.classifiers import ClassifierSettings
from medclip_residuals.models.evaluation import BootstrapSettings
from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class SplitSettings(Parameters):
    """The train/test split by patient: round(1 / test_size) folds, the first is the test set."""

    test_size: float

    def check(self, where: str) -> None:
        if not 0 < self.test_size < 1:
            raise ParameterError(f"params:{where}.test_size must lie in (0, 1), got {self.test_size}")


@dataclass(frozen=True)
class StudyDesignParams(Parameters):
    """params:study_design: what residual_1 and residual_2 share.

    The targets ("auto", one name or a list) and the automatic choice's thresholds, the
    uncertainty policy of the targets, the split, the one classifier of every head, and the
    bootstrap of every confidence interval.
    """

    targets: str | tuple[str, ...]
    auto_exclude: tuple[str, ...]
    min_positives: int
    min_negatives: int
    uncertainty_policy: TargetPolicy
    split: SplitSettings
    classifier: ClassifierSettings
    bootstrap: BootstrapSettings
