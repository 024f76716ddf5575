"""How fast a notebook gets an embedding table back as an array (issue 3: 100,000 x 512 in ~1 s).

    .venv/bin/python benchmarks/embedding_table_load.py [--rows 100000]

Writes a table in the embedding datasets' format (Parquet, image_id + e000..e511 float32),
then times pandas' read plus `embeddings_to_matrix`, best of three.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medclip_residuals.utils.frames import embeddings_to_matrix, matrix_to_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    matrix = np.random.default_rng(0).standard_normal((args.rows, 512), dtype=np.float32)
    table = matrix_to_embeddings([f"img{i:06d}" for i in range(args.rows)], matrix)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image_embeddings.parquet"
        table.to_parquet(path, index=False)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            ids, loaded = embeddings_to_matrix(pd.read_parquet(path))
            best = min(best, time.perf_counter() - start)
        size_mb = path.stat().st_size / 1e6
    assert np.array_equal(loaded, matrix) and len(ids) == args.rows
    print(f"{args.rows} x 512 embeddings, {size_mb:.0f} MB Parquet: loaded as an array in {best:.2f} s (best of 3)")


if __name__ == "__main__":
    main()
