"""Looking up a catalog's datasets from hooks, where a failure to describe one must never
break a run."""

from __future__ import annotations

from typing import Any


def catalog_dataset(catalog: Any, name: str) -> Any:
    """The dataset object of `name` in a Kedro catalog, or None when it cannot be had."""
    try:
        return catalog.get(name) if hasattr(catalog, "get") else catalog._get_dataset(name)
    except Exception:  # noqa: BLE001 - describing a dataset must never break a run
        return None


def dataset_filepath(catalog: Any, name: str) -> str | None:
    """Where the dataset `name` reads and writes (its filepath), or None when it has none."""
    dataset = catalog_dataset(catalog, name)
    for attr in ("_filepath", "_path", "filepath", "path"):
        value = getattr(dataset, attr, None)
        if value:
            return str(value)
    return None
