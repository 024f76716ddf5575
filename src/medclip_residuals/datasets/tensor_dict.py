"""``TensorDictDataset``: named arrays plus a small JSON metadata dict in one .safetensors file.

Used for the trained heads (see `medclip_residuals.models.heads.heads_to_tensors`) and for
heatmaps. safetensors stores raw tensors and a string->string metadata map, and cannot run
code on load (unlike pickle); the metadata dict is kept as one JSON string under the key
"json" of the file's `__metadata__`.

Data, saved and loaded:

    {"tensors": {"name": np.ndarray, ...}, "metadata": {...JSON-able...}}

`save` also accepts a plain mapping of names to arrays (metadata then is `{}`), and torch
tensors, which are stored as numpy arrays. `load` always returns the structured form, with
numpy arrays.

YAML:

    residual_1_heads:
      type: medclip_residuals.datasets.TensorDictDataset
      filepath: data/06_models/residual_1_heads.safetensors
      versioned: true
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)
from kedro_datasets._typing import JSONPreview
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

_METADATA_KEY = "json"
# Types that safetensors stores; float64 is kept as is (heads stay exact).
_SUPPORTED_KINDS = "fiub"


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in _SUPPORTED_KINDS:
        raise DatasetError(f"tensor {name!r} has dtype {array.dtype}; only numeric and bool arrays can be stored")
    return np.ascontiguousarray(array)


def _split(data: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not isinstance(data, Mapping):
        raise DatasetError(f"TensorDictDataset saves a dict, got {type(data).__name__}")
    if set(data) <= {"tensors", "metadata"} and isinstance(data.get("tensors"), Mapping):
        tensors, metadata = data["tensors"], data.get("metadata") or {}
    else:
        tensors, metadata = data, {}
    if not isinstance(metadata, Mapping):
        raise DatasetError(f"metadata must be a dict, got {type(metadata).__name__}")
    for name in tensors:
        if not isinstance(name, str) or not name:
            raise DatasetError(f"tensor names must be non-empty strings, got {name!r}")
    try:
        json.dumps(metadata, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"metadata is not JSON-serialisable: {err}") from err
    return {name: _to_numpy(name, value) for name, value in tensors.items()}, dict(metadata)


def read_header(raw: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors byte string (8-byte little-endian length, then JSON)."""
    if len(raw) < 8:
        raise DatasetError("not a safetensors file: shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", raw[:8])
    if length > len(raw) - 8:
        raise DatasetError("not a safetensors file: header length exceeds the file size")
    return json.loads(raw[8 : 8 + length])


class TensorDictDataset(AbstractVersionedDataset[dict[str, Any], dict[str, Any]]):
    """Named numpy arrays and a JSON-able metadata dict in one versioned .safetensors file."""

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Args:
        filepath: path of the .safetensors file, optionally with an fsspec protocol.
        version: kedro version (load/save timestamps) for a versioned dataset.
        credentials, fs_args: passed to the fsspec filesystem.
        metadata: catalog metadata (kedro-viz layer), ignored by the dataset.
        """
        _fs_args = deepcopy(fs_args) or {}
        protocol, path = get_protocol_and_path(str(filepath), version)
        self._protocol = protocol
        if protocol == "file":
            _fs_args.setdefault("auto_mkdir", True)
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **_fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def load(self) -> dict[str, Any]:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(load_path, mode="rb") as handle:
            raw = handle.read()
        header = read_header(raw)
        text = (header.get("__metadata__") or {}).get(_METADATA_KEY, "{}")
        return {"tensors": load_safetensors(raw), "metadata": json.loads(text)}

    def save(self, data: dict[str, Any]) -> None:
        tensors, metadata = _split(data)
        raw = save_safetensors(tensors, metadata={_METADATA_KEY: json.dumps(metadata)})
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        with self._fs.open(save_path, mode="wb") as handle:
            handle.write(raw)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def preview(self) -> JSONPreview:
        """Names, shapes and dtypes of the tensors, and the metadata (not the values)."""
        data = self.load.__wrapped__(self)  # type: ignore[attr-defined]
        shapes = {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in data["tensors"].items()}
        return JSONPreview(json.dumps({"tensors": shapes, "metadata": data["metadata"]}))
