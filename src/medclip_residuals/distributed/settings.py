"""The `dask` configuration of a Kedro environment (conf/<env>/dask.yml) as one typed object.

`conf/base/dask.yml` holds `dask: null` (the two heavy nodes run in-process, as always) and
`dask_defaults`, every key's default; an environment that sets `dask:` to a mapping turns
the sharded engine on, and the keys it leaves out come from `dask_defaults`:

    dask:
      scheduler_address: tcp://10.0.0.5:8786    # an existing scheduler (a real cluster)

    dask:
      n_workers: 4                              # scheduler_address null: a LocalCluster on 127.0.0.1

The file is read through Kedro's config loader (the `dask` pattern of settings.CONFIG_LOADER_ARGS),
as Kedro's Spark integration reads `spark.yml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kedro.config import AbstractConfigLoader, MissingConfigException

from medclip_residuals.utils.params import ParameterError, Parameters

CONFIG_KEY = "dask"
DEFAULTS_KEY = "dask_defaults"


@dataclass(frozen=True)
class DaskSettings(Parameters):
    """Where the shards run and how they are cut, retried and kept (see conf/base/dask.yml)."""

    scheduler_address: str | None
    n_workers: int | None
    threads_per_worker: int
    memory_limit: str
    worker_daemon: bool
    worker_environ: dict[str, str]
    torch_threads: int | None
    connect_timeout_s: float
    embedding_batches_per_shard: int
    heatmap_batches_per_shard: int
    retries: int
    resources: dict[str, float]
    shard_store: str
    incremental: bool

    @property
    def local(self) -> bool:
        """Whether the engine starts its own LocalCluster (no scheduler address)."""
        return self.scheduler_address is None

    def check(self, where: str) -> None:
        if self.scheduler_address is not None:
            if not self.scheduler_address.strip():
                raise ParameterError(f"{where}.scheduler_address is empty: write tcp://host:port or null")
            if self.n_workers is not None:
                raise ParameterError(
                    f"{where}: n_workers ({self.n_workers}) starts a LocalCluster, but scheduler_address "
                    f"({self.scheduler_address}) names an existing scheduler; set one of them to null"
                )
        elif self.n_workers is None or self.n_workers < 1:
            raise ParameterError(
                f"{where}: scheduler_address is null, so a LocalCluster is started: n_workers must be >= 1, "
                f"got {self.n_workers!r}"
            )
        for name in ("threads_per_worker", "embedding_batches_per_shard", "heatmap_batches_per_shard"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{where}.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ParameterError(f"{where}.torch_threads must be >= 1 or null, got {self.torch_threads!r}")
        if self.retries < 0:
            raise ParameterError(f"{where}.retries must be >= 0, got {self.retries!r}")
        if self.connect_timeout_s <= 0:
            raise ParameterError(f"{where}.connect_timeout_s must be > 0, got {self.connect_timeout_s!r}")
        if not self.shard_store.strip():
            raise ParameterError(f"{where}.shard_store is empty: a folder under the project's data/ folder")
        bad = {k: v for k, v in self.resources.items() if v <= 0}
        if bad:
            raise ParameterError(f"{where}.resources must be positive amounts, got {bad}")


def parse_dask_config(config: Mapping[str, Any]) -> DaskSettings | None:
    """The settings of a loaded `dask` config (`{"dask": ..., "dask_defaults": ...}`), or None
    when `dask` is null or absent (in-process)."""
    chosen = config.get(CONFIG_KEY)
    if chosen is None:
        return None
    if not isinstance(chosen, Mapping):
        raise ParameterError(f"{CONFIG_KEY}: expected null or a mapping of settings, got {chosen!r}")
    unknown = sorted(set(config) - {CONFIG_KEY, DEFAULTS_KEY})
    if unknown:
        raise ParameterError(f"dask config: unknown top-level keys {unknown} (known: {CONFIG_KEY}, {DEFAULTS_KEY})")
    defaults = config.get(DEFAULTS_KEY) or {}
    return DaskSettings.parse({**defaults, **chosen}, CONFIG_KEY)


def load_dask_settings(config_loader: AbstractConfigLoader | Mapping[str, Any]) -> DaskSettings | None:
    """The environment's dask settings through Kedro's config loader; None when no dask file
    exists or `dask` is null."""
    try:
        config = config_loader[CONFIG_KEY]
    except (KeyError, MissingConfigException):
        return None
    return parse_dask_config(config or {})
