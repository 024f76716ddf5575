"""CAM targets: callables on one image's model output (its normalised embedding) that give
the scalar whose gradient Grad-CAM follows, as in pytorch-grad-cam's `model_targets`.

- `SimilarityTarget(text_embedding)`: cosine similarity of `i` to a caption's embedding
  (minus that to a contrast caption's embedding, when one is given);
- `HeadTarget(heatmap_model, w)`: a regression head's probability on `i` (image-only head),
  on `i - w` (residual_1) or on `f(i) - w` (residual_2), `w` being *this image's* phenotype
  sentence embedding.

Because `w` lives in the target, one batch can mix images, captions and heads, and
ScoreCAM (which calls the model on many masked copies of one image) still pairs each copy
with its own image's `w`.

Example:
    >>> target = SimilarityTarget(np.ones(4), label="a caption")
    >>> round(float(target(torch.tensor([0.5, 0.5, 0.5, 0.5]))), 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from medclip_residuals.explain.heatmap_model import HeatMapModel

Target = Callable[[torch.Tensor], torch.Tensor]


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

    Args:
        text_embedding: the caption's embedding (any scale: it is normalised).
        label: a name for messages and `repr`.
        contrast_embedding: the contrast caption's embedding, or None.
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
    """A `HeatMapModel` head's probability on one image's embedding (with its own `w`).

    Args:
        heatmap_model: the head, wrapped with the vision encoder.
        w: this image's phenotype sentence embedding (needed by residual heads).
        label: a name for messages and `repr`.
    """

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
