"""CAM targets: a head's probability on the embedding, the cosine to a caption, its contrast
caption and its contrast set (the `setting` fixture: tests/explain/conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.explain.heatmap_model import HeatMapModel, ImageEmbeddingModel
from medclip_residuals.explain.targets import (
    ContrastSetTarget,
    HeadTarget,
    SimilarityTarget,
    caption_margin,
    caption_target,
    caption_texts,
)
from medclip_residuals.models.heads import logistic_head_from_sklearn

DIM = 512


def test_head_target_on_the_embedding_equals_the_model(setting: dict) -> None:
    head = logistic_head_from_sklearn(setting["logistic"])
    model = HeatMapModel.residual(setting["vision"], head)
    embedder = ImageEmbeddingModel(setting["vision"])
    with torch.no_grad():
        rows = embedder(setting["images"])
        whole = model(setting["images"], torch.from_numpy(setting["w"]))
    for k in range(6):
        target = HeadTarget(model, setting["w"][k], label=f"img{k}")  # w is kept as float32
        with torch.no_grad():
            assert float(target(rows[k])) == pytest.approx(float(whole[k]), abs=1e-6)
    with pytest.raises(ValueError, match="needs the image's w"):
        HeadTarget(model, None)


def test_similarity_target_is_the_cosine(setting: dict) -> None:
    text = np.random.default_rng(3).standard_normal(DIM)
    target = SimilarityTarget(text * 7.0)  # any scale: the text embedding is normalised
    row = torch.from_numpy(setting["embeddings"][0]).float()
    expected = float(np.dot(setting["embeddings"][0], text) / np.linalg.norm(text))
    assert float(target(row)) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="all zeros"):
        SimilarityTarget(np.zeros(DIM), label="empty")


def test_contrast_target_is_the_difference_of_cosines(setting: dict) -> None:
    rng = np.random.default_rng(4)
    text, contrast = rng.standard_normal(DIM), rng.standard_normal(DIM)
    row = setting["embeddings"][1]
    target = SimilarityTarget(text * 3.0, label="caption", contrast_embedding=contrast * 0.5)
    expected = np.dot(row, text) / np.linalg.norm(text) - np.dot(row, contrast) / np.linalg.norm(contrast)
    assert float(target(torch.from_numpy(row).float())) == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ValueError, match="embeds like the contrast caption"):
        SimilarityTarget(text, label="same", contrast_embedding=2.0 * text)
    with pytest.raises(ValueError, match="contrast text embedding contains NaN"):
        SimilarityTarget(text, contrast_embedding=np.full(DIM, np.nan))


def test_contrast_set_target_subtracts_the_mean_or_the_max(setting: dict) -> None:
    rng = np.random.default_rng(5)
    text, others = rng.standard_normal(DIM), rng.standard_normal((3, DIM))
    row = setting["embeddings"][2]
    unit = others / np.linalg.norm(others, axis=1, keepdims=True)
    caption = np.dot(row, text) / np.linalg.norm(text)
    for reduce, subtracted in (("mean", (unit @ row).mean()), ("max", (unit @ row).max())):
        target = ContrastSetTarget(text * 2.0, others * 4.0, reduce=reduce, label="caption")
        assert float(target(torch.from_numpy(row).float())) == pytest.approx(float(caption - subtracted), abs=1e-5)
        # a batch (several images, or the tokens of one) gives one value per row
        batch = torch.from_numpy(setting["embeddings"][:3]).float()
        assert target(batch).shape == (3,)
    with pytest.raises(ValueError, match="contrast set of c is empty"):
        ContrastSetTarget(text, np.zeros((0, DIM)), reduce="max", label="c")
    with pytest.raises(ValueError, match="reduce must be"):
        ContrastSetTarget(text, others, reduce="min")


def test_caption_target_follows_the_plan_row() -> None:
    rng = np.random.default_rng(6)
    embeddings = {name: rng.standard_normal(DIM) for name in ("a caption", "other 1", "other 2", "clear")}
    plan = pd.DataFrame({
        "kind": ["caption", "caption", "head"], "text": ["a caption", "a caption", ""],
        "contrast_texts": [["other 1", "other 2"], [], []], "contrast_reduce": ["max", "", ""],
    })
    assert caption_texts(plan) == ["a caption", "other 1", "other 2"]
    with_set, plain = list(plan.itertuples(index=False))[:2]
    target = caption_target(with_set, embeddings, embeddings["clear"])
    assert isinstance(target, ContrastSetTarget) and len(target.contrast_embeddings) == 3  # the set + the contrast caption
    assert isinstance(caption_target(plain, embeddings, embeddings["clear"]), SimilarityTarget)
    # a plan without the contrast columns (written before them) gives the plain target
    old = pd.DataFrame({"kind": ["caption"], "text": ["a caption"]})
    assert caption_texts(old) == ["a caption"]
    assert isinstance(caption_target(next(old.itertuples(index=False)), embeddings, None), SimilarityTarget)


def test_caption_margin_compares_the_caption_with_its_contrasts() -> None:
    axis = np.eye(4, dtype=np.float32)
    image = torch.tensor([0.6, 0.5, 0.3, 0.0])
    image = image / image.norm()
    target = ContrastSetTarget(axis[0], np.stack([axis[1], axis[2]]), reduce="max", label="caption")
    # sim(caption) minus the mean / the max of the contrasts' similarities, whatever the target's own reduction
    assert caption_margin(target, image, "mean") == pytest.approx(float(image[0] - (image[1] + image[2]) / 2))
    assert caption_margin(target, image, "max") == pytest.approx(float(image[0] - image[1]))
    assert caption_margin(ContrastSetTarget(axis[2], axis[:2], reduce="mean"), image, "mean") < 0
    # a caption made against the contrast caption alone: its own value
    against_normal = SimilarityTarget(axis[1], contrast_embedding=axis[0])
    assert caption_margin(against_normal, image, "max") == pytest.approx(float(image[1] - image[0]))
    # nothing to compare a plain caption with
    assert caption_margin(SimilarityTarget(axis[0]), image, "mean") is None
