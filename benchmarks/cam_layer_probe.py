"""Which CAM method, target layer and caption target localise, and follow the caption? Measured.

Runs the explainability pipeline's own node functions (plan -> heatmaps -> scores) for
every method x layer x caption contrast given, on the images of the study's validation role
(study_split: choices are made there, the reported figures come from test) that have a
localized finding, and prints, per target group:

- hit rate (pointing game) and mIoU next to the centred-Gaussian floor:
  report (each image's own caption), phrase (the two captions of the slides, on the images
  whose finding they name), finding (the per-finding prompt of each finding an image has),
  image / residual_1 / residual_2 (the regression heads; --no-heads leaves them out);
- the grounding metrics (explain/scoring.py): caption specificity (images with two kinds of
  finding: of the maps whose maximum lies in one of the image's regions, the share in the
  named finding's; chance about 0.5) and the distractor hit rate (captions naming a finding
  the image does not have: the share whose maximum still lies in a present finding's region),
  beside the true captions' hit rate; per finding with --per-finding;
- the issue's goals (issue 14) for each setting: report hit rate >= 0.75, Pneumothorax >= 0.5,
  Cardiomegaly above its floor, specificity >= 0.8, distractor <= half the true hit rate.

Reads the latest versions from a project's Kedro catalog (this checkout's by default; any
copy of the project that has run with --project) with this checkout's code and parameters:

    .venv/bin/python benchmarks/cam_layer_probe.py
    .venv/bin/python benchmarks/cam_layer_probe.py --methods hirescam,tokensimilarity \\
        --layers model.encoder.layers.0.blocks.-1,model.layernorm --max-images 60
    .venv/bin/python benchmarks/cam_layer_probe.py --contrast-findings none,mean,max --no-heads
    .venv/bin/python benchmarks/cam_layer_probe.py --methods hirescam --shifts 0 \\
        --layers "model.encoder.layers.0.blocks.-1+model.encoder.layers.1.blocks.-1"
    .venv/bin/python benchmarks/cam_layer_probe.py --project /path/to/a/run --out probe.json
    .venv/bin/python benchmarks/cam_layer_probe.py --bf16 false   # float32 CAM passes

A layer entry may join several layers with '+' (their maps are averaged); --shifts sets the
shift smoothing (maps of shifted copies averaged); --blur-px also scores the same maps blurred
(a Gaussian on the map: smoothing without extra CAM passes); --max-images keeps that many
images, those with two kinds of finding first (a seeded sample).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = "gradcam,gradcam++,hirescam,layercam,eigencam,scorecam,tokensimilarity"
DEFAULT_LAYERS = (
    "model.embeddings,"
    "model.encoder.layers.0.blocks.-1,"
    "model.encoder.layers.1.blocks.-1,"
    "model.encoder.layers.-1.blocks.-1,"
    "model.layernorm"
)
GROUNDING_GROUPS = ("finding", "phrase")


def _absolute(config: dict, project: Path) -> dict:
    """Catalog entries with their relative filepaths made absolute under `project`."""
    out = {}
    for name, entry in config.items():
        path = str(entry.get("filepath", ""))
        relative = path and not Path(path).is_absolute() and "://" not in path
        out[name] = {**entry, "filepath": str(project / path)} if relative else dict(entry)
    return out


def load_inputs(project: Path, use_heads: bool) -> dict:
    """The probe's inputs from `project`'s catalog (latest versions), this checkout's parameters.

    No Kedro session: a session would check `project`'s parameters against this checkout's
    typed classes, and another copy's conf may be older than this code.
    """
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from medclip_residuals.settings import CONFIG_LOADER_ARGS

    def loader(root: Path) -> OmegaConfigLoader:
        return OmegaConfigLoader(str(root / "conf"), **CONFIG_LOADER_ARGS)

    catalog = DataCatalog.from_config(_absolute(dict(loader(project)["catalog"]), project))
    names = ["medclip_encoder", "image_manifest", "image_localizations", "study_split"]
    if use_heads:
        names += ["residual_1_heads", "residual_2_heads", "phenotype_sentence_embeddings"]
    inputs = {name: catalog.load(name) for name in names}
    inputs["params"] = dict(loader(ROOT)["parameters"])
    return inputs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=str(ROOT), help="a project folder whose catalog and data are read")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--layers", default=DEFAULT_LAYERS)
    parser.add_argument("--max-images", type=int, default=0,
                        help="0: every held-out localized image; N: N of them, two-finding images first")
    parser.add_argument("--role", default="validation",
                        help="study_split role whose images are probed (validation: where choices are made), or all")
    parser.add_argument("--no-heads", action="store_true", help="caption targets only")
    parser.add_argument("--no-reports", action="store_true", help="leave the images' own reports out")
    parser.add_argument("--tolerance-px", type=float, default=None, help="pointing-game tolerance (default: params)")
    parser.add_argument("--contrast-caption", default=None,
                        help="caption targets: similarity to the caption minus to this one (default: params)")
    parser.add_argument("--contrast-findings", default=None,
                        help="comma list of none, mean, max: each a setting of the sweep (default: params)")
    parser.add_argument("--distractors", type=int, default=None, help="distractor prompts per image (default: params)")
    parser.add_argument("--shifts", default=None,
                        help="shift smoothing, per-axis shifts in input px, e.g. -12,-6,0,6,12; 0: none (default: params)")
    parser.add_argument("--blur-px", default="0",
                        help="also score the maps blurred by a Gaussian of these sigmas (input px), e.g. 0,4,8")
    parser.add_argument("--caption-gate", choices=["none", "mean", "max"], default=None,
                        help="empty a caption's map where the image fits it no better than its contrasts (default: params)")
    parser.add_argument("--bf16", choices=["auto", "true", "false"], default=None,
                        help="bf16 autocast of the CAM passes (default: params)")
    parser.add_argument("--per-finding", action="store_true", help="also print the grounding metrics per finding")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="write every result as JSON here")
    return parser.parse_args()


def probe_parameters(args: argparse.Namespace, explainability: dict) -> dict:
    """The project's `params:explainability` with the probe's command-line changes."""
    params = {**explainability, "max_images": None, "prefer_localized": True}
    if args.no_heads:
        params["heads"] = []
    if args.no_reports:
        params["include_report_captions"] = False
    if args.tolerance_px is not None:
        params["scoring"] = {**params["scoring"], "hit_tolerance_px": args.tolerance_px}
    if args.shifts is not None:
        params["shift_smoothing_px"] = [int(v) for v in args.shifts.split(",")]
    if args.caption_gate is not None:
        params["caption_gate"] = args.caption_gate
    if args.bf16 is not None:
        params["bf16"] = {"true": True, "false": False}.get(args.bf16, args.bf16)
    if args.contrast_caption is not None:
        params["contrast_caption"] = args.contrast_caption or None
    if args.distractors is not None:
        params["grounding"] = {**params["grounding"], "distractors_per_image": args.distractors}
    return params


def held_out_localized(inputs: dict, role: str, max_images: int, seed: int) -> pd.DataFrame:
    """The manifest's rows with a localized finding, in the study role asked for; with
    `max_images`, that many, the images with two kinds of finding first (seeded order)."""
    manifest, localizations, study_split = inputs["image_manifest"], inputs["image_localizations"], inputs["study_split"]
    kinds = localizations.assign(image_id=localizations["image_id"].astype(str)).groupby("image_id")["finding"].nunique()
    keep = set(kinds.index)
    if role != "all":
        keep &= set(study_split.loc[study_split["role"] == role, "image_id"].astype(str))
    ids = sorted(keep)
    if max_images and max_images < len(ids):
        order = np.random.default_rng(seed).permutation(len(ids))
        ranked = sorted(order, key=lambda k: kinds[ids[k]] < 2)  # stable: two-finding images first
        ids = sorted(ids[k] for k in ranked[:max_images])
    return manifest[manifest["image_id"].astype(str).isin(set(ids))].reset_index(drop=True)


def short_layer(name: str) -> str:
    """A layer label for the tables: "model.encoder.layers.0.blocks.1 + ..." -> "stage0.block1+..."."""
    name = re.sub(r"model\.encoder\.layers\.(\d+)\.blocks\.(\d+)", r"stage\1.block\2", name)
    name = re.sub(r"model\.encoder\.layers\.(\d+)", r"stage\1", name)
    return name.replace("model.", "").replace(" + ", "+")


def _ci(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>19}"
    return f"{value:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]".rjust(19)


def goals(metrics: dict) -> dict:
    """The issue's goals on one setting's metrics (None where not measured)."""
    by = {(r["group"], r.get("finding", "all")): r for r in metrics["by_group"] + metrics["by_group_and_finding"]}
    spec = {(r["group"], r["finding"]): r for r in metrics["caption_specificity"]["rows"]}
    distractor = {(r["group"], r["finding"]): r for r in metrics["distractor_hit_rate"]["rows"]}
    report = by.get(("report", "all"), {})
    pneumothorax = by.get(("report", "Pneumothorax"), {})
    cardiomegaly = by.get(("report", "Cardiomegaly"), {})
    finding_spec = spec.get(("finding", "all"), {})
    finding_distractor = distractor.get(("finding", "all"), {})
    return {
        "report_hit_rate>=0.75": None if not report else report["hit_rate"] >= 0.75,
        "pneumothorax>=0.5": None if not pneumothorax else pneumothorax["hit_rate"] >= 0.5,
        "cardiomegaly>floor": None if not cardiomegaly else cardiomegaly["hit_rate"] > cardiomegaly["floor_hit_rate"],
        "specificity>=0.8": None if not finding_spec else finding_spec["specificity"] >= 0.8,
        "distractor<=half_true": None if not finding_distractor else (
            finding_distractor["distractor_hit_rate"] <= 0.5 * finding_distractor["true_hit_rate"]),
    }


def print_grounding(label: str, metrics: dict, per_finding: bool) -> None:
    """The grounding metrics of one setting, per group (and per finding)."""
    spec = {(r["group"], r["finding"]): r for r in metrics["caption_specificity"]["rows"]}
    distractor = {(r["group"], r["finding"]): r for r in metrics["distractor_hit_rate"]["rows"]}
    for group in GROUNDING_GROUPS:
        findings = ["all"] + (sorted({f for g, f in set(spec) | set(distractor) if g == group and f != "all"})
                              if per_finding else [])
        for finding in findings:
            s, d = spec.get((group, finding), {}), distractor.get((group, finding), {})
            if not s and not d:
                continue
            ratio = d.get("ratio")
            ratio = "-" if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)) else f"{ratio:.2f}"
            print(f"  {label:<52}{group:<8}{finding:<18}{_ci(s, 'specificity')}{s.get('n', 0):>5}"
                  f"{_ci(d, 'distractor_hit_rate')}{d.get('n_distractor', 0):>5}{_ci(d, 'true_hit_rate')}"
                  f"{d.get('n_true', 0):>5}{ratio:>7}")


def probe(args: argparse.Namespace, inputs: dict, manifest: pd.DataFrame, params: dict) -> list[dict]:
    """Every contrast x layer x method: heatmaps, then scores; printed lines and one result each."""
    from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
    from medclip_residuals.pipelines.explainability.nodes import compute_heatmaps, plan_heatmaps, score_heatmaps

    seed, device = int(inputs["params"]["seed"]), args.device or inputs["params"]["device"]
    localizations = inputs["image_localizations"]
    heads = {k: inputs.get(k) for k in ("residual_1_heads", "residual_2_heads")}
    w_table = inputs.get("phenotype_sentence_embeddings")
    contrasts = (args.contrast_findings or params["contrast_findings"]).split(",")
    n_multi = int((localizations[localizations["image_id"].isin(manifest["image_id"])]
                   .groupby("image_id")["finding"].nunique() >= 2).sum())
    print(f"{len(manifest)} {args.role} images with a localized finding ({n_multi} with two kinds or more); "
          f"shift smoothing {params['shift_smoothing_px']} px, bf16 {params['bf16']}, "
          f"caption gate {params['caption_gate']}, "
          f"contrast caption {params['contrast_caption']!r}")

    blurs = [float(v) for v in args.blur_px.split(",")]
    results = []
    for contrast in contrasts:
        run_params = {**params, "contrast_findings": contrast}
        plan = plan_heatmaps(manifest, localizations, heads["residual_1_heads"], heads["residual_2_heads"],
                             run_params, seed)
        print(f"\ncontrast_findings {contrast!r}: {len(plan)} heatmaps per method x layer")
        print(f"{'method':<16}{'layer':<36}{'group':<12}{'n':>5}{'hit':>7}{'95% CI':>15}{'floor':>7}"
              f"{'mIoU':>7}{'floor':>7}{'s':>7}")
        for layer in args.layers.split(","):
            for method in args.methods.split(","):
                run = {**run_params, "method": method, "target_layer": layer}
                start = time.perf_counter()
                try:
                    # a generator of chunks; the probe's few thousand maps are kept in memory
                    heatmaps = ArrayHeatmaps.collect(compute_heatmaps(
                        inputs["medclip_encoder"], manifest, plan, w_table,
                        heads["residual_1_heads"], heads["residual_2_heads"], run, device))
                except ValueError as error:  # e.g. a layer this encoder or method lacks: say so and go on
                    print(f"{method:<16}{short_layer(layer):<30}skipped: {error}")
                    continue
                seconds = time.perf_counter() - start
                layer_name = heatmaps.metadata["target_layer"]
                for sigma in blurs:
                    label = short_layer(layer_name) + (f" blur{sigma:g}" if sigma else "")
                    _, metrics = score_heatmaps(blurred(heatmaps, sigma), plan, manifest, localizations, run, seed)
                    for row in metrics["by_group"]:
                        ci = f"[{row['hit_rate_low']:.2f}, {row['hit_rate_high']:.2f}]"
                        print(f"{method:<16}{label:<36}{row['group']:<12}{row['n']:>5}"
                              f"{row['hit_rate']:>7.2f}{ci:>15}{row['floor_hit_rate']:>7.2f}{row['miou']:>7.2f}"
                              f"{row['floor_miou']:>7.2f}{seconds:>7.0f}")
                    print(f"  {'grounding':<52}{'group':<8}{'finding':<18}{'specificity':>19}{'n':>5}"
                          f"{'distractor hit':>19}{'n':>5}{'true hit':>19}{'n':>5}{'ratio':>7}")
                    print_grounding(f"{method} {label} {contrast}", metrics, args.per_finding)
                    met = goals(metrics)
                    print(f"  goals: {', '.join(f'{k} {v}' for k, v in met.items())}")
                    results.append({"method": method, "layer": layer_name, "contrast_findings": contrast,
                                    "contrast_caption": params["contrast_caption"],
                                    "shift_smoothing_px": params["shift_smoothing_px"], "blur_px": sigma,
                                    "bf16": heatmaps.metadata["bf16"], "caption_gate": params["caption_gate"],
                                    "seconds": seconds,
                                    "n_images": len(manifest), "goals": met,
                                    **{k: metrics[k] for k in ("by_group", "by_group_and_finding",
                                                               "caption_specificity", "distractor_hit_rate")}})
    return results


def blurred(heatmaps, sigma: float):
    """The maps blurred by a Gaussian of `sigma` input px, each rescaled to [0, 1]: smoothing on
    the map instead of shifted copies of the image (an option of this probe only); 0: unchanged."""
    import torch
    from torchvision.transforms.functional import gaussian_blur

    from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps

    if not sigma:
        return heatmaps
    size = 2 * math.ceil(3 * sigma) + 1
    maps = gaussian_blur(torch.from_numpy(heatmaps.heatmaps.astype(np.float32))[:, None], [size, size], [sigma, sigma])
    low, high = maps.amin(dim=(1, 2, 3), keepdim=True), maps.amax(dim=(1, 2, 3), keepdim=True)
    return ArrayHeatmaps(((maps - low) / (high - low).clamp_min(1e-8))[:, 0].numpy(), heatmaps.metadata)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    logging.getLogger("kedro").setLevel(logging.WARNING)
    logging.getLogger("medclip_residuals").setLevel(logging.WARNING)

    inputs = load_inputs(Path(args.project).resolve(), use_heads=not args.no_heads)
    params = probe_parameters(args, dict(inputs["params"]["explainability"]))
    manifest = held_out_localized(inputs, args.role, args.max_images, int(inputs["params"]["seed"]))
    results = probe(args, inputs, manifest, params)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=float))
        print(f"wrote {args.out}")
    if results:
        best = sorted(
            ({"method": r["method"], "layer": r["layer"], "contrast": r["contrast_findings"], **row}
             for r in results for row in r["by_group"] if row["group"] == "report"),
            key=lambda row: -row["hit_rate"])[:5]
        if best:
            print("\nbest for the images' own captions:")
            print(pd.DataFrame(best)[["method", "layer", "contrast", "n", "hit_rate", "hit_rate_low", "hit_rate_high",
                                      "floor_hit_rate", "miou"]].to_string(index=False))


if __name__ == "__main__":
    main()
