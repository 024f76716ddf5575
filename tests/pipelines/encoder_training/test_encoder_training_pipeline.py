"""The encoder_training pipeline with SequentialRunner on a tiny dataset, one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from medclip.modeling_medclip import MedCLIPModel
from PIL import Image

from medclip_residuals.datasets import MedCLIPEncoderDataset
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.medclip_loader import build_demo_encoder
from medclip_residuals.pipelines.encoder_training import create_pipeline

TINY_ENCODER = {
    "profile": "demo",
    "demo": {
        "image_size": 32,
        "text_max_length": 12,
        "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2},
        "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
                 "max_position_embeddings": 16},
    },
}
TRAINING = {
    "test_fraction": 0.25, "epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "warmup_epochs": 0.5,
    "augment": {"rotate_degrees": 3, "translate": 0.03, "noise": 0.01}, "cache_workers": 1,
    "evaluation": {"prompt_template": "there is {finding}"},
}


def _tiny_manifest(root: Path) -> pd.DataFrame:
    """16 images of 8 patients: a bright blob and "there is pneumonia", or "no finding"."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(16):
        sick = index % 2 == 0
        pixels = rng.integers(30, 90, size=(40, 36)).astype(np.uint8)
        if sick:
            pixels[10:25, 5:15] = 220
        path = root / "images" / f"img{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append({
            "image_id": f"img{index:02d}", "image_path": str(path), "patient_id": f"p{index // 2}",
            "report": "there is pneumonia on the left" if sick else "no finding", "view": "PA",
            "height": 40, "width": 36, "Pneumonia": 1.0 if sick else 0.0, "No Finding": 0.0 if sick else 1.0,
        })
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_pipeline_trains_saves_and_measures(tmp_path):
    manifest = _tiny_manifest(tmp_path)
    catalog = DataCatalog({
        "image_manifest": MemoryDataset(manifest),
        "params:encoder": MemoryDataset(TINY_ENCODER),
        "params:encoder_training": MemoryDataset(TRAINING),
        "params:seed": MemoryDataset(3),
        "params:device": MemoryDataset("cpu"),
        "medclip_encoder": MedCLIPEncoderDataset(filepath=str(tmp_path / "medclip_encoder"), version=Version(None, None)),
        "encoder_training_metrics": JSONDataset(filepath=str(tmp_path / "metrics.json")),
        "encoder_training_history": CSVDataset(filepath=str(tmp_path / "history.csv"), save_args={"index": False}),
        "encoder_split": ParquetDataset(filepath=str(tmp_path / "split.parquet")),
        "encoder_loss_curve": MatplotlibDataset(filepath=str(tmp_path / "loss.png")),
    })
    SequentialRunner().run(create_pipeline(), catalog)

    split = catalog.load("encoder_split")
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    assert (split["split"] == "test").sum() == 4  # 2 of 8 patients, 2 images each

    history = catalog.load("encoder_training_history")
    assert history["step"].tolist() == [1, 2, 3]  # 12 training images, batches of 4
    assert np.isfinite(history["loss"]).all() and (history["loss"] > 0).all()
    assert Image.open(tmp_path / "loss.png").size[0] > 100

    saved = list((tmp_path / "medclip_encoder").glob("*/medclip_encoder/model.safetensors"))
    assert len(saved) == 1
    trained = catalog.load("medclip_encoder")
    assert isinstance(trained, MedCLIPEncoder) and isinstance(trained.model, MedCLIPModel)
    assert trained.profile == "demo" and trained.image_size == 32
    train_reports = manifest.set_index("image_id").loc[split.loc[split["split"] == "train", "image_id"], "report"]
    start = build_demo_encoder(TINY_ENCODER["demo"], train_reports.tolist(), seed=3)
    moved = [
        not torch.equal(value, start.model.state_dict()[key])
        for key, value in trained.model.state_dict().items() if value.is_floating_point()
    ]
    assert any(moved)  # the weights were trained, not just saved
    assert trained.encode_texts(["there is pneumonia"]).shape == (1, 512)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["auc"]) == {"Pneumonia"}  # No Finding is excluded by default
    assert 0.0 <= metrics["auc"]["Pneumonia"] <= 1.0
    assert metrics["held_out_images"] == 4 and metrics["positives"] == {"Pneumonia": 2}
    assert metrics["epochs"] == 1 and metrics["target_auc"] == 0.9
