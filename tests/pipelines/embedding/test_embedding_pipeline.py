"""The embedding pipeline on a tiny data root with a tiny (random) demo encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from medclip_residuals.data.contract import empty_localizations, validate_dataset
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.pipelines.embedding import create_pipeline
from medclip_residuals.pipelines.embedding.nodes import embed_phenotype_vocabulary
from medclip_residuals.utils.frames import embeddings_to_matrix

PARAMS = {"batch_size": 3, "num_workers": 0, "bf16": False, "text_batch_size": 4,
          "phenotype_vocabulary": ["Pneumonia", "left", "near the heart"]}


@pytest.fixture
def encoder(tiny_demo_encoder):
    return tiny_demo_encoder(["study pneumonia left near the heart"], seed=0)


@pytest.fixture
def image_manifest(tiny_data_root):
    root = tiny_data_root(n_images=5, shape=(40, 30))
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[3, "report"] = ""
    return validate_dataset(manifest, empty_localizations(), str(root)).image_manifest


def test_pipeline_writes_normalised_embeddings_for_every_input(encoder, image_manifest):
    catalog = DataCatalog(
        {
            "medclip_encoder": MemoryDataset(encoder, copy_mode="assign"),
            "image_manifest": MemoryDataset(image_manifest),
            "params:device": MemoryDataset("cpu"),
            "params:embedding": MemoryDataset(PARAMS),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    images = catalog.load("image_embeddings")
    ids, matrix = embeddings_to_matrix(images)
    assert list(ids) == image_manifest["image_id"].tolist()
    assert matrix.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)

    captions = catalog.load("caption_embeddings")
    assert "img003" not in set(captions["image_id"])  # its report is empty
    assert len(captions) == 4
    expected = encoder.encode_texts(["study 0"])
    np.testing.assert_allclose(embeddings_to_matrix(captions)[1][0], expected[0], atol=1e-5)

    vocabulary = catalog.load("phenotype_embeddings")
    assert vocabulary["phrase"].tolist() == PARAMS["phenotype_vocabulary"]


def test_batched_path_equals_one_at_a_time(encoder, image_manifest):
    paths = image_manifest["image_path"].tolist()
    batched = embed_image_files(encoder, paths, batch_size=4, num_workers=1, progress=False)
    single = np.concatenate([embed_image_files(encoder, [p], batch_size=1, num_workers=0, progress=False) for p in paths])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # different images give different embeddings: the encoder really looks at the pixels
    assert np.abs(batched[0] - batched[1]).max() > 1e-4


@pytest.mark.parametrize(
    "vocabulary, message",
    [([], "is empty"), (["Pneumonia", " "], "empty phrases at positions \\[1\\]"), (["left", "left"], "twice")],
)
def test_bad_vocabulary_is_a_clear_error(encoder, vocabulary, message):
    with pytest.raises(ValueError, match=message):
        embed_phenotype_vocabulary(encoder, "cpu", {**PARAMS, "phenotype_vocabulary": vocabulary})
