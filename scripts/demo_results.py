"""Print the demo run's headline figures as Markdown (the README's "Demo results" tables and heatmap scores).

    .venv/bin/python scripts/demo_results.py      # after `make run`: reads the newest versions
    .venv/bin/python scripts/demo_results.py --project /path/to/another/run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]


def newest_folder(reporting: Path, name: str) -> Path:
    versions = sorted(p for p in (reporting / name).iterdir() if p.is_dir())
    return versions[-1] / name


def newest(reporting: Path, name: str) -> dict:
    return json.loads(newest_folder(reporting, name).read_text(encoding="utf-8"))


def ci(entry: dict) -> str:
    return f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def difference(test: dict) -> str:
    """A paired test: `difference [low, high]`, its p-value and the minimum detectable difference."""
    return (f"{test['difference']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}] | {test['p_value']:.3f} "
            f"| {test['minimum_detectable_difference']:.3f}")


def role(entry: dict) -> str:
    return f"{entry['role']} role: {entry['images']} images of {entry['patients']} patients"


def rate(row: dict, key: str) -> str:
    """`estimate [low, high]`, or n/a where nothing was measured."""
    if row.get(key) is None:
        return "n/a"
    return f"{row[key]:.3f} [{row[key + '_low']:.3f}, {row[key + '_high']:.3f}]"


def print_grounding(explain: dict) -> None:
    """Caption specificity and the distractor hit rate beside the true captions' hit rate."""
    if "caption_specificity" not in explain:
        return  # a run from before the grounding metrics
    print("\nCaption specificity (images with two or more kinds of localized finding, captions naming one: of "
          "the maps whose maximum lies in one of the image's regions, the share in the named finding's; "
          "chance about 0.5):\n")
    print("| group | finding | specificity | n (of eligible) |\n| --- | --- | --- | --- |")
    for row in explain["caption_specificity"]["rows"]:
        print(f"| {row['group']} | {row['finding']} | {rate(row, 'specificity')} | {row['n']} ({row['n_eligible']}) |")
    print("\nDistractor hit rate (captions naming a finding the image does not have: maximum in a present "
          "finding's region; per finding: in that finding's region) beside the true captions' hit rate:\n")
    print("| group | finding present | distractor hit rate | n | true-caption hit rate | n | ratio |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for row in explain["distractor_hit_rate"]["rows"]:
        ratio = "n/a" if row.get("ratio") is None else f"{row['ratio']:.2f}"
        print(f"| {row['group']} | {row['finding']} | {rate(row, 'distractor_hit_rate')} | {row['n_distractor']} "
              f"| {rate(row, 'true_hit_rate')} | {row['n_true']} | {ratio} |")


def print_encoder(encoder: dict) -> None:
    """Zero-shot AUC per finding on the test role, with the validation role beside it."""
    validation = encoder.get("validation") or {}
    print(f"Encoder: zero-shot AUC ({role(encoder['role'])}; validation: "
          f"{role(validation['role']) if validation else 'none'}; {encoder['train_images']} training images, "
          f"{encoder['epochs']} epochs in {encoder['training_seconds']:.0f} s; a list of prompts is averaged). "
          f"Min AUC {encoder['min_auc']:.3f} (test), target {encoder['target_auc']}: "
          f"{'met' if encoder['meets_target'] else 'NOT met'}\n")
    print("| finding | prompt | positives (test) | AUC test | AUC validation |\n| --- | --- | --- | --- | --- |")
    for finding, auc in encoder["auc"].items():
        prompt = encoder.get("prompts", {}).get(finding, encoder["prompt_template"])
        prompt = " / ".join(prompt) if isinstance(prompt, list) else prompt
        other = validation.get("auc", {}).get(finding)
        print(f"| {finding} | {prompt} | {encoder['positives'][finding]} | {auc:.3f} "
              f"| {'n/a' if other is None else f'{other:.3f}'} |")


def print_residuals(r1: dict, r2: dict) -> None:
    """AUCs with CIs, the paired differences (CI, p, minimum detectable difference), accuracies."""
    print(f"\nResiduals ({role(r1['role'])}; AUC with 95% bootstrap CIs, resampling "
          f"{r1['bootstrap'].get('resample', 'images')}):\n")
    print("| target | n test (pos) | AUC image | AUC residual_1 | AUC residual_2 |\n| --- | --- | --- | --- | --- |")
    for target, entry in r1["targets"].items():
        two = r2["targets"][target]
        print(f"| {target} | {entry['n_test']} ({entry['n_test_positive']}) | {ci(entry['auc']['image'])} "
              f"| {ci(entry['auc']['residual_1'])} | {ci(two['auc']['residual_2'])} |")
    print("\nPaired differences of AUC on the same test images (bootstrap CI, p-value, and the smallest "
          "difference the test set detects with power 0.8 at alpha 0.05):\n")
    print("| target | comparison | difference [95% CI] | p | min. detectable |\n| --- | --- | --- | --- | --- |")
    for target, entry in r1["targets"].items():
        comparisons = r2["targets"][target]["comparisons"]
        print(f"| {target} | residual_1 - image | {difference(entry['residual_1_minus_image'])} |")
        print(f"| {target} | residual_2 - image | {difference(comparisons['residual_2_minus_image']['auc'])} |")
    print(f"\nAccuracy at threshold {r2['threshold']} (residual_2's slide plot):\n")
    print("| target | image | residual_1 | residual_2 | majority class |\n| --- | --- | --- | --- | --- |")
    for target, two in r2["targets"].items():
        print(f"| {target} | {ci(two['accuracy']['image'])} | {ci(two['accuracy']['residual_1'])} "
              f"| {ci(two['accuracy']['residual_2'])} | {two['majority_class_accuracy']:.3f} |")


def print_sweep(reporting: Path) -> None:
    """residual_1's k-and-strategy sweep (test role): one row per setting, one column per target."""
    sweep = pd.read_csv(newest_folder(reporting, "residual_1_sweep.csv"))
    targets = list(dict.fromkeys(sweep["target"]))
    print("\nresidual_1 sweep (test role): AUC(residual_1) - AUC(image) [95% CI], p, per setting and target:\n")
    print("| k | strategy | source | " + " | ".join(targets) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in targets) + " |")
    for (k, strategy, source), rows in sweep.groupby(["k", "strategy", "source"], sort=False):
        cells = {row.target: f"{row.difference:+.3f} [{row.difference_low:+.3f}, {row.difference_high:+.3f}], "
                             f"p {row.p_value:.2f}" for row in rows.itertuples()}
        print(f"| {k} | {strategy} | {source} | " + " | ".join(cells.get(t, "n/a") for t in targets) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=PROJECT, help="the project folder of the run")
    reporting = parser.parse_args().project / "data" / "08_reporting"
    print_encoder(newest(reporting, "encoder_training_metrics.json"))
    print_residuals(newest(reporting, "residual_1_metrics.json"), newest(reporting, "residual_2_metrics.json"))
    print_sweep(reporting)
    explain = newest(reporting, "explainability_metrics.json")
    precision = "bf16" if explain.get("bf16") else "float32"
    print(f"\nHeatmaps ({explain['method']} on {explain['target_layer']}, shift smoothing "
          f"{explain.get('shift_smoothing_px', [0])} px, {precision}, contrast caption {explain.get('contrast_caption')!r}, "
          f"contrast findings {explain.get('contrast_findings', 'none')!r}): "
          "pointing-game hit rate and mIoU, floor beside\n")
    print("| group | finding | n | hit rate | floor | mIoU | floor |\n| --- | --- | --- | --- | --- | --- | --- |")
    for row in explain["by_group"] + explain["by_group_and_finding"]:
        print(f"| {row['group']} | {row.get('finding', 'all')} | {row['n']} "
              f"| {row['hit_rate']:.3f} [{row['hit_rate_low']:.3f}, {row['hit_rate_high']:.3f}] "
              f"| {row['floor_hit_rate']:.3f} | {row['miou']:.3f} | {row['floor_miou']:.3f} |")
    print_grounding(explain)
    for row in explain["interpretation"]:
        agreement = row["caption_location_agreement"]
        print(f"location agreement ({row['group']}): "
              f"{'n/a' if agreement is None else f'{agreement:.3f}'} over {row['n_with_stated_location']} heatmaps")


if __name__ == "__main__":
    main()
