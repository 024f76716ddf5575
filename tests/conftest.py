"""Shared fixtures: tiny datasets in the layout of docs/DATA_CONTRACT.md, written to tmp_path."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_LABELS = ("Pneumonia", "Pleural Effusion")
# A demo-profile encoder small enough for unit tests: MedCLIP's classes on a 2-stage Swin
# (32 px, grids 8 and 4, window 2) and a 2-layer BERT of width 16.
TINY_DEMO_ENCODER = {
    "image_size": 32,
    "allow_global_windows": False,
    "text_max_length": 16,
    "lowercase": True,
    "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2},
    "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
             "max_position_embeddings": 16},
}
_LABEL_CYCLE = ("1", "0", "-1", "")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _deep_merge(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.fixture(scope="session")
def project_parameters() -> dict:
    """Every parameter of conf/base, read by Kedro's own config loader (globals resolved)."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    return dict(loader["parameters"])


@pytest.fixture(scope="session")
def base_params(project_parameters: dict) -> Callable[..., dict]:
    """Factory: `base_params("explainability", batch_size=2, grid={"rows": 1})` -> a copy of
    conf/base's `explainability` parameters with the overrides merged in (nested dicts key by
    key), so tests pass complete parameters: the code has no defaults of its own."""

    def make(group: str, overrides: dict | None = None, **kwargs: object) -> dict:
        return _deep_merge(project_parameters[group], {**(overrides or {}), **kwargs})

    return make


def write_grey_png(path: Path, pixels: np.ndarray) -> Path:
    """Write a uint8 or uint16 (H, W) array as a grey PNG, making folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_demo_encoder() -> Callable[..., object]:
    """Factory: `make(texts, seed=0)` -> a random demo MedCLIPEncoder (TINY_DEMO_ENCODER) whose
    tokenizer vocabulary comes from `texts`."""
    from medclip_residuals.models.medclip_loader import build_demo_encoder

    def make(texts: list[str], seed: int = 0) -> object:
        return build_demo_encoder(copy.deepcopy(TINY_DEMO_ENCODER), texts, seed=seed)

    return make


@pytest.fixture
def tiny_data_root(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make(n_images=4, shape=(24, 32), localizations=True, name="dataset")` -> data_root.

    Writes 8-bit grey PNGs under images/, a manifest.csv (image_id img000.., relative
    image_path, patient_id two images per patient, report, view PA, labels Pneumonia and
    Pleural Effusion cycling 1, 0, -1, empty) and, when asked, a localizations.csv with a
    mask for img000 (rows 4-11, columns 6-13 of the image) and a box x=2, y=3, w=5, h=4 on img001.
    Every value is deterministic, so tests can check exact answers.
    """

    def make(
        n_images: int = 4,
        shape: tuple[int, int] = (24, 32),
        localizations: bool = True,
        name: str = "dataset",
    ) -> Path:
        root = tmp_path / name
        rows = []
        for index in range(n_images):
            rng = np.random.default_rng(index)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            write_grey_png(root / "images" / f"img{index:03d}.png", pixels)
            rows.append({
                "image_id": f"img{index:03d}",
                "image_path": f"images/img{index:03d}.png",
                "patient_id": f"p{index // 2}",
                "report": f"study {index}",
                "view": "PA",
                **{label: _LABEL_CYCLE[(index + k) % 4] for k, label in enumerate(TINY_LABELS)},
            })
        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
        if localizations and n_images >= 2:
            mask = np.zeros(shape, dtype=np.uint8)
            mask[4:12, 6:14] = 255
            write_grey_png(root / "masks" / "img000_pneumonia.png", mask)
            pd.DataFrame([
                {"image_id": "img000", "finding": "Pneumonia", "mask_path": "masks/img000_pneumonia.png",
                 "x": "", "y": "", "w": "", "h": "", "side": "left", "zone": "lower"},
                {"image_id": "img001", "finding": "Pleural Effusion", "mask_path": "",
                 "x": "2", "y": "3", "w": "5", "h": "4", "side": "", "zone": ""},
            ]).to_csv(root / "localizations.csv", index=False)
        return root

    return make
