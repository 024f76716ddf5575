"""The dask config: every environment's parses; the three ways; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from medclip_residuals.distributed.settings import load_dask_settings, parse_dask_config
from medclip_residuals.utils.params import ParameterError

CONF = Path(__file__).resolve().parents[2] / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "base")


@pytest.fixture(scope="module")
def dask_config_of():
    from kedro.config import OmegaConfigLoader

    from medclip_residuals.settings import CONFIG_LOADER_ARGS

    def load(env: str) -> dict:
        return OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env,
                                 config_patterns=CONFIG_LOADER_ARGS["config_patterns"])

    return load


def test_base_is_in_process_and_every_environment_parses(dask_config_of):
    assert load_dask_settings(dask_config_of("base")) is None
    for env in ENVIRONMENTS:
        load_dask_settings(dask_config_of(env))  # raises on a bad file
    cluster = load_dask_settings(dask_config_of("cluster"))
    assert cluster.scheduler_address == "tcp://127.0.0.1:8786" and not cluster.local and cluster.n_workers is None


def test_no_dask_file_at_all_is_in_process():
    assert load_dask_settings({}) is None


def test_a_local_cluster_takes_the_defaults_for_what_it_leaves_out(dask_defaults):
    settings = parse_dask_config({"dask": {"n_workers": 3}, "dask_defaults": dask_defaults})
    assert settings.local and settings.n_workers == 3
    assert settings.worker_daemon is False and settings.shard_store == dask_defaults["shard_store"]


@pytest.mark.parametrize(
    "dask, message",
    [
        ({"scheduler_address": "tcp://h:8786", "n_workers": 2}, "set one of them to null"),
        ({}, "n_workers must be >= 1"),
        ({"n_workers": 1, "retries": -1}, "retries must be >= 0"),
        ({"n_workers": 1, "embedding_batches_per_shard": 0}, "embedding_batches_per_shard must be >= 1"),
        ({"n_workers": 1, "resources": {"GPU": 0}}, "resources must be positive"),
        ({"n_workers": 1, "shards": 4}, "dask: unknown key 'shards'"),
        ("tcp://h:8786", "expected null or a mapping"),
    ],
)
def test_bad_settings_are_named(dask_defaults, dask, message):
    with pytest.raises(ParameterError, match=message):
        parse_dask_config({"dask": dask, "dask_defaults": dask_defaults})


def test_an_unknown_top_level_key_is_refused(dask_defaults):
    with pytest.raises(ParameterError, match="unknown top-level keys"):
        parse_dask_config({"dask": {"n_workers": 1}, "dask_default": {}, "dask_defaults": dask_defaults})
