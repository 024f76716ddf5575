"""Print the demo run's headline figures as Markdown (the README's "Demo results" tables and heatmap scores).

    .venv/bin/python scripts/demo_results.py      # after `make run`: reads the newest versions
"""

from __future__ import annotations

import json
from pathlib import Path

REPORTING = Path(__file__).resolve().parents[1] / "data" / "08_reporting"


def newest(name: str) -> dict:
    folder = REPORTING / name
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    return json.loads((versions[-1] / name).read_text(encoding="utf-8"))


def ci(entry: dict) -> str:
    return f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


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


def main() -> None:
    encoder = newest("encoder_training_metrics.json")
    print(f"Encoder: held-out zero-shot AUC ({encoder['held_out_images']} images of "
          f"{encoder['held_out_patients']} patients; a list of prompts is averaged):\n")
    print("| finding | prompt | AUC |\n| --- | --- | --- |")
    for finding, auc in encoder["auc"].items():
        prompt = encoder.get("prompts", {}).get(finding, encoder["prompt_template"])
        prompt = " / ".join(prompt) if isinstance(prompt, list) else prompt
        print(f"| {finding} | {prompt} | {auc:.3f} |")
    r1, r2 = newest("residual_1_metrics.json"), newest("residual_2_metrics.json")
    print("\nresidual_1 and residual_2 (test split, AUC and accuracy with 95% bootstrap CIs):\n")
    print("| target | n test (pos) | AUC image | AUC residual_1 | p (r1 - image) | AUC residual_2 "
          "| acc. image | acc. residual_1 | acc. residual_2 | majority acc. |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for target, entry in r1["targets"].items():
        two = r2["targets"][target]
        print(f"| {target} | {entry['n_test']} ({entry['n_test_positive']}) | {ci(entry['auc']['image'])} "
              f"| {ci(entry['auc']['residual_1'])} | {entry['residual_1_minus_image']['p_value']:.3f} "
              f"| {ci(two['auc']['residual_2'])} | {ci(two['accuracy']['image'])} "
              f"| {ci(two['accuracy']['residual_1'])} | {ci(two['accuracy']['residual_2'])} "
              f"| {two['majority_class_accuracy']:.3f} |")
    explain = newest("explainability_metrics.json")
    print(f"\nHeatmaps ({explain['method']} on {explain['target_layer']}, shift smoothing "
          f"{explain.get('shift_smoothing_px', [0])} px, contrast caption {explain.get('contrast_caption')!r}, "
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
