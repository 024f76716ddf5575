"""The caption grid: images with two findings (the prompt of each side by side), then the slide
captions on images with and without their findings; hand-made maps on 32 x 32 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
from medclip_residuals.explain.evaluate import score_plan
from medclip_residuals.explain.figures import grid_rows, plot_caption_grid
from medclip_residuals.explain.plan import Grounding, build_plan, cell_list, localized_findings
from medclip_residuals.pipelines.explainability.params import ExplainabilityParams

SIZE = 32
BOXES = {"Pneumonia": (10, 2, 20, 10), "Lung Lesion": (10, 22, 20, 30), "Pleural Effusion": (24, 4, 30, 28)}
FINDINGS = {"m0": ["Pneumonia", "Lung Lesion"], "m1": ["Pneumonia", "Lung Lesion"], "s0": ["Pleural Effusion"],
            "o0": ["Lung Lesion"], "n0": []}


def _study(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest, localizations = [], []
    for image_id, findings in FINDINGS.items():
        path = tmp_path / f"{image_id}.png"
        Image.fromarray(np.full((SIZE, SIZE), 90, dtype=np.uint8)).save(path)
        manifest.append({"image_id": image_id, "image_path": str(path), "report": " and ".join(findings) or "clear",
                         "height": SIZE, "width": SIZE})
        for finding in findings:
            top, left, bottom, right = BOXES[finding]
            localizations.append({"image_id": image_id, "finding": finding, "mask_path": "", "x": float(left),
                                  "y": float(top), "w": float(right - left), "h": float(bottom - top),
                                  "side": "", "zone": ""})
    return pd.DataFrame(manifest), pd.DataFrame(localizations)


def test_grid_shows_two_findings_side_by_side_and_the_slide_captions(tmp_path: Path, base_params) -> None:
    manifest, localizations = _study(tmp_path)
    params = ExplainabilityParams.parse(base_params("explainability"), "explainability")
    plan = build_plan(
        manifest, localizations, [], captions=["there is some pneumonia near the heart",
                                               "there is pleural effusion on the lower lung"],
        include_report_captions=True, finding_synonyms={}, head_images="localized", max_images=None,
        prefer_localized=True, seed=0, contrast_findings="none",
        grounding=Grounding.parse({**base_params("explainability")["grounding"], "distractors_per_image": 0},
                                  "explainability.grounding"),
    )
    maps = np.zeros((len(plan), SIZE, SIZE), dtype=np.float16)
    for row in plan.itertuples():  # every map on the image's first finding (the same whatever the caption)
        found = FINDINGS[row.image_id]
        top, left, bottom, right = BOXES[found[0]] if found else (0, 0, 2, 2)
        maps[row.row, top:bottom, left:right] = 1.0
    rows, n_paired = grid_rows(plan, localized_findings(localizations), two_finding_images=5, sample_size=2, seed=0)
    emptied = rows[3][1][1][1]  # o0's effusion phrase: a map the caption gate left empty
    maps[emptied] = 0.0
    source = ArrayHeatmaps(maps, {"image_id": plan["image_id"].tolist(), "target_id": plan["target_id"].tolist(),
                                  "method": "hirescam", "target_layer": "a layer", "caption_gate": "mean"})
    scores = score_plan(source, plan, manifest, localizations, scoring=params.scoring, regions=params.regions,
                        chunk_size=8)

    rows, n_paired = grid_rows(plan, localized_findings(localizations), two_finding_images=5, sample_size=2, seed=0)
    assert n_paired == 2 and [image_id for image_id, _ in rows[:2]] == ["m0", "m1"]
    # the two findings' prompts side by side (CheXpert order), then the report
    assert [(title, named) for title, _, named in rows[0][1]] == [
        ("there is a nodule", ["Lung Lesion"]), ("there is pneumonia", ["Pneumonia"]),
        ("report: Pneumonia and Lung Lesion", ["Lung Lesion", "Pneumonia"])]
    # the slide captions: one image with a caption's finding, one with another finding only
    slides = [image_id for image_id, _ in rows[2:]]
    assert len(slides) == 2 and slides[1] == "o0" and slides[0] in {"m0", "m1", "s0"}
    assert [cell_list(named) for _, _, named in rows[3][1][:2]] == [["Pneumonia"], ["Pleural Effusion"]]

    figure = plot_caption_grid(source, plan, scores, manifest, localizations,
                               two_finding_images=5, sample_size=2, seed=0)
    assert isinstance(figure, Figure) and len(figure.axes) == 4 * 4
    labels = [axis.get_xlabel() for axis in figure.axes]
    assert labels[1] == labels[2] == "max in: Pneumonia"
    assert labels[4 * 3 + 1] == "max in: Lung Lesion"  # o0: the pneumonia caption's map lies on the lesion
    assert figure.axes[1].get_title() == "there is a nodule"
    # the empty map: no maximum to mark or to name; the title says why maps can be empty
    assert labels[4 * 3 + 2] == "max in: no region" and not figure.axes[4 * 3 + 2].lines
    assert len(figure.axes[4 * 3 + 1].lines) == 1
    assert "empty: the image fits the caption no better than the mean of its contrasts" in figure._suptitle.get_text()
