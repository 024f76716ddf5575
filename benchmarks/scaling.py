"""Scaling of the two heavy nodes over Dask: in-process against a LocalCluster of 1 and 2 workers.

The same N phantom images are embedded (and heatmaps made for some of them) in-process with
as many torch threads as the cluster has worker threads ("equal cores"), then on a
LocalCluster on 127.0.0.1 of each worker count (one thread each, torch on one thread).
Printed side by side: start-up time (the cluster, then the first call: worker imports and
the encoder's transfer), steady images (maps) per second, speedup against in-process on one
thread, efficiency against in-process at equal cores. Then the incremental rerun (1% new
images) as a ratio to the full run, and a MIMIC-CXR-size estimate from the measured rates
(an estimate: 377,000 images, this machine's rates, nothing else changing).

Models (random weights: speed does not depend on the values):
  --profile medclip_vit   MedCLIP-ViT's vision geometry: Swin-T at 224 px (default)
  --profile demo          the demo profile of conf/base/parameters_encoder.yml (128 px)

    .venv/bin/python benchmarks/scaling.py --n-images 64 --n-heatmaps 8
    .venv/bin/python benchmarks/scaling.py --profile demo --n-images 256 --n-heatmaps 32
    .venv/bin/python benchmarks/scaling.py --device cuda --workers 1,2   # a worker per GPU

Each run of a node is timed once (wall clock, including scattering the encoder to the
workers and writing the shards): on a shared machine, run it twice and compare.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from kedro.io import DataCatalog, Version
from kedro_datasets.pandas import ParquetDataset
from PIL import Image
from transformers import BertConfig, SwinConfig

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
from medclip_residuals.distributed.client import start_client
from medclip_residuals.distributed.embedding import embed_images_sharded
from medclip_residuals.distributed.engine import ShardEngine
from medclip_residuals.distributed.heatmaps import generate_heatmaps_sharded
from medclip_residuals.distributed.settings import parse_dask_config
from medclip_residuals.explain.generate import generate_heatmaps
from medclip_residuals.explain.plan import build_plan
from medclip_residuals.models.embed import embed_image_files
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.medclip_loader import VIT, build_demo_encoder, build_medclip_model
from medclip_residuals.models.tokenizer import build_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung"]
MIMIC_CXR_IMAGES = 377_000


def draw_phantoms(folder: Path, n_images: int, image_px: int) -> pd.DataFrame:
    """The project's demo phantoms (data/phantom.py), drawn into folder; a manifest."""
    from medclip_residuals.data import phantom

    raw = yaml.safe_load((ROOT / "conf/base/parameters_demo_data.yml").read_text(encoding="utf-8"))["demo_data"]
    del raw["grid"]
    cfg = phantom.PhantomParams.parse({**raw, "n_images": n_images, "image_size": image_px, "seed": 7}, "demo_data")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for plan in phantom.plan_dataset(cfg):
        path = folder / f"{plan.image_id}.png"
        Image.fromarray(phantom.render_image(plan, cfg).image).save(path)
        rows.append({"image_id": plan.image_id, "image_path": str(path), "report": plan.report})
    return pd.DataFrame(rows)


def make_encoder(profile: str) -> MedCLIPEncoder:
    torch.manual_seed(0)
    if profile == "demo":
        params = yaml.safe_load((ROOT / "conf/base/parameters_encoder.yml").read_text())["encoder"]["demo"]
        return build_demo_encoder(copy.deepcopy(params), CAPTIONS + ["the lungs are clear"], seed=0)
    tokenizer = build_word_tokenizer(CAPTIONS + ["the lungs are clear"], max_length=32)
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64)  # small: only the captions' embeddings need it
    model = build_medclip_model(VIT, SwinConfig(image_size=224), text, tokenizer)
    return MedCLIPEncoder(model=model, tokenizer=tokenizer, profile="medclip_vit", image_size=224, text_max_length=32)


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timed(call, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start


def heatmap_inputs(manifest: pd.DataFrame, n_heatmaps: int) -> dict:
    images = manifest.iloc[: max(1, math.ceil(n_heatmaps / len(CAPTIONS)))]
    plan = build_plan(images, pd.DataFrame({"image_id": [], "finding": []}), [], captions=CAPTIONS,
                      include_report_captions=False, finding_synonyms={}, head_images="localized",
                      max_images=None, prefer_localized=False, seed=0).iloc[:n_heatmaps].reset_index(drop=True)
    plan["row"] = np.arange(len(plan))
    return {"image_manifest": images, "heatmap_plan": plan, "heads": {}, "w_by_image": {}}


def main() -> None:  # noqa: PLR0915 - one measurement after the other, printed at the end
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["medclip_vit", "demo"], default="medclip_vit")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--n-heatmaps", type=int, default=8)
    parser.add_argument("--image-px", type=int, default=256, help="phantom side (resized to the model input)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heatmap-batch-size", type=int, default=2)
    parser.add_argument("--batches-per-shard", type=int, default=2, help="embedding and heatmap shard size, in batches")
    parser.add_argument("--shifts", default="0", help="shift smoothing offsets (the default config's 25 passes: -12,-6,0,6,12)")
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes to measure")
    parser.add_argument("--new-fraction", type=float, default=0.01, help="images added for the incremental rerun")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    sizes = sorted({int(w) for w in args.workers.split(",")})
    shifts = [int(v) for v in args.shifts.split(",")]
    n_new = max(1, round(args.n_images * args.new_fraction))
    hm_args = {"method": "hirescam", "target_layer": ["model.encoder.layers.0.blocks.-1"], "shifts_px": shifts,
               "contrast_caption": "the lungs are clear", "batch_size": args.heatmap_batch_size, "chunk_size": 256,
               "device": args.device}
    defaults = yaml.safe_load((ROOT / "conf/base/dask.yml").read_text(encoding="utf-8"))["dask_defaults"]
    encoder = make_encoder(args.profile)
    results: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        everything = draw_phantoms(tmp_path / "images", args.n_images + n_new, args.image_px)
        manifest = everything.iloc[: args.n_images].reset_index(drop=True)
        heatmaps = heatmap_inputs(manifest, args.n_heatmaps)
        paths = manifest["image_path"].tolist()

        for threads in sorted({1, *sizes}):
            with torch_threads(threads):
                embed_image_files(encoder.to(args.device), paths[: args.batch_size], args.batch_size, 0, False,
                                  progress=False)  # warm-up
                reference, seconds = timed(embed_image_files, encoder, paths, args.batch_size, 0, False, progress=False)
                maps, hm_seconds = timed(lambda: ArrayHeatmaps.collect(generate_heatmaps(
                    encoder, progress=False, **heatmaps, **hm_args)))
            results[f"in-process, {threads} thread(s)"] = {
                "threads": threads, "embed": args.n_images / seconds, "maps": len(maps) / hm_seconds}
        encoder.to("cpu")

        incremental = None
        for n_workers in sizes:
            settings = parse_dask_config({"dask": {
                "n_workers": n_workers, "threads_per_worker": 1, "torch_threads": 1,
                "embedding_batches_per_shard": args.batches_per_shard, "heatmap_batches_per_shard": args.batches_per_shard,
            }, "dask_defaults": defaults})
            cluster, start_s = timed(start_client, settings)
            try:
                cluster.client.wait_for_workers(n_workers, timeout=300)

                def engine(name: str, catalog=None, settings=settings, cluster=cluster) -> ShardEngine:
                    return ShardEngine(cluster.client, settings, tmp_path / f"store-{n_workers}-{name}", catalog)

                _, first_s = timed(embed_images_sharded, engine("warm-up"), encoder, manifest.iloc[: args.batch_size],
                                   args.device, batch_size=args.batch_size, num_workers=0, bf16=False)
                table, seconds = timed(embed_images_sharded, engine("steady"), encoder, manifest, args.device,
                                       batch_size=args.batch_size, num_workers=0, bf16=False)
                got = table.drop(columns="image_id").to_numpy()
                if args.device == "cpu" and not np.array_equal(got, reference):
                    print(f"warning: {n_workers} worker(s): embeddings differ from in-process by "
                          f"{np.abs(got - reference).max():.2e}")
                sharded_maps, hm_seconds = timed(lambda e=engine("heatmaps"): ArrayHeatmaps.collect(
                    generate_heatmaps_sharded(e, encoder, **heatmaps, **hm_args)))
                results[f"LocalCluster {n_workers} x 1 thread"] = {
                    "threads": n_workers, "start": start_s + first_s, "embed": args.n_images / seconds,
                    "maps": len(sharded_maps) / hm_seconds}

                if n_workers == sizes[-1]:
                    catalog = DataCatalog({"image_embeddings": ParquetDataset(
                        filepath=str(tmp_path / "image_embeddings.parquet"), version=Version(None, None))})
                    full_engine = engine("incremental", catalog)
                    table, full_s = timed(embed_images_sharded, full_engine, encoder, manifest, args.device,
                                          batch_size=args.batch_size, num_workers=0, bf16=False)
                    catalog.save("image_embeddings", table)
                    _, rerun_s = timed(embed_images_sharded, full_engine, encoder, everything, args.device,
                                       batch_size=args.batch_size, num_workers=0, bf16=False)
                    run = full_engine.runs["image_embeddings"]
                    incremental = (n_workers, run.reused_rows, run.rows, full_s, rerun_s)
            finally:
                cluster.close()

    print(f"profile {args.profile} ({encoder.image_size} px), device {args.device}, {args.n_images} phantoms "
          f"of {args.image_px} px, batch {args.batch_size}, shards of {args.batches_per_shard} batch(es); "
          f"{args.n_heatmaps} hirescam heatmaps, {len(shifts) ** 2} pass(es) each, batch {args.heatmap_batch_size}")
    baseline = results["in-process, 1 thread(s)"]
    header = f"{'':32} {'start-up s':>10} {'images/s':>9} {'speedup':>8} {'effic.':>7} {'maps/s':>8} {'speedup':>8} {'effic.':>7}"
    print(header)
    for name, row in results.items():
        equal = results[f"in-process, {row['threads']} thread(s)"]
        start = f"{row['start']:10.1f}" if "start" in row else f"{'-':>10}"
        print(f"{name:32} {start} {row['embed']:9.2f} {row['embed'] / baseline['embed']:8.2f} "
              f"{row['embed'] / equal['embed']:7.2f} {row['maps']:8.3f} {row['maps'] / baseline['maps']:8.2f} "
              f"{row['maps'] / equal['maps']:7.2f}")
    print("speedup: against in-process on 1 thread; efficiency: against in-process at equal cores (same threads)")
    if incremental:
        n_workers, reused, rows, full_s, rerun_s = incremental
        print(f"incremental rerun ({n_workers} workers): {rows - reused} new of {rows} images ({reused} reused) in "
              f"{rerun_s:.1f} s against {full_s:.1f} s for the full run: ratio {rerun_s / full_s:.3f}")
    best = max(results.values(), key=lambda row: row["embed"])
    name = next(k for k, v in results.items() if v is best)
    print(f"ESTIMATE, MIMIC-CXR ({MIMIC_CXR_IMAGES:,} images) at this run's rates: embedding "
          f"{MIMIC_CXR_IMAGES / baseline['embed'] / 3600:.1f} h in-process on 1 thread, "
          f"{MIMIC_CXR_IMAGES / best['embed'] / 3600:.1f} h on {name}; one caption heatmap each "
          f"({len(shifts) ** 2} pass(es)): {MIMIC_CXR_IMAGES / best['maps'] / 3600:.1f} h on "
          f"{next(k for k, v in results.items() if v is max(results.values(), key=lambda r: r['maps']))}")


if __name__ == "__main__":
    main()
