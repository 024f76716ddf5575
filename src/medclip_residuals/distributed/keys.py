"""Keys and fingerprints: what a computed row depends on, as short hex digests.

A row's key says when a stored result is still right: the image (its id, absolute path,
file size and modification time), the model (a digest of its weights), and what the node
was asked to compute (bf16; for heatmaps the target, method, layers and shifts). A content
digest says what a stored result is: the bytes of one embedding row or one heatmap. The
shard store keeps which content each key produced (store.KeyIndex), so a row of an old
output is reused only where its bytes are what this run would compute.

Why size and modification time and not a content hash: reading every file's bytes costs
as much I/O as decoding it, at MIMIC-CXR size a second pass over 377,000 files; a copy
that does not keep modification times only makes rows be recomputed, never reused wrongly.

Example:
    >>> row_key({"a": 1}, "img001") == row_key({"a": 1}, "img001")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

DIGEST_BYTES = 16  # 128 bits: no two different rows of any dataset share one


def digest(data: bytes | Iterable[bytes]) -> str:
    """Hex BLAKE2b digest of bytes (or of a sequence of byte strings, in order)."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
        h.update(part)
    return h.hexdigest()


def row_key(*parts: Any) -> str:
    """A key from JSON-ready parts (order matters)."""
    return digest(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8"))


def array_digest(array: np.ndarray) -> str:
    """Digest of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    return digest([str(array.dtype).encode(), str(array.shape).encode(), array.tobytes()])


def content_digests(rows: np.ndarray) -> list[str]:
    """One `array_digest` per row of an (N, ...) array: what a stored row is."""
    return [array_digest(row) for row in rows]


def module_fingerprint(module: torch.nn.Module, *extra: Any) -> str:
    """Digest of a module's class, its state (names, dtypes, shapes, values) and `extra`."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    h.update(json.dumps(extra, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        # bfloat16 has no numpy type: its bytes through a 16-bit view
        raw = value.view(torch.int16) if value.dtype == torch.bfloat16 else value
        h.update(raw.numpy().tobytes())
    return h.hexdigest()


def vision_fingerprint(encoder: Any) -> str:
    """What an image embedding or a heatmap depends on of the encoder: its vision weights,
    the input size and the profile (which selects the preprocessing)."""
    return module_fingerprint(encoder.vision_model, int(encoder.image_size), str(getattr(encoder, "profile", "")))


def image_keys(image_manifest: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """image_id -> {path (absolute), size, mtime_ns} of each image of the manifest.

    A file that cannot be stat'ed is an error naming the row and the path, as the data
    contract names them (its image must exist to be embedded).
    """
    keys: dict[str, dict[str, Any]] = {}
    ids = image_manifest["image_id"].astype(str).tolist()
    paths = image_manifest["image_path"].astype(str).tolist()
    for position, (image_id, path) in enumerate(zip(ids, paths)):
        absolute = os.path.abspath(path)
        try:
            stat = os.stat(absolute)
        except OSError as error:
            raise FileNotFoundError(
                f"image_manifest row {position} (image_id {image_id!r}) [image_path] {path}: "
                f"cannot be read ({error.strerror or error})"
            ) from None
        keys[image_id] = {"path": absolute, "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}
    return keys

