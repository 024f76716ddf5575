"""Grounding: the per-finding prompts the plan adds, and caption specificity / distractor hit
rate on hand-made maps and masks with known answers.

The study: four images with pneumonia (a box on the left) and a lung lesion (a box on the
right), four with a pleural effusion (a box at the bottom), one with no localization; 32 x 32
images and maps, so a map is scored as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
from medclip_residuals.explain.plan import Grounding, build_plan, cell_list
from medclip_residuals.pipelines.explainability.nodes import score_heatmaps

SIZE = 32
BOXES = {  # finding -> (top, left, bottom, right)
    "Pneumonia": (10, 2, 20, 10),
    "Lung Lesion": (10, 22, 20, 30),
    "Pleural Effusion": (24, 4, 30, 28),
}
EMPTY = (1, 14)  # a pixel in no region
PHRASES = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung"]


def _centre(finding: str) -> tuple[int, int]:
    top, left, bottom, right = BOXES[finding]
    return (top + bottom) // 2, (left + right) // 2


@pytest.fixture(scope="module")
def study() -> dict:
    multi = [f"m{k}" for k in range(4)]
    single = [f"s{k}" for k in range(4)]
    manifest = pd.DataFrame({
        "image_id": [*multi, *single, "n0"],
        "report": ["pneumonia and a nodule"] * 4 + ["pleural effusion"] * 4 + ["clear"],
        "height": SIZE, "width": SIZE,
        # s1 is labelled pneumonia without a localization: pneumonia is no distractor there
        "Pneumonia": [1, 1, 1, 1, 0, 1, 0, 0, 0],
    })
    rows = []
    for image_id in manifest["image_id"]:
        findings = ["Pneumonia", "Lung Lesion"] if image_id[0] == "m" else ["Pleural Effusion"] if image_id[0] == "s" else []
        for finding in findings:
            top, left, bottom, right = BOXES[finding]
            rows.append({"image_id": image_id, "finding": finding, "mask_path": "", "x": float(left),
                         "y": float(top), "w": float(right - left), "h": float(bottom - top), "side": "", "zone": ""})
    return {"manifest": manifest, "localizations": pd.DataFrame(rows)}


def _plan(study: dict, grounding: dict | None, **overrides: object) -> pd.DataFrame:
    arguments = {
        "captions": PHRASES, "include_report_captions": False, "finding_synonyms": {}, "head_images": "localized",
        "max_images": None, "prefer_localized": True, "seed": 3, "contrast_findings": "none",
        "grounding": None if grounding is None else Grounding.parse(grounding, "explainability.grounding"),
        **overrides,
    }
    return build_plan(study["manifest"], study["localizations"], [], **arguments)


def _prompts(plan: pd.DataFrame) -> dict[str, list[tuple[str, str, list[str]]]]:
    """image -> (named finding, text, scored findings) of its per-finding prompt rows."""
    rows = plan[plan["group"] == "finding"]
    return {image_id: [(cell_list(r.named)[0], r.text, cell_list(r.findings)) for r in part.itertuples()]
            for image_id, part in rows.groupby("image_id")}


def test_prompts_only_where_the_metrics_need_them(study: dict, base_params) -> None:
    grounding = base_params("explainability")["grounding"]
    plan = _plan(study, {**grounding, "finding_prompt_images": "localized", "distractors_per_image": 5})
    prompts = _prompts(plan)
    assert "n0" not in prompts  # no localized finding: no prompt
    # the prompts are the encoder's evaluation prompts (Lung Lesion: the first of its list)
    assert prompts["m0"] == [
        ("Lung Lesion", "there is a nodule", ["Lung Lesion"]),
        ("Pneumonia", "there is pneumonia", ["Pneumonia"]),
        ("Pleural Effusion", "there is pleural effusion", []),  # a distractor: scored against nothing
    ]
    assert prompts["s0"] == [
        ("Pleural Effusion", "there is pleural effusion", ["Pleural Effusion"]),
        ("Lung Lesion", "there is a nodule", []),
        ("Pneumonia", "there is pneumonia", []),
    ]
    # s1 is labelled pneumonia: only the lung lesion is drawn as its distractor
    assert [p[0] for p in prompts["s1"]] == ["Pleural Effusion", "Lung Lesion"]
    # the slide phrases name their finding on every image, present or not
    phrases = plan[(plan["group"] == "phrase") & (plan["image_id"] == "s0")]
    assert [cell_list(v) for v in phrases["named"]] == [["Pneumonia"], ["Pleural Effusion"]]
    assert [cell_list(v) for v in phrases["findings"]] == [[], ["Pleural Effusion"]]

    multi = _prompts(_plan(study, {**grounding, "finding_prompt_images": "multi_finding", "distractors_per_image": 0}))
    assert sorted(multi) == ["m0", "m1", "m2", "m3"] and all(len(v) == 2 for v in multi.values())
    assert _prompts(_plan(study, {**grounding, "finding_prompt_images": "none", "distractors_per_image": 0})) == {}


def test_distractors_are_seeded_per_image(study: dict, base_params) -> None:
    grounding = {**base_params("explainability")["grounding"], "finding_prompt_images": "none", "distractors_per_image": 1}
    whole = _prompts(_plan(study, grounding))
    assert {image_id: [p[0] for p in v] for image_id, v in whole.items() if image_id[0] == "m"} == {
        f"m{k}": ["Pleural Effusion"] for k in range(4)}
    drawn = {whole[f"s{k}"][0][0] for k in (0, 2, 3)}
    assert drawn <= {"Lung Lesion", "Pneumonia"}
    assert whole["s1"][0][0] == "Lung Lesion"
    # an image draws the same distractor whichever other images are planned
    sample = _prompts(_plan(study, grounding, max_images=3))
    assert all(sample[image_id] == whole[image_id] for image_id in sample)
    assert _prompts(_plan(study, grounding)) == whole


def test_contrast_sets_name_the_other_findings(study: dict, base_params) -> None:
    grounding = base_params("explainability")["grounding"]
    plan = _plan(study, grounding, contrast_findings="max")
    row = plan[(plan["image_id"] == "m0") & (plan["target_id"] == "finding:Pneumonia")].iloc[0]
    assert cell_list(row.contrast_texts) == ["there is a nodule", "there is pleural effusion"]
    assert row.contrast_reduce == "max"
    phrase = plan[(plan["image_id"] == "s0") & (plan["target_id"] == "caption:1")].iloc[0]
    assert cell_list(phrase.contrast_texts) == ["there is a nodule", "there is pneumonia"]
    plain = _plan(study, grounding)
    assert all(cell_list(v) == [] for v in plain["contrast_texts"]) and set(plain["contrast_reduce"]) == {""}
    with pytest.raises(ValueError, match="needs the per-finding prompts"):
        _plan(study, None, contrast_findings="mean")


def _maps(plan: pd.DataFrame, peak_of) -> ArrayHeatmaps:
    """One map per plan row: zeros with a single maximum at `peak_of(row)`."""
    maps = np.zeros((len(plan), SIZE, SIZE), dtype=np.float16)
    maps[:, EMPTY[0], EMPTY[1]] = 0.5  # a second-highest point in no region
    for row in plan.itertuples():
        maps[row.row][peak_of(row)] = 1.0
    return ArrayHeatmaps(maps, {"image_id": plan["image_id"].tolist(), "target_id": plan["target_id"].tolist()})


def _metrics(study: dict, base_params, plan: pd.DataFrame, peak_of) -> dict:
    params = base_params("explainability", scoring={"n_resamples": 200})
    _, metrics = score_heatmaps(_maps(plan, peak_of), plan, study["manifest"], study["localizations"], params, seed=0)
    return metrics


def _table(metrics: dict, key: str) -> dict[tuple[str, str], dict]:
    return {(r["group"], r["finding"]): r for r in metrics[key]["rows"]}


@pytest.fixture(scope="module")
def grounded_plan(study: dict, base_params) -> pd.DataFrame:
    grounding = {**base_params("explainability")["grounding"], "finding_prompt_images": "localized",
                 "distractors_per_image": 5}
    return _plan(study, grounding)


def _on_the_named_finding(row) -> tuple[int, int]:
    """A map that follows its caption: on the named finding where the image has it, else nowhere."""
    named = [f for f in cell_list(row.named) if f in cell_list(row.findings)]
    return _centre(named[0]) if named else EMPTY


def test_maps_that_follow_the_caption(study: dict, base_params, grounded_plan: pd.DataFrame) -> None:
    metrics = _metrics(study, base_params, grounded_plan, _on_the_named_finding)
    specificity = _table(metrics, "caption_specificity")
    overall = specificity[("finding", "all")]
    assert overall["specificity"] == 1.0 and overall["n"] == 8 and overall["n_images"] == 4
    assert specificity[("finding", "Pneumonia")]["specificity"] == 1.0
    assert specificity[("finding", "Lung Lesion")]["n"] == 4
    assert specificity[("phrase", "Pneumonia")]["specificity"] == 1.0  # the pneumonia phrase on m0-m3
    distractors = _table(metrics, "distractor_hit_rate")
    # every distractor map lies on an empty area; every true caption on its finding
    for key in (("finding", "all"), ("finding", "Pneumonia"), ("finding", "Pleural Effusion"), ("phrase", "all")):
        assert distractors[key]["distractor_hit_rate"] == 0.0 and distractors[key]["true_hit_rate"] == 1.0, key
    # finding group: 4 effusion prompts on m0-m3, 2 + 1 + 2 + 2 prompts on s0-s3 (s1 is labelled pneumonia)
    assert distractors[("finding", "all")]["n_distractor"] == 11
    assert distractors[("finding", "all")]["n_true"] == 12


def test_maps_that_ignore_the_caption(study: dict, base_params, grounded_plan: pd.DataFrame) -> None:
    def anything_abnormal(row) -> tuple[int, int]:
        """The same maximum whatever the caption: on pneumonia where there is some, else on the effusion."""
        return _centre("Pneumonia" if row.image_id[0] == "m" else "Pleural Effusion") if row.image_id[0] != "n" else EMPTY

    metrics = _metrics(study, base_params, grounded_plan, anything_abnormal)
    specificity = _table(metrics, "caption_specificity")
    assert specificity[("finding", "all")]["specificity"] == 0.5  # chance: one of the two findings
    assert specificity[("finding", "Pneumonia")]["specificity"] == 1.0
    assert specificity[("finding", "Lung Lesion")]["specificity"] == 0.0
    low, high = specificity[("finding", "all")]["specificity_low"], specificity[("finding", "all")]["specificity_high"]
    assert low < 0.5 < high
    distractors = _table(metrics, "distractor_hit_rate")
    assert distractors[("finding", "all")]["distractor_hit_rate"] == 1.0
    # per present finding: captions naming something else land on pneumonia and on the effusion
    assert distractors[("finding", "Pneumonia")]["distractor_hit_rate"] == 1.0
    assert distractors[("finding", "Lung Lesion")]["distractor_hit_rate"] == 0.0
    assert distractors[("finding", "Pleural Effusion")]["distractor_hit_rate"] == 1.0
    assert distractors[("finding", "Lung Lesion")]["true_hit_rate"] == 0.0
    assert distractors[("finding", "Pleural Effusion")]["ratio"] == 1.0


def test_maps_outside_every_region_are_left_out_of_specificity(study: dict, base_params,
                                                                 grounded_plan: pd.DataFrame) -> None:
    def nowhere_or_named(row) -> tuple[int, int]:
        return EMPTY if row.target_id == "finding:Lung Lesion" else _on_the_named_finding(row)

    specificity = _table(_metrics(study, base_params, grounded_plan, nowhere_or_named), "caption_specificity")
    overall = specificity[("finding", "all")]
    assert overall["specificity"] == 1.0 and overall["n"] == 4 and overall["n_eligible"] == 8
    assert specificity[("finding", "Lung Lesion")]["n"] == 0
