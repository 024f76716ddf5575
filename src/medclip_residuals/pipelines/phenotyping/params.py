"""Typed parameters of the phenotyping pipeline (conf/base/parameters_phenotyping.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.models.phenotypes import (
    PhraseMeanings,
    PhraseOrder,
    ReportFallback,
    ReportUncertain,
    Source,
    Strategy,
)
from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class PhenotypingParams(Parameters):
    """params:phenotyping: the top-k, how w is made from it, and what the phrases mean
    (`evaluation`: finding synonyms and location phrases)."""

    top_k: int
    chunk_size: int
    strategy: Strategy
    sentence_template: str
    separator: str
    phrase_order: PhraseOrder
    source: Source
    report_uncertain: ReportUncertain
    report_fallback: ReportFallback
    evaluation: PhraseMeanings

    def check(self, where: str) -> None:
        if self.top_k < 1:
            raise ParameterError(f"params:{where}.top_k must be >= 1, got {self.top_k}")
        if self.chunk_size < 1:
            raise ParameterError(f"params:{where}.chunk_size must be >= 1, got {self.chunk_size}")
        if "{phenotypes}" not in self.sentence_template:
            raise ParameterError(
                f"params:{where}.sentence_template must contain '{{phenotypes}}', got {self.sentence_template!r}"
            )
