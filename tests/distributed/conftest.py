"""Fixtures of the sharded-engine tests: dask settings from conf/base/dask.yml, a LocalCluster
of two one-thread workers on 127.0.0.1 shared by a module (every process it started is
stopped by its id at the end), a handful of tiny images and the tiny demo encoder.

Every wait is bounded: `within` runs a call in a thread and fails the test after its time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import psutil
import pytest
from kedro.config import OmegaConfigLoader

from medclip_residuals.data.contract import empty_localizations, validate_dataset
from medclip_residuals.distributed.client import ClusterClient, start_client
from medclip_residuals.distributed.settings import DaskSettings, parse_dask_config
from medclip_residuals.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[2] / "conf"
CALL_TIMEOUT_S = 180  # a sharded call on the tiny data takes seconds; workers importing torch on a busy 2-core machine, tens


def dask_config(env: str = "base") -> dict[str, Any]:
    """The `dask` config of an environment, read by Kedro's loader as the hook reads it."""
    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env,
                               config_patterns=CONFIG_LOADER_ARGS["config_patterns"])
    return dict(loader["dask"])


@pytest.fixture(scope="session")
def dask_defaults() -> dict[str, Any]:
    """conf/base/dask.yml's dask_defaults."""
    return dict(dask_config()["dask_defaults"])


@pytest.fixture(scope="session")
def dask_settings(dask_defaults) -> Callable[..., DaskSettings]:
    """Factory: `make(n_workers=2, ...)` -> conf/base's dask_defaults with these keys set."""
    defaults = dask_defaults

    def make(**overrides: Any) -> DaskSettings:
        return parse_dask_config({"dask": overrides, "dask_defaults": defaults})

    return make


def within(seconds: float, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, failing the test if it takes more than `seconds`."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call, *args, **kwargs).result(timeout=seconds)
    except FutureTimeout:
        pytest.fail(f"{getattr(call, '__name__', call)} did not finish within {seconds} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def children() -> set[int]:
    """Process ids of this process's descendants, but multiprocessing's resource tracker: the
    interpreter starts it once (at the first spawned process) and needs it until it exits."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    return {p.pid for p in psutil.Process().children(recursive=True)} - {tracker}


def stop_by_pid(pids: set[int], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL, each process of `pids` still alive, by its id."""
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.send_signal(signal.SIGTERM)
            alive.append(process)
        except psutil.NoSuchProcess:
            continue
    _, still = psutil.wait_procs(alive, timeout=timeout_s)
    for process in still:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(still, timeout=timeout_s)


@pytest.fixture(scope="session")
def bounded() -> Callable[..., Any]:
    """`within` as a fixture: `bounded(seconds, call, *args)`."""
    return within


@pytest.fixture(scope="session")
def own_processes() -> SimpleNamespace:
    """`children()` (this process's descendants, the resource tracker aside) and
    `stop_by_pid(pids)`, for tests that start processes."""
    return SimpleNamespace(children=children, stop_by_pid=stop_by_pid)


@pytest.fixture(scope="module")
def local_cluster(dask_settings) -> Iterator[ClusterClient]:
    """A LocalCluster of 2 workers x 1 thread (torch on one thread, as in the test process)."""
    before = children()
    settings = dask_settings(n_workers=2, threads_per_worker=1, torch_threads=1, connect_timeout_s=60)
    cluster = start_client(settings)
    try:
        cluster.client.wait_for_workers(2, timeout=60)
        yield cluster
    finally:
        started = children() - before
        try:
            cluster.close()
        finally:
            stop_by_pid(started)  # whatever the close left (a worker restarted by a test, say)


@pytest.fixture
def image_manifest(tiny_data_root) -> Callable[..., pd.DataFrame]:
    """Factory: `make(n_images)` -> the validated manifest (absolute paths) of tiny PNGs."""

    def make(n_images: int = 8, name: str = "dataset") -> pd.DataFrame:
        root = tiny_data_root(n_images=n_images, shape=(40, 30), localizations=False, name=name)
        manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
        return validate_dataset(manifest, empty_localizations(), str(root)).image_manifest

    return make


@pytest.fixture
def encoder(tiny_demo_encoder):
    return tiny_demo_encoder(["study there is some pneumonia near the heart pleural effusion lungs clear"], seed=0)
