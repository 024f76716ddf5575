"""The sharded engine on a LocalCluster of two one-thread workers (127.0.0.1): the same
embeddings and heatmaps as in-process, a worker killed mid-shard, a run interrupted and
resumed, images added to a dataset, a caption added to a plan, a bad image.

Exactness: a shard is a whole number of the in-process run's batches (dask
*_batches_per_shard), and torch runs on one thread both in this process and on the workers
(torch_threads: 1), so each batch is computed as in-process, bit for bit: the tests compare
with `array_equal`. Where reuse changes which images share a batch, the same holds because
the new images form their own batches here (the old ones are whole batches).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from distributed.diagnostics.plugin import WorkerPlugin
from kedro.io import DataCatalog, Version
from kedro_datasets.pandas import ParquetDataset
from sklearn.linear_model import LogisticRegression

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapStoreDataset
from medclip_residuals.distributed.embedding import embed_images_sharded
from medclip_residuals.distributed.engine import ShardEngine
from medclip_residuals.distributed.heatmaps import generate_heatmaps_sharded
from medclip_residuals.distributed.shards import ShardImageError
from medclip_residuals.distributed.store import ShardStore
from medclip_residuals.explain.generate import generate_heatmaps
from medclip_residuals.explain.plan import build_plan
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.heads import logistic_head_from_sklearn
from medclip_residuals.utils.frames import embeddings_to_matrix

BATCH = 2
CALL_TIMEOUT_S = 180  # a call takes seconds; its workers importing torch on a busy 2-core machine, tens
CAPTIONS = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung"]
HEATMAP_ARGS = {"method": "gradcam", "target_layer": "model.encoder.layers.0.blocks.-1", "shifts_px": [0],
                "contrast_caption": "the lungs are clear", "batch_size": BATCH, "chunk_size": 5, "device": "cpu"}

# the plugin below is sent to the workers by value: this test module is not importable there
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@contextmanager
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def engine(local_cluster, dask_settings, tmp_path):
    """A fresh store (and no catalog: nothing to reuse) on the module's cluster."""
    settings = dask_settings(n_workers=2, torch_threads=1, embedding_batches_per_shard=1, heatmap_batches_per_shard=1)
    return ShardEngine(local_cluster.client, settings, tmp_path / "shard_store")


def in_process_embeddings(encoder, manifest: pd.DataFrame) -> np.ndarray:
    with one_torch_thread():
        return embed_image_files(encoder, manifest["image_path"].tolist(), batch_size=BATCH, num_workers=0,
                                 bf16=False, progress=False)


def sharded_embeddings(bounded, engine, encoder, manifest: pd.DataFrame) -> pd.DataFrame:
    return bounded(CALL_TIMEOUT_S, embed_images_sharded, engine, encoder, manifest, "cpu",
                  batch_size=BATCH, num_workers=0, bf16=False)


def matrix(table: pd.DataFrame) -> np.ndarray:
    return embeddings_to_matrix(table, dataset="image_embeddings")[1]


def test_embeddings_equal_the_in_process_ones_and_ran_in_two_worker_processes(bounded, engine, encoder, image_manifest):
    manifest = image_manifest(8)
    table = sharded_embeddings(bounded, engine, encoder, manifest)
    assert table["image_id"].tolist() == manifest["image_id"].tolist()
    np.testing.assert_array_equal(matrix(table), in_process_embeddings(encoder, manifest))
    run = engine.runs["image_embeddings"]
    assert (run.shards, run.resumed, run.computed) == (4, 0, 4)
    assert len(run.pids) == 2 and os.getpid() not in run.pids, run.pids
    # the finished shards stay until the output is saved, then go
    store = engine.store("image_embeddings")
    assert len(list(store.shards.glob("*.npy"))) == 4
    engine.saved("image_embeddings")
    assert list(store.shards.glob("*.npy")) == []


def test_dataloader_processes_start_inside_the_workers(bounded, engine, encoder, image_manifest):
    """worker_daemon: false (conf/base/dask.yml): a daemonic worker process may not have children,
    so a DataLoader with num_workers > 0 would fail in it."""
    manifest = image_manifest(4)
    table = bounded(CALL_TIMEOUT_S, embed_images_sharded, engine, encoder, manifest, "cpu",
                    batch_size=BATCH, num_workers=1, bf16=False)
    np.testing.assert_array_equal(matrix(table), in_process_embeddings(encoder, manifest))


def _heatmap_inputs(encoder, manifest: pd.DataFrame, captions: list[str]) -> dict:
    rng = np.random.default_rng(0)
    head = logistic_head_from_sklearn(LogisticRegression(max_iter=200).fit(rng.standard_normal((20, 512)),
                                                                           np.arange(20) % 2))
    localizations = pd.DataFrame({"image_id": ["img000", "img003"], "finding": ["Pneumonia", "Pneumonia"]})
    plan = build_plan(manifest, localizations, [("Pneumonia/image", "Pneumonia", "image")], captions=captions,
                      include_report_captions=True, finding_synonyms={}, head_images="localized", max_images=None,
                      prefer_localized=True, seed=0, grounding=None, contrast_findings="none")
    return {"image_manifest": manifest, "heatmap_plan": plan, "heads": {"Pneumonia/image": head}, "w_by_image": {}}


def test_heatmaps_equal_the_in_process_ones(bounded, engine, encoder, image_manifest):
    inputs = _heatmap_inputs(encoder, image_manifest(4), CAPTIONS)
    assert len(inputs["heatmap_plan"]) == 14  # 4 reports + 4 x 2 captions + 2 head rows
    # one torch thread on both sides: the captions are embedded in this process for the shards too
    with one_torch_thread():
        expected = ArrayHeatmaps.collect(generate_heatmaps(encoder, progress=False, **inputs, **HEATMAP_ARGS))
        chunks = bounded(CALL_TIMEOUT_S, lambda: list(generate_heatmaps_sharded(engine, encoder, **inputs, **HEATMAP_ARGS)))
    assert [(c.start, len(c)) for c in chunks] == [(0, 5), (5, 5), (10, 4)]  # the node's chunks, in plan order
    got = ArrayHeatmaps.collect(iter(chunks))
    assert got.heatmaps.dtype == np.float16 and got.heatmaps.shape == (14, 32, 32)
    assert np.abs(got.heatmaps).max() > 0
    np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)
    assert got.metadata == expected.metadata
    run = engine.runs["heatmaps"]
    assert (run.shards, run.computed) == (7, 7) and len(run.pids) == 2


class KillOnFirstShard(WorkerPlugin):
    """Kills the worker process (no clean-up, as a crash or an OOM kill would) when the first
    embedding shard starts executing on it; a marker file makes it happen once in the cluster."""

    name = "kill-on-first-shard"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, *args, **kwargs):
        if finish != "executing" or not str(key).startswith("image_embeddings-shard"):
            return
        try:
            handle = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        os._exit(1)


def test_a_worker_killed_mid_shard_is_replaced_and_the_output_is_the_same(
    bounded, engine, local_cluster, encoder, image_manifest, tmp_path
):
    manifest = image_manifest(8)
    marker = tmp_path / "killed"
    client = local_cluster.client
    bounded(60, client.register_plugin, KillOnFirstShard(str(marker)))
    try:
        table = sharded_embeddings(bounded, engine, encoder, manifest)
    finally:
        bounded(60, client.unregister_worker_plugin, KillOnFirstShard.name)
    killed = int(marker.read_text())  # a worker died on its first shard ...
    try:
        psutil.Process(killed).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(killed)
    np.testing.assert_array_equal(matrix(table), in_process_embeddings(encoder, manifest))
    assert killed not in engine.runs["image_embeddings"].pids
    bounded(120, client.wait_for_workers, 2)  # the nanny restarted it: the next tests have two workers again


class Interrupted(BaseException):
    """What a killed client looks like from inside: the loop stops between two shards."""


def test_an_interrupted_run_resumes_from_its_finished_shards_with_the_same_output(
    bounded, engine, encoder, image_manifest, monkeypatch, caplog
):
    manifest = image_manifest(8)
    put = ShardStore.put
    stored: list[str] = []

    def put_then_stop(self, key, rows):
        if len(stored) == 2:
            raise Interrupted
        stored.append(key)
        return put(self, key, rows)

    monkeypatch.setattr(ShardStore, "put", put_then_stop)
    with pytest.raises(Interrupted):
        sharded_embeddings(bounded, engine, encoder, manifest)
    monkeypatch.setattr(ShardStore, "put", put)
    assert sorted(p.stem for p in engine.store("image_embeddings").shards.glob("*.npy")) == sorted(stored)

    with caplog.at_level(logging.INFO, logger="medclip_residuals.distributed"):
        table = sharded_embeddings(bounded, engine, encoder, manifest)
    assert "image_embeddings: resumed 2 of 4 shards" in caplog.text
    run = engine.runs["image_embeddings"]
    assert (run.resumed, run.computed) == (2, 2)
    np.testing.assert_array_equal(matrix(table), in_process_embeddings(encoder, manifest))


def _versioned_catalog(tmp_path: Path) -> DataCatalog:
    return DataCatalog({
        "image_embeddings": ParquetDataset(filepath=str(tmp_path / "04_feature" / "image_embeddings.parquet"),
                                           version=Version(None, None)),
        "heatmaps": HeatmapStoreDataset(filepath=str(tmp_path / "07_model_output" / "heatmaps"),
                                        version=Version(None, None)),
    })


def test_adding_images_embeds_only_the_new_ones(bounded, engine, encoder, image_manifest, tmp_path, caplog):
    engine.catalog = catalog = _versioned_catalog(tmp_path)
    full = image_manifest(8)
    first = full.iloc[:6].reset_index(drop=True)
    catalog.save("image_embeddings", sharded_embeddings(bounded, engine, encoder, first))
    engine.saved("image_embeddings")

    with caplog.at_level(logging.INFO, logger="medclip_residuals.distributed"):
        table = sharded_embeddings(bounded, engine, encoder, full)
    assert "image_embeddings: reused 6 of 8 rows from version" in caplog.text
    run = engine.runs["image_embeddings"]
    assert (run.reused_rows, run.shards, run.computed) == (6, 1, 1)  # one shard: the two new images
    np.testing.assert_array_equal(matrix(table), in_process_embeddings(encoder, full))
    catalog.save("image_embeddings", table)

    # an image rewritten with other pixels (a new modification time) is embedded again
    path = Path(full.loc[1, "image_path"])
    before = path.stat().st_mtime_ns
    pixels = np.asarray(np.random.default_rng(99).integers(0, 256, (40, 30)), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(pixels).save(path)
    os.utime(path, ns=(before + 10**9, before + 10**9))
    again = sharded_embeddings(bounded, engine, encoder, full)
    assert engine.runs["image_embeddings"].reused_rows == 7
    assert not np.array_equal(matrix(again)[1], matrix(table)[1])
    np.testing.assert_array_equal(np.delete(matrix(again), 1, axis=0), np.delete(matrix(table), 1, axis=0))


def test_adding_a_caption_computes_only_its_maps(bounded, engine, encoder, image_manifest, tmp_path, caplog):
    engine.catalog = catalog = _versioned_catalog(tmp_path)
    manifest = image_manifest(4)
    first = _heatmap_inputs(encoder, manifest, CAPTIONS[:1])
    # one torch thread here too: the captions are embedded in this process (see above)
    with one_torch_thread():
        for chunk in bounded(CALL_TIMEOUT_S, lambda: list(generate_heatmaps_sharded(engine, encoder, **first, **HEATMAP_ARGS))):
            catalog.save("heatmaps", chunk)
    assert len(catalog.load("heatmaps")) == 10

    both = _heatmap_inputs(encoder, manifest, CAPTIONS)
    with caplog.at_level(logging.INFO, logger="medclip_residuals.distributed"), one_torch_thread():
        got = ArrayHeatmaps.collect(iter(bounded(
            CALL_TIMEOUT_S, lambda: list(generate_heatmaps_sharded(engine, encoder, **both, **HEATMAP_ARGS)))))
        expected = ArrayHeatmaps.collect(generate_heatmaps(encoder, progress=False, **both, **HEATMAP_ARGS))
    assert "heatmaps: reused 10 of 14 maps from version" in caplog.text
    assert engine.runs["heatmaps"].reused_rows == 10
    np.testing.assert_array_equal(got.heatmaps, expected.heatmaps)

    # the same plan under bf16 passes gives other maps: none of the 10 float32 maps the stored
    # version holds may be reused
    bf16 = {**HEATMAP_ARGS, "bf16": True}
    with one_torch_thread():
        got_bf16 = ArrayHeatmaps.collect(iter(bounded(
            CALL_TIMEOUT_S, lambda: list(generate_heatmaps_sharded(engine, encoder, **both, **bf16)))))
        expected_bf16 = ArrayHeatmaps.collect(generate_heatmaps(encoder, progress=False, **both, **bf16))
    assert engine.runs["heatmaps"].reused_rows == 0
    assert got_bf16.metadata["bf16"] is True and got.metadata["bf16"] is False
    np.testing.assert_array_equal(got_bf16.heatmaps, expected_bf16.heatmaps)
    assert not np.array_equal(got_bf16.heatmaps, got.heatmaps)


def test_a_bad_image_fails_its_shard_naming_the_manifest_row_and_the_file(bounded, engine, encoder, image_manifest):
    manifest = image_manifest(6)
    bad = Path(manifest.loc[3, "image_path"])
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    with pytest.raises(ShardImageError) as error:
        sharded_embeddings(bounded, engine, encoder, manifest)
    message = str(error.value)
    assert "image_manifest row 3 (image_id 'img003') [image_path]" in message
    assert str(bad) in message
