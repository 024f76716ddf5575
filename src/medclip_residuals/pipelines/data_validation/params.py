"""`params:data_validation` as one typed, frozen object (conf/base/parameters_data_validation.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class DataValidationParams(Parameters):
    """How the dataset is checked, and whether report labels fill the manifest's gaps.

    Example (in a notebook, `kedro jupyter`):
        params = DataValidationParams.parse(catalog.load("params:data_validation"), "data_validation")
        params.on_unreadable  # "error" with conf/base
    """

    on_unreadable: Literal["error", "skip"]  # stop on a missing or undecodable file, or leave it out
    frontal_only: bool  # keep views PA, AP, FRONTAL and empty only
    labels_from_reports: Literal["off", "fill"]
    report_rules: str  # the report labeller's phrase rules (a YAML file)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | DataValidationParams, where: str) -> DataValidationParams:
        """As `Parameters.parse`, reading a bare YAML `off` (false) as "off"."""
        if isinstance(raw, Mapping) and "labels_from_reports" in raw and raw["labels_from_reports"] is False:
            raw = {**raw, "labels_from_reports": "off"}
        return super().parse(raw, where)

    def check(self, where: str) -> None:
        """The rules file must be named."""
        if not self.report_rules:
            raise ParameterError(f"{where}.report_rules must name the rules file (conf/base/report_label_rules.yml)")
