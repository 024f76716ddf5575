"""The demo's latent model (data/phantom_latent.py): patient diseases -> findings -> outcomes,
and the report labeller's noise: deterministic per seed, the intended prevalences, diseases
constant within a patient, and noise on the label columns only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medclip_residuals.data.phantom import finding_severity, generate_dataset, plan_dataset
from medclip_residuals.data.phantom_latent import (
    OTHER_CAUSE,
    DiseaseModel,
    IcuModel,
    expected_finding_prevalence,
    icu_probability,
)
from medclip_residuals.data.phantom_render import FindingSpec
from medclip_residuals.data.phantom_text import MODELLED_FINDINGS, chexpert_labels

OUTCOMES = ("outcome:heart_failure", "outcome:lung_cancer", "outcome:icu_admission")
NO_NOISE = {"missed_fraction": 0.0, "spurious_fraction": 0.0}


@pytest.fixture(scope="module")
def default_plans(phantom_params):
    """conf/base's model on a 900-study plan (no pixels)."""
    settings = phantom_params(n_images=900)
    return settings, plan_dataset(settings)


def _columns(plans) -> list[tuple]:
    return [(p.image_id, tuple(p.labels.items()), tuple(p.outcomes.items())) for p in plans]


def test_targets_are_deterministic_per_seed(phantom_params) -> None:
    first = plan_dataset(phantom_params(seed=21, n_images=200))
    again = plan_dataset(phantom_params(seed=21, n_images=200))
    assert _columns(first) == _columns(again)
    assert [p.icu_probability for p in first] == [p.icu_probability for p in again]
    other = plan_dataset(phantom_params(seed=22, n_images=200))
    for column in OUTCOMES:
        assert [p.outcomes[column] for p in first] != [p.outcomes[column] for p in other], column


def test_every_study_has_every_outcome_and_diseases_are_constant_within_a_patient(default_plans) -> None:
    _, plans = default_plans
    by_patient: dict[str, set[tuple[str, str]]] = {}
    for plan in plans:
        assert tuple(plan.outcomes) == OUTCOMES
        assert set(plan.outcomes.values()) <= {"0", "1"}
        by_patient.setdefault(plan.patient_id, set()).add((plan.outcomes[OUTCOMES[0]], plan.outcomes[OUTCOMES[1]]))
    assert all(len(values) == 1 for values in by_patient.values())
    # ICU admission is the study's: some patients have studies with and without it
    icu = {}
    for plan in plans:
        icu.setdefault(plan.patient_id, set()).add(plan.outcomes[OUTCOMES[2]])
    assert any(len(values) == 2 for values in icu.values())


def _within(observed: float, expected: float, n: int, z: float = 4.0) -> bool:
    """Within z binomial standard errors (the plans are fixed by the seed: this does not flake)."""
    return abs(observed - expected) <= z * np.sqrt(expected * (1 - expected) / n)


def test_prevalences_are_the_intended_ones(default_plans) -> None:
    settings, plans = default_plans
    n = len(plans)
    patients = {p.patient_id: p for p in plans}
    for name, model in settings.diseases.items():
        share = np.mean([p.outcomes[f"outcome:{name}"] == "1" for p in patients.values()])
        assert _within(share, model.prevalence, len(patients)), (name, share)
    expected = expected_finding_prevalence(settings.finding_base_rates, settings.diseases)
    for name in MODELLED_FINDINGS:
        shown = np.mean([any(f.name == name for f in p.findings) for p in plans])
        assert _within(shown, expected[name], n), (name, shown, expected[name])
    icu = np.mean([p.outcomes["outcome:icu_admission"] == "1" for p in plans])
    assert _within(icu, float(np.mean([p.icu_probability for p in plans])), n)
    assert 0.05 < icu < 0.25  # a minority of studies, as configured
    # pneumonia and consolidation are never drawn together
    assert not any({"Pneumonia", "Consolidation"} <= {f.name for f in p.findings} for p in plans)


def test_expected_prevalence_is_the_noisy_or() -> None:
    diseases = {"d": DiseaseModel(prevalence=0.5, finding_rates={"Edema": 0.4})}
    expected = expected_finding_prevalence({"Edema": 0.1, "Pneumonia": 0.2, "Consolidation": 0.2}, diseases)
    assert expected["Edema"] == pytest.approx(0.5 * 0.1 + 0.5 * (1 - 0.9 * 0.6))
    assert expected["Pneumonia"] == pytest.approx(0.2 - 0.04 / 2)  # both fire: one of the two is kept


def test_diseases_raise_their_findings_and_films_of_the_diseased_may_show_nothing(default_plans) -> None:
    _, plans = default_plans

    def share(finding: str, outcome: str, value: str) -> float:
        group = [p for p in plans if p.outcomes[outcome] == value]
        return np.mean([any(f.name == finding for f in p.findings) for p in group])

    for finding in ("Cardiomegaly", "Edema", "Pleural Effusion"):
        assert share(finding, "outcome:heart_failure", "1") > 3 * share(finding, "outcome:heart_failure", "0"), finding
    assert share("Lung Lesion", "outcome:lung_cancer", "1") > 5 * share("Lung Lesion", "outcome:lung_cancer", "0")
    assert share("Lung Lesion", "outcome:lung_cancer", "0") > 0  # benign nodules
    failing = [p for p in plans if p.outcomes["outcome:heart_failure"] == "1"]
    assert any(not {"Cardiomegaly", "Edema", "Pleural Effusion"} & {f.name for f in p.findings} for p in failing)
    for plan in plans:  # a disease causes findings only in its patients
        for name, cause in plan.causes.items():
            assert cause == OTHER_CAUSE or plan.outcomes[f"outcome:{cause}"] == "1", (plan.image_id, name, cause)
    effusions = [(f.side, p.causes["Pleural Effusion"]) for p in plans for f in p.findings if f.name == "Pleural Effusion"]
    bilateral = {c: np.mean([s == "bilateral" for s, cause in effusions if cause == c]) for c in ("heart_failure", OTHER_CAUSE)}
    assert bilateral["heart_failure"] > 2 * bilateral[OTHER_CAUSE], bilateral


def test_icu_admission_rises_with_how_severe_the_findings_look(default_plans) -> None:
    model = IcuModel(intercept=-4.0, frailty_sd=1.0, finding_log_odds={"Pneumothorax": (1.0, 4.5)})
    small = FindingSpec("Pneumothorax", "left", "upper", False, {"rim": 0.09, "extent": 0.6, "lucency": 0.25})
    large = FindingSpec("Pneumothorax", "left", "upper", False, {"rim": 0.14, "extent": 0.85, "lucency": 0.25})
    assert (finding_severity(small), finding_severity(large)) == (0.0, 1.0)
    p_small = icu_probability((small,), 0.0, model, {"Pneumothorax": 0.0})
    p_large = icu_probability((large,), 0.0, model, {"Pneumothorax": 1.0})
    assert p_small == pytest.approx(1 / (1 + np.exp(3.0)))
    assert p_large == pytest.approx(1 / (1 + np.exp(-0.5)))
    assert icu_probability((), 0.0, model, {}) < p_small
    assert icu_probability((), 1.0, model, {}) > icu_probability((), 0.0, model, {})  # frailty

    # on the default plan: every severity within [0, 1], and admissions follow the severe findings
    _, plans = default_plans
    assert all(0.0 <= finding_severity(f) <= 1.0 for p in plans for f in p.findings)

    def admitted(group: list) -> float:
        return np.mean([p.outcomes["outcome:icu_admission"] == "1" for p in group])

    severe = [p for p in plans if any(finding_severity(f) > 0.5 for f in p.findings)]
    normal = [p for p in plans if not p.findings]
    assert admitted(severe) > 3 * admitted(normal) > 0


def test_label_noise_changes_the_label_columns_only(phantom_params) -> None:
    clean = plan_dataset(phantom_params(seed=4, n_images=400, label_noise=NO_NOISE))
    noisy = plan_dataset(phantom_params(seed=4, n_images=400, label_noise={"missed_fraction": 0.2, "spurious_fraction": 0.05}))
    missed = spurious = present = absent = 0
    for a, b in zip(clean, noisy, strict=True):
        # the image, its report, its findings and its outcomes are the same
        assert (a.image_id, a.findings, a.report, a.sentences, a.outcomes) == (b.image_id, b.findings, b.report, b.sentences, b.outcomes)
        assert a.labels == chexpert_labels(a.findings)  # no noise: the labels are the truth
        for name in MODELLED_FINDINGS:
            present += a.labels[name] in ("1", "-1")
            absent += a.labels[name] == "0"
            if a.labels[name] != b.labels[name]:
                assert (a.labels[name], b.labels[name]) in {("1", ""), ("-1", ""), ("0", "1")}, (a.image_id, name)
                missed += b.labels[name] == ""
                spurious += b.labels[name] == "1"
        assert b.labels["No Finding"] == ("0" if any(b.labels[f] in ("1", "-1") for f in MODELLED_FINDINGS) else "1")
        assert {k: v for k, v in a.labels.items() if k not in MODELLED_FINDINGS and k != "No Finding"} == \
            {k: v for k, v in b.labels.items() if k not in MODELLED_FINDINGS and k != "No Finding"}
    assert _within(missed / present, 0.2, present) and _within(spurious / absent, 0.05, absent)


def test_noisy_labels_leave_report_masks_and_localizations_true_to_the_image(phantom_params) -> None:
    settings = phantom_params(seed=6, n_images=24, image_size=64,
                              label_noise={"missed_fraction": 0.5, "spurious_fraction": 0.2})
    manifest, localizations, _, masks = generate_dataset(settings)
    clean_manifest, clean_localizations, _, clean_masks = generate_dataset(replace(settings, label_noise=replace(
        settings.label_noise, missed_fraction=0.0, spurious_fraction=0.0)))
    assert localizations.equals(clean_localizations) and list(masks) == list(clean_masks)
    assert all(np.array_equal(np.asarray(masks[k]), np.asarray(clean_masks[k])) for k in masks)
    assert manifest["report"].equals(clean_manifest["report"])
    assert not manifest[list(MODELLED_FINDINGS)].equals(clean_manifest[list(MODELLED_FINDINGS)])
    found = localizations.groupby("image_id")["finding"].apply(set).to_dict()
    for plan in plan_dataset(settings):
        assert found.get(plan.image_id, set()) == {f.name for f in plan.findings}


def test_the_latent_model_does_not_move_the_other_streams(phantom_params) -> None:
    """Outcome and noise parameters change neither which findings a study shows nor how they
    are drawn; a study's shapes depend on its own finding list only."""
    base = phantom_params(seed=9, n_images=120)
    plans = plan_dataset(base)
    icu_changed = plan_dataset(replace(base, icu_admission=replace(base.icu_admission, intercept=0.0)))
    noise_changed = plan_dataset(replace(base, label_noise=replace(base.label_noise, missed_fraction=0.5)))
    for a, b, c in zip(plans, icu_changed, noise_changed, strict=True):
        assert a.findings == b.findings == c.findings and a.report == b.report == c.report
    assert [p.outcomes["outcome:icu_admission"] for p in plans] != [p.outcomes["outcome:icu_admission"] for p in icu_changed]
    # without heart failure, its patients' films change; a study with the same findings (and
    # causes) as before is drawn and captioned exactly as before
    fewer = plan_dataset(replace(base, diseases={**base.diseases, "heart_failure": replace(
        base.diseases["heart_failure"], prevalence=0.0)}))
    changed = 0
    for a, b in zip(plans, fewer, strict=True):
        if a.causes == b.causes:
            assert a.findings == b.findings and a.report == b.report, a.image_id
        else:
            changed += 1
            assert a.outcomes["outcome:heart_failure"] == "1", a.image_id
    assert changed > 0
    assert any(p.findings for p in plans if p.outcomes["outcome:heart_failure"] == "0")
