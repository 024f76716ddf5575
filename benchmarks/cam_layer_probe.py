"""Which CAM method and target layer localise on the trained demo encoder? Measured.

Runs the explainability pipeline's own node functions (plan -> heatmaps -> scores) for
every method x layer given, on the images held out from encoder training (encoder_split
"test") that have a localized finding, and prints hit rate (pointing game) and mIoU per
target group next to the centred-Gaussian floor:

- report: each image's own caption as the target (the issue's bar: hit rate >= 0.7);
- phrase: the two captions of the slides, on the images whose finding they name;
- image / residual_1 / residual_2: the regression heads, on images where the head's
  finding is localized (needs the residual pipelines' heads; --no-heads leaves them out).

Reads the latest versions from the Kedro catalog (run `make run` or the pipelines first):

    .venv/bin/python benchmarks/cam_layer_probe.py
    .venv/bin/python benchmarks/cam_layer_probe.py --methods hirescam,layercam \
        --layers model.encoder.layers.0.blocks.-1,model.encoder.layers.1.blocks.-1 --max-images 60
    .venv/bin/python benchmarks/cam_layer_probe.py --out data/08_reporting/cam_layer_probe.json
    .venv/bin/python benchmarks/cam_layer_probe.py --methods hirescam --shifts 0 \
        --layers "model.encoder.layers.0.blocks.-1+model.encoder.layers.1.blocks.-1"

A layer entry may join several layers with '+' (their maps are averaged); --shifts sets the
shift smoothing (maps of shifted copies averaged).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = "gradcam,gradcam++,hirescam,layercam,eigencam,scorecam"
DEFAULT_LAYERS = (
    "model.embeddings,"
    "model.encoder.layers.0.blocks.-1,"
    "model.encoder.layers.1.blocks.-1,"
    "model.encoder.layers.-1.blocks.-1,"
    "model.layernorm"
)


def load_inputs(use_heads: bool) -> dict:
    """The probe's inputs from the project's catalog (latest versions)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog = context.catalog
        names = ["medclip_encoder", "image_manifest", "image_localizations", "encoder_split"]
        if use_heads:
            names += ["residual_1_heads", "residual_2_heads", "phenotype_sentence_embeddings"]
        inputs = {name: catalog.load(name) for name in names}
        inputs["params"] = context.params
    return inputs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--layers", default=DEFAULT_LAYERS)
    parser.add_argument("--max-images", type=int, default=0, help="0: every held-out localized image")
    parser.add_argument("--split", default="test", help="encoder_split rows to use: test, train or all")
    parser.add_argument("--no-heads", action="store_true", help="caption targets only")
    parser.add_argument("--tolerance-px", type=float, default=None, help="pointing-game tolerance (default: params)")
    parser.add_argument("--contrast-caption", default=None,
                        help="caption targets: similarity to the caption minus to this one (default: params)")
    parser.add_argument("--shifts", default=None,
                        help="shift smoothing, per-axis shifts in input px, e.g. -12,-6,0,6,12; 0: none (default: params)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="write every result as JSON here")
    return parser.parse_args()


def probe_parameters(args: argparse.Namespace, explainability: dict) -> dict:
    """The project's `params:explainability` with the probe's command-line changes."""
    params = {**explainability, "max_images": args.max_images or None, "prefer_localized": True}
    if args.no_heads:
        params["heads"] = []
    if args.tolerance_px is not None:
        params["scoring"] = {**params["scoring"], "hit_tolerance_px": args.tolerance_px}
    if args.shifts is not None:
        params["shift_smoothing_px"] = [int(v) for v in args.shifts.split(",")]
    if args.contrast_caption is not None:
        params["contrast_caption"] = args.contrast_caption or None
    return params


def held_out_localized(inputs: dict, split: str) -> pd.DataFrame:
    """The manifest's rows with a localized finding, in the encoder split asked for."""
    manifest, localizations, encoder_split = inputs["image_manifest"], inputs["image_localizations"], inputs["encoder_split"]
    keep = set(localizations["image_id"].astype(str))
    if split != "all":
        keep &= set(encoder_split.loc[encoder_split["split"] == split, "image_id"].astype(str))
    return manifest[manifest["image_id"].astype(str).isin(keep)].reset_index(drop=True)


def probe(args: argparse.Namespace, inputs: dict, manifest: pd.DataFrame, params: dict) -> list[dict]:
    """Every method x layer: heatmaps, then scores; one printed line and one result per group."""
    from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
    from medclip_residuals.pipelines.explainability.nodes import compute_heatmaps, plan_heatmaps, score_heatmaps

    seed, device = int(inputs["params"]["seed"]), args.device or inputs["params"]["device"]
    localizations = inputs["image_localizations"]
    heads = {k: inputs.get(k) for k in ("residual_1_heads", "residual_2_heads")}
    w_table = inputs.get("phenotype_sentence_embeddings")
    plan = plan_heatmaps(manifest, localizations, heads["residual_1_heads"], heads["residual_2_heads"], params, seed)
    print(f"{manifest.shape[0]} {args.split} images with a localized finding, {len(plan)} heatmaps per method x layer; "
          f"shift smoothing {params['shift_smoothing_px']} px, contrast caption {params['contrast_caption']!r}")

    results = []
    header = f"{'method':<10}{'layer':<36}{'group':<12}{'n':>5}{'hit':>7}{'95% CI':>15}{'floor':>7}{'mIoU':>7}{'floor':>7}{'s':>7}"
    print(header)
    for layer in args.layers.split(","):
        for method in args.methods.split(","):
            run = {**params, "method": method, "target_layer": layer}
            start = time.perf_counter()
            try:
                # a generator of chunks; the probe's few hundred maps are kept in memory
                heatmaps = ArrayHeatmaps.collect(compute_heatmaps(
                    inputs["medclip_encoder"], manifest, plan, w_table,
                    heads["residual_1_heads"], heads["residual_2_heads"], run, device))
            except ValueError as error:  # e.g. a layer this encoder lacks: say so and go on
                print(f"{method:<10}{layer:<36}skipped: {error}")
                continue
            seconds = time.perf_counter() - start
            _, metrics = score_heatmaps(heatmaps, plan, manifest, localizations, run, seed)
            for row in metrics["by_group"]:
                ci = f"[{row['hit_rate_low']:.2f}, {row['hit_rate_high']:.2f}]"
                print(f"{method:<10}{heatmaps.metadata['target_layer']:<36}{row['group']:<12}{row['n']:>5}"
                      f"{row['hit_rate']:>7.2f}{ci:>15}{row['floor_hit_rate']:>7.2f}{row['miou']:>7.2f}"
                      f"{row['floor_miou']:>7.2f}{seconds:>7.0f}")
                results.append({"method": method, "layer": heatmaps.metadata["target_layer"], "seconds": seconds, **row})
    return results


def main() -> None:
    args = parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    logging.getLogger("kedro").setLevel(logging.WARNING)

    inputs = load_inputs(use_heads=not args.no_heads)
    params = probe_parameters(args, dict(inputs["params"]["explainability"]))
    results = probe(args, inputs, held_out_localized(inputs, args.split), params)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    table = pd.DataFrame(results)
    if not table.empty:
        best = table[table["group"] == "report"].sort_values("hit_rate", ascending=False).head(5)
        print("\nbest for the images' own captions:")
        print(best[["method", "layer", "n", "hit_rate", "hit_rate_low", "hit_rate_high", "floor_hit_rate", "miou"]].to_string(index=False))


if __name__ == "__main__":
    main()
