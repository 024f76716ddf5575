"""Procedural chest X-ray phantoms: the bundled demo dataset, with ground truth.

`generate_dataset(settings)` returns what the `demo_data` pipeline writes as a `data_root` in
the layout of DATA_CONTRACT.md: the manifest (one row per image, captions, the 14
CheXpert label columns and the `outcome:` columns), the localizations (one row per image and
finding, with a mask), and the images and masks as 8-bit grey Pillow images keyed by
partition name.

Which findings a study shows comes from a latent model (`phantom_latent`): diseases drawn
once per patient (heart failure, lung cancer) raise some findings' chances on each study,
beside each finding's base rate (a noisy-OR); the manifest's `outcome:` columns are the
diseases and an ICU admission that depends on how severe the findings look. The label columns
carry a report labeller's noise; the report and the masks are true to the image.

Determinism: a patient's anatomy comes from a generator seeded with (seed, 0, patient), a
study's pose, finding shapes and caption from (seed, 1, image), its noise from (seed, 3,
image), and the number of studies per patient from (seed, 2); the latent model's streams are
listed in `phantom_latent`. Any one image can be rendered alone (`render_image`), and the same
seed always gives the same bytes.

The drawing itself lives in `phantom_render` (anatomy and findings) and the captions and
labels in `phantom_text`. `PhantomParams` are the generator's settings: the `demo_data`
parameters (conf/base/parameters_demo_data.yml, the only place their defaults live) less the
grid figure's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from medclip_residuals.data.folders import DEMO_MARKER_HEADER
from medclip_residuals.data.labels import CHEXPERT_FINDINGS, LOCALIZATION_COLUMNS, LOCALIZATION_EXTRA_COLUMNS
from medclip_residuals.data.phantom_latent import (
    OTHER_CAUSE,
    DiseaseModel,
    IcuModel,
    LabelNoise,
    icu_probability,
    noisy_labels,
    outcome_columns,
    outcome_values,
    report_order,
    sample_icu_admission,
    sample_patient,
    sample_study_findings,
)
from medclip_residuals.data.phantom_render import (
    SIDES,
    FindingSpec,
    Rendered,
    render_study,
    sample_anatomy,
    sample_pose,
)
from medclip_residuals.data.phantom_text import (
    MODELLED_FINDINGS,
    caption_sentences,
    chexpert_labels,
    join_sentences,
)
from medclip_residuals.utils.params import ParameterError, Parameters

GENERATOR_VERSION = "3"

OPACITY_ZONES: tuple[str, ...] = ("upper", "middle", "lower", "heart")
_FOCAL = ("Pneumonia", "Consolidation", "Lung Lesion", "Atelectasis", "Pneumothorax")
MANIFEST_COLUMNS = ("image_id", "image_path", "patient_id", "report", "view", *CHEXPERT_FINDINGS)
_DISEASE_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Ranges of the shape numbers that say how severe a finding looks (`finding_severity`),
# drawn uniformly by `_sample_finding`: fractions of the lung's extent and amplitudes.
PNEUMOTHORAX_RIM = (0.09, 0.14)
PNEUMOTHORAX_EXTENT = (0.6, 0.85)
EFFUSION_DEPTH = (0.22, 0.36)
EDEMA_AMPLITUDE = (0.42, 0.55)
EDEMA_KERLEY_LINES = 4  # at most, per side
AIRSPACE_RADII = {  # (rx, rv) ranges
    "Pneumonia": ((0.1, 0.13), (0.08, 0.1)),
    "Consolidation": ((0.08, 0.11), (0.07, 0.09)),
}


@dataclass(frozen=True)
class PhantomParams(Parameters):
    """What the phantom generator draws: the `demo_data` parameters, less the grid figure's.

    Example (a few small images: pneumonia in the lower zones, and a disease that brings it):
        >>> settings = PhantomParams.parse({
        ...     "seed": 1234, "n_images": 8, "image_size": 64, "images_per_patient": [2, 4],
        ...     "uncertain_fraction": 0.05, "finding_base_rates": {"Pneumonia": 0.3},
        ...     "diseases": {"aspiration": {"prevalence": 0.5, "finding_rates": {"Pneumonia": 0.8}}},
        ...     "bilateral_effusion_fraction": {"other": 0.2}, "lesion_radius": {"other": [0.042, 0.07]},
        ...     "icu_admission": {"intercept": -2.0, "frailty_sd": 1.0,
        ...                       "finding_log_odds": {"Pneumonia": [0.5, 1.5]}},
        ...     "label_noise": {"missed_fraction": 0.03, "spurious_fraction": 0.002},
        ...     "opacity_zones": {"lower": 1.0}}, "demo_data")
        >>> plans = plan_dataset(settings)
        >>> len(plans), sorted(plans[0].outcomes)
        (8, ['outcome:aspiration', 'outcome:icu_admission'])
    """

    seed: int
    n_images: int
    image_size: int  # pixels, square
    images_per_patient: tuple[int, ...]  # [min, max] studies per patient
    uncertain_fraction: float
    finding_base_rates: dict[str, float]  # per study, the noisy-OR's "other" causes; the order is the draw's
    diseases: dict[str, DiseaseModel]  # patient-level; each gives an `outcome:<name>` column
    bilateral_effusion_fraction: dict[str, float]  # by the effusion's cause: "other" or a disease
    lesion_radius: dict[str, tuple[float, float]]  # by the lesion's cause: [min, max], fraction of the chest
    icu_admission: IcuModel
    label_noise: LabelNoise
    opacity_zones: dict[str, float]  # relative, per zone of OPACITY_ZONES; the order is the draw's

    def check(self, where: str) -> None:
        """Sizes, fractions and weights in range; findings and zones known."""

        def fail(key: str, problem: str) -> None:
            raise ParameterError(f"{where}.{key}: {problem} (got {getattr(self, key)!r})")

        for key, low in (("n_images", 1), ("image_size", 32)):
            if getattr(self, key) < low:
                fail(key, f"must be an integer >= {low}")
        if self.seed < 0:
            fail("seed", "must be a non-negative integer")
        per_patient = self.images_per_patient
        if len(per_patient) != 2 or not 1 <= per_patient[0] <= per_patient[1]:
            fail("images_per_patient", "must be [min, max] with 1 <= min <= max")
        if not 0.0 <= self.uncertain_fraction <= 1.0:
            fail("uncertain_fraction", "must be a fraction in [0, 1]")
        self._check_latent_model(fail)
        if set(self.opacity_zones) - set(OPACITY_ZONES) or sum(self.opacity_zones.values()) <= 0:
            fail("opacity_zones", "keys must be upper/middle/lower/heart with positive total weight")

    def _check_latent_model(self, fail: Callable[[str, str], None]) -> None:
        """Base rates, disease names and the findings they raise, the by-cause shapes."""
        unknown = sorted(set(self.finding_base_rates) - set(MODELLED_FINDINGS))
        if unknown:
            fail("finding_base_rates", f"unknown findings {unknown}; known: {list(MODELLED_FINDINGS)}")
        if any(not 0.0 <= rate <= 1.0 for rate in self.finding_base_rates.values()):
            fail("finding_base_rates", "every rate must be a fraction in [0, 1]")
        for disease in self.diseases:
            if not _DISEASE_NAME.fullmatch(disease) or disease == OTHER_CAUSE:
                fail("diseases", f"{disease!r} is not a name for a column outcome:<name> (lower case, digits, _; not 'other')")
            not_drawn = sorted(set(self.diseases[disease].finding_rates) - set(self.finding_base_rates))
            if not_drawn:
                fail("diseases", f"{disease} raises {not_drawn}, which finding_base_rates does not list (give them a rate, 0 for none)")
        causes = {OTHER_CAUSE, *self.diseases}
        for key in ("bilateral_effusion_fraction", "lesion_radius"):
            by_cause = getattr(self, key)
            if OTHER_CAUSE not in by_cause or set(by_cause) - causes:
                fail(key, f"keys must be {OTHER_CAUSE!r} and optionally disease names {sorted(self.diseases)}")
        if any(not 0.0 <= value <= 1.0 for value in self.bilateral_effusion_fraction.values()):
            fail("bilateral_effusion_fraction", "every value must be a fraction in [0, 1]")
        if any(len(r) != 2 or not 0.0 < r[0] <= r[1] for r in self.lesion_radius.values()):
            fail("lesion_radius", "every value must be [min, max] with 0 < min <= max")


@dataclass(frozen=True)
class StudyPlan:
    """Everything about one image except its pixels."""

    image_id: str
    patient_id: str
    image_index: int
    patient_index: int
    findings: tuple[FindingSpec, ...]  # what the image shows, in the report's order
    report: str
    sentences: tuple[str, ...]  # the report's sentence about each finding, in order
    causes: dict[str, str]  # finding -> what caused it: "other" or a disease (phantom_latent)
    labels: dict[str, str]  # the 14 CheXpert columns as the report labeller gives them (noisy)
    outcomes: dict[str, str]  # `outcome:<name>` -> "1" / "0"
    icu_probability: float  # the latent P(ICU admission) its outcome was drawn with


def mask_slug(finding: str) -> str:
    """File-name part of a finding's mask: "Pleural Effusion" -> "pleural_effusion"."""
    return finding.lower().replace(" ", "_")


# ----------------------------------------------------------------------------- planning


def studies_per_patient(n_images: int, low: int, high: int, seed: int) -> list[int]:
    """How many studies each patient has, summing to n_images, each in [low, high] if possible."""
    rng = np.random.default_rng([seed, 2])
    counts: list[int] = []
    total = 0
    while total < n_images:
        count = min(int(rng.integers(low, high + 1)), n_images - total)
        counts.append(count)
        total += count
    if len(counts) > 1 and counts[-1] < low:  # a short last patient: give or take one image
        short = low - counts[-1]
        if counts[-2] - short >= low:
            counts[-2] -= short
            counts[-1] += short
        else:
            last = counts.pop()
            counts[-1] += last
    return counts


def _zone_t(zone: str, rng: np.random.Generator) -> float:
    """Height of a zone's centre: within the lung (0 apex, 1 costophrenic angle), or for
    "heart" within the heart (0 its top, 1 the dome)."""
    return {
        "upper": rng.uniform(0.2, 0.26),
        "middle": rng.uniform(0.46, 0.54),
        "lower": rng.uniform(0.7, 0.76),
        "heart": rng.uniform(0.4, 0.6),
    }[zone]


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([float(weights[n]) for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _by_cause(values: dict, cause: str):
    return values.get(cause, values[OTHER_CAUSE])


def _sample_finding(
    name: str, rng: np.random.Generator, settings: PhantomParams, avoid: set[tuple[str, str]], cause: str
) -> FindingSpec:
    """Draw where a finding is and its shape (an effusion's sides and a lesion's size depend on
    its cause)."""
    uncertain = bool(rng.random() < settings.uncertain_fraction)
    side = SIDES[int(rng.integers(2))]
    if name in ("Pneumonia", "Consolidation", "Lung Lesion"):
        zones = dict(settings.opacity_zones) if name != "Lung Lesion" else {"upper": 1, "middle": 1, "lower": 1}
        for _ in range(8):  # not on top of the other focal finding
            zone = _choice(rng, zones)
            if (side, zone) not in avoid:
                break
            side = SIDES[int(rng.integers(2))]
        t = _zone_t(zone, rng)
        if name == "Lung Lesion":
            shape = {
                "t": t,
                "f": rng.uniform(0.35, 0.65) if zone != "lower" else rng.uniform(0.5, 0.7),
                "radius": rng.uniform(*_by_cause(settings.lesion_radius, cause)),
                "amp": rng.uniform(0.65, 0.85),
                "phase": rng.uniform(0, 2 * np.pi),
            }
        else:
            rx_range, rv_range = AIRSPACE_RADII[name]
            shape = {
                "t": t,
                "f": rng.uniform(0.35, 0.6) if zone != "lower" else rng.uniform(0.5, 0.68),
                "rx": rng.uniform(*rx_range),
                "rv": rng.uniform(*rv_range),
                "amp": rng.uniform(0.75, 0.9) if name == "Pneumonia" else rng.uniform(0.97, 1.0),
            }
        return FindingSpec(name, side, zone, uncertain, shape)
    if name == "Pleural Effusion":
        if rng.random() < _by_cause(settings.bilateral_effusion_fraction, cause):
            side = "bilateral"
        shape = {"depth": rng.uniform(*EFFUSION_DEPTH), "meniscus": rng.uniform(0.04, 0.08)}
        return FindingSpec(name, side, "lower", uncertain, shape)
    if name == "Cardiomegaly":
        shape = {"ra_scale": rng.uniform(1.8, 2.2), "lv_scale": rng.uniform(1.5, 1.75)}
        return FindingSpec(name, "", "heart", uncertain, shape)
    if name == "Pneumothorax":
        shape = {
            "rim": rng.uniform(*PNEUMOTHORAX_RIM),
            "extent": rng.uniform(*PNEUMOTHORAX_EXTENT),
            "lucency": rng.uniform(0.22, 0.3),
        }
        return FindingSpec(name, side, "upper", uncertain, shape)
    if name == "Edema":
        shape = {
            "sx": rng.uniform(0.1, 0.13),
            "sv": rng.uniform(0.12, 0.16),
            "amp": rng.uniform(*EDEMA_AMPLITUDE),
            "kerley": int(rng.integers(0, EDEMA_KERLEY_LINES + 1)),
        }
        return FindingSpec(name, "bilateral", "middle", uncertain, shape)
    if name == "Atelectasis":
        shape = {
            "t": rng.uniform(0.68, 0.76),
            "f": rng.uniform(0.4, 0.6),
            "angle": rng.uniform(-20.0, 15.0),
            "length": rng.uniform(0.18, 0.26),
            "half": rng.uniform(0.02, 0.03),
            "bow": rng.uniform(-0.01, 0.01),
            "lift": rng.uniform(0.015, 0.03),
        }
        return FindingSpec(name, side, "lower", uncertain, shape)
    raise ParameterError(f"demo_data.finding_base_rates: unknown finding {name!r}")


def _unit(value: float, low: float, high: float) -> float:
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def finding_severity(finding: FindingSpec) -> float:
    """How severe a finding looks, from its drawn shape: 0 at the mildest the generator draws,
    1 at the most severe. What the image shows of it, so an image model can see it:
    pneumothorax, the pleural air's size (rim x extent); pleural effusion, the fluid (depth,
    counted twice when bilateral); edema, the haze's density and the Kerley lines; pneumonia and
    consolidation, the opacity's area. Other findings: 0."""
    sh = finding.shape
    if finding.name == "Pneumothorax":
        low = PNEUMOTHORAX_RIM[0] * PNEUMOTHORAX_EXTENT[0]
        return _unit(sh["rim"] * sh["extent"], low, PNEUMOTHORAX_RIM[1] * PNEUMOTHORAX_EXTENT[1])
    if finding.name == "Pleural Effusion":
        sides = 2 if finding.side == "bilateral" else 1
        return _unit(sides * sh["depth"], EFFUSION_DEPTH[0], 2 * EFFUSION_DEPTH[1])
    if finding.name == "Edema":
        return 0.5 * _unit(sh["amp"], *EDEMA_AMPLITUDE) + 0.5 * sh["kerley"] / EDEMA_KERLEY_LINES
    if finding.name in AIRSPACE_RADII:
        (rx0, rx1), (rv0, rv1) = AIRSPACE_RADII[finding.name]
        return _unit(sh["rx"] * sh["rv"], rx0 * rv0, rx1 * rv1)
    return 0.0


def sample_findings(
    rng: np.random.Generator, settings: PhantomParams, causes: dict[str, str]
) -> tuple[FindingSpec, ...]:
    """The shapes of the study's findings (`causes`: name -> cause, in drawing order); a focal
    finding avoids the lung zone of one drawn before it."""
    findings: list[FindingSpec] = []
    taken: set[tuple[str, str]] = set()
    for name, cause in causes.items():
        spec = _sample_finding(name, rng, settings, taken, cause)
        if name in _FOCAL:
            taken.add((spec.side, spec.zone))
        findings.append(spec)
    return tuple(findings)


def plan_dataset(settings: PhantomParams) -> list[StudyPlan]:
    """Ids, patients, findings, captions, labels and outcomes of every study, without drawing
    any pixels."""
    seed = settings.seed
    low, high = settings.images_per_patient
    counts = studies_per_patient(settings.n_images, low, high, seed)
    width = max(4, len(str(len(counts))))
    plans = []
    index = 0
    for p, count in enumerate(counts):
        patient_id = f"p{p + 1:0{width}d}"
        patient = sample_patient(seed, p, settings.diseases, settings.icu_admission.frailty_sd)
        for s in range(count):
            causes, order_rng = sample_study_findings(seed, index, settings.finding_base_rates, settings.diseases, patient)
            rng = np.random.default_rng([seed, 1, index])
            sample_pose(rng)  # the pose comes first in this stream (see render_image)
            findings = report_order(sample_findings(rng, settings, causes), order_rng)
            sentences = caption_sentences(findings, rng)
            report = join_sentences(sentences, rng)
            labels = noisy_labels(chexpert_labels(findings), seed, index, settings.label_noise)
            severity = {f.name: finding_severity(f) for f in findings}
            p_icu = icu_probability(findings, patient.frailty, settings.icu_admission, severity)
            outcomes = outcome_values(patient, settings.diseases, sample_icu_admission(seed, index, p_icu))
            plans.append(StudyPlan(
                f"{patient_id}_s{s + 1:02d}", patient_id, index, p, findings, report, sentences,
                causes={f.name: causes[f.name] for f in findings}, labels=labels, outcomes=outcomes,
                icu_probability=p_icu,
            ))
            index += 1
    return plans


def render_image(plan: StudyPlan, settings: PhantomParams) -> Rendered:
    """Draw one planned study (independent of every other study)."""
    seed = settings.seed
    anatomy = sample_anatomy(np.random.default_rng([seed, 0, plan.patient_index]))
    pose = sample_pose(np.random.default_rng([seed, 1, plan.image_index]))
    noise_rng = np.random.default_rng([seed, 3, plan.image_index])
    return render_study(anatomy, pose, plan.findings, settings.image_size, noise_rng)


# ----------------------------------------------------------------------------- dataset


def generate_dataset(
    settings: PhantomParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Image.Image], dict[str, Image.Image]]:
    """Plan and draw the whole demo dataset.

    Returns the manifest (the label columns as the report labeller gives them, then the
    `outcome:` columns), the localizations (the findings the image shows), the images keyed by
    image_id and the masks keyed by "<image_id>_<finding slug>" (8-bit grey, masks 0/255).
    """
    plans = plan_dataset(settings)
    manifest_rows, loc_rows = [], []
    images: dict[str, Image.Image] = {}
    masks: dict[str, Image.Image] = {}
    for plan in plans:
        rendered = render_image(plan, settings)
        images[plan.image_id] = Image.fromarray(rendered.image)
        manifest_rows.append(
            {
                "image_id": plan.image_id,
                "image_path": f"images/{plan.image_id}.png",
                "patient_id": plan.patient_id,
                "report": plan.report,
                "view": "PA",
                **plan.labels,
                **plan.outcomes,
            }
        )
        for finding in plan.findings:
            key = f"{plan.image_id}_{mask_slug(finding.name)}"
            mask = rendered.masks[finding.name]
            if not mask.any():  # cannot happen for sane sizes; say so rather than write nothing
                raise RuntimeError(f"{plan.image_id}: the mask of {finding.name} is empty at image_size {settings.image_size}")
            masks[key] = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
            loc_rows.append(
                {
                    "image_id": plan.image_id,
                    "finding": finding.name,
                    "mask_path": f"masks/{key}.png",
                    "x": np.nan,
                    "y": np.nan,
                    "w": np.nan,
                    "h": np.nan,
                    "side": finding.side,
                    "zone": finding.zone,
                }
            )
    manifest = pd.DataFrame(manifest_rows, columns=[*MANIFEST_COLUMNS, *outcome_columns(settings.diseases)])
    localizations = pd.DataFrame(loc_rows, columns=[*LOCALIZATION_COLUMNS, *LOCALIZATION_EXTRA_COLUMNS])
    return manifest, localizations, images, masks


def demo_marker(settings: PhantomParams) -> str:
    """The text of the demo's marker file (data/folders.py): which generator, seed and size
    made the folder, and that it is the demo's own, safe to overwrite."""
    return (
        f"{DEMO_MARKER_HEADER} (procedural chest X-ray phantoms)\n"
        f"version: {GENERATOR_VERSION}\n"
        f"seed: {settings.seed}\n"
        f"n_images: {settings.n_images}\n"
        f"image_size: {settings.image_size}\n"
    )
