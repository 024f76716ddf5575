"""Scaling of the two heavy nodes over Dask: in-process against a LocalCluster of 1 and 2 workers.

The same N phantom images are embedded (and heatmaps made for some of them) in-process with
as many torch threads as the cluster has worker threads ("equal cores"), then on a
LocalCluster on 127.0.0.1 of each worker count (one thread each, torch on one thread).
Printed side by side: start-up time (the cluster, then the first call: worker imports and
the encoder's transfer), the time of a call on one shard (what every call pays), images
(maps) per second of a call on all N, speedup against in-process on one thread, efficiency
against in-process at equal cores. Then the incremental rerun (1% new
images) as a ratio to the full run, and a MIMIC-CXR-size estimate from the measured rates
(an estimate: 377,000 images, this machine's rates, nothing else changing).

Models (random weights: speed does not depend on the values):
  --profile medclip_vit   MedCLIP-ViT's vision geometry: Swin-T at 224 px (default)
  --profile demo          the demo profile of conf/base/parameters_encoder.yml (128 px)

    .venv/bin/python benchmarks/scaling.py --n-images 64 --n-heatmaps 16
    .venv/bin/python benchmarks/scaling.py --profile demo --n-images 256 --n-heatmaps 32
    .venv/bin/python benchmarks/scaling.py --device cuda --workers 1,2   # a worker per GPU

Each timing is wall clock, the best of --repeats, and includes what a sharded call pays
(sending the encoder to the workers, writing the shards); on a shared machine other jobs
move the figures: run it twice and compare.
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
                      max_images=None, prefer_localized=False, seed=0, grounding=None,
                      contrast_findings="none").iloc[:n_heatmaps].reset_index(drop=True)
    plan["row"] = np.arange(len(plan))
    return {"image_manifest": images, "heatmap_plan": plan, "heads": {}, "w_by_image": {}}


def rates(call, n_small: int, n_full: int, repeats: int, cpu_seconds) -> tuple[float, float, float]:
    """(seconds of a call on one shard's rows: what every call pays; rows per second of a call
    on n_full rows; CPU seconds per row of that call, all processes that work on it), the
    times the best of `repeats`. CPU time is what other jobs on a shared machine move least."""
    small = min(timed(call, n_small)[1] for _ in range(repeats))
    full, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        cpu_before = cpu_seconds()
        seconds = timed(call, n_full)[1]
        full, cpu = min(full, seconds), min(cpu, cpu_seconds() - cpu_before)
    return small, n_full / full, cpu / n_full


def worker_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its children, on a worker."""
    import psutil

    process = psutil.Process()
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:  # noqa: PLR0915 - one measurement after the other, printed at the end
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["medclip_vit", "demo"], default="medclip_vit")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--n-heatmaps", type=int, default=16)
    parser.add_argument("--image-px", type=int, default=256, help="phantom side (resized to the model input)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heatmap-batch-size", type=int, default=4)
    parser.add_argument("--batches-per-shard", type=int, default=1, help="embedding and heatmap shard size, in batches")
    parser.add_argument("--shifts", default="0", help="shift smoothing offsets (the default config's 25 passes: -12,-6,0,6,12)")
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes to measure")
    parser.add_argument("--new-fraction", type=float, default=0.01, help="images added for the incremental rerun")
    parser.add_argument("--repeats", type=int, default=2, help="each timing is the best of this many")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-cluster", action="store_true", help="the in-process rows only")
    args = parser.parse_args()

    sizes = sorted({int(w) for w in args.workers.split(",")})
    shifts = [int(v) for v in args.shifts.split(",")]
    n_new = max(1, round(args.n_images * args.new_fraction))
    shard_images = args.batch_size * args.batches_per_shard
    shard_maps = args.heatmap_batch_size * args.batches_per_shard
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
        paths = manifest["image_path"].tolist()
        heatmaps = {n: heatmap_inputs(manifest, n) for n in (shard_maps, args.n_heatmaps)}

        for threads in sorted({1, *sizes}):
            encoder.to(args.device)
            with torch_threads(threads):
                embed_image_files(encoder, paths[: args.batch_size], args.batch_size, 0, False, progress=False)  # warm-up
                embed = rates(lambda n: embed_image_files(encoder, paths[:n], args.batch_size, 0, False,
                                                          progress=False), shard_images, args.n_images,
                              args.repeats, time.process_time)
                maps = rates(lambda n: ArrayHeatmaps.collect(generate_heatmaps(
                    encoder, progress=False, **heatmaps[n], **hm_args)), shard_maps, args.n_heatmaps, args.repeats,
                    time.process_time)
            results[f"in-process, {threads} thread(s)"] = {"threads": threads, "embed": embed, "maps": maps}
        encoder.to("cpu")
        with torch_threads(1):
            reference = embed_image_files(encoder, paths, args.batch_size, 0, False, progress=False)

        incremental = None
        for n_workers in [] if args.no_cluster else sizes:
            settings = parse_dask_config({"dask": {
                "n_workers": n_workers, "threads_per_worker": 1, "torch_threads": 1,
                "embedding_batches_per_shard": args.batches_per_shard, "heatmap_batches_per_shard": args.batches_per_shard,
            }, "dask_defaults": defaults})
            cluster, start_s = timed(start_client, settings)
            try:
                cluster.client.wait_for_workers(n_workers, timeout=300)
                made: list[ShardEngine] = []

                def engine(catalog=None, settings=settings, cluster=cluster, made=made) -> ShardEngine:
                    """A fresh shard store each call: every call computes all its rows."""
                    made.append(ShardEngine(cluster.client, settings, tmp_path / f"store-{n_workers}-{len(made)}",
                                            catalog))
                    return made[-1]

                def embed_call(n: int, engine=engine) -> pd.DataFrame:
                    return embed_images_sharded(engine(), encoder, manifest.iloc[:n], args.device,
                                                batch_size=args.batch_size, num_workers=0, bf16=False)

                _, first_s = timed(embed_call, shard_images)  # workers import torch and the project, get the encoder

                def cpu_seconds(client=cluster.client) -> float:  # the client's (hashing, storing) and the workers'
                    return time.process_time() + sum(client.run(worker_cpu_seconds).values())

                embed = rates(embed_call, shard_images, args.n_images, args.repeats, cpu_seconds)
                got = embed_call(args.n_images).drop(columns="image_id").to_numpy()
                embed_work = made[-1].runs["image_embeddings"]
                if args.device == "cpu" and not np.array_equal(got, reference):
                    print(f"warning: {n_workers} worker(s): embeddings differ from in-process by "
                          f"{np.abs(got - reference).max():.2e}")
                maps = rates(lambda n, engine=engine: ArrayHeatmaps.collect(generate_heatmaps_sharded(
                    engine(), encoder, **heatmaps[n], **hm_args)), shard_maps, args.n_heatmaps, args.repeats, cpu_seconds)
                maps_work = made[-1].runs["heatmaps"]  # the last call of `rates`: all the maps
                results[f"LocalCluster {n_workers} x 1 thread"] = {
                    "threads": n_workers, "start": start_s + first_s, "embed": embed, "maps": maps,
                    "work": (embed_work.rows / embed_work.worker_seconds, maps_work.rows / maps_work.worker_seconds)}

                if n_workers == sizes[-1]:
                    catalog = DataCatalog({"image_embeddings": ParquetDataset(
                        filepath=str(tmp_path / "image_embeddings.parquet"), version=Version(None, None))})
                    full_engine = engine(catalog)
                    table, full_s = timed(embed_images_sharded, full_engine, encoder, manifest, args.device,
                                          batch_size=args.batch_size, num_workers=0, bf16=False)
                    catalog.save("image_embeddings", table)
                    full_engine.saved("image_embeddings")
                    _, rerun_s = timed(embed_images_sharded, full_engine, encoder, everything, args.device,
                                       batch_size=args.batch_size, num_workers=0, bf16=False)
                    run = full_engine.runs["image_embeddings"]
                    incremental = (n_workers, run.reused_rows, run.rows, full_s, rerun_s)
            finally:
                cluster.close()

    print(f"profile {args.profile} ({encoder.image_size} px), device {args.device}, torch {torch.__version__}; "
          f"{args.n_images} phantoms of {args.image_px} px, batch {args.batch_size}, shards of {shard_images} images; "
          f"{args.n_heatmaps} hirescam caption heatmaps of {len(shifts) ** 2} pass(es), batch {args.heatmap_batch_size}, "
          f"shards of {shard_maps}; each timing the best of {args.repeats}")
    print(f"{'':30} {'start-up':>8} | {'1 shard':>7} {'images/s':>8} {'speedup':>7} {'effic.':>6} {'CPU ms':>7} "
          f"{'CPU eff':>7} | {'1 shard':>7} {'maps/s':>7} {'speedup':>7} {'effic.':>6} {'CPU ms':>7} {'CPU eff':>7}")
    base = results["in-process, 1 thread(s)"]
    for name, row in results.items():
        equal = results[f"in-process, {row['threads']} thread(s)"]
        start = f"{row['start']:7.1f}s" if "start" in row else f"{'-':>8}"
        cells = []
        for what in ("embed", "maps"):
            small, rate, cpu = row[what]
            cells.append(f"{small:6.2f}s {rate:8.3f} {rate / base[what][1]:7.2f} {rate / equal[what][1]:6.2f} "
                         f"{cpu * 1000:7.0f} {equal[what][2] / cpu:7.2f}")
        print(f"{name:30} {start} | {cells[0]} | {cells[1]}")
    print("start-up: the cluster, then its first call (workers import torch and the project); 1 shard: a call on one "
          "shard's rows (what every call pays at least); images/s, maps/s: a call on all rows (wall clock); speedup: "
          "against in-process on 1 thread; effic.: against in-process at equal cores (as many threads); CPU ms: CPU "
          "time per image (map) of every process at work (client and workers); CPU eff: in-process CPU time per row "
          "at equal cores divided by this one")
    for name, row in results.items():
        if "work" in row:
            embed_rate, maps_rate = row["work"]
            print(f"{name}: inside the shard tasks, per worker: {embed_rate:.3f} images/s "
                  f"({embed_rate / base['embed'][1]:.2f} of in-process on 1 thread), {maps_rate:.3f} maps/s "
                  f"({maps_rate / base['maps'][1]:.2f})")
    if incremental:
        n_workers, reused, rows, full_s, rerun_s = incremental
        print(f"incremental rerun ({n_workers} workers): {rows - reused} new of {rows} images ({reused} reused) in "
              f"{rerun_s:.1f} s against {full_s:.1f} s for the full run of {rows - n_new}: ratio {rerun_s / full_s:.3f}")
    print(f"ESTIMATE for MIMIC-CXR ({MIMIC_CXR_IMAGES:,} images) from the rates above, nothing else changing "
          f"(hours: embedding / one caption heatmap of {len(shifts) ** 2} pass(es) per image):")
    for name, row in results.items():
        print(f"  {name:30} {MIMIC_CXR_IMAGES / row['embed'][1] / 3600:8.1f} h / "
              f"{MIMIC_CXR_IMAGES / row['maps'][1] / 3600:8.1f} h")


if __name__ == "__main__":
    main()
