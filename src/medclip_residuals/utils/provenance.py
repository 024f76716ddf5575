"""Where a dataset's contents came from: the data_root and the encoder, carried with the data.

A provenance record is a small JSON-ready dict:

```python
{"data_root": "/abs/path/of/the/dataset",
 "encoder": {"profile": "demo", "trained_on": {"data_root": "...", "demo_dataset": True, ...}}}
```

It travels inside the saved files themselves, so that it survives versioning and copying:
a pandas table keeps it in `DataFrame.attrs` (Parquet stores attrs in its schema metadata),
a safetensors tensor dict in its `metadata`, a JSON report under the key `provenance`.
`hooks.RunProvenanceHook` stamps every output of a run and compares every input it loads.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PROVENANCE_KEY = "provenance"


def is_tensor_dict(data: Any) -> bool:
    """Whether `data` is a TensorDictDataset payload: {"tensors": ..., "metadata": ...}."""
    return isinstance(data, dict) and set(data) == {"tensors", "metadata"} and isinstance(data["metadata"], dict)


def provenance_of(data: Any) -> dict[str, Any] | None:
    """The provenance record carried by `data`, or None when it carries none."""
    if isinstance(data, pd.DataFrame):
        record = data.attrs.get(PROVENANCE_KEY)
    elif is_tensor_dict(data):
        record = data["metadata"].get(PROVENANCE_KEY)
    elif isinstance(data, dict):
        record = data.get(PROVENANCE_KEY)
    else:
        record = getattr(getattr(data, "metadata", None), "get", lambda _key: None)(PROVENANCE_KEY)
    return record if isinstance(record, dict) else None


def stamp(data: Any, record: dict[str, Any], json_report: bool = False) -> bool:
    """Attach `record` to `data` in place; returns whether `data` can carry one.

    Tables and tensor dicts always can; a plain dict only when it is a JSON report
    (`json_report`), since other dicts (image partitions, say) must not gain a key.
    """
    if isinstance(data, pd.DataFrame):
        data.attrs[PROVENANCE_KEY] = record
        return True
    if is_tensor_dict(data):
        data["metadata"][PROVENANCE_KEY] = record
        return True
    if isinstance(data, dict) and json_report:
        data[PROVENANCE_KEY] = record
        return True
    metadata = getattr(data, "metadata", None)
    if isinstance(metadata, dict):
        metadata[PROVENANCE_KEY] = record
        return True
    return False


def encoder_record(encoder: Any) -> dict[str, Any]:
    """The encoder part of a provenance record: its profile and what it was trained on."""
    return {
        "profile": str(getattr(encoder, "profile", "")),
        "trained_on": dict(getattr(encoder, "trained_on", None) or {}),
    }
