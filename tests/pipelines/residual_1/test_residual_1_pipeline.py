"""phenotyping + study_design + residual_1 as a SequentialRunner run: planted labels are learnt, random ones not.

The metrics are checked against independent recomputations from the stored predictions:
sklearn's ROC AUC, a percentile bootstrap redrawn with the same seed, the paired bootstrap's
p-value, and DeLong's test in its original O(m n) form.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from medclip_residuals.data.targets import target_labels
from medclip_residuals.pipelines.phenotyping import create_pipeline as phenotyping
from medclip_residuals.pipelines.residual_1 import create_pipeline as residual_1
from medclip_residuals.pipelines.study_design import create_pipeline as study_design

TARGETS = ["Edema", "Pneumonia", "Atelectasis", "Pleural Effusion"]
SEED = 1234


@pytest.fixture(scope="module")
def run(study_module, study, base_params):
    inputs = {k: v for k, v in study.items() if k != "phenotype_sentence_embeddings"}
    inputs.update(
        {
            "params:phenotyping": base_params("phenotyping", study_module.PHENOTYPING_OVERRIDES),
            "params:study_design": base_params("study_design", study_module.STUDY_DESIGN_OVERRIDES),
            "params:residual_1": base_params("residual_1", sweep={"top_k": [1, 2]}),
            "params:device": "cpu",
            "params:seed": SEED,
        }
    )
    return study_module.run_pipeline(phenotyping() + study_design() + residual_1(), inputs)


def _test_scores(predictions: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, image scores, residual_1 scores) of the test role, rows sorted by image_id."""
    test = predictions[(predictions["target"] == target) & (predictions["role"] == "test")]
    wide = test.pivot(index="image_id", columns="model", values="probability").sort_index()
    y = test.drop_duplicates("image_id").set_index("image_id").loc[wide.index, "y_true"].to_numpy()
    return y, wide["image"].to_numpy(), wide["residual_1"].to_numpy()


def _bootstrap_aucs(y: np.ndarray, scores: list[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """sklearn AUC of each score on resamples drawn as stats.py draws them (one seeded block)."""
    index = np.random.default_rng(seed).integers(0, len(y), size=(n_resamples, len(y)))
    return np.array([[roc_auc_score(y[row], s[row]) for s in scores] for row in index])


def _delong_p(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong, DeLong & Clarke-Pearson (1988) with the O(m n) kernel, two-sided p-value."""
    from scipy.stats import norm

    v10, v01 = [], []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    cov = np.cov(np.vstack(v10)) / len(v10[0]) + np.cov(np.vstack(v01)) / len(v01[0])
    z = (v10[0].mean() - v10[1].mean()) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return float(2 * norm.sf(abs(z)))


def test_metrics_match_independent_recomputation(run, study_module):
    metrics = run["residual_1_metrics"]
    json.dumps(metrics, allow_nan=False)  # a valid JSON document
    bootstrap = study_module.STUDY_DESIGN_OVERRIDES["bootstrap"]
    n_resamples = bootstrap["n_resamples"]
    assert metrics["bootstrap"] == {"n_resamples": n_resamples, "confidence": 0.95, "resample": bootstrap["resample"],
                                    "seed": SEED}
    assert metrics["selection"]["targets"] == TARGETS
    for target in TARGETS:
        block = metrics["targets"][target]
        y, image, residual = _test_scores(run["residual_1_predictions"], target)
        assert (block["n_test"], block["n_test_positive"]) == (len(y), int(y.sum()))
        resampled = _bootstrap_aucs(y, [image, residual], n_resamples, SEED)
        for column, (model, score) in enumerate((("image", image), ("residual_1", residual))):
            auc = block["auc"][model]
            assert auc["estimate"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
            low, high = np.quantile(resampled[:, column], [0.025, 0.975])
            assert (auc["low"], auc["high"]) == pytest.approx((low, high), abs=1e-12)
            assert auc["n_valid"] == n_resamples
        difference = block["residual_1_minus_image"]
        assert difference["method"] == "paired bootstrap"
        assert difference["difference"] == pytest.approx(roc_auc_score(y, residual) - roc_auc_score(y, image), abs=1e-12)
        d = resampled[:, 1] - resampled[:, 0]
        d = np.where(np.abs(d) < 1e-12, 0.0, d)  # a tie is a tie, whatever the rounding of either AUC
        assert difference["p_value"] == pytest.approx(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))), abs=1e-12)
        # the power statement: (z_0.975 + z_0.8) x the bootstrap standard error of the difference
        assert difference["standard_error"] == pytest.approx(np.std(d, ddof=1), abs=1e-12)
        assert difference["minimum_detectable_difference"] == pytest.approx((1.959964 + 0.841621) * np.std(d, ddof=1), rel=1e-5)
        delong = difference["delong"]
        assert (delong["auc_a"], delong["auc_b"]) == pytest.approx((roc_auc_score(y, residual), roc_auc_score(y, image)))
        if np.ptp(image) > 0 and not (delong["auc_a"] == delong["auc_b"] == 1.0):
            assert delong["p_value"] == pytest.approx(_delong_p(y, residual, image), rel=1e-6, abs=1e-12)


def test_planted_label_is_learnt_and_random_label_is_not(run):
    targets = run["residual_1_metrics"]["targets"]
    # Planted in the image: the image-only model separates them; its CI is far from [0, 1].
    for target in ("Pneumonia", "Pleural Effusion"):
        image = targets[target]["auc"]["image"]
        assert image["estimate"] > 0.95 and image["low"] > 0.9
        residual = targets[target]["auc"]["residual_1"]
        assert residual["estimate"] > 0.8 and residual["low"] > 0.7 and residual["high"] - residual["low"] < 0.25
    # Edema has no signal anywhere: chance AUC, and a CI that straddles 0.5 without being [0, 1].
    for model in ("image", "residual_1"):
        auc = targets["Edema"]["auc"][model]
        assert abs(auc["estimate"] - 0.5) < 0.15
        assert auc["low"] < 0.5 < auc["high"] and 0.1 < auc["high"] - auc["low"] < 0.4
    # Pleural Effusion: the image model is better than residual_1 by more than chance allows.
    effusion = targets["Pleural Effusion"]["residual_1_minus_image"]
    assert effusion["difference"] < -0.1 and effusion["high"] < 0 and effusion["p_value"] < 0.05
    assert effusion["delong"]["p_value"] < 0.01
    # Edema's two chance-level models do not differ significantly.
    assert targets["Edema"]["residual_1_minus_image"]["p_value"] > 0.05


def test_shuffled_labels_give_chance_auc(run):
    """The same stored predictions scored against permuted labels: AUC about 0.5."""
    y, image, _ = _test_scores(run["residual_1_predictions"], "Pleural Effusion")
    rng = np.random.default_rng(0)
    shuffled = [roc_auc_score(rng.permutation(y), image) for _ in range(200)]
    assert abs(np.mean(shuffled) - 0.5) < 0.02 and roc_auc_score(y, image) > np.max(shuffled)


def test_outputs_are_consistent(run, study):
    split = run["study_split"]
    predictions = run["residual_1_predictions"]
    manifest = study["image_manifest"].set_index("image_id")
    for target in TARGETS:
        labelled = split.assign(y=target_labels(manifest.loc[split["image_id"], target], "ignore"))
        labelled = labelled[labelled["y"].notna()]
        for model in ("image", "residual_1"):
            rows = predictions[(predictions["target"] == target) & (predictions["model"] == model)]
            # every labelled image once, in its own role, with its own label
            merged = rows.merge(labelled, on="image_id", suffixes=("", "_split"), validate="one_to_one")
            assert len(merged) == len(labelled) == len(rows)
            assert (merged["role"] == merged["role_split"]).all()
            np.testing.assert_array_equal(merged["y_true"], merged["y"].astype(int))
        train = predictions[(predictions["target"] == target) & (predictions["role"] == "head_train")]
        for model, group in train.groupby("model"):
            expected = roc_auc_score(group["y_true"], group["probability"])
            assert run["residual_1_metrics"]["targets"][target]["train_auc"][model] == pytest.approx(expected)
    assert run["residuals_1"]["image_id"].tolist() == study["image_embeddings"]["image_id"].astype(str).tolist()
    heads = sorted(run["residual_1_heads"]["metadata"]["heads"])
    assert heads == sorted(f"{t}/{m}" for t in TARGETS for m in ("image", "residual_1"))
    figure = run["residual_1_roc_plot"]
    assert isinstance(figure, Figure)
    assert [ax.get_title().split(" (")[0] for ax in figure.axes if ax.get_visible()] == TARGETS
    first = figure.axes[0]
    labels = [t.get_text() for t in first.get_legend().get_texts()]
    edema = run["residual_1_metrics"]["targets"]["Edema"]["auc"]
    assert f"AUC {edema['image']['estimate']:.3f}" in labels[0] and f"AUC {edema['residual_1']['estimate']:.3f}" in labels[1]


def test_the_sweep_covers_the_grid_and_agrees_with_the_run(run):
    sweep = run["residual_1_sweep"]
    assert len(sweep) == 2 * 2 * 2 * len(TARGETS)  # k in {1, 2} x strategies x sources x targets
    assert set(sweep["k"]) == {1, 2} and set(sweep["strategy"]) == {"sentence", "mean"}
    # the run's own setting (k 2, sentence, predicted) gives the run's own AUCs
    own = sweep[(sweep["k"] == 2) & (sweep["strategy"] == "sentence") & (sweep["source"] == "predicted")]
    for row in own.itertuples():
        block = run["residual_1_metrics"]["targets"][row.target]
        assert row.auc_residual_1 == pytest.approx(block["auc"]["residual_1"]["estimate"])
        assert row.auc_image == pytest.approx(block["auc"]["image"]["estimate"])
        assert row.difference == pytest.approx(block["residual_1_minus_image"]["difference"])
        assert row.minimum_detectable_difference > 0
    # the report source of a report that names nothing falls back to the top-k; predicted never does
    assert (sweep.loc[sweep["source"] == "predicted", "fallback_share"] == 0).all()
