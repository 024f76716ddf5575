"""CAM targets: callables on one image's model output (its normalised embedding) that give
the scalar whose gradient Grad-CAM follows, as in pytorch-grad-cam's `model_targets`.

- `SimilarityTarget(text_embedding)`: cosine similarity of `i` to a caption's embedding
  (minus that to a contrast caption's embedding, when one is given);
- `ContrastSetTarget(text_embedding, contrast_embeddings, reduce)`: the similarity to the
  caption minus the mean or max of the similarities to a contrast set (the prompts of the
  findings the caption does not name): what the caption says beyond what other findings share;
- `caption_target(row, text_embeddings, contrast_embedding)`: the target of one caption row
  of the heatmap plan (its contrast set, if any, is in the row), and `caption_texts(plan)`:
  every text those targets embed; `caption_margin(target, i, reduce)`: how much better the
  image fits the caption than its contrasts (the caption gate of explain/generate.py);
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

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from medclip_residuals.explain.heatmap_model import HeatMapModel
from medclip_residuals.explain.plan import cell_list

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
        self.has_contrast = contrast_embedding is not None

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        text = self.text_embedding.to(device=model_output.device, dtype=model_output.dtype)
        return (model_output * text).sum(dim=-1)

    def __repr__(self) -> str:
        return f"SimilarityTarget({self.label!r})"


class ContrastSetTarget:
    """`sim(i, caption) - reduce_k sim(i, contrast_k)`, every embedding normalised.

    "mean" subtracts one fixed direction (the mean of the contrast embeddings); "max"
    subtracts, per image, the contrast the image is most similar to (its gradient follows
    that one), e.g. the other finding an image with two findings has.

    Args:
        text_embedding: the caption's embedding.
        contrast_embeddings: (K, D) embeddings of the contrast set, K >= 1.
        reduce: "mean" or "max".
        label: a name for messages and `repr`.
    """

    def __init__(
        self,
        text_embedding: np.ndarray | torch.Tensor,
        contrast_embeddings: np.ndarray | torch.Tensor,
        reduce: Literal["mean", "max"],
        label: str = "",
    ) -> None:
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.text_embedding = _unit(_as_vector(text_embedding, "text embedding"), label or "a caption")
        rows = contrast_embeddings if torch.is_tensor(contrast_embeddings) else np.asarray(contrast_embeddings)
        if len(rows) == 0:
            raise ValueError(f"the contrast set of {label or 'a caption'} is empty")
        self.contrast_embeddings = torch.stack(
            [_unit(_as_vector(row, "contrast text embedding"), "a contrast text") for row in rows]
        )
        self.reduce = reduce
        self.label = label

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.margin(model_output, self.reduce)

    def margin(self, model_output: torch.Tensor, reduce: Literal["mean", "max"]) -> torch.Tensor:
        """sim(i, caption) minus the mean or max of sim(i, contrast_k), whatever `self.reduce`."""
        text = self.text_embedding.to(device=model_output.device, dtype=model_output.dtype)
        contrast = self.contrast_embeddings.to(device=model_output.device, dtype=model_output.dtype)
        others = model_output @ contrast.T  # (..., K)
        subtracted = others.mean(dim=-1) if reduce == "mean" else others.max(dim=-1).values
        return (model_output * text).sum(dim=-1) - subtracted

    def __repr__(self) -> str:
        return f"ContrastSetTarget({self.label!r}, {self.reduce} of {len(self.contrast_embeddings)})"


def caption_margin(target: Target, embedding: torch.Tensor, reduce: Literal["mean", "max"]) -> float | None:
    """How much better one image's normalised embedding fits a caption than the caption's
    contrasts: sim(caption) minus the mean or max of the similarities to the contrast set
    (`ContrastSetTarget`), or minus the similarity to the contrast caption (a
    `SimilarityTarget` made with one). None for a target without contrasts (a plain caption,
    a head): nothing to compare it with."""
    if isinstance(target, ContrastSetTarget):
        return float(target.margin(embedding.float(), reduce))
    if isinstance(target, SimilarityTarget) and target.has_contrast:
        return float(target(embedding.float()))
    return None


def _unit(vector: torch.Tensor, label: str) -> torch.Tensor:
    norm = vector.norm()
    if norm == 0:
        raise ValueError(f"text embedding of {label} is all zeros")
    return vector / norm


def caption_texts(heatmap_plan: pd.DataFrame) -> list[str]:
    """Every text the plan's caption targets embed: the captions and their contrast sets."""
    captions = heatmap_plan[heatmap_plan["kind"] == "caption"]
    texts = set(captions["text"])
    if "contrast_texts" in captions:
        for contrast in captions["contrast_texts"]:
            texts.update(cell_list(contrast))
    return sorted(texts)


def caption_target(
    row: Any,
    text_embeddings: Mapping[str, np.ndarray],
    contrast_embedding: np.ndarray | None,
) -> SimilarityTarget | ContrastSetTarget:
    """The target of one caption row of the plan (a namedtuple from `itertuples`).

    Without a contrast set (`contrast_reduce` ""): `SimilarityTarget` (minus the contrast
    caption when `contrast_embedding` is given). With one: `ContrastSetTarget` over the row's
    `contrast_texts` and the contrast caption.

    Args:
        row: the plan row (text, contrast_texts, contrast_reduce).
        text_embeddings: text -> embedding, for every text of `caption_texts(plan)`.
        contrast_embedding: the contrast caption's embedding, or None (none, or this row
            must keep its plain similarity).
    """
    reduce = str(getattr(row, "contrast_reduce", "") or "")
    texts = cell_list(getattr(row, "contrast_texts", None))
    if not reduce or not (texts or contrast_embedding is not None):
        return SimilarityTarget(text_embeddings[row.text], label=row.text, contrast_embedding=contrast_embedding)
    contrast = [text_embeddings[text] for text in texts]
    if contrast_embedding is not None:
        contrast.append(contrast_embedding)
    return ContrastSetTarget(text_embeddings[row.text], np.stack(contrast), reduce=reduce, label=row.text)


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
