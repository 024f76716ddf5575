"""`params:encoder_training` (conf/base/parameters_encoder_training.yml) as one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from medclip_residuals.models.training import ContrastiveTraining
from medclip_residuals.models.zero_shot import ZeroShotEvaluation


@dataclass(frozen=True)
class EncoderTrainingParams(ContrastiveTraining):
    """The training loop's settings (`ContrastiveTraining`: epochs, batch size, schedule,
    matching, augmentation) and the pipeline's own: the start, the image cache and the
    held-out evaluation. Which patients train it is study_design's `encoder_train` role."""

    temperature_init: float | None  # null: the model's own starting temperature
    center_projections: bool
    image_cache_mb: float | None  # null: no limit
    cache_workers: int
    evaluation: ZeroShotEvaluation
    # every N epochs, log the validation role's zero-shot AUCs (a learning curve; null: never)
    validation_every_epochs: int | None
