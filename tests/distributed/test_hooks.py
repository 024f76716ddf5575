"""DaskClientHook: no engine without a dask config; a LocalCluster started for a pipeline with
a sharded node, its shards deleted once their output is saved, closed after the run and on
error; a store inside data_root refused; an unreachable scheduler named within its timeout."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node

from medclip_residuals.datasets.heatmap_store import HeatmapChunk
from medclip_residuals.distributed.client import ClusterUnavailableError
from medclip_residuals.distributed.engine import active_engine
from medclip_residuals.distributed.hooks import DaskClientHook
from medclip_residuals.distributed.store import ShardStoreLocationError
from medclip_residuals.pipelines.embedding import create_pipeline as embedding_pipeline


def _identity(x):
    return x


def _context(tmp_path, dask, defaults, data_root="data/01_raw/demo_cxr") -> SimpleNamespace:
    return SimpleNamespace(project_path=tmp_path, params={"data_root": data_root},
                           config_loader={"dask": {"dask": dask, "dask_defaults": defaults}})


def test_without_a_dask_config_nothing_starts(tmp_path, dask_defaults):
    for config_loader in ({"dask": {"dask": None, "dask_defaults": dask_defaults}}, {}):
        hook = DaskClientHook()
        hook.after_context_created(SimpleNamespace(project_path=tmp_path, params={}, config_loader=config_loader))
        hook.before_pipeline_run({}, embedding_pipeline(), DataCatalog())
        assert hook.settings is None and active_engine() is None


def test_a_local_cluster_lives_for_the_run_and_its_processes_stop_after_it(
    tmp_path, dask_defaults, bounded, own_processes
):
    hook = DaskClientHook()
    hook.after_context_created(_context(tmp_path, {"n_workers": 1, "connect_timeout_s": 60}, dask_defaults))
    assert hook.settings.n_workers == 1 and active_engine() is None  # nothing started yet

    hook.before_pipeline_run({}, Pipeline([node(_identity, "a", "b", name="phenotype")]), DataCatalog())
    assert active_engine() is None  # no sharded node: no cluster

    before = own_processes.children()
    try:
        bounded(120, hook.before_pipeline_run, {}, embedding_pipeline(), DataCatalog())
        engine = active_engine()
        assert engine is not None and engine.store_root == (tmp_path / "data" / "shard_store").resolve()
        workers = bounded(60, engine.client.run, lambda: __import__("os").getpid())
        (pid,) = workers.values()
        assert psutil.pid_exists(pid) and pid in own_processes.children()

        # shards of a dataset go once it is saved; a heatmap store only with its last chunk
        store = engine.store("heatmaps")
        store.put("k1", np.zeros((2, 4, 4), dtype=np.float16))
        engine.clean_after_save("heatmaps", ["k1"])
        hook.after_dataset_saved("heatmaps", HeatmapChunk(0, np.zeros((2, 4, 4)), 4), None)
        assert store.has("k1")
        hook.after_dataset_saved("heatmaps", HeatmapChunk(2, np.zeros((2, 4, 4)), 4), None)
        assert not store.has("k1")

        hook.on_pipeline_error(RuntimeError("a node failed"), {}, embedding_pipeline(), DataCatalog())
        assert active_engine() is None
        try:
            psutil.Process(pid).wait(timeout=30)
        except psutil.NoSuchProcess:
            pass  # already gone
        assert not psutil.pid_exists(pid)
    finally:
        hook.close()
        own_processes.stop_by_pid(own_processes.children() - before)  # by their ids: whatever the close left


def test_a_shard_store_inside_data_root_is_refused(tmp_path, dask_defaults):
    hook = DaskClientHook()
    with pytest.raises(ShardStoreLocationError, match="lies inside data_root"):
        hook.after_context_created(_context(
            tmp_path, {"n_workers": 1, "shard_store": "data/01_raw/demo_cxr/shards"}, dask_defaults,
        ))


def test_an_unreachable_scheduler_is_named_within_the_timeout(tmp_path, dask_defaults, bounded):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = DaskClientHook()
    hook.after_context_created(_context(
        tmp_path, {"scheduler_address": f"tcp://127.0.0.1:{port}", "connect_timeout_s": 2}, dask_defaults,
    ))
    with pytest.raises(ClusterUnavailableError, match=f"tcp://127.0.0.1:{port}: no scheduler answered within 2 s"):
        bounded(60, hook.before_pipeline_run, {}, embedding_pipeline(), DataCatalog())
    assert active_engine() is None
