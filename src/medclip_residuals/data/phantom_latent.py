"""The demo's latent model: patient diseases -> study findings -> outcomes, and label noise.

The classical latent disease -> finding model (noisy-OR, as in QMR-DT): each patient has or
has not each disease (drawn once per patient); each of a study's findings is present unless
every one of its causes fails, the causes being "other" (a base rate per finding: everything
the model does not name) and each disease the patient has (a rate per disease and finding).
So findings come from other causes too, and a diseased patient's film may show nothing.

Outcomes, the study's downstream targets (manifest columns `outcome:<name>`, "1" / "0"):
- `outcome:<disease>` for every disease: the patient's disease, the same on all their studies.
- `outcome:icu_admission`: a logistic function of how severe the study's findings look (their
  drawn shapes: a large pneumothorax, bilateral effusions, dense edema, an extensive
  pneumonia) plus an unobserved patient frailty, so the image cannot predict it perfectly.

Label noise, as a report labeller makes: a present finding's label is sometimes missed (left
empty) and an absent one rarely marked positive. Only the label columns are noisy; the
report and the masks stay true to the image.

Random streams (numpy generators seeded with lists, so adding one changes no other):
(seed, 4, patient) the diseases and the frailty, (seed, 5, image) which findings the study
shows and their report order, (seed, 6, image) the label noise, (seed, 7, image) the ICU
admission. Every draw is made whether or not it is used, so one outcome's parameters do not
shift another's draws.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from medclip_residuals.data.phantom_render import FindingSpec
from medclip_residuals.data.phantom_text import MODELLED_FINDINGS
from medclip_residuals.utils.params import ParameterError, Parameters

OUTCOME_PREFIX = "outcome:"
ICU_ADMISSION = "icu_admission"
OTHER_CAUSE = "other"  # a finding's causes outside the model (its base rate)
# Pairs not drawn together in one study (they look alike and would muddle the labels).
EXCLUSIVE_FINDINGS: tuple[frozenset[str], ...] = (frozenset({"Pneumonia", "Consolidation"}),)

_PATIENT_STREAM, _FINDING_STREAM, _LABEL_NOISE_STREAM, _ICU_STREAM = 4, 5, 6, 7


def _fraction(value: float, where: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"{where}: must be a fraction in [0, 1] (got {value!r})")


@dataclass(frozen=True)
class DiseaseModel(Parameters):
    """One latent disease: how many patients have it, and how often it shows each finding."""

    prevalence: float  # fraction of patients
    finding_rates: dict[str, float]  # finding -> P(the disease shows it on one study)

    def check(self, where: str) -> None:
        _fraction(self.prevalence, f"{where}.prevalence")
        unknown = sorted(set(self.finding_rates) - set(MODELLED_FINDINGS))
        if unknown:
            raise ParameterError(f"{where}.finding_rates: unknown findings {unknown}; known: {list(MODELLED_FINDINGS)}")
        for name, rate in self.finding_rates.items():
            _fraction(rate, f"{where}.finding_rates.{name}")


@dataclass(frozen=True)
class IcuModel(Parameters):
    """ICU admission: log-odds = intercept + the present findings' terms + frailty.

    A finding's term runs linearly from its first value (the mildest shape the generator
    draws) to its second (the most severe), by `finding_severity`.
    """

    intercept: float
    frailty_sd: float  # standard deviation of the patient's unobserved log-odds
    finding_log_odds: dict[str, tuple[float, float]]  # finding -> [mildest, most severe]

    def check(self, where: str) -> None:
        if self.frailty_sd < 0:
            raise ParameterError(f"{where}.frailty_sd: must be >= 0 (got {self.frailty_sd!r})")
        unknown = sorted(set(self.finding_log_odds) - set(MODELLED_FINDINGS))
        if unknown:
            raise ParameterError(f"{where}.finding_log_odds: unknown findings {unknown}; known: {list(MODELLED_FINDINGS)}")


@dataclass(frozen=True)
class LabelNoise(Parameters):
    """What the report labeller gets wrong, per finding label of a study."""

    missed_fraction: float  # of present findings, label left empty
    spurious_fraction: float  # of absent findings, label "1"

    def check(self, where: str) -> None:
        _fraction(self.missed_fraction, f"{where}.missed_fraction")
        _fraction(self.spurious_fraction, f"{where}.spurious_fraction")


@dataclass(frozen=True)
class Patient:
    """A patient's latent state: their diseases and unobserved frailty (log-odds)."""

    diseases: frozenset[str]
    frailty: float


def sample_patient(seed: int, patient_index: int, diseases: Mapping[str, DiseaseModel], frailty_sd: float) -> Patient:
    """Draw a patient's diseases (independent of each other) and frailty."""
    rng = np.random.default_rng([seed, _PATIENT_STREAM, patient_index])
    draws = rng.random(len(diseases))
    frailty = float(rng.standard_normal()) * frailty_sd
    has = frozenset(name for (name, model), u in zip(diseases.items(), draws) if u < model.prevalence)
    return Patient(has, frailty)


def finding_probability(name: str, base_rates: Mapping[str, float], diseases: Mapping[str, DiseaseModel],
                        has: frozenset[str]) -> float:
    """Noisy-OR: P(the finding is present) for a patient with the diseases `has`."""
    absent = 1.0 - float(base_rates.get(name, 0.0))
    for disease in has:
        absent *= 1.0 - diseases[disease].finding_rates.get(name, 0.0)
    return 1.0 - absent


def sample_study_findings(
    seed: int, image_index: int, base_rates: Mapping[str, float], diseases: Mapping[str, DiseaseModel],
    patient: Patient,
) -> tuple[dict[str, str], np.random.Generator]:
    """Which findings a study shows and the cause of each (`OTHER_CAUSE` or the first listed
    disease whose link fired), in the order of `base_rates`.

    Each finding draws one uniform per cause (its base rate, then each disease in order),
    whether or not the patient has the disease. Of an exclusive pair that both fire, one is
    kept with odds proportional to their noisy-OR probabilities. Returns the causes and the
    generator, to be used next for the report order (`report_order`).
    """
    rng = np.random.default_rng([seed, _FINDING_STREAM, image_index])
    causes: dict[str, str] = {}
    for name in base_rates:
        fired = [OTHER_CAUSE] if rng.random() < base_rates[name] else []
        for disease, model in diseases.items():
            u = rng.random()  # drawn for every disease, so that the stream does not depend on the patient
            if disease in patient.diseases and u < model.finding_rates.get(name, 0.0):
                fired.append(disease)
        if fired:
            diseases_fired = [c for c in fired if c != OTHER_CAUSE]
            causes[name] = diseases_fired[0] if diseases_fired else OTHER_CAUSE
    for pair in EXCLUSIVE_FINDINGS:
        first, second = sorted(pair)
        u = rng.random()
        if first in causes and second in causes:
            p_first = finding_probability(first, base_rates, diseases, patient.diseases)
            p_second = finding_probability(second, base_rates, diseases, patient.diseases)
            drop = second if u < p_first / (p_first + p_second) else first
            del causes[drop]
    return causes, rng


def expected_finding_prevalence(
    base_rates: Mapping[str, float], diseases: Mapping[str, DiseaseModel]
) -> dict[str, float]:
    """The intended share of studies showing each finding: the noisy-OR averaged over every
    combination of diseases (independent, at their prevalences), less what the exclusive
    pairs drop. What `plan_dataset` should give, within sampling error."""
    expected = dict.fromkeys(base_rates, 0.0)
    names = list(diseases)
    for combination in itertools.product((False, True), repeat=len(names)):
        weight = math.prod(diseases[d].prevalence if has else 1.0 - diseases[d].prevalence
                           for d, has in zip(names, combination))
        has = frozenset(d for d, flag in zip(names, combination) if flag)
        p = {name: finding_probability(name, base_rates, diseases, has) for name in base_rates}
        for pair in EXCLUSIVE_FINDINGS:
            first, second = sorted(pair)
            if first in p and second in p and p[first] + p[second] > 0:
                both = p[first] * p[second]
                keep_first = p[first] / (p[first] + p[second])
                p[first], p[second] = p[first] - both * (1 - keep_first), p[second] - both * keep_first
        for name in base_rates:
            expected[name] += weight * p[name]
    return expected


def report_order(findings: tuple[FindingSpec, ...], rng: np.random.Generator) -> tuple[FindingSpec, ...]:
    """The findings in the order the report names them (shuffled; drawing is additive, so the
    image does not depend on it)."""
    order = rng.permutation(len(findings))
    return tuple(findings[i] for i in order)


def icu_probability(findings: tuple[FindingSpec, ...], frailty: float, model: IcuModel,
                    severity: Mapping[str, float]) -> float:
    """P(ICU admission) of a study: the logistic of intercept + findings' terms + frailty.

    `severity` gives each finding's severity in [0, 1] (`phantom.finding_severity`).
    """
    log_odds = model.intercept + frailty
    for finding in findings:
        if finding.name in model.finding_log_odds:
            mild, severe = model.finding_log_odds[finding.name]
            log_odds += mild + (severe - mild) * severity[finding.name]
    return 1.0 / (1.0 + math.exp(-log_odds))


def sample_icu_admission(seed: int, image_index: int, probability: float) -> bool:
    """One Bernoulli draw from the study's own stream."""
    return bool(np.random.default_rng([seed, _ICU_STREAM, image_index]).random() < probability)


def noisy_labels(true_labels: Mapping[str, str], seed: int, image_index: int, noise: LabelNoise) -> dict[str, str]:
    """The CheXpert columns as a report labeller returns them.

    Each modelled finding draws one uniform (in MODELLED_FINDINGS order): a present label ("1"
    or "-1") is missed (left empty, as if not mentioned) with `missed_fraction`, an absent one
    ("0") becomes "1" with `spurious_fraction`. "No Finding" then follows the labeller's
    rule (CheXpert's): 1 when no finding is 1 or -1, else 0.
    """
    rng = np.random.default_rng([seed, _LABEL_NOISE_STREAM, image_index])
    labels = dict(true_labels)
    for name, u in zip(MODELLED_FINDINGS, rng.random(len(MODELLED_FINDINGS))):
        if labels[name] in ("1", "-1") and u < noise.missed_fraction:
            labels[name] = ""
        elif labels[name] == "0" and u < noise.spurious_fraction:
            labels[name] = "1"
    positive = any(labels[name] in ("1", "-1") for name in MODELLED_FINDINGS)
    labels["No Finding"] = "0" if positive else "1"
    return labels


def outcome_columns(diseases: Mapping[str, DiseaseModel]) -> tuple[str, ...]:
    """The manifest's outcome columns: one per disease, then ICU admission."""
    return (*(f"{OUTCOME_PREFIX}{name}" for name in diseases), f"{OUTCOME_PREFIX}{ICU_ADMISSION}")


def outcome_values(patient: Patient, diseases: Mapping[str, DiseaseModel], icu_admission: bool) -> dict[str, str]:
    """The study's outcome columns as "1" / "0" strings, as the label columns are written."""
    values = {f"{OUTCOME_PREFIX}{name}": "1" if name in patient.diseases else "0" for name in diseases}
    values[f"{OUTCOME_PREFIX}{ICU_ADMISSION}"] = "1" if icu_admission else "0"
    return values
