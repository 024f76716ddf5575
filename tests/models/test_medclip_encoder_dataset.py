"""MedCLIPEncoderDataset: save -> load gives the same encoder; the catalog entry works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from kedro.io import DataCatalog, DatasetError, Version
from medclip.modeling_medclip import MedCLIPModel, MedCLIPVisionModelViT
from transformers import BertConfig, SwinConfig

from medclip_residuals.datasets import MedCLIPEncoderDataset
from medclip_residuals.models.medclip_loader import POSITION_IDS_KEY, build_medclip_model
from medclip_residuals.models.tokenizer import build_word_tokenizer

PROJECT = Path(__file__).resolve().parents[2]
TEXTS = ["there is pneumonia on the left", "no finding", "pleural effusion near the heart"]


@pytest.fixture(scope="module")
def encoder(tiny_demo_encoder):
    built = tiny_demo_encoder(TEXTS, seed=3)
    with torch.no_grad():
        built.model.logit_scale.fill_(3.0)
    return built


def _assert_same_encoder(first, second):
    assert (second.profile, second.image_size, second.text_max_length) == (first.profile, first.image_size, first.text_max_length)
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    np.testing.assert_array_equal(first.encode_texts(TEXTS), second.encode_texts(TEXTS))
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first.model.eval()
    second.model.eval()
    with torch.inference_mode():
        assert torch.equal(first.encode_images(pixels), second.encode_images(pixels))


def test_versioned_round_trip_gives_identical_embeddings(encoder, tmp_path):
    dataset = MedCLIPEncoderDataset(filepath=str(tmp_path / "medclip_encoder"), version=Version(None, None))
    assert not dataset.exists()
    dataset.save(encoder)
    assert dataset.exists()
    saved = list((tmp_path / "medclip_encoder").glob("*/medclip_encoder"))
    assert len(saved) == 1
    assert sorted(p.name for p in saved[0].iterdir()) == ["config.json", "model.safetensors", "tokenizer"]
    config = json.loads((saved[0] / "config.json").read_text())
    assert config["profile"] == "demo" and config["vision"] == "vit" and config["image_size"] == 32
    assert config["vision_config"]["window_size"] == 2 and config["text_config"]["hidden_size"] == 16
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))

    loaded = MedCLIPEncoderDataset(filepath=str(tmp_path / "medclip_encoder"), version=Version(None, None)).load()
    assert isinstance(loaded.model, MedCLIPModel) and isinstance(loaded.vision_model, MedCLIPVisionModelViT)
    _assert_same_encoder(encoder, loaded)
    assert json.loads(dataset.preview())["profile"] == "demo"


def test_missing_saved_encoder_names_the_pipeline(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(DatasetError, match="model.safetensors.*encoder_training"):
        MedCLIPEncoderDataset(filepath=str(tmp_path / "broken")).load()


def test_catalog_entry_of_the_project_round_trips(encoder, tmp_path):
    entries = yaml.safe_load((PROJECT / "conf/base/catalog/06_models.yml").read_text())
    entry = dict(entries["medclip_encoder"])
    assert entry["versioned"] is True
    entry["filepath"] = str(tmp_path / "06_models" / "medclip_encoder")
    catalog = DataCatalog.from_config({"medclip_encoder": entry})
    catalog.save("medclip_encoder", encoder)
    _assert_same_encoder(encoder, catalog.load("medclip_encoder"))


def test_pointer_to_published_weights_is_load_only(tmp_path):
    tokenizer = build_word_tokenizer(TEXTS, max_length=16)
    swin = SwinConfig(image_size=32, patch_size=8, embed_dim=8, depths=[1], num_heads=[1], window_size=2)
    bert = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=16)
    for name, config in (("swin", swin), ("bert", bert)):
        (tmp_path / name).mkdir()
        config.save_pretrained(tmp_path / name)
    tokenizer.save_pretrained(tmp_path / "bert")
    model = build_medclip_model("vit", swin, bert, tokenizer)
    (tmp_path / "weights").mkdir()
    torch.save({**model.state_dict(), POSITION_IDS_KEY: torch.arange(16)[None]}, tmp_path / "weights" / "pytorch_model.bin")

    dataset = MedCLIPEncoderDataset(
        filepath=str(tmp_path / "weights"),
        load_args={"profile": "medclip_vit", "vision_backbone_dir": str(tmp_path / "swin"),
                   "text_backbone_dir": str(tmp_path / "bert"), "text_max_length": 16},
    )
    assert dataset.exists()
    loaded = dataset.load()
    assert loaded.profile == "medclip_vit"
    assert torch.equal(loaded.model.logit_scale, model.logit_scale)
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(loaded)
    with pytest.raises(DatasetError, match="cannot be versioned"):
        MedCLIPEncoderDataset(filepath=str(tmp_path), version=Version(None, None), load_args={"profile": "medclip_vit"})
