"""residual_1 nodes: residual arithmetic, heads, metrics (on study_design's roles and targets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.models.heads import heads_from_tensors
from medclip_residuals.pipelines.residual_1.nodes import compute_residuals_1, evaluate_residual_1, train_residual_1
from medclip_residuals.pipelines.study_design.nodes import select_targets
from medclip_residuals.utils.frames import matrix_to_embeddings


def test_residuals_are_i_minus_w_aligned_by_id():
    images = matrix_to_embeddings(["a", "b"], np.array([[1.0, 2.0], [3.0, 5.0]]))
    w = matrix_to_embeddings(["b", "a"], np.array([[0.5, 0.5], [1.0, 1.0]]))  # other order
    r = compute_residuals_1(images, w)
    assert r["image_id"].tolist() == ["a", "b"]
    np.testing.assert_array_equal(r[["e000", "e001"]].to_numpy(), [[0.0, 1.0], [2.5, 4.5]])
    with pytest.raises(ValueError, match="different image ids: 1 in image_embeddings only"):
        compute_residuals_1(images, w.iloc[:1])
    with pytest.raises(ValueError, match="'concat' gives k x D"):
        compute_residuals_1(images, matrix_to_embeddings(["a", "b"], np.ones((2, 4))))
    broken = w.copy()
    broken.loc[0, "e001"] = np.nan
    with pytest.raises(ValueError, match=r"phenotype_sentence_embeddings: row 0 \(image_id='b'\), column 'e001'"):
        compute_residuals_1(images, broken)


def test_heads_reproduce_the_predictions(study, study_design_params, study_split):
    split = study_split
    targets = select_targets(study["image_manifest"], split, dict(study_design_params, targets=["Pneumonia"]))
    residuals = compute_residuals_1(study["image_embeddings"], study["phenotype_sentence_embeddings"])
    heads, predictions = train_residual_1(
        study["image_embeddings"], residuals, study["image_manifest"], split, targets, study_design_params, 1234
    )
    assert set(predictions["model"]) == {"image", "residual_1"}
    assert set(predictions["role"]) == {"head_train", "validation", "test"}
    modules = heads_from_tensors(heads["tensors"], heads["metadata"])
    assert sorted(modules) == ["Pneumonia/image", "Pneumonia/residual_1"]
    image = study["image_embeddings"].set_index("image_id")
    w = study["phenotype_sentence_embeddings"].set_index("image_id").filter(regex=r"^e\d+$")
    for model, module in modules.items():
        rows = predictions[predictions["model"] == model.split("/")[1]]
        i = torch.tensor(image.loc[rows["image_id"]].to_numpy())
        with torch.no_grad():
            if model.endswith("image"):
                probability = module(i)
            else:
                probability = module(i, torch.tensor(w.loc[rows["image_id"]].to_numpy()))
        np.testing.assert_allclose(probability.numpy(), rows["probability"], atol=1e-6)


def test_evaluation_known_answer(base_params):
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1] * 5)
    perfect = y * 0.8 + 0.1
    backwards = 1 - perfect
    frames = [
        pd.DataFrame({"image_id": [f"i{j}" for j in range(len(y))], "role": "test", "target": "T", "model": m, "y_true": y, "probability": p})
        for m, p in (("image", backwards), ("residual_1", perfect))
    ]
    study_split = pd.DataFrame({"image_id": [f"i{j}" for j in range(len(y))], "patient_id": "p", "role": "test"})
    metrics = evaluate_residual_1(
        pd.concat(frames), {"targets": ["T"], "skipped": {}, "selection": "explicit", "uncertainty_policy": "ignore"},
        study_split, base_params("study_design", bootstrap={"n_resamples": 100}), 0,
    )
    assert metrics["role"] == {"role": "test", "images": len(y), "patients": 1}
    block = metrics["targets"]["T"]
    assert block["auc"]["residual_1"]["estimate"] == 1.0 and block["auc"]["image"]["estimate"] == 0.0
    assert block["residual_1_minus_image"]["difference"] == 1.0
    assert block["residual_1_minus_image"]["delong"]["difference"] == 1.0
    assert block["n_test"] == 40 and block["n_test_positive"] == 20
