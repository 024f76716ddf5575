"""`MedCLIPEncoder`: a MedCLIP model, its tokenizer and how to feed it, with device-safe encoding.

MedCLIP's own `encode_text` and `forward` call `.cuda()`; nothing here uses them. Text is
encoded as `model.text_model(input_ids, attention_mask)` and images as
`model.vision_model(pixel_values)`, each followed by an L2 normalisation.

Texts are always padded to `text_max_length`: MedCLIP's text model averages the hidden states
of every position, padding included, so padding to the longest text of a batch would make a
text's embedding depend on the other texts in its batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from medclip.modeling_medclip import MedCLIPModel
from torch import nn
from torch.nn import functional as F

from medclip_residuals.models.device import resolve_device


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put `module` in eval mode for a block, then restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@dataclass
class MedCLIPEncoder:
    """A `medclip.MedCLIPModel` with its tokenizer, profile, input image size and device."""

    model: MedCLIPModel
    tokenizer: Any
    profile: str
    image_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    text_max_length: int = 77
    # What the weights were trained on (data_root, images, patients, or the published corpus);
    # recorded in config.json and in every metrics dataset (hooks.RunProvenanceHook).
    trained_on: dict[str, Any] = field(default_factory=dict)

    @property
    def vision_model(self) -> nn.Module:
        """MedCLIP's vision encoder: pixel_values (B, 3, S, S) -> unnormalised (B, 512)."""
        return self.model.vision_model

    @property
    def text_model(self) -> nn.Module:
        """MedCLIP's text encoder: (input_ids, attention_mask) -> unnormalised (B, 512)."""
        return self.model.text_model

    @property
    def embed_dim(self) -> int:
        return 512

    def to(self, device: str | torch.device) -> MedCLIPEncoder:
        """Move the model to `device` ("auto", "cpu", "cuda:1", ...) in place; returns self."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of `texts`, padded to text_max_length, on the device."""
        tokens = self.tokenizer(
            [str(text) for text in texts],
            padding="max_length",
            truncation=True,
            max_length=self.text_max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
        }

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings (B, 512) of tokenised texts; keeps gradients."""
        embeddings = self.model.text_model(input_ids.to(self.device), attention_mask.to(self.device))
        return F.normalize(embeddings.float(), dim=-1)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (B, 512) of preprocessed images; keeps gradients.

        The caller chooses the mode (`model.eval()`) and `torch.inference_mode()`.
        """
        pixel_values = pixel_values.to(self.device, dtype=torch.float32)
        embeddings = self.model.vision_model(pixel_values)
        return F.normalize(embeddings.float(), dim=-1)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` in eval mode without gradients: (N, 512) float32, rows L2-normalised."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        chunks = []
        with eval_mode(self.model), torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenize(texts[start : start + batch_size])
                chunks.append(self.encode_tokens(tokens["input_ids"], tokens["attention_mask"]).cpu())
        return torch.cat(chunks).numpy().astype(np.float32, copy=False)
