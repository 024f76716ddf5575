"""A synthetic study for the phenotyping and residual tests: planted labels, a fake encoder.

Loaded by path from the residual tests (`load_study_module()` in their conftest), so that
all three pipelines are tested on the same kind of data.

- `HashingTextEncoder`: the one method of MedCLIPEncoder the pipelines use,
  `encode_texts(texts) -> (N, D) float32 unit rows`, deterministic per text (CRC32 seed).
- `make_study(...)`: image embeddings in which Pneumonia and Pleural Effusion are planted
  (an image with the disease leans towards that phrase's embedding, and the pneumonia
  images towards "left" and "lower lung", their localization); Atelectasis is in the
  REPORTS only (no image signal: with source "report" only w carries it); Edema is a
  label with no signal anywhere; Cardiomegaly is too rare for the automatic target choice.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from medclip_residuals.pipelines.data_validation.nodes import label_reports
from medclip_residuals.utils.frames import matrix_to_embeddings

RULES_FILE = Path(__file__).resolve().parents[3] / "conf/base/report_label_rules.yml"

PHRASES = [
    "Pneumonia", "Pleural Effusion", "Cardiomegaly", "Edema", "Atelectasis",
    "left", "right", "lower lung", "near the heart",
]
LABELS = ["Pneumonia", "Pleural Effusion", "Cardiomegaly", "Edema", "Atelectasis"]


class HashingTextEncoder:
    """Deterministic fake text encoder with a little meaning, like a CLIP text tower.

    A text that names phrases of PHRASES (whole words, any case) is embedded as the
    normalised sum of those phrases' vectors plus a small text-specific part; any other
    text is a fixed random unit vector (seeded by the CRC32 of the text).
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def _hashed(self, text: str) -> np.ndarray:
        vector = np.random.default_rng(zlib.crc32(text.encode("utf-8"))).normal(size=self.dim)
        return vector / np.linalg.norm(vector)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            named = [p for p in PHRASES if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text, re.IGNORECASE)]
            if named and text not in PHRASES:
                vector = sum(self._hashed(p) for p in named) + 0.1 * self._hashed(text)
                rows.append(vector / np.linalg.norm(vector))
            else:
                rows.append(self._hashed(text))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def make_study(
    data_validation_params: dict,
    n_patients: int = 150,
    images_per_patient: int = 2,
    dim: int = 64,
    seed: int = 0,
    signal: float = 0.9,
) -> dict[str, object]:
    """Inputs of the phenotyping pipeline (and the residual pipelines) as in-memory data.

    `data_validation_params` (complete, with report_rules an absolute path: RULES_FILE)
    are those of the report labeller that makes `report_mentions`.
    """
    rng = np.random.default_rng(seed)
    encoder = HashingTextEncoder(dim)
    vocabulary = encoder.encode_texts(PHRASES)
    encoder.calls.clear()
    n = n_patients * images_per_patient
    ids = [f"img{j:04d}" for j in range(n)]
    patients = [f"p{j // images_per_patient:04d}" for j in range(n)]
    labels = {
        "Pneumonia": (rng.random(n) < 0.4).astype(float),
        "Pleural Effusion": (rng.random(n) < 0.35).astype(float),
        "Cardiomegaly": np.zeros(n),
        "Edema": (rng.random(n) < 0.4).astype(float),  # random: nothing in the image says so
        "Atelectasis": (rng.random(n) < 0.35).astype(float),  # in the reports only
    }
    labels["Cardiomegaly"][:6] = 1.0
    where = {p: PHRASES.index(p) for p in PHRASES}
    images = rng.normal(scale=1 / np.sqrt(dim), size=(n, dim))
    images += signal * labels["Pneumonia"][:, None] * (vocabulary[where["Pneumonia"]] + 0.6 * vocabulary[where["left"]] + 0.6 * vocabulary[where["lower lung"]])
    images += signal * labels["Pleural Effusion"][:, None] * vocabulary[where["Pleural Effusion"]]
    images = _unit(images)
    # uncertain and unmentioned labels, as in CheXpert
    labels["Pneumonia"][rng.random(n) < 0.05] = -1.0
    labels["Edema"][rng.random(n) < 0.05] = np.nan
    reports = [
        " ".join(
            part
            for part, present in (
                ("There is pneumonia in the left lower lung.", labels["Pneumonia"][j] == 1),
                ("Small pleural effusion.", labels["Pleural Effusion"][j] == 1),
                ("Atelectasis.", labels["Atelectasis"][j] == 1),
            )
            if present
        )
        for j in range(n)
    ]
    manifest = pd.DataFrame(
        {
            "image_id": ids,
            "image_path": [f"/data/{i}.png" for i in ids],
            "patient_id": patients,
            "report": reports,
            "view": "PA",
            "height": 64,
            "width": 64,
            **labels,
        }
    )
    positives = [i for i, y in zip(ids, labels["Pneumonia"]) if y == 1]
    localizations = pd.DataFrame(
        {
            "image_id": positives,
            "finding": "Pneumonia",
            "mask_path": "",
            "x": 1.0,
            "y": 2.0,
            "w": 10.0,
            "h": 12.0,
            "side": "left",
            "zone": "lower",
        }
    )
    return {
        "image_embeddings": matrix_to_embeddings(ids, images),
        "phenotype_embeddings": matrix_to_embeddings(PHRASES, vocabulary, id_column="phrase"),
        "image_manifest": manifest,
        "image_localizations": localizations,
        "medclip_encoder": encoder,
        # what the data_validation pipeline's report labeller reads in the reports
        "report_mentions": label_reports(manifest, data_validation_params)[1],
    }


# Overrides of conf/base's parameters for the study (tests build them with `base_params`).
# conf/base's phenotyping.evaluation.location_phrases already name the study's location
# phrases: left, right, lower lung, near the heart.
PHENOTYPING_OVERRIDES = {"chunk_size": 64}

STUDY_DESIGN_OVERRIDES = {
    "targets": "auto",
    "min_positives": 10,
    "min_negatives": 10,
    # no encoder training here: head_train, validation and test only, in steps of 1/10
    "split": {"fractions": {"encoder_train": 0.0, "head_train": 0.6, "validation": 0.1, "test": 0.3}, "folds": 10},
    "classifier": {"max_iter": 2000},
    # images one by one: the tests recompute the intervals from resampled rows
    "bootstrap": {"n_resamples": 200, "resample": "images"},
}

RESIDUAL_2_OVERRIDES = {"map": {"ridge_alphas": [0.1, 1.0, 10.0]}}


def run_pipeline(pipeline, inputs: dict[str, object]) -> dict[str, object]:
    """Run `pipeline` with SequentialRunner on an in-memory catalog; every dataset it made.

    Intermediate outputs are kept (kedro's runner would otherwise release them once used)
    so that a test can check each step.
    """
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    class KeptMemoryDataset(MemoryDataset):
        def _release(self) -> None:  # keep the data for the test to read
            pass

    datasets = {}
    for name, value in inputs.items():
        datasets[name] = KeptMemoryDataset(value, copy_mode="assign" if name == "medclip_encoder" else None)
    outputs = sorted(pipeline.all_outputs())
    for name in outputs:
        datasets[name] = KeptMemoryDataset()
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in outputs}
