"""The phenotyping pipeline as a SequentialRunner run on the synthetic study."""

from __future__ import annotations

import numpy as np
import pytest

from medclip_residuals.pipelines.phenotyping import create_pipeline


def run_phenotyping(study_module, study, params, device="cpu"):
    # the metrics are computed on the test role: here every image is a test image
    study_split = {"study_split": study["image_manifest"][["image_id", "patient_id"]].assign(role="test")}
    inputs = dict(study, **study_split, **{"params:phenotyping": params, "params:device": device})
    return study_module.run_pipeline(create_pipeline(), inputs)


def test_pipeline_finds_planted_phenotypes(study_module, study, phenotyping_params):
    out = run_phenotyping(study_module, study, phenotyping_params)
    n = len(study["image_embeddings"])
    assert len(out["phenotype_scores"]) == n
    assert len(out["phenotype_table"]) == 2 * n
    table = out["phenotype_table"]
    manifest = study["image_manifest"].set_index("image_id")
    pneumonia = manifest.index[manifest["Pneumonia"] == 1]
    top1 = table[table["rank"] == 1].set_index("image_id")["phenotype"]
    # the planted pneumonia images lean most towards the Pneumonia phrase
    assert (top1.loc[pneumonia] == "Pneumonia").mean() > 0.9

    w = out["phenotype_sentence_embeddings"]
    assert w["image_id"].tolist() == study["image_embeddings"]["image_id"].tolist()
    matrix = w.filter(regex=r"^e\d+$").to_numpy()
    assert matrix.shape == (n, 64) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    # one call to the encoder, each distinct sentence once
    calls = study["medclip_encoder"].calls
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == w["phenotypes"].nunique()

    metrics = out["phenotyping_metrics"]
    findings = metrics["evaluation"]["findings"]
    assert findings["n_images"] > 50
    # Pneumonia and Pleural Effusion are in the images; Atelectasis and Edema are not
    assert findings["hit_rate_at_k"] > findings["chance"]["hit_rate_at_k"] + 0.25
    assert findings["recall_at_k"] > 2 * findings["chance"]["recall_at_k"]
    assert findings["precision_at_k"] > 2 * findings["chance"]["precision_at_k"]
    assert metrics["evaluation"]["locations"]["n_images"] == len(pneumonia)
    assert metrics["phenotype_sources"] == {"predicted": n}


def test_pipeline_with_report_source_and_mean(study_module, study, phenotyping_params):
    """The reports' mentions come from the data_validation pipeline's report labeller (study.py)."""
    params = dict(phenotyping_params, source="report", strategy="mean")
    out = run_phenotyping(study_module, study, params)
    sources = out["phenotyping_metrics"]["phenotype_sources"]
    reports = study["image_manifest"]["report"]
    assert sources["fallback"] == int((reports == "").sum())
    assert sources["report"] == int((reports != "").sum())
    w = out["phenotype_sentence_embeddings"].set_index("image_id")
    named = {
        "Pneumonia": ["Pneumonia", "left", "lower lung"],
        "Pleural Effusion": ["Pleural Effusion"],
        "Atelectasis": ["Atelectasis"],
    }
    phrases = study_module.PHRASES
    manifest = study["image_manifest"].set_index("image_id")
    for image_id, row in manifest[reports.to_numpy() != ""].iterrows():
        expected = sorted({p for label, ps in named.items() if row[label] == 1 for p in ps}, key=phrases.index)
        assert w.loc[image_id, "phenotypes"] == ", ".join(expected)


def test_pipeline_rejects_k_larger_than_vocabulary(study_module, study, phenotyping_params):
    with pytest.raises(Exception, match="larger than the phenotype vocabulary"):
        run_phenotyping(study_module, study, dict(phenotyping_params, top_k=len(study_module.PHRASES) + 1))
