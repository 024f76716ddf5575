"""The encoder_training pipeline with SequentialRunner on a tiny, separable dataset: the loss
must fall, the held-out AUC must be the one the saved encoder gives, and streaming the images
must give the cached run's numbers."""

from __future__ import annotations

import json
import logging
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
from sklearn.metrics import roc_auc_score

from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.datasets import MedCLIPEncoderDataset
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.pipelines.encoder_training import create_pipeline

# A tiny demo geometry; swin's mlp_ratio and drop_path_rate are SwinConfig's own defaults.
TINY_ENCODER = {
    "profile": "demo",
    "demo": {
        "image_size": 32,
        "text_max_length": 12,
        "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2,
                 "mlp_ratio": 4.0, "drop_path_rate": 0.1},
        "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
                 "max_position_embeddings": 16},
    },
}
TRAINING = {
    "epochs": 8, "batch_size": 4, "learning_rate": 3e-3, "warmup_epochs": 0.5,
    "augment": {"rotate_degrees": 3, "scale": 0.0, "translate": 0.03, "brightness": 0.0, "contrast": 0.0,
                "noise": 0.01},
    "cache_workers": 1,
    # plain CLIP training from the model's own temperature, no floor under the learning rate
    "min_learning_rate": 0.0, "temperature_init": None, "center_projections": False, "sentence_sampling": 0.0,
    "label_match_weight": 0.0, "soft_target_temperature": None,
    "local_alignment": {"weight": 0.0, "pool_temperature": 0.1, "layer": None},
    # the training report itself as the prompt: the tiny tokenizer knows only the training words
    "evaluation": {"prompt_template": "there is {finding}", "prompts": {"Pneumonia": "there is pneumonia on the left"}},
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


class _Kept(MemoryDataset):
    def _release(self) -> None:  # keep intermediate outputs for the test to read
        pass


def _study_split(manifest: pd.DataFrame) -> pd.DataFrame:
    """Patients p0-p5 train the encoder (12 images), p6 and p7 are the test role (4 images)."""
    roles = np.where(manifest["patient_id"].isin(["p6", "p7"]), "test", "encoder_train")
    return manifest[["image_id", "patient_id"]].assign(role=roles)


def _catalog(tmp_path: Path, manifest: pd.DataFrame, encoder: dict, training: dict) -> DataCatalog:
    return DataCatalog({
        "image_manifest": MemoryDataset(manifest),
        "study_split": MemoryDataset(_study_split(manifest)),
        "params:encoder": MemoryDataset(encoder),
        "params:encoder_training": MemoryDataset(training),
        "params:seed": MemoryDataset(3),
        "params:device": MemoryDataset("cpu"),
        "medclip_encoder": MedCLIPEncoderDataset(filepath=str(tmp_path / "medclip_encoder"), version=Version(None, None)),
        "encoder_training_metrics": JSONDataset(filepath=str(tmp_path / "metrics.json")),
        "encoder_training_history": CSVDataset(filepath=str(tmp_path / "history.csv"), save_args={"index": False}),
        "encoder_training_images": ParquetDataset(filepath=str(tmp_path / "trained_on.parquet")),
        "encoder_loss_curve": MatplotlibDataset(filepath=str(tmp_path / "loss.png")),
    })


@pytest.mark.slow
def test_pipeline_trains_saves_and_measures(tmp_path, base_params):
    manifest = _tiny_manifest(tmp_path)
    catalog = _catalog(tmp_path, manifest, base_params("encoder", TINY_ENCODER), base_params("encoder_training", TRAINING))
    SequentialRunner().run(create_pipeline(), catalog)

    split = catalog.load("study_split")
    trained_on = catalog.load("encoder_training_images")
    assert set(trained_on["patient_id"]) == {f"p{j}" for j in range(6)}  # the encoder_train role, no other
    assert len(trained_on) == 12

    history = catalog.load("encoder_training_history")
    assert history["step"].tolist() == list(range(1, 25))  # 12 training images, batches of 4, 8 epochs
    per_epoch = history.groupby("epoch")["loss"].mean()
    # the first epoch is near chance (ln 4 = 1.386 for batches of 4); the pairing is learnt
    assert per_epoch.iloc[0] == pytest.approx(np.log(4), abs=0.05)
    assert per_epoch.iloc[-2:].mean() < per_epoch.iloc[0] - 0.25
    assert Image.open(tmp_path / "loss.png").size[0] > 100

    saved = list((tmp_path / "medclip_encoder").glob("*/medclip_encoder/model.safetensors"))
    assert len(saved) == 1
    trained = catalog.load("medclip_encoder")
    assert isinstance(trained, MedCLIPEncoder) and isinstance(trained.model, MedCLIPModel)
    assert trained.profile == "demo" and trained.image_size == 32

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["auc"]) == {"Pneumonia"}  # No Finding is excluded by default
    assert metrics["held_out_images"] == 4 and metrics["positives"] == {"Pneumonia": 2}
    assert metrics["epochs"] == 8 and metrics["target_auc"] == 0.9
    assert metrics["final_epoch_loss"] == pytest.approx(per_epoch.iloc[-1])
    # separable toy (a bright blob or not): every held-out sick image ranks above every healthy one
    assert metrics["auc"]["Pneumonia"] == 1.0 and metrics["meets_target"] is True
    # the metric is the saved encoder's: recompute it from the held-out images and the prompt
    assert metrics["role"] == {"role": "test", "images": 4, "patients": 2} and metrics["validation"] is None
    held_out = manifest[manifest["image_id"].isin(split.loc[split["role"] == "test", "image_id"])]
    pixels = torch.stack([preprocess_image(path, 32) for path in held_out["image_path"]])
    with torch.inference_mode():
        images = trained.encode_images(pixels).numpy()
    prompt = trained.encode_texts(["there is pneumonia on the left"])[0]
    similarity = images @ (prompt / np.linalg.norm(prompt))
    assert metrics["auc"]["Pneumonia"] == pytest.approx(roc_auc_score(held_out["Pneumonia"], similarity), abs=1e-12)
    sick = held_out["Pneumonia"].to_numpy() == 1
    assert similarity[sick].min() > similarity[~sick].max()


@pytest.mark.slow
def test_streamed_images_give_the_cached_run_s_numbers(tmp_path, caplog, base_params):
    """image_cache_mb 0 streams every image from disk per batch (a DataLoader with one worker
    process): the same seed and data must give the same weights, losses and metrics."""
    manifest = _tiny_manifest(tmp_path)
    runs = {}
    for budget in (1000, 0):
        where = tmp_path / f"budget_{budget}"
        training = base_params("encoder_training", TRAINING, epochs=2, image_cache_mb=budget)
        catalog = _catalog(where, manifest, base_params("encoder", TINY_ENCODER), training)
        with caplog.at_level(logging.INFO, logger="medclip_residuals"):
            caplog.clear()
            SequentialRunner().run(create_pipeline(), catalog)
        runs[budget] = {
            "log": caplog.text,
            "state": catalog.load("medclip_encoder").model.state_dict(),
            "history": catalog.load("encoder_training_history"),
            "metrics": json.loads((where / "metrics.json").read_text()),
        }
    assert "12 training images cached in memory (0.0 MB as float16, image_cache_mb 1000)" in runs[1000]["log"]
    assert "4 test images cached in memory" in runs[1000]["log"]
    assert "12 training images streamed from disk per batch (1 DataLoader workers)" in runs[0]["log"]
    assert "over image_cache_mb 0" in runs[0]["log"] and "4 test images streamed" in runs[0]["log"]
    cached, streamed = runs[1000], runs[0]
    assert cached["state"].keys() == streamed["state"].keys()
    for key, value in cached["state"].items():
        assert torch.equal(value, streamed["state"][key]), key
    pd.testing.assert_series_equal(cached["history"]["loss"], streamed["history"]["loss"])
    drop = {"training_seconds"}
    assert {k: v for k, v in cached["metrics"].items() if k not in drop} == {
        k: v for k, v in streamed["metrics"].items() if k not in drop}


@pytest.mark.slow
def test_validation_curve_and_local_alignment(tmp_path, caplog, base_params):
    """validation_every_epochs logs the validation role's zero-shot AUCs at those epochs only;
    with the local term on, its loss is in the history beside the total."""
    manifest = _tiny_manifest(tmp_path)
    training = base_params("encoder_training", TRAINING, epochs=4, validation_every_epochs=2,
                           local_alignment={"weight": 0.5, "pool_temperature": 0.1, "layer": None})
    catalog = _catalog(tmp_path, manifest, base_params("encoder", TINY_ENCODER), training)
    split = catalog.load("study_split")
    catalog["study_split"] = MemoryDataset(split.assign(role=split["role"].where(manifest["patient_id"] != "p7", "validation")))
    with caplog.at_level(logging.INFO, logger="medclip_residuals"):
        SequentialRunner().run(create_pipeline(), catalog)
    curve = [line for line in caplog.text.splitlines() if "validation min AUC" in line]
    roles = [line.split("encoder_training: ")[1].split(" min AUC")[0] for line in curve]
    assert roles == ["epoch 2 validation", "epoch 4 validation", "validation"]  # the last: evaluate_encoder
    # decoded once for the curve (not at each of its evaluations), once by evaluate_encoder
    assert caplog.text.count("validation images cached in memory") == 2
    history = catalog.load("encoder_training_history")
    assert history["local_loss"].notna().all()
    # before the first update the global part is the global-only run's: total = global + 0.5 x local
    alone = base_params("encoder_training", TRAINING, epochs=1)
    catalog = _catalog(tmp_path / "global_only", manifest, base_params("encoder", TINY_ENCODER), alone)
    SequentialRunner().run(create_pipeline(), catalog)
    global_only = catalog.load("encoder_training_history")
    assert global_only["local_loss"].isna().all()
    assert history["loss"].iloc[0] == pytest.approx(global_only["loss"].iloc[0] + 0.5 * history["local_loss"].iloc[0])
