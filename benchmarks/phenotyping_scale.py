"""Phenotyping at scale: the project's chunked top-k against one bare torch matmul + topk.

    .venv/bin/python benchmarks/phenotyping_scale.py            # 100,000 x 10,000, 512-d
    .venv/bin/python benchmarks/phenotyping_scale.py --images 20000 --phrases 2000

Each variant runs in its own subprocess, so that its peak resident memory (ru_maxrss) is
its own; the parent prints the figures side by side. Every subprocess makes the same
seeded inputs (random unit vectors, float32), notes its RSS once they exist, runs the
variant once on a small slice (warm-up) and then once on everything, timed:

- project: `models.phenotypes.top_k_scores`, what the `score_phenotypes` node uses (chunked);
- node:    `score_phenotypes` itself, from embedding tables (DataFrames) to the top-k
           table, with its input checks;
- bare:    `torch.topk(images @ phrases.T, k)`: the whole N x V score matrix at once.

Targets (issue 4): project time within 1.5x of bare; project peak at most 1 GB above
the RSS with the inputs loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("project", "node", "bare")


def _phenotyping_params() -> dict:
    """The phenotyping parameters of conf/base/parameters_phenotyping.yml (what a run would use)."""
    import yaml

    return yaml.safe_load((ROOT / "conf" / "base" / "parameters_phenotyping.yml").read_text())["phenotyping"]


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


def _unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def run_variant(variant: str, n_images: int, n_phrases: int, dim: int, k: int, chunk_size: int) -> dict:
    """One variant in this process: inputs, warm-up, one timed call, memory figures."""
    import pandas as pd
    import torch

    from medclip_residuals.models.phenotypes import top_k_scores
    from medclip_residuals.pipelines.phenotyping.nodes import score_phenotypes
    from medclip_residuals.utils.frames import matrix_to_embeddings

    images = _unit_vectors(n_images, dim, seed=1)
    phrases = _unit_vectors(n_phrases, dim, seed=2)
    input_mb = (images.nbytes + phrases.nbytes) / 1e6
    if variant == "node":
        ids = [f"img{j:06d}" for j in range(n_images)]
        image_table = matrix_to_embeddings(ids, images)
        phrase_table = matrix_to_embeddings([f"phrase {j}" for j in range(n_phrases)], phrases, id_column="phrase")
        manifest = pd.DataFrame({"image_id": ids})
        del images  # the node's inputs are the tables
        params = {**_phenotyping_params(), "top_k": k, "chunk_size": chunk_size}

        def call(rows: int):
            return score_phenotypes(image_table.iloc[:rows], phrase_table, manifest, params, "cpu")

    elif variant == "project":

        def call(rows: int):
            return top_k_scores(images[:rows], phrases, k, chunk_size, "cpu")

    else:
        images_t, phrases_t = torch.from_numpy(images), torch.from_numpy(phrases)

        def call(rows: int):
            with torch.inference_mode():
                return torch.topk(images_t[:rows] @ phrases_t.T, k, dim=1)

    call(min(n_images, 256))  # warm-up: thread pools, allocator
    rss_before = _rss_mb()
    peak_before = _peak_mb()
    start = time.perf_counter()
    result = call(n_images)
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    del result
    return {
        "variant": variant,
        "seconds": seconds,
        "input_mb": input_mb,
        "rss_with_inputs_mb": rss_before,
        "peak_rss_mb": peak,
        "peak_above_inputs_mb": peak - rss_before,
        "peak_before_call_mb": peak_before,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    defaults = _phenotyping_params()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--phrases", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--top-k", type=int, default=defaults["top_k"])
    parser.add_argument("--chunk-size", type=int, default=defaults["chunk_size"])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = (args.images, args.phrases, args.dim, args.top_k, args.chunk_size)
    if args.child:
        print(json.dumps(run_variant(args.child, *sizes)))
        return

    print(
        f"phenotyping scale: {args.images:,} images x {args.phrases:,} phrases, {args.dim}-d float32, "
        f"k={args.top_k}, chunk_size={args.chunk_size}"
    )
    print(f"inputs: {(args.images + args.phrases) * args.dim * 4 / 1e6:.0f} MB; full score matrix: "
          f"{args.images * args.phrases * 4 / 1e6:.0f} MB")
    results = {}
    for variant in args.variants.split(","):
        command = [sys.executable, __file__, "--child", variant, "--images", str(args.images), "--phrases",
                   str(args.phrases), "--dim", str(args.dim), "--top-k", str(args.top_k), "--chunk-size",
                   str(args.chunk_size)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            print(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
            continue
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'variant':<8} {'time s':>8} {'RSS with inputs MB':>19} {'peak RSS MB':>12} {'peak above inputs MB':>21}")
    for variant, r in results.items():
        print(f"{variant:<8} {r['seconds']:>8.2f} {r['rss_with_inputs_mb']:>19.0f} {r['peak_rss_mb']:>12.0f} "
              f"{r['peak_above_inputs_mb']:>21.0f}")
    if "project" in results and "bare" in results:
        ratio = results["project"]["seconds"] / results["bare"]["seconds"]
        extra_gb = results["project"]["peak_above_inputs_mb"] / 1e3
        print(f"project / bare time: {ratio:.2f}x (target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")
        print(f"project peak above inputs: {extra_gb:.2f} GB (target <= 1 GB: {'met' if extra_gb <= 1 else 'NOT met'})")
        print(f"threads per variant: {results['project']['threads']}")


if __name__ == "__main__":
    main()
