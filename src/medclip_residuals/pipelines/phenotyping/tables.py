"""Checks shared by the phenotyping and residual pipelines: embedding tables and ids.

Every error names the dataset, the row (0-based position in the table), the column and
the problem, as the project's house rules ask.
"""

from __future__ import annotations

import numpy as np
import pandas as pd



def embedding_column_names(frame: pd.DataFrame) -> list[str]:
    """The e000.. columns of an embedding table, in table order."""
    return [c for c in frame.columns if isinstance(c, str) and c[:1] == "e" and c[1:].isdigit()]


def checked_embeddings(
    frame: pd.DataFrame, dataset: str, id_column: str = "image_id"
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix) of an embedding table, or a ValueError naming what is wrong.

    Checks: the id column exists, ids are non-empty and unique, the table has e000..
    columns, and every value is finite.
    """
    if id_column not in frame.columns:
        raise ValueError(f"{dataset}: no column {id_column!r} (columns: {list(frame.columns)[:8]})")
    columns = embedding_column_names(frame)
    if not columns:
        raise ValueError(f"{dataset}: no embedding columns e000..; columns are {list(frame.columns)[:8]}")
    ids = frame[id_column].astype(str).to_numpy()
    empty = np.flatnonzero((frame[id_column].isna().to_numpy()) | (np.char.strip(ids.astype(str)) == ""))
    if len(empty):
        raise ValueError(f"{dataset}: row {empty[0]}, column {id_column!r}: empty id ({len(empty)} such rows)")
    duplicated = pd.Series(ids).duplicated(keep="first").to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise ValueError(
            f"{dataset}: row {row}, column {id_column!r}: duplicate id {ids[row]!r} "
            f"({int(duplicated.sum())} duplicated rows)"
        )
    matrix = frame[columns].to_numpy(dtype=np.float32)
    finite = np.isfinite(matrix)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        raise ValueError(
            f"{dataset}: row {rows[0]} ({id_column}={ids[rows[0]]!r}), column {columns[cols[0]]!r}: "
            f"{matrix[rows[0], cols[0]]} is not a finite number ({len(np.unique(rows))} rows with NaN/inf)"
        )
    return ids, matrix


def check_ids_known(ids: np.ndarray, manifest: pd.DataFrame, dataset: str) -> None:
    """Every id of `dataset` must be an image_id of image_manifest."""
    if "image_id" not in manifest.columns:
        raise ValueError(f"image_manifest: no column 'image_id' (columns: {list(manifest.columns)[:8]})")
    known = set(manifest["image_id"].astype(str))
    unknown = [i for i in ids if i not in known]
    if unknown:
        rows = [int(np.flatnonzero(ids == u)[0]) for u in unknown[:5]]
        raise ValueError(
            f"{dataset}: {len(unknown)} image_id(s) are not in image_manifest, e.g. "
            + ", ".join(f"row {r} {u!r}" for r, u in zip(rows, unknown[:5]))
            + " — were the embeddings made from another dataset or an older manifest?"
        )


def aligned(
    frame: pd.DataFrame, ids: np.ndarray, dataset: str, reference: str, id_column: str = "image_id"
) -> pd.DataFrame:
    """`frame` reordered to `ids`; its id set must equal `ids` exactly."""
    have = frame[id_column].astype(str)
    missing = sorted(set(ids) - set(have))
    extra = sorted(set(have) - set(ids))
    if missing or extra:
        raise ValueError(
            f"{dataset} and {reference} have different image ids: "
            f"{len(missing)} in {reference} only (e.g. {missing[:3]}), "
            f"{len(extra)} in {dataset} only (e.g. {extra[:3]})"
        )
    return frame.set_index(have.to_numpy()).loc[list(ids)].reset_index(drop=True)
