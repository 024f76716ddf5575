"""Procedural chest X-ray phantoms: the bundled demo dataset, with ground truth.

`generate_dataset(settings)` returns what the `demo_data` pipeline writes as a `data_root` in
the layout of DATA_CONTRACT.md: the manifest (one row per image, captions and the 14
CheXpert label columns), the localizations (one row per image and finding, with a mask),
and the images and masks as 8-bit grey Pillow images keyed by partition name.

Determinism: a patient's anatomy comes from a generator seeded with (seed, 0, patient), a
study's pose, findings and caption from (seed, 1, image), its noise from (seed, 3, image),
and the number of studies per patient from (seed, 2). Any one image can be rendered alone
(`render_image`), and the same seed always gives the same bytes.

The drawing itself lives in `phantom_render` (anatomy and findings) and the captions and
labels in `phantom_text`. `PhantomParams` are the generator's settings: the `demo_data`
parameters (conf/base/parameters_demo_data.yml, the only place their defaults live) less the
grid figure's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from medclip_residuals.data.folders import DEMO_MARKER_HEADER
from medclip_residuals.data.labels import CHEXPERT_FINDINGS, LOCALIZATION_COLUMNS, LOCALIZATION_EXTRA_COLUMNS
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

GENERATOR_VERSION = "2"

OPACITY_ZONES: tuple[str, ...] = ("upper", "middle", "lower", "heart")
# Pairs not drawn together in one study (they look alike and would muddle the labels).
_EXCLUSIVE = {frozenset({"Pneumonia", "Consolidation"})}
_FOCAL = ("Pneumonia", "Consolidation", "Lung Lesion", "Atelectasis", "Pneumothorax")
MANIFEST_COLUMNS = ("image_id", "image_path", "patient_id", "report", "view", *CHEXPERT_FINDINGS)


@dataclass(frozen=True)
class PhantomParams(Parameters):
    """What the phantom generator draws: the `demo_data` parameters, less the grid figure's.

    Example (a few small images, pneumonia in the lower zones only):
        >>> settings = PhantomParams.parse({
        ...     "seed": 1234, "n_images": 8, "image_size": 64, "images_per_patient": [2, 4],
        ...     "normal_fraction": 0.3, "two_finding_fraction": 0.2, "uncertain_fraction": 0.05,
        ...     "bilateral_effusion_fraction": 0.2, "finding_frequencies": {"Pneumonia": 1.0},
        ...     "opacity_zones": {"lower": 1.0}}, "demo_data")
        >>> len(plan_dataset(settings))
        8
    """

    seed: int
    n_images: int
    image_size: int  # pixels, square
    images_per_patient: tuple[int, ...]  # [min, max] studies per patient
    normal_fraction: float
    two_finding_fraction: float
    uncertain_fraction: float
    bilateral_effusion_fraction: float
    finding_frequencies: dict[str, float]  # relative, per modelled finding; the order is the draw's
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
        for key in ("normal_fraction", "two_finding_fraction", "uncertain_fraction", "bilateral_effusion_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                fail(key, "must be a fraction in [0, 1]")
        unknown = sorted(set(self.finding_frequencies) - set(MODELLED_FINDINGS))
        if unknown:
            fail("finding_frequencies", f"unknown findings {unknown}; known: {list(MODELLED_FINDINGS)}")
        weights = self.finding_frequencies.values()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            fail("finding_frequencies", "weights must be >= 0 and not all zero")
        if set(self.opacity_zones) - set(OPACITY_ZONES) or sum(self.opacity_zones.values()) <= 0:
            fail("opacity_zones", "keys must be upper/middle/lower/heart with positive total weight")


@dataclass(frozen=True)
class StudyPlan:
    """Everything about one image except its pixels."""

    image_id: str
    patient_id: str
    image_index: int
    patient_index: int
    findings: tuple[FindingSpec, ...]
    report: str
    sentences: tuple[str, ...]  # the report's sentence about each finding, in order


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


def _sample_finding(
    name: str, rng: np.random.Generator, settings: PhantomParams, avoid: set[tuple[str, str]]
) -> FindingSpec:
    """Draw where a finding is and its shape."""
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
                "radius": rng.uniform(0.042, 0.07),
                "amp": rng.uniform(0.65, 0.85),
                "phase": rng.uniform(0, 2 * np.pi),
            }
        else:
            shape = {
                "t": t,
                "f": rng.uniform(0.35, 0.6) if zone != "lower" else rng.uniform(0.5, 0.68),
                "rx": rng.uniform(0.1, 0.13) if name == "Pneumonia" else rng.uniform(0.08, 0.11),
                "rv": rng.uniform(0.08, 0.1) if name == "Pneumonia" else rng.uniform(0.07, 0.09),
                "amp": rng.uniform(0.75, 0.9) if name == "Pneumonia" else rng.uniform(0.97, 1.0),
            }
        return FindingSpec(name, side, zone, uncertain, shape)
    if name == "Pleural Effusion":
        if rng.random() < settings.bilateral_effusion_fraction:
            side = "bilateral"
        shape = {"depth": rng.uniform(0.22, 0.36), "meniscus": rng.uniform(0.04, 0.08)}
        return FindingSpec(name, side, "lower", uncertain, shape)
    if name == "Cardiomegaly":
        shape = {"ra_scale": rng.uniform(1.8, 2.2), "lv_scale": rng.uniform(1.5, 1.75)}
        return FindingSpec(name, "", "heart", uncertain, shape)
    if name == "Pneumothorax":
        shape = {"rim": rng.uniform(0.09, 0.14), "extent": rng.uniform(0.6, 0.85), "lucency": rng.uniform(0.22, 0.3)}
        return FindingSpec(name, side, "upper", uncertain, shape)
    if name == "Edema":
        shape = {
            "sx": rng.uniform(0.1, 0.13),
            "sv": rng.uniform(0.12, 0.16),
            "amp": rng.uniform(0.42, 0.55),
            "kerley": int(rng.integers(0, 5)),
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
    raise ParameterError(f"demo_data.finding_frequencies: unknown finding {name!r}")


def sample_findings(rng: np.random.Generator, settings: PhantomParams) -> tuple[FindingSpec, ...]:
    """None (a normal study), one finding, or two different, compatible findings."""
    if rng.random() < settings.normal_fraction:
        return ()
    weights = {k: float(w) for k, w in settings.finding_frequencies.items() if float(w) > 0}
    names = [_choice(rng, weights)]
    if rng.random() < settings.two_finding_fraction:
        rest = {k: w for k, w in weights.items() if k != names[0] and frozenset({k, names[0]}) not in _EXCLUSIVE}
        if rest:
            names.append(_choice(rng, rest))
    findings: list[FindingSpec] = []
    taken: set[tuple[str, str]] = set()
    for name in names:
        spec = _sample_finding(name, rng, settings, taken)
        if name in _FOCAL:
            taken.add((spec.side, spec.zone))
        findings.append(spec)
    return tuple(findings)


def plan_dataset(settings: PhantomParams) -> list[StudyPlan]:
    """Ids, patients, findings and captions of every study, without drawing any pixels."""
    low, high = settings.images_per_patient
    counts = studies_per_patient(settings.n_images, low, high, settings.seed)
    width = max(4, len(str(len(counts))))
    plans = []
    index = 0
    for p, count in enumerate(counts):
        patient_id = f"p{p + 1:0{width}d}"
        for s in range(count):
            rng = np.random.default_rng([settings.seed, 1, index])
            sample_pose(rng)  # the pose comes first in this stream (see render_image)
            findings = sample_findings(rng, settings)
            sentences = caption_sentences(findings, rng)
            report = join_sentences(sentences, rng)
            plans.append(StudyPlan(f"{patient_id}_s{s + 1:02d}", patient_id, index, p, findings, report, sentences))
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

    Returns the manifest, the localizations, the images keyed by image_id and the masks
    keyed by "<image_id>_<finding slug>" (8-bit grey, masks 0/255).
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
                **chexpert_labels(plan.findings),
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
    manifest = pd.DataFrame(manifest_rows, columns=list(MANIFEST_COLUMNS))
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
