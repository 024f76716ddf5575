"""Peak memory of the explainability pipeline at two dataset sizes: chunked store vs in memory.

Each (size, mode) runs in a fresh subprocess, which reports its own peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, the RSS high-water mark) after
`compute_heatmaps` -> store -> `score_heatmaps`; the figures are printed side by side.

- chunked: the pipeline as it is: a generator node whose chunks `HeatmapStoreDataset`
  appends to disk, scored back chunk by chunk (memory bounded by `--chunk-size`).
- in_memory: the way before the store: every map gathered into one float16 (N, S, S)
  array, saved and loaded as one safetensors file (TensorDictDataset), scored from a
  float32 copy of the whole array.

Data: the project's phantoms (`medclip_residuals.data.phantom`), drawn once for the largest
size (the smaller sizes take a prefix), at `--image-px`; a random (untrained) tiny demo
encoder at `--input-px`; targets: every image's report and two phrases (3 maps per image);
no shift smoothing. The defaults (500 and 4,000 images) take minutes.

    .venv/bin/python benchmarks/explainability_memory.py                 # 500 and 4,000 images
    .venv/bin/python benchmarks/explainability_memory.py --sizes 100,800  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung"]
TINY_ENCODER = {
    "image_size": 64,
    "allow_global_windows": False,
    "text_max_length": 32,
    "lowercase": True,
    "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2},
    "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
             "max_position_embeddings": 32},
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def make_data(folder: Path, n_images: int, image_px: int, seed: int = 7) -> None:
    """Draw `n_images` phantoms into folder/images, masks into folder/masks, and two tables."""
    import numpy as np
    import pandas as pd
    import yaml
    from PIL import Image

    from medclip_residuals.data import phantom

    conf = Path(__file__).resolve().parents[1] / "conf/base/parameters_demo_data.yml"
    raw = yaml.safe_load(conf.read_text(encoding="utf-8"))["demo_data"]
    del raw["grid"]  # the figure's, not the generator's
    cfg = phantom.PhantomParams.parse({**raw, "n_images": n_images, "image_size": image_px, "seed": seed}, "demo_data")
    manifest, localizations = [], []
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for plan in phantom.plan_dataset(cfg):
        rendered = phantom.render_image(plan, cfg)
        path = folder / "images" / f"{plan.image_id}.png"
        Image.fromarray(rendered.image).save(path)
        manifest.append({"image_id": plan.image_id, "image_path": str(path), "patient_id": plan.patient_id,
                         "report": plan.report, "view": "PA", "height": image_px, "width": image_px})
        for finding in plan.findings:
            mask_path = folder / "masks" / f"{plan.image_id}_{phantom.mask_slug(finding.name)}.png"
            Image.fromarray(np.where(rendered.masks[finding.name], 255, 0).astype(np.uint8)).save(mask_path)
            localizations.append({"image_id": plan.image_id, "finding": finding.name, "mask_path": str(mask_path),
                                  "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan,
                                  "side": finding.side, "zone": finding.zone})
    pd.DataFrame(manifest).to_parquet(folder / "manifest.parquet")
    pd.DataFrame(localizations).to_parquet(folder / "localizations.parquet")


def child(args: argparse.Namespace) -> None:
    """One measurement: explain and score the first `args.n` images, print a JSON line."""
    import numpy as np
    import pandas as pd
    import torch
    import yaml
    from kedro.io import Version

    from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapStoreDataset
    from medclip_residuals.datasets.tensor_dict import TensorDictDataset
    from medclip_residuals.models.medclip_loader import build_demo_encoder
    from medclip_residuals.pipelines.explainability.nodes import compute_heatmaps, plan_heatmaps, score_heatmaps

    torch.set_num_threads(1)
    data = Path(args.data)
    manifest = pd.read_parquet(data / "manifest.parquet").iloc[: args.n].reset_index(drop=True)
    localizations = pd.read_parquet(data / "localizations.parquet")
    localizations = localizations[localizations["image_id"].isin(set(manifest["image_id"]))].reset_index(drop=True)
    # conf/base's parameters, with the benchmark's own choices
    params = yaml.safe_load((ROOT / "conf" / "base" / "parameters_explainability.yml").read_text())["explainability"]
    params.update(method="gradcam", target_layer="model.encoder.layers.0.blocks.-1", captions=CAPTIONS,
                  contrast_caption=None, include_report_captions=True, heads=[], batch_size=32,
                  chunk_size=args.chunk_size, shift_smoothing_px=[0])
    params["scoring"]["n_resamples"] = 200
    encoder = build_demo_encoder(dict(TINY_ENCODER, image_size=args.input_px), manifest["report"].tolist() + CAPTIONS, seed=0)
    plan = plan_heatmaps(manifest, localizations, None, None, params, seed=0)
    setup_mb = _peak_mb()
    started = time.perf_counter()
    chunks = compute_heatmaps(encoder, manifest, plan, None, None, None, params, "cpu")
    work = Path(args.work)
    if args.mode == "chunked":
        dataset = HeatmapStoreDataset(filepath=str(work / "heatmaps"), version=Version(None, None))
        for chunk in chunks:
            dataset.save(chunk)
        heatmaps = dataset.load()
    else:
        collected = ArrayHeatmaps.collect(chunks)
        dataset = TensorDictDataset(filepath=str(work / "heatmaps.safetensors"))
        dataset.save({"tensors": {"heatmaps": collected.heatmaps}, "metadata": collected.metadata})
        del collected
        loaded = dataset.load()
        heatmaps = ArrayHeatmaps(np.asarray(loaded["tensors"]["heatmaps"], dtype=np.float32), loaded["metadata"])
    explained = time.perf_counter() - started
    scores, _ = score_heatmaps(heatmaps, plan, manifest, localizations, params, seed=0)
    print(json.dumps({
        "n_images": args.n, "mode": args.mode, "heatmaps": len(plan), "scored": int((scores["finding"] != "").sum()),
        "setup_mb": setup_mb, "peak_mb": _peak_mb(), "seconds": time.perf_counter() - started,
        "explain_seconds": explained,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,4000", help="dataset sizes (images), comma-separated")
    parser.add_argument("--modes", default="chunked,in_memory", help="chunked and/or in_memory")
    parser.add_argument("--chunk-size", type=int, default=256, help="heatmaps per chunk (params chunk_size)")
    parser.add_argument("--image-px", type=int, default=128, help="phantom image side")
    parser.add_argument("--input-px", type=int, default=64, help="encoder input side (heatmap side)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    if args.child:
        child(args)
        return

    sizes = [int(v) for v in args.sizes.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="explain_memory_") as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        make_data(data, max(sizes), args.image_px)
        print(f"{max(sizes)} phantoms of {args.image_px} px drawn in {time.perf_counter() - started:.0f} s; "
              f"encoder input {args.input_px} px, chunk_size {args.chunk_size}", flush=True)
        results = {}
        for size in sizes:
            for mode in modes:
                work = Path(tmp) / f"{mode}_{size}"
                work.mkdir()
                command = [sys.executable, __file__, "--child", "--n", str(size), "--mode", mode, "--data", str(data),
                           "--work", str(work), "--chunk-size", str(args.chunk_size), "--input-px", str(args.input_px)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"{mode} at {size} images failed:\n{done.stderr[-3000:]}")
                results[(size, mode)] = json.loads(done.stdout.strip().splitlines()[-1])
                row = results[(size, mode)]
                print(f"  {mode:<10} {size:>6} images: {row['heatmaps']} heatmaps, peak {row['peak_mb']:.0f} MB "
                      f"({row['seconds']:.0f} s)", flush=True)

    print("\npeak RSS (MB) of explainability, each run in a fresh process "
          "(after setup: imports, encoder, tables -> after compute + store + score)")
    header = f"{'images':>7}{'heatmaps':>10}" + "".join(f"{mode + ' setup':>18}{mode + ' peak':>17}" for mode in modes)
    print(header)
    for size in sizes:
        line = f"{size:>7}{results[(size, modes[0])]['heatmaps']:>10}"
        for mode in modes:
            row = results[(size, mode)]
            line += f"{row['setup_mb']:>18.0f}{row['peak_mb']:>17.0f}"
        print(line)
    if len(sizes) >= 2:
        low, high = sizes[0], sizes[-1]
        for mode in modes:
            grow = results[(high, mode)]["peak_mb"] - results[(low, mode)]["peak_mb"]
            added = [results[(s, mode)]["peak_mb"] - results[(s, mode)]["setup_mb"] for s in (low, high)]
            print(f"{mode}: peak grows {grow:+.0f} MB from {low} to {high} images; "
                  f"compute + score add {added[0]:.0f} MB -> {added[1]:.0f} MB over setup")


if __name__ == "__main__":
    main()
