"""The models that Grad-CAM explains: the image embedding, and a head on top of it.

pytorch-grad-cam explains `model(pixel_values)` through *targets* (see explain/targets.py):
callables that turn one image's model output into the scalar whose gradient is followed.
The project explains one model, `ImageEmbeddingModel` (the vision encoder followed by L2
normalisation: the image embedding `i` every pipeline uses), and puts what differs between
explanations into the targets.

`HeatMapModel(vision_encoder, regression_model)` is the explicit model of the research
slides: `forward(pixel_values, w=None) = regression_model(normalize(vision_encoder(x)))`
(residual variants subtract `w` inside). Its `.embedder` and `.head_on_embedding` are the
two halves the CAM path uses: the embedder is what pytorch-grad-cam runs, the head is what
a `HeadTarget` applies to the embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medclip_residuals.models.heads import ResidualHead


def as_probability(output: torch.Tensor) -> torch.Tensor:
    """A head's output as one probability per row: (B,), (B, 1) or (B, 2) -> (B,)."""
    if output.ndim == 2 and output.shape[1] == 2:
        return output[:, 1]  # sklearn's predict_proba layout: column 1 is "present"
    if output.ndim == 2 and output.shape[1] == 1:
        return output[:, 0]
    if output.ndim == 1:
        return output
    raise ValueError(f"a regression head must return (B,), (B, 1) or (B, 2); got shape {tuple(output.shape)}")


class ImageEmbeddingModel(nn.Module):
    """The vision encoder followed by L2 normalisation: pixel values -> image embedding `i`."""

    def __init__(self, vision_encoder: nn.Module) -> None:
        super().__init__()
        self.vision_encoder = vision_encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision_encoder(pixel_values), dim=-1)


class HeatMapModel(nn.Module):
    """`regression_model(vision_encoder(pixel_values))`, with the project's normalisation.

    `forward(pixel_values, w=None)` -> one probability per image, shape (B,), where
    i = normalize(vision_encoder(x)) and
      - an image-only head (e.g. `heads.LogisticHead`): `regression_model(i)`;
      - a residual head (`heads.ResidualHead`, recognised by its `residual` method, or
        `residual=True`): `regression_model(i, w)`, which computes `i - w` (residual_1) or
        `f(i) - w` (residual_2) inside; `w` is the image's phenotype sentence embedding.

    Args:
        vision_encoder: MedCLIP's vision model (pixel values -> unnormalised embedding).
        regression_model: a head from `models/heads.py`.
        residual: whether the head takes `w`; None: recognised from the head.

    Example:
        >>> model = HeatMapModel(encoder.vision_model, heads["Pneumonia/residual_1"])  # doctest: +SKIP
        >>> model(pixel_values, w).shape  # doctest: +SKIP
        torch.Size([8])
    """

    def __init__(
        self,
        vision_encoder: nn.Module,
        regression_model: nn.Module,
        residual: bool | None = None,
    ) -> None:
        super().__init__()
        self.embedder = ImageEmbeddingModel(vision_encoder)
        self.regression_model = regression_model
        self.needs_w = bool(callable(getattr(regression_model, "residual", None)) if residual is None else residual)

    @classmethod
    def residual(
        cls, vision_encoder: nn.Module, head: nn.Module, residual_map: nn.Module | None = None
    ) -> HeatMapModel:
        """residual_1 (`head(i - w)`, no map) or residual_2 (`head(f(i) - w)`, f = residual_map)."""
        return cls(vision_encoder, ResidualHead(head, residual_map), residual=True)

    @property
    def variant(self) -> str:
        if not self.needs_w:
            return "image"
        return "residual_1" if getattr(self.regression_model, "map", None) is None else "residual_2"

    def head_on_embedding(self, embedding: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The head's probability (B,) for normalised embeddings (B, D) and w (B, D)."""
        if not self.needs_w:
            return as_probability(self.regression_model(embedding))
        if w is None:
            raise ValueError(f"HeatMapModel variant {self.variant!r} needs the image's w")
        w = w.to(device=embedding.device)
        return as_probability(self.regression_model(embedding, w))

    def forward(self, pixel_values: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return self.head_on_embedding(self.embedder(pixel_values), w)
