"""Shard planning and the shard loop: cut rows into shards, send the missing ones to the
workers, keep each finished shard in the store, and say what ran where.

Shards are cut in row order (`plan_shards`); the output is put back together in that
order from the store, whichever worker finished first, so a sharded output equals the
in-process one row for row.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medclip_residuals.distributed.keys import content_digests, row_key
from medclip_residuals.distributed.store import ShardStore
from medclip_residuals.distributed.worker import ShardFailure, ShardResult

logger = logging.getLogger(__name__)


class ShardImageError(ValueError):
    """A shard failed because one of its images cannot be decoded; the message names it."""


@dataclass(frozen=True)
class Shard:
    """Rows `positions` of an output (in order), computed together; `key` names the file of
    the finished shard: a digest of the rows' keys and of how they are computed (`spec`)."""

    number: int
    positions: tuple[int, ...]
    key: str

    def __len__(self) -> int:
        return len(self.positions)


def plan_shards(positions: Sequence[int], row_keys: Sequence[str], shard_rows: int, spec: Any) -> list[Shard]:
    """Cut `positions` (the rows to compute, in output order) into shards of `shard_rows`.

    Args:
        positions: output rows to compute, ascending.
        row_keys: the key of every output row (indexed by position).
        shard_rows: rows per shard (the last one shorter).
        spec: JSON-ready settings that change the numbers but not the row keys (batch size).
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    shards = []
    for number, start in enumerate(range(0, len(positions), shard_rows)):
        part = tuple(int(p) for p in positions[start : start + shard_rows])
        shards.append(Shard(number, part, row_key(spec, [row_keys[p] for p in part])))
    return shards


@dataclass
class ShardRun:
    """What a shard loop did: shards in all, resumed from the store, computed, and where;
    with the output's rows and how many of them were reused from the previous version."""

    shards: int
    resumed: int
    computed: int
    workers: set[str] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    seconds: float = 0.0
    worker_seconds: float = 0.0  # the shard tasks' own time, summed over shards
    rows: int = 0
    reused_rows: int = 0


Submit = Callable[[Shard, str], Any]  # (shard, task key) -> a distributed Future


def run_shards(
    client: Any,
    store: ShardStore,
    shards: Sequence[Shard],
    submit: Submit,
    *,
    row_keys: Sequence[str],
    what: str,
    where_is: Callable[[str], str],
) -> ShardRun:
    """Compute every shard that the store lacks on the cluster, storing each as it finishes
    (its rows, and in the store's index the content each row key gave).

    Args:
        client: the `distributed.Client`.
        store: where finished shards are kept (and found again after a killed run).
        shards: every shard of the output.
        submit: sends one shard's task (with the given task key) and returns its Future.
        row_keys: the key of every output row (indexed by position).
        what: the output's name, for the log and the task keys.
        where_is: image path -> where it is listed (manifest row and image_id), for errors.

    Raises:
        ShardImageError: a shard's image cannot be decoded (no retry: it would fail again).
        Whatever a shard raised after its retries (e.g. `distributed.KilledWorker` when
        workers kept dying on it). Outstanding shards are cancelled first.
    """
    from distributed import as_completed

    start = time.perf_counter()
    todo = [shard for shard in shards if not store.has(shard.key)]
    run = ShardRun(shards=len(shards), resumed=len(shards) - len(todo), computed=0)
    if run.resumed:
        logger.info("%s: resumed %d of %d shards (finished by an earlier run, in %s)",
                    what, run.resumed, len(shards), store.shards)
    if not todo:
        return run
    token = uuid.uuid4().hex[:8]  # task keys of this call only: a cancelled run's keys never collide
    futures: dict[Any, Shard] = {}
    try:
        for shard in todo:
            futures[submit(shard, f"{what}-shard{shard.number:06d}-{token}")] = shard
        logger.info("%s: %d shard(s) of up to %d rows sent to the cluster", what, len(todo), max(map(len, todo)))
        step = max(1, len(todo) // 10)
        for future in as_completed(list(futures), loop=client.loop):
            shard = futures[future]
            result = future.result()
            if isinstance(result, ShardFailure):
                raise ShardImageError(
                    f"{what} shard {shard.number} failed on worker {result.worker}: {where_is(result.image_path)} "
                    f"[image_path] {result.image_path}: {result.reason}"
                )
            if not isinstance(result, ShardResult) or len(result.rows) != len(shard):
                raise RuntimeError(f"{what} shard {shard.number}: expected {len(shard)} rows, got {result!r:.200}")
            store.put(shard.key, result.rows)
            store.add_to_index([row_keys[p] for p in shard.positions], content_digests(result.rows))
            future.release()
            run.computed += 1
            run.workers.add(result.worker)
            run.pids.add(result.pid)
            run.worker_seconds += result.seconds
            if run.computed % step == 0 or run.computed == len(todo):
                logger.info("%s: %d of %d shard(s) done", what, run.computed, len(todo))
    except BaseException:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        raise
    run.seconds = time.perf_counter() - start
    logger.info("%s: %d shard(s) computed on %d worker(s) in %.1f s (%.1f s of shard work)",
                what, run.computed, len(run.workers), run.seconds, run.worker_seconds)
    return run


class RowSources:
    """Where each output row comes from: a shard of the store, or a row of the previous version.

    Args:
        n_rows: the output's rows.
        shards: the shards that compute rows (each row in at most one).
        reused: output row -> row of the previous version.
    """

    def __init__(self, n_rows: int, shards: Sequence[Shard], reused: dict[int, int]) -> None:
        self.n_rows, self.shards = n_rows, list(shards)
        self.shard_of = np.full(n_rows, -1, dtype=np.int64)
        self.offset = np.full(n_rows, -1, dtype=np.int64)
        self.previous = np.full(n_rows, -1, dtype=np.int64)
        for number, shard in enumerate(self.shards):
            positions = np.asarray(shard.positions, dtype=np.int64)
            self.shard_of[positions] = number
            self.offset[positions] = np.arange(len(positions))
        if reused:
            self.previous[np.fromiter(reused.keys(), dtype=np.int64)] = np.fromiter(reused.values(), dtype=np.int64)
        orphans = np.flatnonzero((self.shard_of < 0) & (self.previous < 0))
        if len(orphans):
            raise RuntimeError(f"rows {orphans[:5].tolist()} of {n_rows} are neither reused nor in a shard")

    def rows(
        self, start: int, stop: int, store: ShardStore, read_previous: Callable[[np.ndarray], np.ndarray],
        row_shape: tuple[int, ...], dtype: np.dtype,
    ) -> np.ndarray:
        """Output rows `start:stop`, in order, read from the store's shards and the previous version."""
        out = np.empty((stop - start, *row_shape), dtype=dtype)
        span = np.arange(start, stop)
        from_previous = span[self.previous[span] >= 0]
        if len(from_previous):
            out[from_previous - start] = read_previous(self.previous[from_previous])
        shard_numbers = self.shard_of[span]
        for number in np.unique(shard_numbers[shard_numbers >= 0]):
            positions = span[shard_numbers == number]
            out[positions - start] = store.get(self.shards[number].key)[self.offset[positions]]
        return out


def where_in_manifest(image_manifest: pd.DataFrame) -> Callable[[str], str]:
    """image path -> "image_manifest row R (image_id 'X')", for error messages."""
    rows = {str(path): (position, str(image_id)) for position, (image_id, path) in
            enumerate(image_manifest[["image_id", "image_path"]].itertuples(index=False))}

    def where_is(path: str) -> str:
        if path in rows:
            position, image_id = rows[path]
            return f"image_manifest row {position} (image_id {image_id!r})"
        return "image_manifest"

    return where_is
