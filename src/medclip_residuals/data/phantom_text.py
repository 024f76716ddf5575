"""Captions and CheXpert labels of the phantom studies.

Captions name each finding and where it is, with the location words of the phenotype
vocabulary: the patient's `left` / `right`, `upper lung` / `middle lung` / `lower lung`, and
`near the heart`. Uncertain findings are hedged ("possible ..."), and their label is -1.
"""

from __future__ import annotations

import numpy as np

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.data.phantom_render import FindingSpec

# Findings the phantom draws; the other CheXpert columns are left empty (not mentioned).
MODELLED_FINDINGS = (
    "Pneumonia",
    "Consolidation",
    "Pleural Effusion",
    "Cardiomegaly",
    "Lung Lesion",
    "Pneumothorax",
    "Edema",
    "Atelectasis",
)
ZONE_WORDS = {"upper": "upper lung", "middle": "middle lung", "lower": "lower lung", "heart": "near the heart"}

# The two captions of the research slides, used verbatim.
SLIDE_PNEUMONIA = "there is some pneumonia near the heart"
SLIDE_EFFUSION = "there is pleural effusion on the lower lung"

NORMAL_CAPTIONS = (
    "no acute cardiopulmonary abnormality",
    "the lungs are clear",
    "normal chest radiograph",
    "the heart and lungs are normal",
    "the lungs are clear, no acute cardiopulmonary abnormality",
)

# (certain, uncertain) sentence templates; {side} is the patient's side, {zone} a zone phrase
_TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Pneumonia": (
        (
            "there is pneumonia in the {side} {zone}",
            "{side} {zone} pneumonia",
            "patchy airspace opacity in the {side} {zone}, consistent with pneumonia",
            "pneumonia on the {side}, {zone}",
        ),
        ("possible pneumonia in the {side} {zone}", "possible {side} {zone} pneumonia"),
    ),
    "Pneumonia@heart": (
        (
            SLIDE_PNEUMONIA,
            "there is pneumonia in the {side} lung near the heart",
            "{side} pneumonia near the heart",
            "patchy opacity on the {side} near the heart, consistent with pneumonia",
        ),
        ("possible pneumonia near the heart", "possible {side} pneumonia near the heart"),
    ),
    "Consolidation": (
        (
            "there is consolidation in the {side} {zone}",
            "{side} {zone} consolidation",
            "dense consolidation of the {side} {zone} with air bronchograms",
        ),
        ("possible consolidation in the {side} {zone}", "possible {side} {zone} consolidation"),
    ),
    "Consolidation@heart": (
        (
            "there is consolidation in the {side} lung near the heart",
            "{side} consolidation near the heart",
            "dense consolidation near the heart, on the {side}",
        ),
        ("possible consolidation near the heart, on the {side}",),
    ),
    "Pleural Effusion": (
        (
            SLIDE_EFFUSION,
            "{side} pleural effusion in the lower lung",
            "there is a {side} pleural effusion blunting the costophrenic angle of the lower lung",
            "{side} lower lung pleural effusion with a meniscus",
        ),
        ("possible {side} pleural effusion in the lower lung", "possible small pleural effusion on the {side} lower lung"),
    ),
    "Pleural Effusion@bilateral": (
        (
            SLIDE_EFFUSION,
            "bilateral pleural effusions in the lower lungs",
            "there are pleural effusions on the left and right lower lung",
        ),
        ("possible bilateral pleural effusions in the lower lungs",),
    ),
    "Cardiomegaly": (
        (
            "the heart is enlarged",
            "the heart is enlarged, consistent with cardiomegaly",
            "there is cardiomegaly, the heart is enlarged",
            "enlarged cardiac silhouette, consistent with cardiomegaly",
        ),
        ("possible cardiomegaly", "the heart is possibly enlarged, possible cardiomegaly"),
    ),
    "Lung Lesion": (
        (
            "there is a {lesion} in the {side} {zone}",
            "{side} {zone} {lesion}",
            "a rounded {lesion} in the {side} {zone}",
        ),
        ("possible {lesion} in the {side} {zone}",),
    ),
    "Pneumothorax": (
        (
            "there is a {side} pneumothorax in the upper lung",
            "{side} apical pneumothorax, upper lung",
            "pneumothorax on the {side}, upper lung, with a visible pleural line",
        ),
        ("possible {side} pneumothorax in the upper lung", "possible small apical pneumothorax on the {side}, upper lung"),
    ),
    "Edema": (
        (
            "there is pulmonary edema in both lungs",
            "bilateral perihilar haze in the middle lung, consistent with edema",
            "pulmonary edema in the left and right middle lung",
        ),
        ("possible pulmonary edema in both lungs", "possible mild edema in the middle lung on both sides"),
    ),
    "Atelectasis": (
        (
            "there is atelectasis in the {side} lower lung",
            "plate-like atelectasis of the {side} lower lung",
            "{side} lower lung atelectasis",
        ),
        ("possible atelectasis in the {side} lower lung", "possible {side} lower lung atelectasis"),
    ),
}
_JOINERS = (". ", "; ", ", and ")


def _template_key(finding: FindingSpec) -> str:
    if finding.zone == "heart" and finding.name in ("Pneumonia", "Consolidation"):
        return f"{finding.name}@heart"
    if finding.side == "bilateral" and finding.name == "Pleural Effusion":
        return "Pleural Effusion@bilateral"
    return finding.name


def finding_sentence(finding: FindingSpec, rng: np.random.Generator) -> str:
    """One sentence that names the finding and its location, hedged if uncertain."""
    certain, uncertain = _TEMPLATES[_template_key(finding)]
    options = uncertain if finding.uncertain else certain
    template = options[int(rng.integers(len(options)))]
    lesion = "mass" if finding.shape.get("radius", 0.0) >= 0.058 else "nodule"
    return template.format(side=finding.side, zone=ZONE_WORDS.get(finding.zone, ""), lesion=lesion)


def caption_sentences(findings: tuple[FindingSpec, ...], rng: np.random.Generator) -> tuple[str, ...]:
    """One sentence per finding (in the findings' order), or one normal phrase."""
    if not findings:
        return (NORMAL_CAPTIONS[int(rng.integers(len(NORMAL_CAPTIONS)))],)
    return tuple(finding_sentence(f, rng) for f in findings)


def join_sentences(sentences: tuple[str, ...], rng: np.random.Generator) -> str:
    """The report: the sentences joined in one of a few styles."""
    if len(sentences) == 1:
        return sentences[0]
    return _JOINERS[int(rng.integers(len(_JOINERS)))].join(sentences)


def caption(findings: tuple[FindingSpec, ...], rng: np.random.Generator) -> str:
    """The study's report: a normal phrase, or one sentence per finding."""
    return join_sentences(caption_sentences(findings, rng), rng)


def chexpert_labels(findings: tuple[FindingSpec, ...]) -> dict[str, str]:
    """The 14 CheXpert columns as strings: "1", "0", "-1", or "" (not mentioned)."""
    labels = {name: "" for name in CHEXPERT_FINDINGS}
    for name in MODELLED_FINDINGS:
        labels[name] = "0"
    for f in findings:
        labels[f.name] = "-1" if f.uncertain else "1"
    labels["No Finding"] = "0" if findings else "1"
    return labels
