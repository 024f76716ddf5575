"""encoder_training nodes: the held-out metric of `evaluate_encoder`.

The library they call is tested in tests/models/test_training.py, test_zero_shot.py,
test_image_source.py and tests/data/test_patient_split.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.pipelines.encoder_training.nodes import evaluate_encoder


class _LabelEncoder:
    """Embeds an image by its mean brightness, and any text on one axis: AUC = ranking by brightness."""

    profile, image_size, embed_dim = "demo", 8, 512

    def __init__(self):
        self.model = torch.nn.Module()
        self.model.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def to(self, device):
        return self

    def encode_images(self, pixels):
        out = torch.zeros(len(pixels), 512)
        out[:, 0] = pixels.mean(dim=(1, 2, 3))
        out[:, 1] = 10.0
        return out

    def encode_texts(self, texts):
        out = np.zeros((len(texts), 512), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def test_evaluate_reports_held_out_auc_per_finding(tmp_path, base_params):
    from PIL import Image

    rows = []
    for index in range(8):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(np.full((8, 8), 40 + 20 * index, dtype=np.uint8)).save(path)
        rows.append({"image_id": f"img{index}", "image_path": str(path), "patient_id": f"p{index}", "report": "",
                     "Pneumonia": 1.0 if index >= 6 else 0.0, "Edema": 1.0 if index in (1, 3) else np.nan})
    manifest = pd.DataFrame(rows)
    split = manifest[["image_id", "patient_id"]].assign(role=["encoder_train", "encoder_train"] + ["test"] * 6)
    history = pd.DataFrame({"epoch": [1, 2], "step": [1, 2], "loss": [2.0, 1.0], "learning_rate": [1e-3, 0.0],
                            "temperature": [0.07, 0.07], "seconds": [1.0, 2.0]})
    metrics = evaluate_encoder(_LabelEncoder(), manifest, split, history, base_params("encoder_training"), "cpu")
    assert metrics["auc"]["Pneumonia"] == pytest.approx(1.0)  # the two brightest test images
    # held out: img2..img7, brightness rising; the one Edema positive (img3) beats only img2
    assert metrics["auc"]["Edema"] == pytest.approx(1 / 5)
    assert metrics["positives"] == {"Pneumonia": 2, "Edema": 1}
    assert metrics["held_out_images"] == 6 and metrics["train_images"] == 2
    assert metrics["min_auc"] == pytest.approx(0.2) and metrics["meets_target"] is False
    assert metrics["epochs"] == 2 and metrics["final_epoch_loss"] == 1.0
