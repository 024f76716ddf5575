"""The sharded engine of a run: the Dask client, the settings, the shard store, and the run's
catalog (to read the latest version of an output), made by `hooks.DaskClientHook`.

Nodes ask `active_engine()`: None (no `dask` config) means in-process, exactly as without
this package. Why a registry and not a node input: the engine belongs to the run, not to
the data (a `kedro run` without a cluster must not change a node's inputs), as Kedro's
Spark integration hands its session to nodes through `SparkSession.builder.getOrCreate()`;
and not Dask's own default client, because a client that a notebook happens to hold must
not switch a node off the in-process path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.io import DatasetError

from medclip_residuals.distributed.settings import DaskSettings
from medclip_residuals.distributed.store import ShardStore

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_ACTIVE: dict[str, ShardEngine | None] = {"engine": None}  # one per process: the run's


@dataclass
class ShardEngine:
    """What the sharded nodes need of the run: where to send shards and where to keep them.

    Attributes:
        client: a `distributed.Client` (of a LocalCluster or an existing scheduler).
        settings: the environment's dask settings.
        store_root: the shard store's folder (absolute, never inside data_root).
        catalog: the run's DataCatalog (set before the pipeline runs), for the latest
            version of an output; None: nothing is reused.
    """

    client: Any
    settings: DaskSettings
    store_root: Path
    catalog: Any = None
    runs: dict[str, Any] = field(default_factory=dict)  # dataset -> its last shards.ShardRun (logs, benchmarks)
    _cleanup: dict[str, list[str]] = field(default_factory=dict)

    def store(self, dataset: str) -> ShardStore:
        return ShardStore(self.store_root, dataset)

    def latest(self, dataset: str) -> tuple[str, Any] | None:
        """(version, data) of the newest version of `dataset` that loads, through the catalog's
        versioned dataset (`list_versions`, `load(name, version=...)`); None when the catalog
        has no such versioned dataset or no version of it loads (a store cut short by a killed
        run is skipped, saying so)."""
        if self.catalog is None or not self.settings.incremental:
            return None
        dataset_object = self.catalog.get(dataset)
        if dataset_object is None or not hasattr(dataset_object, "list_versions"):
            logger.info("%s is not a versioned dataset in this catalog: nothing to reuse", dataset)
            return None
        try:
            versions = dataset_object.list_versions(full_path=False)
        except DatasetError:
            return None
        for version in versions:
            try:
                return version, self.catalog.load(dataset, version=version)
            except DatasetError as error:
                logger.warning("%s version %s cannot be read, skipped for reuse: %s", dataset, version, error)
        return None

    def clean_after_save(self, dataset: str, shard_keys: list[str]) -> None:
        """Delete these shards once `dataset` is saved (`saved`), not before: a failed save
        must find them again."""
        self._cleanup[dataset] = list(shard_keys)

    def saved(self, dataset: str) -> None:
        """`dataset` is saved: its shards are no longer needed."""
        keys = self._cleanup.pop(dataset, None)
        if keys:
            removed = self.store(dataset).remove(keys)
            logger.info("%s saved: %d finished shard(s) removed from %s", dataset, removed, self.store(dataset).shards)


def active_engine() -> ShardEngine | None:
    """The engine of the current run, or None: the nodes run in-process."""
    return _ACTIVE["engine"]


def activate(engine: ShardEngine | None) -> None:
    """Make `engine` the current run's (None: none)."""
    with _LOCK:
        _ACTIVE["engine"] = engine


@contextmanager
def engine_active(engine: ShardEngine) -> Iterator[ShardEngine]:
    """`engine` is the current one inside the block (tests, benchmarks, notebooks)."""
    previous = _ACTIVE["engine"]
    activate(engine)
    try:
        yield engine
    finally:
        activate(previous)
