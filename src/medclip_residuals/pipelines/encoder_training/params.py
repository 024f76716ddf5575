"""`params:encoder_training` (conf/base/parameters_encoder_training.yml) as one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.models.training import ContrastiveTraining
from medclip_residuals.models.zero_shot import ZeroShotEvaluation
from medclip_residuals.utils.params import ParameterError


@dataclass(frozen=True)
class EncoderTrainingParams(ContrastiveTraining):
    """The training loop's settings (`ContrastiveTraining`: epochs, batch size, schedule,
    matching, augmentation) and the pipeline's own: the split, the start, the image cache and
    the held-out evaluation."""

    test_fraction: float  # share of patients held out, in (0, 1)
    temperature_init: float | None  # null: the model's own starting temperature
    center_projections: bool
    image_cache_mb: float | None  # null: no limit
    cache_workers: int
    evaluation: ZeroShotEvaluation

    def check(self, where: str) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ParameterError(f"{where}.test_fraction must lie in (0, 1), got {self.test_fraction}")
