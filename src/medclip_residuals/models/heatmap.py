"""Models and targets that Grad-CAM explains.

pytorch-grad-cam explains `model(pixel_values)` through *targets*: callables that turn one
image's model output into the scalar whose gradient is followed. The project explains one
model, `ImageEmbeddingModel` (the vision encoder followed by L2 normalisation, the image
embedding `i` every pipeline uses), and puts what differs between explanations into the
targets:

- `SimilarityTarget(text_embedding)`: cosine similarity of `i` to a caption's embedding
  (minus that to a contrast caption's embedding, when one is given);
- `HeadTarget(heatmap_model, w)`: a regression head's probability on `i` (image-only head),
  on `i - w` (residual_1) or on `f(i) - w` (residual_2), `w` being *this image's* phenotype
  sentence embedding.

Because `w` lives in the target, one batch can mix images, captions and heads, and
ScoreCAM (which calls the model on many masked copies of one image) still pairs each copy
with its own image's `w`.

`HeatMapModel(vision_encoder, regression_model)` is the explicit model of the research
slides: `forward(pixel_values, w=None) = regression_model(normalize(vision_encoder(x)))`
(residual variants subtract `w` inside). Its `.embedder` and `.head_on_embedding` are the
two halves the CAM path uses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    `HeatMapModel.residual(vision_encoder, head, residual_map)` builds the residual form
    from a plain head (and the map `f` for residual_2).
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
        from medclip_residuals.models.heads import ResidualHead

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


def _as_vector(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    vector = values if torch.is_tensor(values) else torch.from_numpy(np.array(values, dtype=np.float32))
    vector = vector.detach().float().reshape(-1)
    if not torch.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or inf")
    return vector


class SimilarityTarget:
    """Cosine similarity of one image's normalised embedding to a text embedding.

    With `contrast_embedding`, the similarity to the caption minus the similarity to that
    contrast caption (e.g. a normal study's): the gradient keeps what tells the caption apart
    from the contrast and drops what every chest X-ray shares.
    """

    def __init__(
        self,
        text_embedding: np.ndarray | torch.Tensor,
        label: str = "",
        contrast_embedding: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        vector = _as_vector(text_embedding, "text embedding")
        norm = vector.norm()
        if norm == 0:
            raise ValueError(f"text embedding of {label or 'a caption'} is all zeros")
        vector = vector / norm
        if contrast_embedding is not None:
            contrast = _as_vector(contrast_embedding, "contrast text embedding")
            if contrast.norm() == 0:
                raise ValueError("the contrast caption's text embedding is all zeros")
            vector = vector - contrast / contrast.norm()
            if vector.norm() < 1e-6:
                raise ValueError(f"{label or 'a caption'} embeds like the contrast caption: nothing to explain")
        self.text_embedding = vector
        self.label = label

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        text = self.text_embedding.to(device=model_output.device, dtype=model_output.dtype)
        return (model_output * text).sum(dim=-1)

    def __repr__(self) -> str:
        return f"SimilarityTarget({self.label!r})"


class HeadTarget:
    """A `HeatMapModel` head's probability on one image's embedding (with its own `w`)."""

    def __init__(
        self,
        heatmap_model: HeatMapModel,
        w: np.ndarray | torch.Tensor | None = None,
        label: str = "",
    ) -> None:
        if heatmap_model.needs_w and w is None:
            raise ValueError(f"target {label or heatmap_model.variant!r} needs the image's w")
        self.heatmap_model = heatmap_model
        self.w = None if w is None else _as_vector(w, f"w of {label or 'an image'}")
        self.label = label

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        batch = model_output if model_output.ndim == 2 else model_output[None]
        w = None if self.w is None else self.w[None]
        probability = self.heatmap_model.head_on_embedding(batch, w)
        return probability if model_output.ndim == 2 else probability[0]

    def __repr__(self) -> str:
        return f"HeadTarget({self.label!r}, variant={self.heatmap_model.variant!r})"


Target = Callable[[torch.Tensor], torch.Tensor]
