"""`params:embedding` (conf/base/parameters_embedding.yml) as one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medclip_residuals.utils.params import ParameterError, Parameters


@dataclass(frozen=True)
class EmbeddingParams(Parameters):
    """Batching of the image and text embedding, the caption text, the phenotype vocabulary."""

    batch_size: int | Literal["auto"]  # images per batch; auto: small on a CPU (models/compute.py)
    num_workers: int | Literal["auto"]  # DataLoader workers that decode images (models/compute.py)
    torch_threads: int | Literal["auto"]  # torch threads that run the model
    bf16: bool | Literal["auto"]  # bf16 autocast; auto: where the device computes it natively
    channels_last: bool | Literal["auto"]  # channels-last pixels; auto: on CUDA
    text_batch_size: int
    report_text: Literal["whole", "impression"]
    phenotype_vocabulary: tuple[str, ...]

    @property
    def phrases(self) -> list[str]:
        """The vocabulary's phrases, stripped of surrounding spaces."""
        return [phrase.strip() for phrase in self.phenotype_vocabulary]

    def check(self, where: str) -> None:
        if self.batch_size != "auto" and self.batch_size < 1:
            raise ParameterError(f"{where}.batch_size must be >= 1 or auto, got {self.batch_size}")
        if self.num_workers != "auto" and self.num_workers < 0:
            raise ParameterError(f"{where}.num_workers must be >= 0 or auto, got {self.num_workers}")
        if self.torch_threads != "auto" and self.torch_threads < 1:
            raise ParameterError(f"{where}.torch_threads must be >= 1 or auto, got {self.torch_threads}")
        phrases = self.phrases
        if not phrases:
            raise ParameterError(f"{where}.phenotype_vocabulary is empty: list at least one phrase")
        empty = [i for i, phrase in enumerate(phrases) if not phrase]
        if empty:
            raise ParameterError(f"{where}.phenotype_vocabulary has empty phrases at positions {empty}")
        duplicates = sorted({p for p in phrases if phrases.count(p) > 1})
        if duplicates:
            raise ParameterError(f"{where}.phenotype_vocabulary lists these phrases twice: {duplicates}")
