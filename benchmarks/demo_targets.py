"""How learnable the demo's outcome targets are, before any pixel is drawn.

    .venv/bin/python benchmarks/demo_targets.py                    # conf/base's demo_data
    .venv/bin/python benchmarks/demo_targets.py --seeds 1234,1,2,3,4 --test-fraction 0.15

Plans the demo dataset (`phantom.plan_dataset`: findings, labels and outcomes, no pixels) and
prints what a reader needs to check the intended prevalences: each finding's prevalence (what
the images show) and its positive labels (what the noisy labeller wrote), each outcome's
prevalence, the share of studies with 0, 1, 2 and 3+ findings, and the label-noise counts.

Then, per outcome, the ROC AUC of a logistic regression (the study's classifier: standardised
features, L2, C = 1) fitted on a training split and scored on a held-out split BY PATIENT
(`--test-fraction` of the patients), from two feature sets:
- `true findings`: each finding's presence and its severity as drawn (`finding_severity`), the
  lesion's radius and whether an effusion is bilateral, i.e. all an image can show about the
  outcome. An upper bound, in expectation, for an image model (the encoder sees the findings
  through pixels and noise; it cannot see more than the planned findings carry).
- `noisy labels`: the manifest's label columns (1 and -1 as two indicators): what a
  label-only model would get.
The first split (split seed 0) is printed with a 95% percentile-bootstrap CI over the test
studies; then the median and the 5th-95th percentile over `--splits` random patient splits
(the spread one test set of this size gives), and the same over the `--seeds` data seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medclip_residuals.data.phantom import PhantomParams, StudyPlan, finding_severity, plan_dataset  # noqa: E402
from medclip_residuals.data.phantom_latent import expected_finding_prevalence  # noqa: E402
from medclip_residuals.data.phantom_text import MODELLED_FINDINGS, chexpert_labels  # noqa: E402
from medclip_residuals.stats import bootstrap_ci, roc_auc  # noqa: E402

BAND = (0.70, 0.92)  # the band for the image-only AUC on the test role


def load_settings(seed: int | None, n_images: int | None) -> PhantomParams:
    raw = yaml.safe_load((ROOT / "conf/base/parameters_demo_data.yml").read_text())["demo_data"]
    del raw["grid"]
    if seed is not None:
        raw["seed"] = seed
    if n_images is not None:
        raw["n_images"] = n_images
    return PhantomParams.parse(raw, "demo_data")


def true_features(plan: StudyPlan) -> list[float]:
    """Presence and severity per finding, the lesion's radius, bilateral effusion."""
    by_name = {f.name: f for f in plan.findings}
    row: list[float] = []
    for name in MODELLED_FINDINGS:
        finding = by_name.get(name)
        row += [float(finding is not None), finding_severity(finding) if finding else 0.0]
    lesion, effusion = by_name.get("Lung Lesion"), by_name.get("Pleural Effusion")
    row.append(lesion.shape["radius"] if lesion else 0.0)
    row.append(float(effusion is not None and effusion.side == "bilateral"))
    return row


def label_features(plan: StudyPlan) -> list[float]:
    """The manifest's modelled label columns: 1 and -1 as two indicators each."""
    return [float(plan.labels[name] == value) for name in MODELLED_FINDINGS for value in ("1", "-1")]


def patient_split(patients: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test studies: a random `test_fraction` of the patients."""
    unique = np.unique(patients)
    rng = np.random.default_rng([seed, 99])
    test = rng.choice(unique, size=max(1, round(test_fraction * len(unique))), replace=False)
    return np.isin(patients, test)


def held_out_scores(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray | None:
    if len(set(y[~test])) < 2 or len(set(y[test])) < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    model.fit(x[~test], y[~test])
    return model.predict_proba(x[test])[:, 1]


def describe(plans: list[StudyPlan], settings: PhantomParams) -> None:
    n = len(plans)
    patients = {p.patient_id for p in plans}
    print(f"seed {settings.seed}: {n} studies of {len(patients)} patients")
    intended = expected_finding_prevalence(settings.finding_base_rates, settings.diseases)
    shown = Counter(f.name for p in plans for f in p.findings)
    labelled = Counter(name for p in plans for name in MODELLED_FINDINGS if p.labels[name] in ("1", "-1"))
    print("\nfinding            intended  shown (n)       labelled 1/-1 (n)")
    for name in MODELLED_FINDINGS:
        print(f"{name:18s} {intended.get(name, 0.0):8.3f} {shown[name] / n:6.3f} {shown[name]:5d}"
              f" {labelled[name] / n:10.3f} {labelled[name]:5d}")
    counts = Counter(min(len(p.findings), 3) for p in plans)
    print("\nfindings per study: " + ", ".join(f"{k if k < 3 else '3+'}: {counts[k] / n:.3f}" for k in range(4)))
    print(f"No Finding (labels): {sum(p.labels['No Finding'] == '1' for p in plans) / n:.3f}")

    print("\noutcome                  intended  studies (n)    patients (n)")
    intended_outcomes = {f"outcome:{name}": model.prevalence for name, model in settings.diseases.items()}
    intended_outcomes["outcome:icu_admission"] = float(np.mean([p.icu_probability for p in plans]))
    for column in plans[0].outcomes:
        positive_studies = sum(p.outcomes[column] == "1" for p in plans)
        positive_patients = len({p.patient_id for p in plans if p.outcomes[column] == "1"})
        print(f"{column:24s} {intended_outcomes[column]:8.3f}  {positive_studies / n:.3f} {positive_studies:5d}   "
              f"{positive_patients / len(patients):.3f} {positive_patients:5d}")
    print("(intended: a disease's prevalence among patients; ICU, the mean latent probability of the studies)")
    icu = np.array([p.outcomes["outcome:icu_admission"] == "1" for p in plans])
    print(f"ICU admission: AUC of its own latent probability (frailty known, all studies) "
          f"{roc_auc(icu, np.array([p.icu_probability for p in plans])):.3f}")

    missed = spurious = uncertain = present = absent = no_finding_flips = 0
    for p in plans:
        truth = chexpert_labels(p.findings)
        for name in MODELLED_FINDINGS:
            present += truth[name] in ("1", "-1")
            absent += truth[name] == "0"
            uncertain += p.labels[name] == "-1"
            missed += truth[name] in ("1", "-1") and p.labels[name] == ""
            spurious += truth[name] == "0" and p.labels[name] == "1"
        no_finding_flips += truth["No Finding"] != p.labels["No Finding"]
    print(f"\nlabel noise: missed {missed} of {present} present findings ({missed / present:.3f}), "
          f"spurious {spurious} of {absent} absent ({spurious / absent:.4f}), "
          f"uncertain (-1) {uncertain} ({uncertain / present:.3f} of present); No Finding changed on {no_finding_flips} studies")


def auc_table(plan_sets: list[list[StudyPlan]], test_fraction: float, splits: int, n_resamples: int) -> None:
    first = plan_sets[0]
    columns = list(first[0].outcomes)
    print(f"\nheld-out AUC by patient (test {test_fraction:.0%} of patients; band for the image model {BAND})")
    print("outcome                  features        split 0 [95% CI] (n test, pos)     "
          f"{splits} splits: median [5%, 95%]   {len(plan_sets)} seeds x {splits} splits: median [5%, 95%]")
    for column in columns:
        for features, name in ((true_features, "true findings"), (label_features, "noisy labels")):
            per_seed: list[float] = []
            first_seed: list[float] = []
            line = ""
            for k, plans in enumerate(plan_sets):
                x = np.array([features(p) for p in plans])
                y = np.array([p.outcomes[column] == "1" for p in plans], dtype=int)
                patients = np.array([p.patient_id for p in plans])
                for split in range(splits):
                    test = patient_split(patients, test_fraction, split)
                    scores = held_out_scores(x, y, test)
                    if scores is None:
                        continue
                    auc = roc_auc(y[test], scores)
                    per_seed.append(auc)
                    if k == 0:
                        first_seed.append(auc)
                    if k == 0 and split == 0:
                        ci = bootstrap_ci((y[test], scores), "roc_auc", n_resamples, seed=0)
                        line = (f"{ci['estimate']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] "
                                f"({int(test.sum())}, {int(y[test].sum())})")
            q1 = np.quantile(first_seed, [0.5, 0.05, 0.95])
            q = np.quantile(per_seed, [0.5, 0.05, 0.95])
            print(f"{column:24s} {name:15s} {line:34s} {q1[0]:.3f} [{q1[1]:.3f}, {q1[2]:.3f}]"
                  f"                    {q[0]:.3f} [{q[1]:.3f}, {q[2]:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=None, help="data seeds, comma-separated (default: conf/base's seed)")
    parser.add_argument("--n-images", type=int, default=None, help="default: conf/base's n_images")
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--splits", type=int, default=50, help="random patient splits per data seed")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples of the first split's CI")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    settings = [load_settings(seed, args.n_images) for seed in seeds]
    plan_sets = [plan_dataset(s) for s in settings]
    describe(plan_sets[0], settings[0])
    auc_table(plan_sets, args.test_fraction, args.splits, args.n_resamples)


if __name__ == "__main__":
    main()
