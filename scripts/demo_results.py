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
          f"{explain.get('shift_smoothing_px', [0])} px, contrast caption {explain.get('contrast_caption')!r}): "
          "pointing-game hit rate and mIoU, floor beside\n")
    print("| group | finding | n | hit rate | floor | mIoU | floor |\n| --- | --- | --- | --- | --- | --- | --- |")
    for row in explain["by_group"] + explain["by_group_and_finding"]:
        print(f"| {row['group']} | {row.get('finding', 'all')} | {row['n']} "
              f"| {row['hit_rate']:.3f} [{row['hit_rate_low']:.3f}, {row['hit_rate_high']:.3f}] "
              f"| {row['floor_hit_rate']:.3f} | {row['miou']:.3f} | {row['floor_miou']:.3f} |")
    for row in explain["interpretation"]:
        agreement = row["caption_location_agreement"]
        print(f"location agreement ({row['group']}): "
              f"{'n/a' if agreement is None else f'{agreement:.3f}'} over {row['n_with_stated_location']} heatmaps")


if __name__ == "__main__":
    main()
