"""The heatmap plan's pieces: the one seeded image sample, findings a caption names, head names,
and the check that a set of maps belongs to a plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps
from medclip_residuals.explain.plan import findings_named_in, head_names, heatmaps_of_plan, sample_images

IDS = [f"img{k:02d}" for k in range(10)]


def test_sample_is_seeded_sorted_and_takes_localized_images_first() -> None:
    localized = {"img03", "img07"}
    sample = sample_images(IDS, 4, seed=1, localized=localized, prefer_localized=True)
    assert sample == sorted(sample) and len(sample) == 4 and localized <= set(sample)
    assert sample_images(IDS, 4, seed=1, localized=localized, prefer_localized=True) == sample
    assert sample_images(IDS, 2, seed=5, localized=localized, prefer_localized=True) == ["img03", "img07"]
    # without the preference it is the seeded permutation's first ids
    order = np.random.default_rng(5).permutation(10)[:2]
    assert sample_images(IDS, 2, seed=5, localized=localized, prefer_localized=False) == sorted(IDS[k] for k in order)
    assert sample_images(IDS, 50, seed=0, localized=set(), prefer_localized=True) == IDS


def test_findings_named_in_whole_words_and_synonyms() -> None:
    assert findings_named_in("Left pleural effusion and some PNEUMONIA") == ["Pneumonia", "Pleural Effusion"]  # CheXpert order
    assert findings_named_in("pneumonias") == []
    assert findings_named_in("a collection of fluid", {"fluid": "Pleural Effusion"}) == ["Pleural Effusion"]


def test_head_names_keep_the_known_variants() -> None:
    heads = {"metadata": {"heads": {"map": {}, "Pneumonia/image": {}, "Edema/residual_2": {}, "Edema/other": {}}}}
    assert head_names(heads) == [("Pneumonia/image", "Pneumonia", "image"), ("Edema/residual_2", "Edema", "residual_2")]
    assert head_names(None) == []


def test_maps_of_another_plan_are_refused() -> None:
    plan = pd.DataFrame({"row": [0, 1], "image_id": ["a", "b"], "target_id": ["caption:0", "caption:0"]})
    maps = np.zeros((2, 4, 4), dtype=np.float16)
    source = ArrayHeatmaps(maps, {"image_id": ["a", "b"], "target_id": ["caption:0", "caption:0"]})
    assert heatmaps_of_plan(source, plan) is source
    with pytest.raises(ValueError, match="do not belong to the same run"):
        heatmaps_of_plan(ArrayHeatmaps(maps, {"image_id": ["b", "a"]}), plan)


def test_an_outcome_head_is_scored_against_every_finding_of_its_images() -> None:
    """No region shows an outcome (heart failure): its map is judged by whether it looks at a
    finding at all; a finding's head only where its own finding is localized."""
    from medclip_residuals.explain.plan import build_plan

    manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "report": ["", "", ""]})
    localizations = pd.DataFrame({"image_id": ["a", "a", "b"], "finding": ["Edema", "Cardiomegaly", "Pneumonia"]})
    heads = [("outcome:heart_failure/image", "outcome:heart_failure", "image"), ("Edema/image", "Edema", "image")]
    plan = build_plan(manifest, localizations, heads, captions=[], include_report_captions=False,
                      finding_synonyms={}, head_images="localized", max_images=None, prefer_localized=True,
                      seed=0, grounding=None, contrast_findings="none")
    rows = {(r.image_id, r.head): list(r.findings) for r in plan.itertuples()}
    assert rows == {
        ("a", "outcome:heart_failure/image"): ["Cardiomegaly", "Edema"],
        ("a", "Edema/image"): ["Edema"],
        ("b", "outcome:heart_failure/image"): ["Pneumonia"],
    }
