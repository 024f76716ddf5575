"""The phantom generator: determinism, the manifest contract, and ground truth that agrees
with the captions (finding, patient's side, lung zone) and is visible in the pixels."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.data.phantom import (
    generate_dataset,
    plan_dataset,
    render_image,
    studies_per_patient,
)
from medclip_residuals.data.phantom_latent import OUTCOME_PREFIX
from medclip_residuals.data.phantom_text import (
    MODELLED_FINDINGS,
    SLIDE_EFFUSION,
    SLIDE_PNEUMONIA,
)
from medclip_residuals.utils.params import ParameterError

# Small but varied: few normals, many pairs and hedged findings, so that 48 images show all
# (every finding's base rate raised; no label noise, so that labels and masks agree exactly).
SMALL = {
    "seed": 5,
    "n_images": 48,
    "image_size": 64,
    "finding_base_rates": dict.fromkeys(MODELLED_FINDINGS, 0.2),
    "uncertain_fraction": 0.3,
    "label_noise": {"missed_fraction": 0.0, "spurious_fraction": 0.0},
}
# Words a caption must use for each finding.
FINDING_WORDS = {
    "Pneumonia": r"pneumonia",
    "Consolidation": r"consolidation",
    "Pleural Effusion": r"pleural effusion",
    "Cardiomegaly": r"heart is (possibly )?enlarged|cardiomegaly",
    "Lung Lesion": r"nodule|mass",
    "Pneumothorax": r"pneumothorax",
    "Edema": r"edema",
    "Atelectasis": r"atelectasis",
}
ZONE_WORDS = {"upper": "upper lung", "middle": "middle lung", "lower": "lower lung", "heart": "near the heart"}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_dataset(phantom_params):
    return generate_dataset(phantom_params(**SMALL))


@pytest.fixture(scope="module")
def small_renders(phantom_params):
    cfg = phantom_params(**{**SMALL, "image_size": 96})
    plans = plan_dataset(cfg)
    return [(plan, render_image(plan, cfg)) for plan in plans]


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_png_bytes_and_another_seed_does_not(phantom_params) -> None:
    params = {"seed": 11, "n_images": 6, "image_size": 64}
    manifest_a, loc_a, images_a, masks_a = generate_dataset(phantom_params(**params))
    manifest_b, loc_b, images_b, masks_b = generate_dataset(phantom_params(**params))
    assert manifest_a.equals(manifest_b) and loc_a.equals(loc_b)
    assert list(images_a) == list(images_b) and list(masks_a) == list(masks_b)
    assert all(_png(images_a[k]) == _png(images_b[k]) for k in images_a)
    assert all(_png(masks_a[k]) == _png(masks_b[k]) for k in masks_a)

    _, _, images_c, _ = generate_dataset(phantom_params(**{**params, "seed": 12}))
    assert len(images_c) == len(images_a)
    assert not {_png(i) for i in images_c.values()} & {_png(i) for i in images_a.values()}


def test_an_image_does_not_depend_on_the_images_drawn_before_it(phantom_params) -> None:
    params = phantom_params(seed=3, n_images=7, image_size=64)
    _, _, images, _ = generate_dataset(params)
    plans = plan_dataset(params)
    alone = render_image(plans[5], params).image
    np.testing.assert_array_equal(alone, np.asarray(images[plans[5].image_id]))


def test_studies_per_patient_sum_and_stay_in_range() -> None:
    for seed in range(20):
        for n in (1, 2, 5, 7, 100, 1201):
            counts = studies_per_patient(n, 2, 4, seed=seed)
            assert sum(counts) == n, (seed, n, counts)
            if n >= 2:
                assert min(counts) >= 2 and max(counts) <= 5, (seed, n, counts)


# ----------------------------------------------------------------------------- contract


def test_manifest_and_localizations_follow_the_contract(small_dataset) -> None:
    manifest, localizations, images, masks = small_dataset
    assert list(manifest.columns[:5]) == ["image_id", "image_path", "patient_id", "report", "view"]
    assert set(CHEXPERT_FINDINGS) <= set(manifest.columns)
    outcomes = [c for c in manifest.columns if c.startswith(OUTCOME_PREFIX)]
    assert list(manifest.columns) == ["image_id", "image_path", "patient_id", "report", "view", *CHEXPERT_FINDINGS, *outcomes]
    assert outcomes == ["outcome:heart_failure", "outcome:lung_cancer", "outcome:icu_admission"]
    for column in outcomes:
        assert set(manifest[column]) <= {"1", "0"}, column  # every study has a value
    assert manifest["image_id"].is_unique and len(manifest) == SMALL["n_images"]
    assert all(re.fullmatch(r"p\d{4}_s\d{2}", i) for i in manifest["image_id"])
    assert (manifest["image_path"] == "images/" + manifest["image_id"] + ".png").all()
    assert (manifest["view"] == "PA").all() and (manifest["report"].str.len() > 0).all()
    for column in CHEXPERT_FINDINGS:
        values = set(manifest[column])
        assert values <= {"1", "0", "-1", ""}, column
        if column in MODELLED_FINDINGS or column == "No Finding":
            assert "" not in values, column
        else:
            assert values == {""}, column  # not modelled: not mentioned
    per_patient = manifest.groupby("patient_id").size()
    assert per_patient.min() >= 2 and per_patient.max() <= 4

    assert list(localizations.columns) == ["image_id", "finding", "mask_path", "x", "y", "w", "h", "side", "zone"]
    assert localizations[["x", "y", "w", "h"]].isna().all().all()
    assert set(localizations["image_id"]) <= set(manifest["image_id"])
    assert not localizations.duplicated(["image_id", "finding"]).any()
    slugs = localizations["finding"].str.lower().str.replace(" ", "_")
    assert (localizations["mask_path"] == "masks/" + localizations["image_id"] + "_" + slugs + ".png").all()
    assert set(masks) == {p.removeprefix("masks/").removesuffix(".png") for p in localizations["mask_path"]}
    assert set(images) == set(manifest["image_id"])
    for image in images.values():
        assert image.mode == "L" and image.size == (64, 64)
    for mask in masks.values():
        pixels = np.asarray(mask)
        assert mask.mode == "L" and mask.size == (64, 64)
        assert set(np.unique(pixels)) == {0, 255}


def test_labels_agree_with_localizations_and_hedged_captions(small_dataset) -> None:
    manifest, localizations, _, _ = small_dataset
    found = localizations.groupby("image_id")["finding"].apply(set).to_dict()
    saw_uncertain = False
    for row in manifest.itertuples(index=False):
        labels = dict(zip(manifest.columns, row))
        positive = {f for f in MODELLED_FINDINGS if labels[f] in ("1", "-1")}
        assert positive == found.get(labels["image_id"], set()), labels["image_id"]
        assert labels["No Finding"] == ("0" if positive else "1")
        uncertain = any(labels[f] == "-1" for f in MODELLED_FINDINGS)
        saw_uncertain |= uncertain
        assert ("possible" in labels["report"]) == uncertain, labels["report"]
        for finding in positive:
            assert re.search(FINDING_WORDS[finding], labels["report"]), (finding, labels["report"])
    assert saw_uncertain


# ----------------------------------------------------------------------------- ground truth


def _lung_rows(lung: np.ndarray) -> tuple[int, int]:
    rows = np.where(lung.any(axis=1))[0]
    return rows.min(), rows.max()


def check_ground_truth(plan, rendered) -> set[str]:
    """Assert that each finding's mask lies where its sentence, side and zone say; return
    the findings checked. (Also used by hand on the whole default dataset.)"""
    size = rendered.image.shape[0]
    heart_rows, heart_cols = np.where(rendered.heart)
    # radiological orientation: the heart bulges to the image's right of the thorax' midline
    midline = (np.where(rendered.lungs["right"].any(0))[0].min() + np.where(rendered.lungs["left"].any(0))[0].max()) / 2
    assert heart_cols.max() - midline > 1.1 * (midline - heart_cols.min()), plan.image_id
    assert len(plan.sentences) == max(1, len(plan.findings))
    for finding, sentence in zip(plan.findings, plan.sentences):
        assert sentence in plan.report
        mask = rendered.masks[finding.name]
        assert mask.any(), (plan.image_id, finding.name)
        rows, cols = np.where(mask)
        what = (plan.image_id, finding.name, finding.side, finding.zone, plan.report)
        if finding.side in ("left", "right"):
            # the patient's left is on the image's right
            on_right_half = cols.mean() > size / 2
            assert on_right_half == (finding.side == "left"), what
            lung = rendered.lungs[finding.side]
            assert (mask & lung).sum() >= 0.97 * mask.sum(), what
            if sentence not in (SLIDE_PNEUMONIA, SLIDE_EFFUSION, "possible pneumonia near the heart"):
                assert re.search(rf"\b{finding.side}\b", sentence), what
                assert not re.search(rf"\b{'left' if finding.side == 'right' else 'right'}\b", sentence), what
            top, bottom = _lung_rows(lung)
            fraction = (rows.mean() - top) / (bottom - top)
            if finding.zone == "upper":
                assert fraction < 0.4, (fraction, what)
            elif finding.zone == "middle":
                assert 0.3 < fraction < 0.7, (fraction, what)
            elif finding.zone == "lower":
                assert fraction > 0.55, (fraction, what)
            elif finding.zone == "heart":
                # touching the heart border, within the heart's height
                near = ndimage.binary_dilation(rendered.heart, iterations=max(2, size // 40))
                assert (mask & near).any(), what
                assert heart_rows.min() <= rows.mean() <= heart_rows.max(), what
        elif finding.side == "bilateral":
            assert cols.min() < size / 2 < cols.max(), what
            both = rendered.lungs["right"] | rendered.lungs["left"]
            assert (mask & both).sum() >= 0.97 * mask.sum(), what
            assert rendered.lungs["right"][mask].any() and rendered.lungs["left"][mask].any(), what
        else:  # cardiomegaly: the mask is the heart
            assert finding.name == "Cardiomegaly" and finding.zone == "heart"
            np.testing.assert_array_equal(mask, rendered.heart)
        assert re.search(FINDING_WORDS[finding.name], sentence), what
        assert ZONE_WORDS[finding.zone] in sentence or finding.name in ("Cardiomegaly", "Edema"), what
    return {f.name for f in plan.findings}


def test_each_mask_lies_where_its_caption_and_labels_say(small_renders) -> None:
    checked: set[str] = set()
    for plan, rendered in small_renders:
        checked |= check_ground_truth(plan, rendered)
    assert checked == set(MODELLED_FINDINGS)


def test_a_study_with_three_findings_renders_with_each_mask_where_its_caption_says(phantom_params) -> None:
    """The latent model gives some studies three or more findings (heart failure: an enlarged
    heart, edema and effusions); each is drawn, masked and captioned as when alone."""
    cfg = phantom_params(seed=8, n_images=300, image_size=96)
    plans = [p for p in plan_dataset(cfg) if len(p.findings) >= 3][:4]
    assert len(plans) == 4
    for plan in plans:
        rendered = render_image(plan, cfg)
        assert set(rendered.masks) == {f.name for f in plan.findings}
        assert len(check_ground_truth(plan, rendered)) == len(plan.findings)
        assert len(plan.sentences) == len(plan.findings)


def _cardiothoracic_ratio(rendered) -> float:
    heart_cols = np.where(rendered.heart.any(axis=0))[0]
    lung_cols = np.where((rendered.lungs["right"] | rendered.lungs["left"]).any(axis=0))[0]
    return (np.ptp(heart_cols) + 1) / (np.ptp(lung_cols) + 1)


def test_findings_are_visible_at_128_px(phantom_params) -> None:
    """Each finding changes the pixels under its mask clearly, compared with the same study
    drawn without it; nodules are at least 5% of the image wide; cardiomegaly means a
    cardiothoracic ratio above 0.55, normal hearts stay below."""
    cfg = phantom_params(seed=21, n_images=400, image_size=128, uncertain_fraction=0.0)
    plans = plan_dataset(cfg)
    for name in MODELLED_FINDINGS:
        plan = next(p for p in plans if [f.name for f in p.findings] == [name])
        with_finding = render_image(plan, cfg)
        without = render_image(replace(plan, findings=()), cfg)
        mask = with_finding.masks[name]
        if name == "Cardiomegaly":
            assert _cardiothoracic_ratio(with_finding) > 0.55 > _cardiothoracic_ratio(without)
            continue
        change = np.abs(with_finding.image.astype(float) - without.image.astype(float))[mask].mean()
        assert change >= 12, (name, change)
        if name == "Lung Lesion":
            assert np.sqrt(4 * mask.sum() / np.pi) >= 0.05 * 128


# ----------------------------------------------------------------------------- defaults


def test_default_plan_has_the_slide_captions_uncertain_labels_and_every_finding(phantom_params) -> None:
    defaults = phantom_params()
    plans = plan_dataset(defaults)
    assert len(plans) == defaults.n_images >= 1000
    reports = [p.report for p in plans]
    assert SLIDE_PNEUMONIA in reports and SLIDE_EFFUSION in reports
    findings = [f for p in plans for f in p.findings]
    for name in MODELLED_FINDINGS:
        assert sum(f.name == name for f in findings) >= 60, name
    uncertain = sum(f.uncertain for f in findings) / len(findings)
    assert 0.02 < uncertain < 0.09
    assert sum(len(p.findings) == 2 for p in plans) > 100
    assert sum(not p.findings for p in plans) > 250
    assert {f.zone for f in findings if f.name == "Pneumonia"} == {"upper", "middle", "lower", "heart"}
    patients = {p.patient_id for p in plans}
    assert len(patients) < len(plans) / 2  # several images per patient


def test_bad_parameters_name_the_key(phantom_params) -> None:
    with pytest.raises(ParameterError, match=r"demo_data\.n_images"):
        phantom_params(n_images=0)
    with pytest.raises(ParameterError, match=r"demo_data\.image_size"):
        phantom_params(image_size=8)
    with pytest.raises(ParameterError, match=r"finding_base_rates: unknown findings \['Fracture'\]"):
        phantom_params(finding_base_rates={"Fracture": 0.1})
    with pytest.raises(ParameterError, match=r"finding_rates: unknown findings \['Fracture'\]"):
        phantom_params(diseases={"heart_failure": {"finding_rates": {"Fracture": 0.1}}})
    with pytest.raises(ParameterError, match=r"heart_failure\.prevalence: must be a fraction"):
        phantom_params(diseases={"heart_failure": {"prevalence": 1.5}})
    with pytest.raises(ParameterError, match=r"'Heart Failure' is not a name for a column outcome:<name>"):
        phantom_params(diseases={"Heart Failure": {"prevalence": 0.1, "finding_rates": {"Edema": 0.3}}})
    with pytest.raises(ParameterError, match=r"lesion_radius: keys must be 'other'"):
        phantom_params(lesion_radius={"sarcoidosis": [0.04, 0.05]})
    with pytest.raises(ParameterError, match=r"label_noise\.spurious_fraction: must be a fraction"):
        phantom_params(label_noise={"spurious_fraction": -0.1})
    with pytest.raises(ParameterError, match=r"unknown key 'n_image'"):
        phantom_params(n_image=10)
    with pytest.raises(ParameterError, match=r"images_per_patient"):
        phantom_params(images_per_patient=[3, 2])
