"""Shared models of the explain tests: a tiny Swin shaped like MedCLIP's ViT vision model, and
a small conv encoder with fitted sklearn heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge
from torch import nn
from transformers import SwinConfig, SwinModel

DIM = 512


class TinySwinVision(nn.Module):
    """Shaped like medclip's MedCLIPVisionModelViT: `.model` is a HF SwinModel, then a projection."""

    def __init__(self, image_size: int = 64, depths: tuple[int, ...] = (1, 1, 1)) -> None:
        super().__init__()
        config = SwinConfig(
            image_size=image_size, patch_size=4, num_channels=3, embed_dim=16, depths=list(depths),
            num_heads=[1, 2, 4, 8][: len(depths)], window_size=4,
        )
        self.model = SwinModel(config)
        self.projection_head = nn.Linear(config.hidden_size, 512, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.model(pixel_values)["pooler_output"])


@pytest.fixture(scope="module")
def swin() -> TinySwinVision:
    torch.manual_seed(0)
    return TinySwinVision().eval()


class TinyVision(nn.Module):
    """A small conv encoder ending in a 512-d (unnormalised) embedding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.projection = nn.Linear(16, DIM)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(self.model(pixel_values))


@pytest.fixture(scope="module")
def setting() -> dict:
    """A vision encoder, images, their normalised embeddings, w's, and fitted sklearn heads."""
    vision = TinyVision().eval()
    torch.manual_seed(1)
    images = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        embeddings = F.normalize(vision(images), dim=-1).double().numpy()
    rng = np.random.default_rng(0)
    train_x = rng.standard_normal((40, DIM))
    train_y = np.arange(40) % 2
    w = rng.standard_normal((6, DIM)) * 0.1
    logistic = LogisticRegression(max_iter=500).fit(train_x, train_y)
    ridge = Ridge(alpha=1.0).fit(train_x, rng.standard_normal((40, DIM)))
    return {"vision": vision, "images": images, "embeddings": embeddings, "w": w,
            "logistic": logistic, "ridge": ridge}
