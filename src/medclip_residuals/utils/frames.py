"""Embedding tables: one row per item, an id column and columns e000..e{d-1} (float32).

Parquet keeps these loadable as an array without pickle:
`ids, matrix = embeddings_to_matrix(catalog.load("image_embeddings"))`. Every check here
names the dataset, the row (0-based position in the table), the column and the problem.

Example:
    >>> table = matrix_to_embeddings(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
    >>> list(table.columns)
    ['image_id', 'e000', 'e001']
    >>> ids, matrix = embeddings_to_matrix(table, dataset="image_embeddings")
    >>> ids.tolist(), matrix.shape
    (['a', 'b'], (2, 2))
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def embedding_columns(dim: int) -> list[str]:
    """Column names of a `dim`-wide embedding table."""
    return [f"e{j:03d}" for j in range(dim)]


def embedding_column_names(frame: pd.DataFrame) -> list[str]:
    """The e000.. columns of an embedding table, in table order."""
    return [c for c in frame.columns if isinstance(c, str) and c[:1] == "e" and c[1:].isdigit()]


def matrix_to_embeddings(ids: list[str] | np.ndarray, matrix: np.ndarray, id_column: str = "image_id") -> pd.DataFrame:
    """Wrap an (N, D) matrix and its N ids as an embedding table."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"expected {len(ids)} rows of embeddings, got an array of shape {matrix.shape}")
    frame = pd.DataFrame(matrix, columns=embedding_columns(matrix.shape[1]))
    frame.insert(0, id_column, pd.Series(ids, dtype=str).to_numpy())
    return frame


def embeddings_to_matrix(
    frame: pd.DataFrame, *, dataset: str = "embedding table", id_column: str = "image_id"
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 (N, D) matrix) of an embedding table, or a ValueError naming what is wrong.

    Checks: the id column exists, ids are non-empty and unique, the table has e000..
    columns, and every value is finite.

    Args:
        frame: the embedding table.
        dataset: its catalog name, for the error messages.
        id_column: the column of ids (`phrase` for the phenotype vocabulary).
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
            + ", ".join(f"row {r} {u!r}" for r, u in zip(rows, unknown[:5], strict=True))
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


def paired_embeddings(
    image_embeddings: pd.DataFrame, phenotype_sentence_embeddings: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, i, w): the image embeddings and each image's w, rows in image_embeddings' order.

    Both tables are checked as given; w must hold exactly the images of image_embeddings.
    """
    ids, images = embeddings_to_matrix(image_embeddings, dataset="image_embeddings")
    embeddings_to_matrix(phenotype_sentence_embeddings, dataset="phenotype_sentence_embeddings")  # rows as given
    w_frame = aligned(phenotype_sentence_embeddings, ids, "phenotype_sentence_embeddings", "image_embeddings")
    _, w = embeddings_to_matrix(w_frame, dataset="phenotype_sentence_embeddings")
    return ids, images, w
