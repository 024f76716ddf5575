"""``HeatmapStoreDataset``: heatmaps written to disk chunk by chunk, read back chunk by chunk.

Why a generator node and an appending dataset. The explainability pipeline makes one
(S, S) heatmap per row of `heatmap_plan`; at MIMIC-CXR size that is millions of maps, far
more than memory. Three ways were weighed:

- the node returns a lazy producer that the dataset's `save` drives: the Grad-CAM work
  would then run inside `save` (its errors reported as a failed save), and a
  `MemoryDataset` would hand the producer to both consumers, each recomputing it;
- the node opens the store itself and writes into it: I/O inside the node, not testable
  with an in-memory catalog, and outside Kedro's versioning;
- a generator node (`compute_heatmaps` yields `HeatmapChunk`s): Kedro 1.x calls `save`
  once per yielded value (kedro-org/kedro#2161, "custom datasets which operate in
  create-or-append-only mode"), so the node stays a plain function of its inputs and the
  dataset only appends. This is the one chosen.

Each chunk carries its first row (`start`), the total row count and the run's metadata, so
that the dataset knows when a store begins (start 0: a new version folder), checks that
chunks arrive in row order, and writes `metadata.json` when the last row lands: a store
without it is incomplete (a run that stopped half way) and refuses to load, saying so.

On disk (local folders only; versioned like every Kedro dataset, so no run overwrites
another): `<filepath>/<version>/<name>/heatmaps.npy`, a plain `.npy` (float16, shape
(N, S, S), header first, rows appended as they come; no pickle), and `metadata.json`.
Rows are read with ordinary file reads, not `mmap`, so that reading a large store does not
grow the process's resident memory.

Loaded object (`HeatmapStore`): `len()`, `metadata` (method, target_layer, image_id and
target_id per row, ...), `chunks()` -> (start, float16 (k, S, S)) in row order, and
`rows(indices)` for random access. `ArrayHeatmaps` offers the same reading interface on an
array in memory (tests, probes, the old in-memory way in benchmarks/explainability_memory.py).

YAML:

    heatmaps:
      type: medclip_residuals.datasets.heatmap_store.HeatmapStoreDataset
      filepath: data/07_model_output/heatmaps
      versioned: true
      metadata:
        kedro-viz: {layer: model_output, preview: false}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_protocol_and_path

ARRAY_FILE = "heatmaps.npy"
METADATA_FILE = "metadata.json"
DEFAULT_READ_CHUNK = 256


@dataclass
class HeatmapChunk:
    """Rows `start .. start + len(heatmaps)` of a store of `total` heatmaps (S, S) each.

    `metadata` is the whole run's (the same dict in every chunk); the dataset keeps the
    last chunk's, so that anything a hook adds while saving (provenance) is stored too.
    """

    start: int
    heatmaps: np.ndarray
    total: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.heatmaps))


class ArrayHeatmaps:
    """Heatmaps held in memory, read through the same interface as `HeatmapStore`."""

    def __init__(self, heatmaps: np.ndarray, metadata: Mapping[str, Any] | None = None) -> None:
        self.heatmaps = np.asarray(heatmaps)
        if self.heatmaps.ndim != 3:
            raise ValueError(f"heatmaps must be (N, S, S), got shape {self.heatmaps.shape}")
        self.metadata = dict(metadata or {})

    def __len__(self) -> int:
        return int(len(self.heatmaps))

    @property
    def map_shape(self) -> tuple[int, int]:
        return tuple(self.heatmaps.shape[1:])  # type: ignore[return-value]

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows) in row order, `size` rows at a time."""
        step = max(1, int(size or DEFAULT_READ_CHUNK))
        for start in range(0, len(self), step):
            yield start, self.heatmaps[start : start + step]

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """The maps of the given rows, in the order given."""
        return self.heatmaps[np.asarray(list(indices), dtype=np.int64)]

    @classmethod
    def collect(cls, chunks: Iterator[HeatmapChunk]) -> ArrayHeatmaps:
        """Gather the chunks of a `compute_heatmaps` generator into one array (small runs only)."""
        parts, metadata, total = [], {}, None
        for chunk in chunks:
            if chunk.start != sum(len(p) for p in parts):
                raise ValueError(f"chunk starting at row {chunk.start} arrived out of order")
            parts.append(np.asarray(chunk.heatmaps))
            metadata, total = chunk.metadata, chunk.total
        maps = np.concatenate(parts) if parts else np.zeros((0, 0, 0), dtype=np.float16)
        if total is not None and len(maps) != total:
            raise ValueError(f"{len(maps)} heatmaps collected, the chunks announced {total}")
        return cls(maps, metadata)


def _read_header(handle: Any, where: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    try:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
    except ValueError as error:
        raise DatasetError(f"{where}: not a .npy heatmap array ({error})") from None
    if fortran or len(shape) != 3 or dtype.hasobject:
        raise DatasetError(f"{where}: expected a C-ordered numeric (N, S, S) array, got shape {shape}, dtype {dtype}")
    return tuple(int(v) for v in shape), dtype, handle.tell()


class HeatmapStore:
    """A complete store on disk: rows read on demand, never the whole array at once."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        array_path, metadata_path = self.folder / ARRAY_FILE, self.folder / METADATA_FILE
        if not array_path.is_file():
            raise DatasetError(f"{self.folder}: no {ARRAY_FILE}; rerun compute_heatmaps")
        with array_path.open("rb") as handle:
            self._shape, self._dtype, self._offset = _read_header(handle, array_path)
        if not metadata_path.is_file():
            written = max(0, array_path.stat().st_size - self._offset) // max(1, self._row_bytes)
            raise DatasetError(
                f"{self.folder}: incomplete heatmap store, {written} of {self._shape[0]} rows written and no "
                f"{METADATA_FILE} (the run that wrote it stopped); rerun compute_heatmaps "
                "(`kedro run --pipelines explainability`)"
            )
        record = json.loads(metadata_path.read_text(encoding="utf-8"))
        self.metadata: dict[str, Any] = dict(record.get("metadata") or {})
        self.chunk_size = int(record.get("store", {}).get("chunk_size") or DEFAULT_READ_CHUNK)
        expected = self._offset + self._shape[0] * self._row_bytes
        size = array_path.stat().st_size
        if size != expected:
            raise DatasetError(f"{array_path}: {size} bytes, but its header promises {expected}; the store is damaged")
        self._array_path = array_path

    @property
    def _row_bytes(self) -> int:
        return int(self._shape[1] * self._shape[2] * self._dtype.itemsize)

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def map_shape(self) -> tuple[int, int]:
        return self._shape[1], self._shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, handle: Any, start: int, count: int) -> np.ndarray:
        handle.seek(self._offset + start * self._row_bytes)
        raw = handle.read(count * self._row_bytes)
        return np.frombuffer(raw, dtype=self._dtype).reshape(count, *self.map_shape).copy()

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows) in row order, `size` rows at a time (default: the chunk size it was written with)."""
        step = max(1, int(size or self.chunk_size))
        with self._array_path.open("rb") as handle:
            for start in range(0, len(self), step):
                yield start, self._read(handle, start, min(step, len(self) - start))

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """The maps of the given rows, in the order given (random access, one read per row)."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"rows {bad[:5]} are outside the {len(self)} heatmaps of {self.folder}")
        out = np.empty((len(indices), *self.map_shape), dtype=self._dtype)
        with self._array_path.open("rb") as handle:
            for k, index in enumerate(indices):
                out[k] = self._read(handle, index, 1)[0]
        return out


class HeatmapStoreDataset(AbstractVersionedDataset[HeatmapChunk, HeatmapStore]):
    """Saves `HeatmapChunk`s one at a time into one versioned folder; loads a `HeatmapStore`.

    `save` also takes a whole `ArrayHeatmaps` / `HeatmapStore` (written chunk by chunk).
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Args:
        filepath: the store's folder (local); versioned saves go to `<filepath>/<version>/<name>/`.
        version: kedro version (load/save timestamps) for a versioned dataset.
        metadata: catalog metadata (kedro-viz layer), ignored by the dataset.
        """
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"HeatmapStoreDataset stores local folders only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version)
        self.metadata = metadata
        self._writing: dict[str, Any] | None = None
        self._unpinned = version

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def load(self) -> HeatmapStore:
        return HeatmapStore(Path(str(self._get_load_path())))

    def save(self, data: HeatmapChunk | ArrayHeatmaps | HeatmapStore) -> None:
        if isinstance(data, HeatmapChunk):
            self._append(data)
            return
        if hasattr(data, "chunks") and hasattr(data, "metadata"):
            total = len(data)
            for start, rows in data.chunks():
                self._append(HeatmapChunk(start, np.asarray(rows), total, dict(data.metadata)))
            return
        raise DatasetError(
            f"HeatmapStoreDataset saves HeatmapChunks (what compute_heatmaps yields), got {type(data).__name__}"
        )

    def _append(self, chunk: HeatmapChunk) -> None:
        rows = np.ascontiguousarray(chunk.heatmaps)
        if rows.ndim != 3 or rows.dtype.hasobject:
            raise DatasetError(f"a heatmap chunk must be a numeric (k, S, S) array, got {rows.shape} {rows.dtype}")
        if chunk.start == 0:
            self._begin(chunk, rows)
        state = self._writing
        if state is None or chunk.start != state["next_row"]:
            expected = "row 0 (a new store)" if state is None else f"row {state['next_row']}"
            raise DatasetError(
                f"{self._filepath}: a heatmap chunk starting at row {chunk.start} arrived, expected {expected}; "
                "chunks must come in row order from one compute_heatmaps run"
            )
        if rows.shape[1:] != state["map_shape"] or rows.dtype != state["dtype"] or chunk.total != state["total"]:
            raise DatasetError(
                f"{state['folder']}: chunk at row {chunk.start} is {rows.shape[1:]} {rows.dtype} of {chunk.total}, "
                f"the store holds {state['map_shape']} {state['dtype']} of {state['total']}"
            )
        if chunk.start + len(rows) > state["total"]:
            raise DatasetError(f"{state['folder']}: chunk at row {chunk.start} runs past the {state['total']} rows announced")
        with (state["folder"] / ARRAY_FILE).open("ab") as handle:
            handle.write(rows.tobytes())
        state["next_row"] += len(rows)
        state["chunk_size"] = max(state["chunk_size"], len(rows))
        if state["next_row"] == state["total"]:
            record = {
                "store": {"n_heatmaps": state["total"], "map_shape": list(state["map_shape"]),
                          "dtype": str(state["dtype"]), "chunk_size": state["chunk_size"]},
                "metadata": chunk.metadata,
            }
            text = json.dumps(record, allow_nan=True)
            (state["folder"] / METADATA_FILE).write_text(text, encoding="utf-8")  # last: marks the store complete
            self._writing, self._version = None, self._unpinned

    def _begin(self, chunk: HeatmapChunk, rows: np.ndarray) -> None:
        """Open a new store (a new version folder) and write the .npy header for all rows."""
        try:
            json.dumps(chunk.metadata, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise DatasetError(f"heatmap metadata is not JSON-serialisable: {error}") from None
        folder = Path(str(self._get_save_path()))  # versioned: refuses an existing version
        self._unpinned = self._version
        if self._version is not None and self._version.save is None:
            # Kedro gives a dataset without a save version a new timestamp at every save:
            # keep this store's for its later chunks (a Kedro session always sets one)
            self._version = Version(self._version.load, self.resolve_save_version())
        folder.mkdir(parents=True, exist_ok=True)
        for name in (ARRAY_FILE, METADATA_FILE):  # unversioned: a new run replaces the old store
            (folder / name).unlink(missing_ok=True)
        total, map_shape = int(chunk.total), tuple(int(v) for v in rows.shape[1:])
        header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False,
                  "shape": (total, *map_shape)}
        with (folder / ARRAY_FILE).open("wb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
        self._writing = {"folder": folder, "total": total, "map_shape": map_shape, "dtype": rows.dtype,
                         "next_row": 0, "chunk_size": 0}

    def _exists(self) -> bool:
        try:
            load_path = Path(str(self._get_load_path()))
        except DatasetError:
            return False
        return (load_path / METADATA_FILE).is_file()
