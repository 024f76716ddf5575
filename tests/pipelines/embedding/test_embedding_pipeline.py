"""The embedding pipeline on a tiny data root with a tiny (random) demo encoder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from medclip_residuals.data.contract import empty_localizations, validate_dataset
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.report_text import REPORT_TEXT_MODES
from medclip_residuals.pipelines.embedding import create_pipeline
from medclip_residuals.pipelines.embedding.nodes import embed_captions, embed_phenotype_vocabulary
from medclip_residuals.utils.frames import embeddings_to_matrix

PARAMS = {"batch_size": 3, "num_workers": 0, "torch_threads": "auto", "bf16": False, "channels_last": "auto",
          "text_batch_size": 4, "report_text": "whole",
          "phenotype_vocabulary": ["Pneumonia", "left", "near the heart"]}
CONF = Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters_embedding.yml"
# The tiny encoder reads 16 tokens. LONG is 31 tokens (29 words and marks + [CLS] and [SEP]):
# cut at 16, it loses its IMPRESSION.
LONG = ("FINDINGS: the heart is near the left and the right lung is clear of pneumonia and the left is clear. "
        "IMPRESSION: pneumonia near the heart.")
SHORT = "FINDINGS: clear. IMPRESSION: no finding."


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
    batched = embed_image_files(encoder, paths, batch_size=4, num_workers=1, bf16=False, progress=False)
    single = np.concatenate(
        [embed_image_files(encoder, [p], batch_size=1, num_workers=0, bf16=False, progress=False) for p in paths]
    )
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


def _captions(encoder, image_manifest, caplog, **params):
    manifest = image_manifest.copy()
    manifest["report"] = [LONG, SHORT, "study 2 left", "", "IMPRESSION:"]
    with caplog.at_level(logging.INFO, logger="medclip_residuals.models.report_text"):
        frame = embed_captions(encoder, manifest, "cpu", {**PARAMS, **params})
    ids, matrix = embeddings_to_matrix(frame)
    return dict(zip(ids, matrix)), [r.getMessage() for r in caplog.records], caplog.records


def test_whole_reports_are_embedded_and_the_truncated_ones_counted(encoder, image_manifest, caplog):
    assert [len(ids) for ids in encoder.tokenizer([LONG, SHORT], verbose=False)["input_ids"]] == [31, 11]
    captions, messages, records = _captions(encoder, image_manifest, caplog)
    assert sorted(captions) == ["img000", "img001", "img002", "img004"]  # img003's report is empty
    expected = encoder.encode_texts([LONG, SHORT, "IMPRESSION:"])
    for image_id, row in zip(["img000", "img001", "img004"], expected):
        np.testing.assert_allclose(captions[image_id], row, atol=1e-5)
    over = [r for r in records if "exceed the tokenizer limit" in r.getMessage()]
    assert [r.getMessage() for r in over] == [
        "caption_embeddings (report_text 'whole'): 1 of 4 texts exceed the tokenizer limit of 16 tokens "
        "(text_max_length) and are truncated to it (longest 31 tokens); report_text: impression embeds "
        "the IMPRESSION section instead"
    ]
    assert over[0].levelno == logging.WARNING
    assert not any("IMPRESSION section," in m for m in messages)  # whole mode says nothing of impressions
    # what "truncated" means: the 16 first tokens are what the encoder reads
    cut = encoder.tokenizer.convert_tokens_to_string(encoder.tokenizer.tokenize(LONG)[:14])
    np.testing.assert_allclose(captions["img000"], encoder.encode_texts([cut])[0], atol=1e-5)


def test_impression_mode_embeds_the_impression_where_one_exists(encoder, image_manifest, caplog):
    captions, messages, records = _captions(encoder, image_manifest, caplog, report_text="impression")
    expected = encoder.encode_texts(["pneumonia near the heart.", "no finding.", "study 2 left", "IMPRESSION:"])
    for image_id, row in zip(["img000", "img001", "img002", "img004"], expected):
        np.testing.assert_allclose(captions[image_id], row, atol=1e-5)
    assert (
        "caption_embeddings: report_text 'impression': 2 of 4 reports embedded as their IMPRESSION section, "
        "2 (no IMPRESSION section) as the whole report"
    ) in messages
    over = [r for r in records if "exceed the tokenizer limit" in r.getMessage()]
    assert [r.getMessage() for r in over] == [
        "caption_embeddings (report_text 'impression'): 0 of 4 texts exceed the tokenizer limit of 16 tokens "
        "(text_max_length) and are truncated to it (longest 7 tokens)"
    ]
    assert over[0].levelno == logging.INFO


def test_report_text_defaults_to_whole_and_bad_values_name_the_parameter(encoder, image_manifest, caplog, base_params):
    params = base_params("embedding", {k: v for k, v in PARAMS.items() if k != "report_text"})
    default = embed_captions(encoder, image_manifest, "cpu", params)
    whole = embed_captions(encoder, image_manifest, "cpu", PARAMS)
    pd.testing.assert_frame_equal(default, whole)
    expected = r"embedding.report_text: 'summary' is not one of 'whole', 'impression'"
    with pytest.raises(ValueError, match=expected):
        embed_captions(encoder, image_manifest, "cpu", {**PARAMS, "report_text": "summary"})


def test_the_configured_report_text_is_valid():
    embedding = yaml.safe_load(CONF.read_text())["embedding"]
    assert embedding["report_text"] in REPORT_TEXT_MODES and embedding["report_text"] == "whole"
