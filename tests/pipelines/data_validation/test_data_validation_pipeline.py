"""The data_validation pipeline, run with SequentialRunner on tiny datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from medclip_residuals.data.contract import DataContractError
from medclip_residuals.pipelines.data_validation import create_pipeline
from medclip_residuals.pipelines.data_validation.nodes import validate_dataset

PROJECT = Path(__file__).resolve().parents[3]
OUTPUTS = ("image_manifest", "image_localizations", "validation_report")


def _project_catalog_config(data_root: Path) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT / "conf"), base_env="base", default_run_env="local",
        runtime_params={"data_root": str(data_root)},
    )
    return loader["catalog"]


def _catalog(data_root: Path, params: dict | None = None) -> DataCatalog:
    """The project's own raw entries (with --params data_root=...), outputs in memory."""
    config = _project_catalog_config(data_root)
    catalog = DataCatalog.from_config({name: config[name] for name in ("manifest", "localizations")})
    catalog["params:data_root"] = str(data_root)
    catalog["params:data_validation"] = params or {"on_unreadable": "error", "frontal_only": False}
    for name in OUTPUTS:
        catalog[name] = MemoryDataset()
    return catalog


def _run(catalog: DataCatalog) -> dict:
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


def test_pipeline_validates_a_tiny_dataset_through_the_project_catalog(tiny_data_root) -> None:
    root = tiny_data_root(n_images=6)
    out = _run(_catalog(root))
    manifest, localizations, report = (out[name] for name in OUTPUTS)
    assert manifest["image_id"].tolist() == [f"img{i:03d}" for i in range(6)]
    assert manifest["image_path"].tolist() == [str(root / f"images/img{i:03d}.png") for i in range(6)]
    assert manifest[["height", "width"]].drop_duplicates().values.tolist() == [[24, 32]]
    np.testing.assert_array_equal(manifest["Pneumonia"], [1.0, 0.0, -1.0, np.nan, 1.0, 0.0])
    assert localizations["finding"].tolist() == ["Pneumonia", "Pleural Effusion"]
    assert report["counts"]["images"] == 6 and report["counts"]["patients"] == 3
    assert report["label_counts"]["Pleural Effusion"] == {"1": 1, "0": 2, "-1": 2, "empty": 1}


def test_missing_localizations_file_is_an_empty_table(tiny_data_root) -> None:
    root = tiny_data_root(n_images=3, localizations=False)
    catalog = _catalog(root)
    assert catalog.exists("localizations")  # so the missing-inputs hook lets the run start
    out = _run(catalog)
    assert out["image_localizations"].empty and len(out["image_manifest"]) == 3


def test_pipeline_stops_with_every_problem_by_default_and_skips_when_asked(tiny_data_root) -> None:
    root = tiny_data_root(n_images=4)
    (root / "images/img003.png").write_bytes(b"garbage")
    (root / "images/img002.png").unlink()
    with pytest.raises(DataContractError) as info:
        _run(_catalog(root))
    assert [p.row for p in info.value.problems] == [4, 5]
    out = _run(_catalog(root, {"on_unreadable": "skip", "frontal_only": False}))
    assert out["image_manifest"]["image_id"].tolist() == ["img000", "img001"]
    assert [(s["row"], s["image_id"]) for s in out["validation_report"]["skipped"]] == [(4, "img002"), (5, "img003")]


def test_outputs_round_trip_through_the_catalogs_file_datasets(tiny_data_root, tmp_path: Path) -> None:
    root = tiny_data_root(n_images=4)
    out = _run(_catalog(root))
    config = _project_catalog_config(root)
    entries = {}
    for name in OUTPUTS:
        entry = dict(config[name])
        assert entry.get("versioned") is True
        entry["filepath"] = str(tmp_path / "out" / Path(entry["filepath"]).name)
        entries[name] = entry
    files = DataCatalog.from_config(entries)
    for name in OUTPUTS:
        files.save(name, out[name])
    manifest = files.load("image_manifest")
    pd.testing.assert_frame_equal(manifest, out["image_manifest"], check_dtype=False)
    assert manifest["height"].dtype == np.int64 and manifest["Pneumonia"].dtype == np.float64
    assert files.load("validation_report") == out["validation_report"]
    assert len(files.load("image_localizations")) == 2


def test_parameters_file_and_unknown_keys() -> None:
    params = yaml.safe_load((PROJECT / "conf/base/parameters_data_validation.yml").read_text())
    assert params == {"data_validation": {"on_unreadable": "error", "frontal_only": False}}
    empty = pd.DataFrame({"image_id": pd.Series([], dtype=str), "image_path": pd.Series([], dtype=str)})
    with pytest.raises(ValueError, match=r"unknown data_validation parameters \['frontal'\]"):
        validate_dataset(empty, None, ".", {"frontal": True})
    with pytest.raises(ValueError, match="frontal_only must be true or false"):
        validate_dataset(empty, None, ".", {"frontal_only": "yes"})
    assert validate_dataset.__doc__ and "I/O exception" in validate_dataset.__doc__
