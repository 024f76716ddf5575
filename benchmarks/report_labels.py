"""The report labeller against MeSH codes of real reports, and its speed.

    .venv/bin/python benchmarks/report_labels.py                       # the IU dev set
    .venv/bin/python benchmarks/report_labels.py --reports other.csv --rules my_rules.yml

Input: a CSV in the format of ../shared/real_reports/iu_xray_reports_dev.csv (columns
`findings`, `impression`, `mesh_major`; see that folder's README). The text labelled is
"FINDINGS: <findings> IMPRESSION: <impression>", which `report_sections` reads back as the
two sections (the INDICATION is not read).

Reference: a finding is present where one of the report's MeSH codes maps to it, absent
otherwise. A code with qualifiers (`Opacity/lung/base/left`) maps by its first part, except
where a qualifier decides (noted). The mapping:

| CheXpert finding | MeSH codes |
| --- | --- |
| No Finding | `normal`, or only Support Devices codes (CheXpert's No Finding allows devices) |
| Enlarged Cardiomediastinum | `Mediastinum/.../enlarged` or `/prominent` |
| Cardiomegaly | `Cardiomegaly`; `Cardiac Shadow/.../enlarged` |
| Lung Lesion | `Nodule`, `Mass`, `Neoplasms`, `Lung Neoplasms` |
| Lung Opacity | `Opacity`, `Infiltrate`, `Density`, `Airspace Disease` |
| Edema | `Pulmonary Edema`, `Pulmonary Congestion` |
| Consolidation | `Consolidation` |
| Pneumonia | `Pneumonia` |
| Atelectasis | `Pulmonary Atelectasis` |
| Pneumothorax | `Pneumothorax`, `Hemopneumothorax` |
| Pleural Effusion | `Pleural Effusion` (not `Costophrenic Angle/blunted`: MeSH codes blunting apart) |
| Pleural Other | `Pleura`, `Cicatrix/pleura...`, `Thickening/pleura...` |
| Fracture | `Fractures, Bone`, `Rib Fractures`, `Fractures, Compression` |
| Support Devices | `Implanted Medical Device`, `Medical Device`, `Catheters, Indwelling`, `Central Venous Catheters`, `Tube, Inserted`, `Surgical Instruments`, `Stents`, `Pacemaker, Artificial`, `Heart Valve Prosthesis`, `Sutures`, `Electrodes, Implanted` |

Lung Opacity is the opacity codes only, as the labeller's Lung Opacity is its opacity
phrases only (neither propagates CheXpert's hierarchy, in which atelectasis, edema,
consolidation and pneumonia are opacities too).

Printed per finding: reference positives; precision, recall and F1 of the labeller's
affirmed labels (1) against MeSH presence; then for negations, among the reports where the
labeller mentions the finding (any label), precision, recall and F1 of its 0 against MeSH
absence (No Finding is never 0: the labeller leaves it empty when something is positive). The last line is `macro F1 <x> over <n> findings`: the mean affirmed F1 over
findings with at least 10 reference positives. Then speed: the labelling is timed on the
reports repeated to at least 2,000 (after one warm-up), in this process, one thread.

MeSH codes are the annotators' main findings, not labels of every sentence: a finding a
report affirms but that was not coded counts here as a false positive.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medclip_residuals.data.labels import CHEXPERT_FINDINGS  # noqa: E402
from medclip_residuals.data.report_labels import DEFAULT_RULES_FILE, ReportLabeller, load_label_rules  # noqa: E402

DEFAULT_REPORTS = ROOT.parent / "shared" / "real_reports" / "iu_xray_reports_dev.csv"
MIN_POSITIVES = 10
MIMIC_REPORTS = 227_000

_BY_CODE = {
    "normal": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Nodule": "Lung Lesion", "Mass": "Lung Lesion", "Neoplasms": "Lung Lesion", "Lung Neoplasms": "Lung Lesion",
    "Opacity": "Lung Opacity", "Infiltrate": "Lung Opacity", "Density": "Lung Opacity", "Airspace Disease": "Lung Opacity",
    "Pulmonary Edema": "Edema", "Pulmonary Congestion": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Pulmonary Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax", "Hemopneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion",
    "Pleura": "Pleural Other",
    "Fractures, Bone": "Fracture", "Rib Fractures": "Fracture", "Fractures, Compression": "Fracture",
}
_DEVICES = {
    "Implanted Medical Device", "Medical Device", "Catheters, Indwelling", "Central Venous Catheters",
    "Tube, Inserted", "Surgical Instruments", "Stents", "Pacemaker, Artificial", "Heart Valve Prosthesis",
    "Sutures", "Electrodes, Implanted",
}


def mesh_findings(mesh: str) -> set[str]:
    """The CheXpert findings that a report's `mesh_major` codes name (see the table above)."""
    found: set[str] = set()
    for code in str(mesh).split("|"):
        parts = [part.strip() for part in code.split("/")]
        head, qualifiers = parts[0], set(parts[1:])
        if head in _BY_CODE:
            found.add(_BY_CODE[head])
        if head in _DEVICES:
            found.add("Support Devices")
        if head == "Cardiac Shadow" and "enlarged" in qualifiers:
            found.add("Cardiomegaly")
        if head == "Mediastinum" and qualifiers & {"enlarged", "prominent"}:
            found.add("Enlarged Cardiomediastinum")
        if head in {"Cicatrix", "Thickening"} and any(q.startswith("pleura") for q in qualifiers):
            found.add("Pleural Other")
    if found == {"Support Devices"} and all(code.split("/")[0].strip() in _DEVICES for code in str(mesh).split("|")):
        found.add("No Finding")
    return found


def report_texts(frame: pd.DataFrame) -> list[str]:
    """FINDINGS + IMPRESSION of each row, as headed sections."""
    texts = []
    for findings, impression in zip(frame["findings"], frame["impression"], strict=True):
        parts = [f"FINDINGS: {findings}" if str(findings).strip() else "", f"IMPRESSION: {impression}" if str(impression).strip() else ""]
        texts.append(" ".join(part for part in parts if part))
    return texts


def _prf(predicted: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    tp = int((predicted & reference).sum())
    precision = tp / int(predicted.sum()) if predicted.sum() else math.nan
    recall = tp / int(reference.sum()) if reference.sum() else math.nan
    if not reference.sum():
        return precision, recall, math.nan  # no reference positives: F1 undefined
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def _fmt(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="CSV with findings, impression, mesh_major")
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES_FILE, help="the rules file")
    args = parser.parse_args()

    frame = pd.read_csv(args.reports, dtype=str, keep_default_na=False)
    texts = report_texts(frame)
    reference = [mesh_findings(mesh) for mesh in frame["mesh_major"]]
    started = time.perf_counter()
    labeller = ReportLabeller(load_label_rules(args.rules))
    build_s = time.perf_counter() - started
    result = labeller.label(texts)
    labels = result.labels

    print(f"{len(texts)} reports from {args.reports}; rules {args.rules}")
    print(f"report_status: {result.status_counts()}; truncated {result.n_truncated}")
    print(f"{'finding':<27}{'pos':>5} | {'affirmed P':>10}{'R':>7}{'F1':>7} | {'mentioned':>9}{'absent':>7} {'negated P':>9}{'R':>7}{'F1':>7}")
    scored = []
    for finding in CHEXPERT_FINDINGS:
        present = np.array([finding in found for found in reference])
        value = labels[finding].to_numpy(dtype=float)
        precision, recall, f1 = _prf(value == 1.0, present)
        mentioned = ~np.isnan(value)
        n_precision, n_recall, n_f1 = _prf((value == 0.0)[mentioned], ~present[mentioned])
        if present.sum() >= MIN_POSITIVES:
            scored.append(f1)
        print(
            f"{finding:<27}{int(present.sum()):>5} | {_fmt(precision):>10}{_fmt(recall):>7}{_fmt(f1):>7} | "
            f"{int(mentioned.sum()):>9}{int((~present[mentioned]).sum()):>7} {_fmt(n_precision):>9}{_fmt(n_recall):>7}{_fmt(n_f1):>7}"
        )

    repeat = max(1, math.ceil(2000 / max(1, len(texts))))
    labeller.label(texts[:50])  # warm-up
    started = time.perf_counter()
    labeller.label(texts * repeat)
    seconds = time.perf_counter() - started
    per_second = repeat * len(texts) / seconds
    chars = sum(len(text) for text in texts) / max(1, len(texts))
    print(
        f"speed: {per_second:,.0f} reports/s ({repeat * len(texts)} reports of {chars:,.0f} characters on average, "
        f"one process, pipeline built in {build_s:.1f} s); {MIMIC_REPORTS:,} reports (MIMIC-CXR) would take "
        f"{MIMIC_REPORTS / per_second / 60:.1f} min at this rate"
    )
    macro = float(np.mean(scored)) if scored else math.nan
    print(f"macro F1 {macro:.3f} over {len(scored)} findings")


if __name__ == "__main__":
    main()
