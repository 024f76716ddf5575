"""Embedding tables: one row per item, an id column and columns e000..e{d-1} (float32).

Parquet keeps these loadable as an array without pickle:
`ids, matrix = embeddings_to_matrix(catalog.load("image_embeddings"))`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def embedding_columns(dim: int) -> list[str]:
    """Column names of a `dim`-wide embedding table."""
    return [f"e{j:03d}" for j in range(dim)]


def matrix_to_embeddings(ids: list[str] | np.ndarray, matrix: np.ndarray, id_column: str = "image_id") -> pd.DataFrame:
    """Wrap an (N, D) matrix and its N ids as an embedding table."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"expected {len(ids)} rows of embeddings, got an array of shape {matrix.shape}")
    frame = pd.DataFrame(matrix, columns=embedding_columns(matrix.shape[1]))
    frame.insert(0, id_column, pd.Series(ids, dtype=str).to_numpy())
    return frame


def embeddings_to_matrix(frame: pd.DataFrame, id_column: str = "image_id") -> tuple[np.ndarray, np.ndarray]:
    """Split an embedding table into its ids and its (N, D) float32 matrix."""
    columns = [c for c in frame.columns if c.startswith("e") and c[1:].isdigit()]
    if not columns:
        raise ValueError(f"table has no embedding columns e000..: columns are {list(frame.columns)[:8]}")
    matrix = frame[columns].to_numpy(dtype=np.float32)
    if not np.isfinite(matrix).all():
        bad = frame.loc[~np.isfinite(matrix).all(axis=1), id_column].tolist()[:5]
        raise ValueError(f"embeddings contain NaN or inf values (first ids: {bad})")
    return frame[id_column].astype(str).to_numpy(), matrix
