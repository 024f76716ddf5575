"""The shard store: finished shards (resuming) and which content each row key produced
(incremental reuse), in a folder under the project's data/ folder.

    <shard_store>/<dataset>/shards/<shard key>.npy   one finished shard's rows (a plain .npy)
    <shard_store>/<dataset>/index/<stamp>.parquet    row_key, content digest of computed rows

A shard file is written to a temporary name and renamed, so a run killed while writing
leaves no half shard; its name is the digest of everything the shard's rows depend on, so a
rerun finds exactly the shards it would compute again. Shard files are removed once the
output they went into is saved; the index stays (it is small: two short strings a row).

Why a folder of .npy files and not Dask's own persistence: a Dask future lives only as long
as its client, and a killed run takes its client with it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

INDEX_COLUMNS = ["row_key", "content"]
MAX_INDEX_FILES = 16  # more than this are merged into one when the index is read


class ShardStoreLocationError(ValueError):
    """The shard store would lie inside the user's dataset folder."""


def resolve_store_root(shard_store: str, project_path: str | os.PathLike, data_root: str | None) -> Path:
    """The store's absolute folder (`shard_store` relative to the project), refused inside `data_root`."""
    root = Path(shard_store)
    root = (root if root.is_absolute() else Path(project_path) / root).resolve()
    if data_root:
        dataset = Path(data_root)
        dataset = (dataset if dataset.is_absolute() else Path(project_path) / dataset).resolve()
        if root == dataset or dataset in root.parents:
            raise ShardStoreLocationError(
                f"dask.shard_store {root} lies inside data_root {dataset}: the dataset folder is the user's and "
                "is never written to; put the store under the project's data/ folder (data/shard_store)"
            )
    return root


class ShardStore:
    """The finished shards and the key index of one dataset (`image_embeddings`, `heatmaps`)."""

    def __init__(self, root: str | os.PathLike, dataset: str) -> None:
        self.folder = Path(root) / dataset
        self.shards = self.folder / "shards"
        self.index_folder = self.folder / "index"

    def shard_path(self, key: str) -> Path:
        return self.shards / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.shard_path(key).is_file()

    def put(self, key: str, rows: np.ndarray) -> Path:
        """Write one shard's rows (atomically: a temporary file, then a rename)."""
        self.shards.mkdir(parents=True, exist_ok=True)
        target = self.shard_path(key)
        partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(rows), allow_pickle=False)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def get(self, key: str) -> np.ndarray:
        """A shard's rows, memory-mapped (read on demand, never unpickled)."""
        return np.load(self.shard_path(key), mmap_mode="r", allow_pickle=False)

    def remove(self, keys: Iterable[str]) -> int:
        """Delete these shards' files; returns how many there were."""
        removed = 0
        for key in keys:
            path = self.shard_path(key)
            if path.is_file():
                path.unlink()
                removed += 1
        return removed

    def load_index(self) -> dict[str, set[str]]:
        """row_key -> the content digests computed for it (usually one)."""
        files = sorted(self.index_folder.glob("*.parquet")) if self.index_folder.is_dir() else []
        if not files:
            return {}
        frame = pd.concat([pd.read_parquet(f, columns=INDEX_COLUMNS) for f in files], ignore_index=True)
        frame = frame.drop_duplicates()
        if len(files) > MAX_INDEX_FILES:
            self._write_index(frame)
            for f in files:
                f.unlink(missing_ok=True)
        index: dict[str, set[str]] = {}
        for key, content in frame.itertuples(index=False):
            index.setdefault(key, set()).add(content)
        return index

    def add_to_index(self, row_keys: list[str], contents: list[str]) -> None:
        """Record that computing each row key gave this content."""
        if len(row_keys) != len(contents):
            raise ValueError(f"{len(row_keys)} row keys but {len(contents)} content digests")
        if row_keys:
            self._write_index(pd.DataFrame({"row_key": row_keys, "content": contents}))

    def _write_index(self, frame: pd.DataFrame) -> None:
        self.index_folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial = self.index_folder / f".{name}.partial"
        frame[INDEX_COLUMNS].to_parquet(partial, index=False)
        os.replace(partial, self.index_folder / f"{name}.parquet")

    def reusable(
        self, row_keys: Sequence[str], previous_digests: Mapping[str, int], index: Mapping[str, set[str]] | None = None,
    ) -> dict[int, int]:
        """Output row -> previous row, for each row whose key is known (the index) to have
        produced content that the previous version holds (`previous_digests`: content -> row)."""
        if not previous_digests:
            return {}
        index = self.load_index() if index is None else index
        reused: dict[int, int] = {}
        for position, key in enumerate(row_keys):
            for content in index.get(key, ()):
                if content in previous_digests:
                    reused[position] = previous_digests[content]
                    break
        return reused


def wanted_contents(index: Mapping[str, set[str]], row_keys: Sequence[str]) -> set[str]:
    """The contents the index records for these keys: the only rows of a previous version
    worth reading (none: the previous version need not be read at all)."""
    return {content for key in row_keys for content in index.get(key, ())}
