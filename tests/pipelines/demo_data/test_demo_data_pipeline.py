"""The demo_data pipeline, run with SequentialRunner through the project's own catalog
entries (data_root in a temporary folder), on a tiny size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from PIL import Image

from medclip_residuals.data.contract import read_localizations, read_manifest, validate_dataset
from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.pipelines.demo_data import create_pipeline
from medclip_residuals.pipelines.demo_data.params import DemoDataParams

PROJECT = Path(__file__).resolve().parents[3]
TINY = {"seed": 7, "n_images": 24, "image_size": 64, "grid": {"rows": 2, "cols": 3}}
RAW = ("manifest", "localizations", "demo_images", "demo_masks", "demo_marker")


def _catalog(data_root: Path, grid_png: Path, params: dict) -> DataCatalog:
    """The project's raw entries with `--params data_root=<tmp>`; the grid figure in tmp."""
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT / "conf"), base_env="base", default_run_env="local",
        runtime_params={"data_root": str(data_root)},
    )
    config = loader["catalog"]
    entries = {name: config[name] for name in RAW}
    entries["demo_image_grid"] = {**config["demo_image_grid"], "filepath": str(grid_png), "versioned": False}
    catalog = DataCatalog.from_config(entries)
    catalog["params:demo_data"] = params
    return catalog


def test_pipeline_writes_a_complete_valid_data_root(tmp_path: Path, base_params) -> None:
    root = tmp_path / "demo"
    grid_png = tmp_path / "grid.png"
    SequentialRunner().run(create_pipeline(), _catalog(root, grid_png, base_params("demo_data", TINY)))

    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == 24 and manifest["image_id"].is_unique
    outcomes = ["outcome:heart_failure", "outcome:lung_cancer", "outcome:icu_admission"]
    assert list(manifest.columns) == ["image_id", "image_path", "patient_id", "report", "view", *CHEXPERT_FINDINGS, *outcomes]
    for column in outcomes:  # every study has a value, written as the labels are
        assert set(manifest[column]) <= {"1", "0"}, column
    assert (manifest.groupby("patient_id")["outcome:heart_failure"].nunique() == 1).all()
    assert manifest.groupby("patient_id").size().min() >= 2
    pngs = sorted(p.stem for p in (root / "images").glob("*.png"))
    assert pngs == sorted(manifest["image_id"])
    with Image.open(root / manifest["image_path"].iloc[0]) as image:
        assert image.mode == "L" and image.size == (64, 64)

    localizations = pd.read_csv(root / "localizations.csv", dtype=str, keep_default_na=False)
    assert len(localizations) > 0
    for path in localizations["mask_path"]:
        with Image.open(root / path) as mask:
            assert mask.mode == "L" and set(np.unique(np.asarray(mask))) == {0, 255}
    assert len(list((root / "masks").glob("*.png"))) == len(localizations)

    marker = (root / ".medclip_residuals_demo").read_text()
    assert "seed: 7" in marker and "n_images: 24" in marker and "version:" in marker
    with Image.open(grid_png) as grid:
        assert grid.size[0] > 300 and grid.size[1] > 200

    # what the pipeline wrote passes the data contract's validation
    validated = validate_dataset(read_manifest(root), read_localizations(root), root)
    assert len(validated.image_manifest) == 24
    assert len(validated.image_localizations) == len(localizations)
    assert set(validated.image_localizations["side"]) <= {"left", "right", "bilateral", ""}


def test_a_second_run_rewrites_the_same_bytes(tmp_path: Path, base_params) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    params = base_params("demo_data", TINY)
    SequentialRunner().run(create_pipeline(), _catalog(first, tmp_path / "a.png", params))
    SequentialRunner().run(create_pipeline(), _catalog(second, tmp_path / "b.png", params))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path


def test_parameters_file_parses_and_is_the_only_home_of_the_defaults() -> None:
    raw = yaml.safe_load((PROJECT / "conf/base/parameters_demo_data.yml").read_text())["demo_data"]
    params = DemoDataParams.parse(raw, "demo_data")
    assert (params.grid.rows, params.grid.cols) == (4, 4)
    assert params.n_images >= 1000 and params.image_size == 256
    assert params.to_dict() == raw  # every key of the file is a field, and no field lacks a key
