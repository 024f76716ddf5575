"""The explainability pipeline, run with SequentialRunner on a tiny dataset and a tiny
(random) demo-profile MedCLIP encoder."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge

from medclip_residuals.datasets.heatmap_store import HeatmapStoreDataset
from medclip_residuals.explain.scoring import LocalizationError
from medclip_residuals.models.heads import (
    ResidualHead,
    heads_to_tensors,
    logistic_head_from_sklearn,
    ridge_map_from_sklearn,
)
from medclip_residuals.pipelines.explainability import create_pipeline
from medclip_residuals.utils.frames import matrix_to_embeddings
from medclip_residuals.utils.params import ParameterError

CAPTIONS = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung"]
# conf/base's parameters with these changes (`params` below): no shift smoothing, no contrast caption
OVERRIDES = {
    "method": "gradcam",
    "contrast_findings": "none",
    "target_layer": "model.encoder.layers.0.blocks.-1",
    "captions": CAPTIONS,
    "include_report_captions": True,
    "heads": ["image", "residual_1", "residual_2"],
    "head_images": "localized",
    "max_images": None,
    "batch_size": 4,
    "grid": {"sample_size": 3},
    "scoring": {"hit_tolerance_px": 0, "floor_sigma_fraction": 0.25, "n_resamples": 100, "confidence": 0.95},
    "shift_smoothing_px": [0],
    "bf16": False,
    "caption_gate": "none",
    "contrast_caption": None,
}
HEIGHT, WIDTH = 40, 48  # not square: the padding must be undone


@pytest.fixture(scope="module")
def params(base_params) -> dict:
    return base_params("explainability", OVERRIDES)


def _save(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, tiny_demo_encoder) -> dict:
    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    reports = ["there is some pneumonia near the heart", "there is pleural effusion on the lower lung", "", "no finding"]
    rows = []
    for k, report in enumerate(reports):
        path = _save(root / "images" / f"img{k:03d}.png", rng.integers(0, 256, (HEIGHT, WIDTH)))
        rows.append({"image_id": f"img{k:03d}", "image_path": path, "patient_id": f"p{k}", "report": report,
                     "view": "PA", "height": HEIGHT, "width": WIDTH,
                     "Pneumonia": float(k == 0), "Pleural Effusion": float(k == 1)})
    manifest = pd.DataFrame(rows)
    central = np.zeros((HEIGHT, WIDTH))
    central[14:27, 18:31] = 255  # holds the image centre: the Gaussian floor must hit it
    localizations = pd.DataFrame([
        {"image_id": "img000", "finding": "Pneumonia", "mask_path": _save(root / "masks" / "img000.png", central),
         "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan, "side": "", "zone": "heart"},
        # a corner box: the floor must miss it
        {"image_id": "img001", "finding": "Pleural Effusion", "mask_path": "",
         "x": 1.0, "y": 1.0, "w": 6.0, "h": 6.0, "side": "right", "zone": "lower"},
    ])
    encoder = tiny_demo_encoder(reports + CAPTIONS, seed=0)

    x = rng.standard_normal((30, 512))
    y = np.arange(30) % 2
    head = logistic_head_from_sklearn(LogisticRegression(max_iter=500).fit(x, y))
    residual_head = logistic_head_from_sklearn(LogisticRegression(max_iter=500, C=0.5).fit(x, y))
    ridge = ridge_map_from_sklearn(Ridge().fit(x, rng.standard_normal((30, 512))))
    tensors_1, metadata_1 = heads_to_tensors({"Pneumonia/image": head, "Pneumonia/residual_1": ResidualHead(residual_head)})
    tensors_2, metadata_2 = heads_to_tensors({"map": ridge, "Pneumonia/residual_2": ResidualHead(head, ridge)})
    w_table = matrix_to_embeddings(manifest["image_id"].tolist(), rng.standard_normal((4, 512)) * 0.05)
    return {
        "root": root,
        "inputs": {
            "medclip_encoder": encoder,
            "image_manifest": manifest,
            "image_localizations": localizations,
            "study_split": manifest[["image_id", "patient_id"]].assign(role="test"),
            "residual_1_heads": {"tensors": tensors_1, "metadata": metadata_1},
            "residual_2_heads": {"tensors": tensors_2, "metadata": metadata_2},
            "phenotype_sentence_embeddings": w_table,
            "params:seed": 7,
            "params:device": "cpu",
        },
    }


_RUNS = itertools.count()


def _run(inputs: dict, params: dict, store: Path | None = None) -> dict:
    """The pipeline on an in-memory catalog, except `heatmaps`: the chunked store on disk
    (a generator node's chunks need an appending dataset)."""

    class Kept(MemoryDataset):
        def _release(self) -> None:  # keep intermediate outputs for the test to read
            pass

    pipeline = create_pipeline()
    datasets = {name: Kept(value, copy_mode="assign") for name, value in inputs.items()}
    datasets["params:explainability"] = Kept(params, copy_mode="assign")
    for name in pipeline.all_outputs():
        datasets[name] = Kept(copy_mode="assign")
    store = store or Path(inputs["image_manifest"]["image_path"].iloc[0]).parents[1] / f"heatmaps_{next(_RUNS)}"
    datasets["heatmaps"] = HeatmapStoreDataset(filepath=str(store), version=Version(None, None))
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


def _maps(heatmaps) -> np.ndarray:
    """Every map of a store, as float32 (the tiny tests only)."""
    return heatmaps.rows(range(len(heatmaps))).astype(np.float32)


@pytest.fixture(scope="module")
def outputs(study: dict, params: dict) -> dict:
    return _run(study["inputs"], params)


def test_plan_has_one_row_per_image_and_target(outputs: dict) -> None:
    plan = outputs["heatmap_plan"]
    expected = {
        # the prompt of the image's own finding, then one of a finding it lacks (a distractor)
        "img000": ["caption:report", "caption:0", "caption:1", "finding:Pneumonia", "finding:Pleural Effusion",
                   "head:Pneumonia/image", "head:Pneumonia/residual_1", "head:Pneumonia/residual_2"],
        # no localized Pneumonia: no head maps
        "img001": ["caption:report", "caption:0", "caption:1", "finding:Pleural Effusion", "finding:Pneumonia"],
        "img002": ["caption:0", "caption:1"],  # empty report
        "img003": ["caption:report", "caption:0", "caption:1"],
    }
    assert {k: list(v) for k, v in plan.groupby("image_id")["target_id"]} == expected
    findings = {(r.image_id, r.target_id): list(r.findings) for r in plan.itertuples()}
    assert findings[("img000", "caption:0")] == ["Pneumonia"]  # the phrase names pneumonia
    assert findings[("img000", "caption:1")] == []  # effusion is not localized on img000
    assert findings[("img001", "caption:report")] == ["Pleural Effusion"]
    assert findings[("img000", "head:Pneumonia/residual_2")] == ["Pneumonia"]
    assert findings[("img000", "finding:Pneumonia")] == ["Pneumonia"]
    assert findings[("img000", "finding:Pleural Effusion")] == []  # the distractor is scored against nothing
    texts = dict(zip(plan["target_id"], plan["text"]))
    assert texts["finding:Pleural Effusion"] == "there is pleural effusion"  # the encoder's evaluation prompt


def test_heatmaps_store_shape_dtype_and_metadata(outputs: dict) -> None:
    heatmaps, plan = outputs["heatmaps"], outputs["heatmap_plan"]
    assert len(heatmaps) == 18 and heatmaps.map_shape == (32, 32) and heatmaps.dtype == np.float16
    assert heatmaps.metadata["target_layer"] == "model.encoder.layers.0.blocks.0"
    assert heatmaps.metadata["target_id"] == plan["target_id"].tolist()
    assert heatmaps.metadata["image_id"] == plan["image_id"].tolist()
    maps = _maps(heatmaps)
    # pytorch-grad-cam scales every map to [0, 1]: each map spans it, none is constant
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0.0, atol=1e-3)


def test_scores_floor_and_counts(outputs: dict) -> None:
    scores, metrics = outputs["heatmap_scores"], outputs["explainability_metrics"]
    scored = scores[scores["finding"] != ""]
    # img000: report, caption:0, its finding's prompt, three heads; img001: report, caption:1, its prompt
    assert len(scored) == 9
    assert set(scored.loc[scored["image_id"] == "img000", "floor_hit"]) == {1.0}  # central mask
    assert set(scored.loc[scored["image_id"] == "img001", "floor_hit"]) == {0.0}  # corner box
    assert scored["hit"].isin([0.0, 1.0]).all() and scored["iou"].between(0, 1).all()
    # every heatmap is interpreted, scored or not
    assert scores["row"].nunique() == 18 and scores["region"].ne("").all()
    truth = scored[scored["image_id"] == "img001"]
    assert set(truth["truth_side"]) == {"right"} and set(truth["truth_zone"]) == {"lower"}

    counts = metrics["counts"]
    assert counts["images_without_localizations"] == 2
    assert counts["heatmaps"] == 18 and counts["images_scored"] == 2
    assert metrics["method"] == "gradcam" and metrics["contrast_findings"] == "none"
    groups = {entry["group"]: entry for entry in metrics["by_group"]}
    assert set(groups) == {"report", "phrase", "finding", "image", "residual_1", "residual_2"}
    # no image has two findings: no specificity; each image's distractor prompt and the phrase
    # naming the other image's finding are the distractors
    assert metrics["caption_specificity"]["rows"] == []
    distractors = {(r["group"], r["finding"]): r for r in metrics["distractor_hit_rate"]["rows"]}
    assert distractors[("finding", "all")]["n_distractor"] == 2 and distractors[("finding", "all")]["n_true"] == 2
    assert distractors[("phrase", "all")]["n_distractor"] == 2
    assert set(distractors) == {("finding", "all"), ("finding", "Pneumonia"), ("finding", "Pleural Effusion"),
                                ("phrase", "all"), ("phrase", "Pneumonia"), ("phrase", "Pleural Effusion")}
    peaks = scores.drop_duplicates("row")["peak_findings"]
    assert peaks.isin(["", "Pneumonia", "Pleural Effusion"]).all()
    assert groups["report"]["n"] == 2 and groups["report"]["floor_hit_rate"] == pytest.approx(0.5)
    interpretation = {entry["group"]: entry for entry in metrics["interpretation"]}
    assert interpretation["phrase"]["n_with_stated_location"] == 8  # both captions state where


def test_grid_figure(outputs: dict) -> None:
    figure = outputs["caption_heatmap_grid"]
    assert isinstance(figure, Figure)
    # no image with two findings; the slide captions on the two images that have their findings
    # (no image has another finding only): image + 2 captions + report
    assert len(figure.axes) == 2 * 4


def test_contrast_caption_changes_caption_maps_and_spares_its_own_report(study: dict, outputs: dict, params: dict) -> None:
    # img003's report is "no finding": as the contrast it keeps the plain target (no error)
    contrasted = _run(study["inputs"], {**params, "contrast_caption": "no finding"})
    metadata = contrasted["explainability_metrics"]
    assert metadata["contrast_caption"] == "no finding" and metadata["n_plain_contrast_targets"] == 1
    plan = contrasted["heatmap_plan"]
    plain, contrast = _maps(outputs["heatmaps"]), _maps(contrasted["heatmaps"])
    own_report = ((plan["image_id"] == "img003") & (plan["target_id"] == "caption:report")).to_numpy()
    captions = (plan["kind"] == "caption").to_numpy() & ~own_report
    np.testing.assert_array_equal(contrast[own_report], plain[own_report])
    assert not np.allclose(contrast[captions], plain[captions])


def test_empty_phrase_and_unknown_method_fail_before_any_heatmap(study: dict, params: dict) -> None:
    with pytest.raises(ParameterError, match=r"captions\[1\] is an empty phrase"):
        _run(study["inputs"], {**params, "captions": [CAPTIONS[0], "  "]})
    with pytest.raises(ParameterError, match="contrast_caption is an empty phrase"):
        _run(study["inputs"], {**params, "contrast_caption": ""})
    with pytest.raises(ValueError, match="unknown CAM method 'gradcan'"):
        _run(study["inputs"], {**params, "method": "gradcan"})


def test_bad_shift_smoothing_fails_before_any_heatmap(study: dict, params: dict) -> None:
    for shifts, message in (([0, 0], "lists a shift twice"), ([], "at least one shift"),
                            ([1.5], r"shift_smoothing_px\[0\]: expected an integer"),
                            ("4", "shift_smoothing_px: expected a list"), ([-32, 0], "below the 32-px input")):
        with pytest.raises(ParameterError, match=message):
            _run(study["inputs"], {**params, "shift_smoothing_px": shifts})


def test_several_layers_and_shift_smoothing_reach_the_maps(study: dict, params: dict) -> None:
    layers = ["model.encoder.layers.0.blocks.-1", "model.encoder.layers.1.blocks.-1"]
    smoothed = {**params, "method": "hirescam", "target_layer": layers, "shift_smoothing_px": [-2, 0, 2],
                "heads": [], "captions": CAPTIONS[:1], "include_report_captions": False}
    result = _run(study["inputs"], smoothed)
    heatmaps = result["heatmaps"]
    assert heatmaps.metadata["target_layer"] == "model.encoder.layers.0.blocks.0 + model.encoder.layers.1.blocks.0"  # one block per stage
    assert heatmaps.metadata["shift_smoothing_px"] == [-2, 0, 2]
    assert result["explainability_metrics"]["shift_smoothing_px"] == [-2, 0, 2]
    unsmoothed = _run(study["inputs"], {**smoothed, "shift_smoothing_px": [0]})["heatmaps"]
    assert not np.allclose(_maps(heatmaps), _maps(unsmoothed), atol=1e-2)


def test_bf16_reaches_the_maps_and_the_metrics(study: dict, params: dict) -> None:
    one = {**params, "method": "hirescam", "heads": [], "captions": CAPTIONS[:1], "include_report_captions": False}
    float32 = _run(study["inputs"], one)
    assert float32["heatmaps"].metadata["bf16"] is False and float32["explainability_metrics"]["bf16"] is False
    bf16 = _run(study["inputs"], {**one, "bf16": True})
    assert bf16["heatmaps"].metadata["bf16"] is True and bf16["explainability_metrics"]["bf16"] is True
    assert not np.array_equal(_maps(bf16["heatmaps"]), _maps(float32["heatmaps"]))
    with pytest.raises(ParameterError, match="bf16"):
        _run(study["inputs"], {**one, "bf16": "sometimes"})


def test_the_caption_gate_empties_maps_and_is_recorded(study: dict, params: dict) -> None:
    # OVERRIDES keep every map (caption_gate none). A caption's map is emptied exactly where the image fits it no better than its contrast
    # (margins recomputed here from the same embeddings); the other maps are unchanged, and the
    # contrast phrase's own rows have nothing to be compared with. Two contrast phrases, so
    # that both outcomes occur on this tiny encoder.
    import torch

    from medclip_residuals.explain.generate import ImageCache, PlanTargets
    from medclip_residuals.explain.heatmap_model import ImageEmbeddingModel
    from medclip_residuals.explain.targets import caption_margin

    encoder, manifest = study["inputs"]["medclip_encoder"], study["inputs"]["image_manifest"]
    paths = dict(zip(manifest["image_id"], manifest["image_path"]))
    images, embed = ImageCache(int(encoder.image_size)), ImageEmbeddingModel(encoder.vision_model).eval()
    outcomes = set()
    for contrast in (CAPTIONS[1], "the lungs are clear"):
        one = {**params, "method": "hirescam", "heads": [], "contrast_caption": contrast}
        kept = _run(study["inputs"], one)
        gated = _run(study["inputs"], {**one, "caption_gate": "mean"})
        assert kept["explainability_metrics"]["caption_gate"] == "none"
        assert gated["heatmaps"].metadata["caption_gate"] == gated["explainability_metrics"]["caption_gate"] == "mean"
        plan = gated["heatmap_plan"].reset_index(drop=True)
        targets = PlanTargets(encoder, plan, {}, {}, contrast, torch.device("cpu"))
        expected = []
        for row in plan.itertuples(index=False):
            with torch.no_grad():
                embedding = embed(images(paths[row.image_id])[None])[0]
            margin = caption_margin(targets(row), embedding, "mean")
            expected.append(margin is not None and margin <= 0)
        before, after = _maps(kept["heatmaps"]), _maps(gated["heatmaps"])
        empty = after.reshape(len(after), -1).max(axis=1) == 0
        np.testing.assert_array_equal(empty, expected)
        np.testing.assert_array_equal(after[~empty], before[~empty])
        assert not empty[(plan["text"] == contrast).to_numpy()].any()
        outcomes.update(empty.tolist())
    assert outcomes == {True, False}
    with pytest.raises(ParameterError, match="caption_gate"):
        _run(study["inputs"], {**one, "caption_gate": "median"})


def test_unknown_layer_lists_the_valid_ones(study: dict, params: dict) -> None:
    with pytest.raises(ValueError, match=r"'model.encoder.layers.5' does not exist.*model\.layernorm"):
        _run(study["inputs"], {**params, "target_layer": "model.encoder.layers.5"})


def test_empty_mask_is_an_error_naming_the_file(study: dict, params: dict) -> None:
    empty = study["root"] / "masks" / "empty.png"
    _save(empty, np.zeros((HEIGHT, WIDTH)))
    localizations = study["inputs"]["image_localizations"].copy()
    localizations.loc[0, "mask_path"] = str(empty)
    inputs = {**study["inputs"], "image_localizations": localizations}
    with pytest.raises(LocalizationError, match=r"empty\.png.*is empty"):
        _run(inputs, {**params, "heads": [], "captions": CAPTIONS[:1]})


def test_outputs_round_trip_through_their_catalog_datasets(outputs: dict, tmp_path: Path) -> None:
    # the entries of conf/base/catalog/07_model_output_explain.yml and 08_reporting_explain.yml
    import yaml

    root = Path(__file__).resolve().parents[3] / "conf" / "base" / "catalog"
    config = {}
    for name in ("07_model_output_explain.yml", "08_reporting_explain.yml"):
        config.update(yaml.safe_load((root / name).read_text()))
    # every output is a catalog entry, but the rows select_images keeps, which stay in memory
    assert set(config) == set(create_pipeline().all_outputs()) - {"explained_manifest"}
    assert config["heatmaps"]["metadata"]["kedro-viz"]["preview"] is False
    for entry in config.values():
        assert entry["versioned"] is True
        entry["filepath"] = str(tmp_path / Path(entry["filepath"]).name)
    catalog = DataCatalog.from_config(config)
    for name in config:
        catalog.save(name, outputs[name])
    plan = catalog.load("heatmap_plan")
    assert [list(f) for f in plan["findings"]] == [list(f) for f in outputs["heatmap_plan"]["findings"]]
    heatmaps = catalog.load("heatmaps")
    np.testing.assert_array_equal(_maps(heatmaps), _maps(outputs["heatmaps"]))
    assert heatmaps.metadata == outputs["heatmaps"].metadata
    # versioned: <filepath>/<version>/heatmaps/ holds the .npy and its metadata
    (folder,) = (tmp_path / "heatmaps").glob("*/heatmaps")
    assert sorted(p.name for p in folder.iterdir()) == ["heatmaps.npy", "metadata.json"]
    np.testing.assert_array_equal(np.load(folder / "heatmaps.npy", allow_pickle=False), _maps(heatmaps))
    assert catalog.load("explainability_metrics")["counts"] == outputs["explainability_metrics"]["counts"]
    pd.testing.assert_frame_equal(catalog.load("heatmap_scores"), outputs["heatmap_scores"])


def test_plan_scores_a_report_against_the_findings_it_names(params: dict) -> None:
    from medclip_residuals.pipelines.explainability.nodes import plan_heatmaps

    manifest = pd.DataFrame({
        "image_id": ["a", "b", "c"],
        "report": ["right lower lung pneumonia", "unremarkable", "left pleural effusion"],
    })
    localizations = pd.DataFrame({
        "image_id": ["a", "a", "b"],
        "finding": ["Pneumonia", "Pleural Effusion", "Edema"],
    })
    no_prompts = {**params["grounding"], "finding_prompt_images": "none", "distractors_per_image": 0}
    reports_only = {**params, "heads": [], "captions": [], "grounding": no_prompts}
    plan = plan_heatmaps(manifest, localizations, None, None, reports_only, seed=0)
    findings = {r.image_id: list(r.findings) for r in plan.itertuples()}
    assert findings == {"a": ["Pneumonia"], "b": ["Edema"], "c": []}
    # a sample of 2 takes the localized images first
    sampled = plan_heatmaps(manifest, localizations, None, None, {**reports_only, "max_images": 2}, seed=0)
    assert sorted(sampled["image_id"]) == ["a", "b"]


def test_contrast_findings_change_the_caption_maps_only(study: dict, outputs: dict, params: dict) -> None:
    contrasted = _run(study["inputs"], {**params, "contrast_findings": "max"})
    plan = contrasted["heatmap_plan"]
    assert contrasted["explainability_metrics"]["contrast_findings"] == "max"
    row = plan[(plan["image_id"] == "img000") & (plan["target_id"] == "finding:Pneumonia")].iloc[0]
    assert list(row["contrast_texts"]) == ["there is pleural effusion"] and row["contrast_reduce"] == "max"
    plain, contrast = _maps(outputs["heatmaps"]), _maps(contrasted["heatmaps"])
    heads = (plan["kind"] == "head").to_numpy()
    np.testing.assert_array_equal(contrast[heads], plain[heads])
    assert not np.allclose(contrast[~heads], plain[~heads])


def test_token_similarity_maps_captions_and_heads(study: dict, params: dict) -> None:
    result = _run(study["inputs"], {**params, "method": "tokensimilarity", "target_layer": "model.layernorm"})
    maps = _maps(result["heatmaps"])
    assert result["heatmaps"].metadata["method"] == "tokensimilarity" and len(maps) == 18
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-3)
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0.0, atol=1e-3)
    earlier = _run(study["inputs"], {**params, "method": "tokensimilarity", "heads": [],
                                     "target_layer": "model.encoder.layers.0.blocks.-1"})
    assert earlier["explainability_metrics"]["target_layer"] == "model.encoder.layers.0.blocks.0"
