"""demo_data's guard: the phantom dataset is never written over a user's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset

from medclip_residuals import settings
from medclip_residuals.hooks import MissingInputsHook
from medclip_residuals.pipelines.demo_data.hooks import DemoTargetGuardHook, UnsafeDemoTargetError


def _identity(x):
    return x


def _raw_catalog(root: Path) -> DataCatalog:
    return DataCatalog({
        "manifest": CSVDataset(filepath=str(root / "manifest.csv")),
        "demo_marker": MemoryDataset(),
    })


def test_guard_refuses_demo_data_into_a_users_folder_before_writing(tmp_path):
    users = tmp_path / "users"
    (users / "images").mkdir(parents=True)
    (users / "images" / "x.png").write_bytes(b"\x89PNG user bytes")
    writes_manifest = Pipeline([node(_identity, "params:demo_data", "manifest", name="generate")])
    hook = DemoTargetGuardHook()
    with pytest.raises(UnsafeDemoTargetError, match="not empty"):
        hook.before_pipeline_run({}, writes_manifest, _raw_catalog(users))
    assert sorted(p.name for p in users.rglob("*")) == ["images", "x.png"]
    # the same pipeline into an empty folder passes the guard
    (tmp_path / "empty").mkdir()
    hook.before_pipeline_run({}, writes_manifest, _raw_catalog(tmp_path / "empty"))
    # a pipeline that only reads the manifest is none of the guard's business
    reads_manifest = Pipeline([node(_identity, "manifest", "image_manifest", name="validate")])
    hook.before_pipeline_run({}, reads_manifest, _raw_catalog(users))


def test_guard_is_registered_to_run_before_the_missing_inputs_check():
    kinds = [type(hook) for hook in settings.HOOKS]
    # Kedro (pluggy) calls hooks last registered first
    assert kinds.index(DemoTargetGuardHook) > kinds.index(MissingInputsHook)
