"""A real cluster: `dask scheduler --host 127.0.0.1` and two `dask worker` processes started
here, and the tiny demo run with `kedro run --env tinycluster`, whose dask.yml points at the
scheduler. The embedding and heatmap nodes send their shards there; the embeddings equal
the saved encoder's in-process embeddings of the saved manifest. Every process started
here is stopped by its process group id at the end."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.medclip_loader import load_encoder_folder
from medclip_residuals.utils.frames import embeddings_to_matrix

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 600


def tiny_parameters() -> str:
    """The e2e tests' tiny demo parameters (tests/e2e/conftest.py)."""
    spec = importlib.util.spec_from_file_location("medclip_residuals_e2e_conftest", PROJECT_ROOT / "tests/e2e/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TINY_PARAMETERS


def copy_project(target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy2(PROJECT_ROOT / name, target / name)
    shutil.copytree(PROJECT_ROOT / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    (target / "conf" / "local").mkdir()
    shutil.copytree(PROJECT_ROOT / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                  "07_model_output", "08_reporting"):
        (target / "data" / layer).mkdir(parents=True)
    return target


def process_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", COLUMNS="400", PYTHONPATH=str(project / "src"),
               # workers whose DataLoader starts processes must not be daemonic (conf/base/dask.yml)
               DASK_DISTRIBUTED__WORKER__DAEMON="False")
    return env


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (its own session), then SIGKILL after 15 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def latest(project: Path, relative: str) -> Path:
    folder = project / relative
    return sorted(p for p in folder.iterdir() if p.is_dir())[-1] / folder.name


@contextmanager
def scheduler_and_workers(folder: Path, env: dict[str, str], n_workers: int = 2) -> Iterator[str]:
    """`dask scheduler` on 127.0.0.1 and `n_workers` `dask worker`s, each in its own session;
    yields the scheduler's address once every worker has joined; stops them all at the end."""
    from distributed import Client

    logs = folder / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.log").open("w") as log:
            processes.append(subprocess.Popen([str(DASK), *args], cwd=folder, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))

    try:
        scheduler_file = folder / "scheduler.json"
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.is_file():
            assert time.monotonic() < deadline, (logs / "scheduler.log").read_text()
            time.sleep(0.2)
        time.sleep(0.2)  # let the scheduler finish writing the file
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for k in range(n_workers):
            start(f"worker{k}", "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                  "--no-dashboard", "--name", f"w{k}")
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
        yield address
    finally:
        for process in processes:
            stop_group(process)


def in_process_embeddings(project: Path) -> tuple[list[str], np.ndarray]:
    """The saved manifest's ids and their embeddings by the saved encoder, in this process."""
    manifest = pd.read_parquet(latest(project, "data/02_intermediate/image_manifest.parquet"))
    encoder = load_encoder_folder(latest(project, "data/06_models/medclip_encoder"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): the same batches give the same bits
    try:
        return manifest["image_id"].tolist(), embed_image_files(
            encoder, manifest["image_path"].tolist(), batch_size=16, num_workers=0, bf16=False, progress=False,
        )
    finally:
        torch.set_num_threads(before)


def test_the_demo_runs_its_shards_on_a_scheduler_and_two_workers_started_apart(tmp_path):
    project = copy_project(tmp_path / "project")
    env = process_env(project)
    with scheduler_and_workers(tmp_path, env) as address:
        env_folder = project / "conf" / "tinycluster"
        env_folder.mkdir()
        (env_folder / "parameters.yml").write_text(tiny_parameters(), encoding="utf-8")
        (env_folder / "dask.yml").write_text(
            f"dask:\n  scheduler_address: {address}\n  connect_timeout_s: 60\n"
            "  embedding_batches_per_shard: 1\n  heatmap_batches_per_shard: 1\n", encoding="utf-8",
        )
        result = subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--pipelines", "demo", "--env", "tinycluster"],
            check=False, cwd=project, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output[-6000:]
    assert f"dask: connected to {address}, 2 worker(s)" in output
    assert "image_embeddings: 10 shard(s) of up to 16 rows sent to the cluster" in output  # 150 images, batch 16
    assert "image_embeddings: 10 shard(s) computed on 2 worker(s)" in output
    assert "heatmaps: " in output and "shard(s) computed on" in output
    assert "dask: client closed" in output
    assert not list((project / "data/shard_store/image_embeddings/shards").glob("*.npy"))  # deleted once saved

    ids, expected = in_process_embeddings(project)
    saved_ids, saved = embeddings_to_matrix(pd.read_parquet(latest(project, "data/04_feature/image_embeddings.parquet")))
    assert list(saved_ids) == ids
    np.testing.assert_array_equal(saved, expected)
