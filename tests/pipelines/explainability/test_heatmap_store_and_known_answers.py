"""The chunked heatmap store (datasets/heatmap_store.py) and explainability checked against
known answers: a model whose Grad-CAM must point at the bright finding, and hand-made maps
scored against hand-made masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.io.core import DatasetError
from kedro.runner import SequentialRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression

from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapChunk, HeatmapStoreDataset
from medclip_residuals.models.heads import heads_to_tensors, logistic_head_from_sklearn
from medclip_residuals.pipelines.explainability import create_pipeline
from medclip_residuals.pipelines.explainability.nodes import (
    compute_heatmaps,
    plan_heatmaps,
    score_heatmaps,
)
from medclip_residuals.utils.frames import matrix_to_embeddings
from medclip_residuals.utils.params import ParameterError

SIZE = 32
# conf/base's parameters with these changes (`bright["params"]`): no shift smoothing, no contrast caption,
# no per-finding prompts
OVERRIDES = {
    "method": "gradcam", "target_layer": "model.0", "captions": ["there is pneumonia"],
    "include_report_captions": True, "heads": ["image"], "head_images": "localized", "batch_size": 4,
    "chunk_size": 3, "grid": {"sample_size": 2},
    "scoring": {"hit_tolerance_px": 0, "floor_sigma_fraction": 0.25, "n_resamples": 50, "confidence": 0.95},
    "shift_smoothing_px": [0], "bf16": False, "caption_gate": "none", "contrast_caption": None,
    "grounding": {"finding_prompt_images": "none", "distractors_per_image": 0},  # the grounding prompts: tests/explain
}
# where each image's bright square lies (rows, cols), in a 32 x 32 image: no padding, no resize
BLOBS = [(slice(3, 9), slice(4, 10)), (slice(20, 27), slice(22, 29)), (slice(12, 18), slice(2, 8)),
         (slice(4, 10), slice(24, 30)), (slice(22, 28), slice(6, 12))]


class BrightnessVision(torch.nn.Module):
    """Embedding [mean brightness, 1]: its cosine with [1, 0] grows with every pixel's
    brightness, so the Grad-CAM of an identity 1x1 conv is the (rectified) image itself."""

    def __init__(self) -> None:
        super().__init__()
        conv = torch.nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        self.model = torch.nn.Sequential(conv)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.model(pixel_values[:, :1]).mean(dim=(2, 3))
        return torch.cat([pooled, torch.ones_like(pooled)], dim=1)


class BrightnessEncoder:
    """What compute_heatmaps uses of a MedCLIPEncoder; every text embeds as [1, 0]."""

    image_size = SIZE
    profile = "test"

    def __init__(self) -> None:
        self.vision_model = BrightnessVision()

    def to(self, device: object) -> BrightnessEncoder:
        self.vision_model.to(device)
        return self

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))


def _save(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory, base_params) -> dict:
    """Five 32 x 32 images, dim noise with one bright square each, its mask a localization."""
    root = tmp_path_factory.mktemp("bright")
    rng = np.random.default_rng(0)
    manifest, localizations = [], []
    for k, (rows, cols) in enumerate(BLOBS):
        pixels = rng.integers(20, 60, (SIZE, SIZE))
        pixels[rows, cols] = 230
        mask = np.zeros((SIZE, SIZE))
        mask[rows, cols] = 255
        image_id = f"img{k}"
        manifest.append({"image_id": image_id, "image_path": _save(root / "images" / f"{image_id}.png", pixels),
                         "patient_id": f"p{k}", "report": "there is pneumonia", "view": "PA",
                         "height": SIZE, "width": SIZE})
        localizations.append({"image_id": image_id, "finding": "Pneumonia",
                              "mask_path": _save(root / "masks" / f"{image_id}.png", mask),
                              "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan, "side": "", "zone": ""})
    manifest, localizations = pd.DataFrame(manifest), pd.DataFrame(localizations)
    # an image head whose probability rises with the embedding's first (brightness) component
    x = np.r_[np.c_[np.linspace(-1, 0, 20), np.ones(20)], np.c_[np.linspace(0.1, 1, 20), np.ones(20)]]
    head = logistic_head_from_sklearn(LogisticRegression().fit(x, np.r_[np.zeros(20), np.ones(20)]))
    tensors, metadata = heads_to_tensors({"Pneumonia/image": head})
    inputs = {
        "medclip_encoder": BrightnessEncoder(), "image_manifest": manifest, "image_localizations": localizations,
        "study_split": manifest[["image_id", "patient_id"]].assign(role="test"),
        "residual_1_heads": {"tensors": tensors, "metadata": metadata}, "residual_2_heads": None,
        "phenotype_sentence_embeddings": matrix_to_embeddings(manifest["image_id"].tolist(), np.zeros((5, 2))),
        "params:seed": 0, "params:device": "cpu",
    }
    params = base_params("explainability", OVERRIDES)
    plan = plan_heatmaps(manifest, localizations, inputs["residual_1_heads"], None, params, seed=0)
    return {"root": root, "inputs": inputs, "plan": plan, "params": params}


def _chunks(bright: dict, **params: object) -> list[HeatmapChunk]:
    inputs = bright["inputs"]
    return list(compute_heatmaps(
        inputs["medclip_encoder"], inputs["image_manifest"], bright["plan"], inputs["phenotype_sentence_embeddings"],
        inputs["residual_1_heads"], None, {**bright["params"], **params}, "cpu",
    ))


def _run(bright: dict, store: Path, params: dict | None = None) -> DataCatalog:
    class Kept(MemoryDataset):
        def _release(self) -> None:
            pass

    pipeline = create_pipeline()
    datasets = {name: Kept(value, copy_mode="assign") for name, value in bright["inputs"].items()}
    datasets["params:explainability"] = Kept({**bright["params"], **(params or {})}, copy_mode="assign")
    for name in pipeline.all_outputs():
        datasets[name] = Kept(copy_mode="assign")
    datasets["heatmaps"] = HeatmapStoreDataset(filepath=str(store), version=Version(None, None))
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_gradcam_points_at_the_bright_finding(bright: dict, tmp_path: Path) -> None:
    catalog = _run(bright, tmp_path / "heatmaps")
    plan, scores = catalog.load("heatmap_plan"), catalog.load("heatmap_scores")
    # per image: its report, the caption and the image head, each scored against the square
    assert len(plan) == 15 and plan["target_id"].value_counts().to_dict() == {
        "caption:report": 5, "caption:0": 5, "head:Pneumonia/image": 5}
    assert scores["finding"].eq("Pneumonia").all() and len(scores) == 15
    assert scores["hit"].tolist() == [1.0] * 15  # every maximum lies in the bright square
    assert scores["iou"].min() > 0.9  # Otsu separates the square from the dim noise
    maps = catalog.load("heatmaps").rows(range(15)).astype(np.float32)
    for row in plan.itertuples():
        rows, cols = BLOBS[int(row.image_id[3:])]
        inside = np.zeros((SIZE, SIZE), dtype=bool)
        inside[rows, cols] = True
        assert maps[row.row][inside].min() > 0.9 and maps[row.row][~inside].max() < 0.3
    metrics = catalog.load("explainability_metrics")
    groups = {entry["group"]: entry for entry in metrics["by_group"]}
    assert groups["report"]["hit_rate"] == 1.0 and groups["image"]["hit_rate"] == 1.0


def test_chunk_size_never_changes_a_map(bright: dict) -> None:
    one, three, many = _chunks(bright, chunk_size=1), _chunks(bright, chunk_size=3), _chunks(bright, chunk_size=1000)
    assert [c.start for c in one] == list(range(15)) and {len(c) for c in one} == {1}
    assert [c.start for c in three] == [0, 3, 6, 9, 12]  # cut across batches of 4
    assert [c.start for c in many] == [0] and len(many[0]) == 15
    assert {c.total for c in one + three + many} == {15}
    reference = ArrayHeatmaps.collect(iter(many)).heatmaps
    assert reference.dtype == np.float16 and reference.shape == (15, SIZE, SIZE)
    np.testing.assert_array_equal(ArrayHeatmaps.collect(iter(one)).heatmaps, reference)
    np.testing.assert_array_equal(ArrayHeatmaps.collect(iter(three)).heatmaps, reference)
    assert many[0].metadata["target_id"] == bright["plan"]["target_id"].tolist()


def test_store_round_trip_equals_what_was_computed(bright: dict, tmp_path: Path) -> None:
    chunks = _chunks(bright, chunk_size=4)
    computed = ArrayHeatmaps.collect(iter(chunks))
    dataset = HeatmapStoreDataset(filepath=str(tmp_path / "heatmaps"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    for chunk in chunks:
        dataset.save(chunk)
    store = dataset.load()
    assert len(store) == 15 and store.chunk_size == 4 and store.metadata == computed.metadata
    assert [(start, len(rows)) for start, rows in store.chunks()] == [(0, 4), (4, 4), (8, 4), (12, 3)]
    for size in (1, 4, 7, 100):
        np.testing.assert_array_equal(np.concatenate([rows for _, rows in store.chunks(size)]), computed.heatmaps)
    np.testing.assert_array_equal(store.rows([13, 0, 5]), computed.heatmaps[[13, 0, 5]])
    with pytest.raises(IndexError, match="outside the 15 heatmaps"):
        store.rows([15])
    # the same version is never written twice
    with pytest.raises(DatasetError, match="must not exist"):
        dataset.save(chunks[0])


def test_scores_do_not_depend_on_the_chunk_size(bright: dict, tmp_path: Path) -> None:
    small = _run(bright, tmp_path / "a", {"chunk_size": 1}).load("heatmap_scores")
    large = _run(bright, tmp_path / "b", {"chunk_size": 500}).load("heatmap_scores")
    pd.testing.assert_frame_equal(small, large)


def test_incomplete_or_disordered_stores_are_refused(bright: dict, tmp_path: Path) -> None:
    chunks = _chunks(bright, chunk_size=4)
    dataset = HeatmapStoreDataset(filepath=str(tmp_path / "heatmaps"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    dataset.save(chunks[0])
    with pytest.raises(DatasetError, match="starting at row 8 arrived, expected row 4"):
        dataset.save(chunks[2])
    assert not dataset.exists()  # no metadata.json yet: not a store to load
    with pytest.raises(DatasetError, match="incomplete heatmap store, 4 of 15 rows written"):
        dataset.load()
    other = HeatmapStoreDataset(filepath=str(tmp_path / "other"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    with pytest.raises(DatasetError, match="starting at row 4 arrived, expected row 0"):
        other.save(chunks[1])


def test_two_runs_make_two_versions(bright: dict, tmp_path: Path) -> None:
    for version, params in (("2026-01-01T00.00.00.000Z", {}), ("2026-01-02T00.00.00.000Z", {"method": "hirescam"})):
        dataset = HeatmapStoreDataset(filepath=str(tmp_path / "heatmaps"), version=Version(None, version))
        for chunk in _chunks(bright, **params):
            dataset.save(chunk)
    assert sorted(p.parent.name for p in (tmp_path / "heatmaps").glob("*/heatmaps")) == [
        "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    latest = HeatmapStoreDataset(filepath=str(tmp_path / "heatmaps"), version=Version(None, None)).load()
    assert latest.metadata["method"] == "hirescam"


def test_a_single_chunk_or_a_bad_chunk_size_is_a_clear_error(bright: dict) -> None:
    chunk = _chunks(bright, chunk_size=4)[-1]  # what a MemoryDataset would keep
    inputs = bright["inputs"]
    with pytest.raises(TypeError, match=r"one chunk \(rows 12-14 of 15\).*HeatmapStoreDataset"):
        score_heatmaps(chunk, bright["plan"], inputs["image_manifest"], inputs["image_localizations"], bright["params"], 0)
    for bad in (0, 2.5, True):
        with pytest.raises(ParameterError, match=r"chunk_size( must be a whole number|: expected an integer)"):
            plan_heatmaps(inputs["image_manifest"], inputs["image_localizations"], None, None,
                          {**bright["params"], "chunk_size": bad}, seed=0)


def test_hand_made_maps_score_exact_hits_and_ious(bright: dict) -> None:
    """Square 32 px images: a map is scored on the image as it is (no padding, no resize)."""
    inputs = bright["inputs"]
    manifest, plan = inputs["image_manifest"].iloc[:2], bright["plan"]
    plan = plan[plan["image_id"].isin(["img0", "img1"]) & (plan["target_id"] == "caption:report")]
    plan = plan.assign(row=np.arange(len(plan)), findings=[["Pneumonia"]] * len(plan)).reset_index(drop=True)
    mask0 = np.zeros((SIZE, SIZE), dtype=bool)
    mask0[3:9, 4:10] = True  # img0's square: 36 px
    maps = np.zeros((2, SIZE, SIZE), dtype=np.float16)
    maps[0, 3:7, 4:10] = 1.0  # 24 px, all inside the square: hit, IoU 24 / 36
    maps[1, 0:4, 0:4] = 1.0  # 16 px far from img1's square (rows 20-26, cols 22-28): miss, IoU 0
    localizations = inputs["image_localizations"]
    source = ArrayHeatmaps(maps, {"image_id": plan["image_id"].tolist(), "target_id": plan["target_id"].tolist()})
    params = bright["params"]
    scores, metrics = score_heatmaps(source, plan, manifest, localizations, params, seed=0)
    assert scores["hit"].tolist() == [1.0, 0.0]
    assert scores["iou"].tolist() == pytest.approx([24 / 36, 0.0], abs=1e-12)
    assert scores["pred_empty"].tolist() == [0.0, 0.0]
    (report,) = metrics["by_group"]
    assert report["hit_rate"] == 0.5 and report["miou"] == pytest.approx(1 / 3)
    # the pointing tolerance: from (0, 0), img1's nearest square pixel (20, 22) is 29.7 px away
    far = score_heatmaps(source, plan, manifest, localizations,
                         {**params, "scoring": {**params["scoring"], "hit_tolerance_px": 29.0}}, 0)[0]
    near = score_heatmaps(source, plan, manifest, localizations,
                          {**params, "scoring": {**params["scoring"], "hit_tolerance_px": 30.0}}, 0)[0]
    assert far["hit"].tolist() == [1.0, 0.0] and near["hit"].tolist() == [1.0, 1.0]


def test_a_tensor_dict_of_the_old_format_scores_like_the_store(bright: dict) -> None:
    inputs = bright["inputs"]
    computed = ArrayHeatmaps.collect(iter(_chunks(bright)))
    args = (bright["plan"], inputs["image_manifest"], inputs["image_localizations"], bright["params"], 0)
    old = {"tensors": {"heatmaps": computed.heatmaps}, "metadata": computed.metadata}
    pd.testing.assert_frame_equal(score_heatmaps(old, *args)[0], score_heatmaps(computed, *args)[0])
    with pytest.raises(ValueError, match=r"heatmaps \(14\) and heatmap_plan \(15 rows\) do not belong"):
        score_heatmaps(ArrayHeatmaps(computed.heatmaps[:14], computed.metadata), *args)
