"""`params:explainability` as one typed, frozen object: `ExplainabilityParams.parse(raw, "explainability")`.

Every field is a key of conf/base/parameters_explainability.yml (the only home of the
values); the checks below run once, when a node parses its parameters, so that a bad
value fails in `plan_heatmaps`, before any model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medclip_residuals.data.study_split import Role
from medclip_residuals.explain.cam import resolve_cam_method
from medclip_residuals.explain.evaluate import ScoringSettings
from medclip_residuals.explain.interpretation import RegionGeometry
from medclip_residuals.explain.plan import ContrastFindings, Grounding, HeadVariant
from medclip_residuals.explain.smoothing import shift_grid
from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class GridParams(Parameters):
    """The caption heatmap grid: `two_finding_images` images with two localized findings (the
    prompts of each side by side), then the slide captions on `sample_size` images (half with
    the captions' findings, half with other localized findings); seeded."""

    two_finding_images: int
    sample_size: int

    def check(self, where: str) -> None:
        if self.two_finding_images < 0 or self.sample_size < 0:
            raise ParameterError(f"{where}: two_finding_images and sample_size must be >= 0")


@dataclass(frozen=True)
class ExplainabilityParams(Parameters):
    """The explainability pipeline's parameters (see parameters_explainability.yml)."""

    method: str
    target_layer: str | tuple[str, ...]
    shift_smoothing_px: tuple[int, ...]
    bf16: bool | Literal["auto"]
    caption_gate: Literal["none", "mean", "max"]
    captions: tuple[str, ...]
    contrast_caption: str | None
    contrast_findings: ContrastFindings
    include_report_captions: bool
    finding_synonyms: dict[str, str]
    heads: tuple[HeadVariant, ...]
    head_images: Literal["localized", "all"]
    roles: tuple[Role, ...]
    max_images: int | None
    prefer_localized: bool
    batch_size: int
    chunk_size: int
    grounding: Grounding
    grid: GridParams
    scoring: ScoringSettings
    regions: RegionGeometry

    def check(self, where: str) -> None:
        try:
            resolve_cam_method(self.method)
        except ValueError as error:
            raise ParameterError(f"{where}.method: {error}") from None
        for index, caption in enumerate(self.captions):
            if not caption.strip():
                raise ParameterError(
                    f"{where}.captions[{index}] is an empty phrase ({caption!r}); remove it or write the caption"
                )
        if self.contrast_caption is not None and not self.contrast_caption.strip():
            raise ParameterError(
                f"{where}.contrast_caption is an empty phrase ({self.contrast_caption!r}); write one or use null"
            )
        if self.batch_size < 1:
            raise ParameterError(f"{where}.batch_size must be >= 1")
        if self.chunk_size < 1:
            raise ParameterError(f"{where}.chunk_size must be a whole number of heatmaps >= 1, got {self.chunk_size!r}")
        try:
            shift_grid(self.shift_smoothing_px)
        except ValueError as error:
            raise ParameterError(f"{where}.shift_smoothing_px: {error}") from None
