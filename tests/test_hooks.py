"""The project hooks: hints that say what to do, provenance stamped on every output and
checked on every input, one log line per node. (demo_data's guard: tests/pipelines/demo_data.)"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from medclip_residuals.data.folders import DEMO_MARKER
from medclip_residuals.hooks import (
    DataRootMismatchError,
    MissingInputsError,
    MissingInputsHook,
    ProgressLoggingHook,
    RunProvenanceHook,
    describe_trained_on,
)
from medclip_residuals.utils.provenance import provenance_of


def _identity(x):
    return x


def _context(data_root: Path | str, demo_root: Path | str, project: Path, profile: str = "demo") -> SimpleNamespace:
    return SimpleNamespace(
        project_path=project,
        params={"data_root": str(data_root), "encoder": {"profile": profile}},
        config_loader={"globals": {"demo_root": str(demo_root)}},
    )


def _mark_demo(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("medclip_residuals demo dataset (procedural chest X-ray phantoms)\nseed: 1\n")


def _raw_catalog(root: Path) -> DataCatalog:
    return DataCatalog({
        "manifest": CSVDataset(filepath=str(root / "manifest.csv")),
        "demo_marker": MemoryDataset(),
    })


def test_missing_manifest_of_a_users_folder_points_to_the_contract_not_to_demo_data(tmp_path):
    users = tmp_path / "users"
    (users / "images").mkdir(parents=True)
    reads_manifest = Pipeline([node(_identity, "manifest", "image_manifest", name="validate")])
    hook = MissingInputsHook()
    hook.after_context_created(_context(users, tmp_path / "demo", tmp_path))
    with pytest.raises(MissingInputsError) as error:
        hook.before_pipeline_run({}, reads_manifest, _raw_catalog(users))
    assert "docs/DATA_CONTRACT.md" in str(error.value)
    assert "demo_data" not in str(error.value)


def test_missing_manifest_of_the_default_demo_root_says_run_demo_data(tmp_path):
    demo = tmp_path / "data" / "01_raw" / "demo_cxr"
    reads_manifest = Pipeline([node(_identity, "manifest", "image_manifest", name="validate")])
    hook = MissingInputsHook()
    hook.after_context_created(_context("data/01_raw/demo_cxr", "data/01_raw/demo_cxr", tmp_path))
    with pytest.raises(MissingInputsError, match=r"kedro run --pipelines demo_data` first"):
        hook.before_pipeline_run({}, reads_manifest, _raw_catalog(demo))


# --- provenance ------------------------------------------------------------------------------

def _provenance_hook(data_root: Path, demo_root: Path, project: Path, catalog=None, pipeline=None, profile="demo"):
    hook = RunProvenanceHook()
    hook.after_context_created(_context(data_root, demo_root, project, profile))
    hook.before_pipeline_run({}, pipeline or Pipeline([]), catalog or DataCatalog())
    return hook


def test_outputs_are_stamped_with_the_data_root_and_survive_parquet(tmp_path):
    root = tmp_path / "users"
    table_path = tmp_path / "image_manifest.parquet"
    catalog = DataCatalog({"image_manifest": ParquetDataset(filepath=str(table_path))})
    hook = _provenance_hook(root, tmp_path / "demo", tmp_path, catalog)
    frame = pd.DataFrame({"image_id": ["a", "b"]})
    hook.before_dataset_saved("image_manifest", frame, None)
    catalog.save("image_manifest", frame)
    assert provenance_of(pd.read_parquet(table_path)) == {"data_root": str(root)}


def test_an_input_made_from_another_data_root_stops_the_run_naming_the_pipeline(tmp_path):
    theirs, ours = tmp_path / "dataset_a", tmp_path / "dataset_b"
    made = pd.DataFrame({"image_id": ["a"]})
    made.attrs["provenance"] = {"data_root": str(theirs)}
    hook = _provenance_hook(ours, tmp_path / "demo", tmp_path)
    with pytest.raises(DataRootMismatchError) as error:
        hook.after_dataset_loaded("image_manifest", made, None)
    message = str(error.value)
    assert str(theirs) in message and str(ours) in message
    assert f"kedro run --pipelines data_validation --params data_root={ours}" in message
    # the same data_root, or a table that carries no record, passes
    _provenance_hook(theirs, tmp_path / "demo", tmp_path).after_dataset_loaded("image_manifest", made, None)
    hook.after_dataset_loaded("image_manifest", pd.DataFrame({"image_id": ["a"]}), None)


def test_a_model_trained_on_another_data_root_is_applied_with_a_warning(tmp_path, caplog):
    theirs, ours = tmp_path / "dataset_a", tmp_path / "dataset_b"
    heads = {"tensors": {}, "metadata": {"provenance": {"data_root": str(theirs)}}}
    hook = _provenance_hook(ours, tmp_path / "demo", tmp_path)
    with caplog.at_level(logging.WARNING, logger="medclip_residuals.hooks"):
        hook.after_dataset_loaded("residual_1_heads", heads, None)
    assert caplog.records[-1].getMessage() == (
        f"residual_1_heads was trained on data_root {theirs}; this run applies it to {ours}"
    )


def test_json_reports_and_tensor_dicts_get_the_encoder_but_other_dicts_stay_as_they_are(tmp_path):
    root = tmp_path / "users"
    catalog = DataCatalog({
        "residual_1_metrics": JSONDataset(filepath=str(tmp_path / "m.json")),
        "demo_like_partitions": MemoryDataset(),
        "residual_1_heads": MemoryDataset(),
    })
    hook = _provenance_hook(root, tmp_path / "demo", tmp_path, catalog)
    embeddings = pd.DataFrame({"image_id": ["a"]})
    encoder = {"profile": "demo", "trained_on": {"data_root": "/phantoms", "demo_dataset": True}}
    embeddings.attrs["provenance"] = {"data_root": str(root), "encoder": encoder}
    hook.after_dataset_loaded("image_embeddings", embeddings, None)
    metrics = {"auc": 0.75}
    hook.before_dataset_saved("residual_1_metrics", metrics, None)
    assert metrics == {"auc": 0.75, "provenance": {"data_root": str(root), "encoder": encoder}}
    catalog.save("residual_1_metrics", metrics)
    assert json.loads((tmp_path / "m.json").read_text())["provenance"]["encoder"]["profile"] == "demo"
    partitions = {"img000": "an image"}
    hook.before_dataset_saved("demo_like_partitions", partitions, None)
    assert partitions == {"img000": "an image"}
    heads = {"tensors": {}, "metadata": {"targets": ["Edema"]}}
    hook.before_dataset_saved("residual_1_heads", heads, None)
    assert heads["metadata"]["provenance"]["encoder"] == encoder


def test_an_encoder_trained_in_the_run_records_what_it_was_trained_on(tmp_path):
    root = tmp_path / "demo"
    _mark_demo(root)
    hook = _provenance_hook(root, root, tmp_path)
    # train_encoder records its images and patients; the hook adds where they came from
    encoder = SimpleNamespace(profile="demo", trained_on={"images": 3, "patients": 2})
    hook.before_dataset_saved("medclip_encoder", encoder, None)
    assert encoder.trained_on == {"data_root": str(root), "demo_dataset": True, "images": 3, "patients": 2}
    metrics: dict = {}
    catalog = DataCatalog({"encoder_training_metrics": JSONDataset(filepath=str(tmp_path / "e.json"))})
    hook._catalog = catalog
    hook.before_dataset_saved("encoder_training_metrics", metrics, None)
    assert metrics["provenance"]["encoder"]["trained_on"]["images"] == 3
    assert describe_trained_on(encoder.trained_on) == f"the demo phantoms at {root}, 3 images of 2 patients"
    published = SimpleNamespace(profile="medclip_vit", trained_on={"dataset": "MIMIC-CXR and CheXpert"})
    hook.before_dataset_saved("medclip_encoder", published, None)
    assert published.trained_on == {"dataset": "MIMIC-CXR and CheXpert"}  # not trained here: left as it is


def test_the_demo_profile_on_a_users_data_root_is_said_at_the_start(tmp_path, caplog):
    users, demo = tmp_path / "users", tmp_path / "demo"
    users.mkdir()
    _mark_demo(demo)
    embeds = Pipeline([node(_identity, "medclip_encoder", "image_embeddings", name="embed")])
    validates = Pipeline([node(_identity, "manifest", "image_manifest", name="validate")])
    with caplog.at_level(logging.WARNING, logger="medclip_residuals.hooks"):
        _provenance_hook(users, demo, tmp_path, pipeline=embeds)
    assert any("is not the demo dataset, but encoder.profile is 'demo'" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medclip_residuals.hooks"):
        _provenance_hook(demo, demo, tmp_path, pipeline=embeds)                      # the demo itself
        _provenance_hook(users, demo, tmp_path, pipeline=validates)                  # no encoder involved
        _provenance_hook(users, demo, tmp_path, pipeline=embeds, profile="medclip_vit")
        # a fresh clone's first run: the default demo root does not exist yet, demo_data makes it
        fresh = tmp_path / "data" / "01_raw" / "demo_cxr"
        _provenance_hook(fresh, fresh, tmp_path, pipeline=embeds)
        makes_demo = Pipeline([node(_identity, "params:demo_data", "demo_marker", name="generate"), embeds.nodes[0]])
        _provenance_hook(tmp_path / "elsewhere", demo, tmp_path, pipeline=makes_demo)
    assert not caplog.records


def test_progress_hook_logs_rows_and_the_file(tmp_path, caplog):
    path = tmp_path / "t.parquet"
    catalog = DataCatalog({"image_manifest": ParquetDataset(filepath=str(path))})
    hook = ProgressLoggingHook()
    hook.before_pipeline_run({}, Pipeline([]), catalog)
    with caplog.at_level(logging.INFO, logger="medclip_residuals.hooks"):
        hook.after_node_run(SimpleNamespace(short_name="validate"), {"image_manifest": pd.DataFrame({"a": [1, 2, 3]})})
    assert caplog.records[-1].getMessage() == f"validate | image_manifest: 3 rows x 1 cols -> {path}"


def test_run_timing_hook_saves_each_node_and_pipeline_time():
    from medclip_residuals.hooks import RunTimingHook

    hook = RunTimingHook()
    catalog = DataCatalog({"run_timings": MemoryDataset()})
    hook.before_pipeline_run({}, None, catalog)
    for name, namespace in (("embedding.embed_images", "embedding"), ("embedding.embed_captions", "embedding"),
                            ("phenotyping.score_phenotypes", "phenotyping")):
        node = SimpleNamespace(name=name, namespace=namespace)
        hook.before_node_run(node)
        hook.after_node_run(node)
        if name == "embedding.embed_images":  # a generator node: its work ends with its last chunk saved
            time.sleep(0.05)
            hook.after_dataset_saved("image_embeddings", None, node)
    hook.after_pipeline_run({"pipeline_names": ["embedding", "phenotyping"]}, None, catalog)
    record = catalog.load("run_timings")
    assert record["pipelines"] == ["embedding", "phenotyping"]
    assert [n["node"] for n in record["nodes"]] == ["embedding.embed_images", "embedding.embed_captions",
                                                     "phenotyping.score_phenotypes"]
    assert set(record["seconds_by_pipeline"]) == {"embedding", "phenotyping"}
    embedding = sum(n["seconds"] for n in record["nodes"] if n["pipeline"] == "embedding")
    assert record["seconds_by_pipeline"]["embedding"] == pytest.approx(embedding, abs=1e-3)
    assert record["nodes"][0]["seconds"] >= 0.05
    assert record["wall_seconds"] >= sum(record["seconds_by_pipeline"].values()) - 1e-3
