"""The analysis on real chest X-ray files: ../shared/real_cxr (11 public radiographs, six
sources: 8-bit and RGB/RGBA PNG, JPEG, JPEG-compressed DICOM, MONOCHROME1), run with the tiny
demo encoder as a user runs it: `kedro run --params data_root=<a copy of the folder>`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .conftest import PROJECT_ROOT, kedro
from .test_demo_run import _tree, latest

REAL_CXR = PROJECT_ROOT.parent / "shared" / "real_cxr"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REAL_CXR / "manifest.csv").exists(), reason=f"no real files at {REAL_CXR}"),
]

# residual_1 / residual_2 refuse these 11 images with a clear error (too few positives per
# role); explainability uses the tiny demo run's heads, trained on the phantoms.
PIPELINES = "data_validation,study_design,embedding,phenotyping,explainability"
# The tiny environment, with a study design for 11 unlabelled-ish images: no encoder training
# (the tiny demo encoder is used), any label column a target, and every image explained.
REAL_OVERRIDES = {
    "study_design": {
        "targets": "auto", "min_positives": 0, "min_negatives": 0,
        "split": {"fractions": {"encoder_train": 0.0, "head_train": 0.5, "validation": 0.2, "test": 0.3}},
    },
    # every map kept (no caption gate): the test below checks that each real image's maps carry
    # heat, and the tiny encoder, trained on phantoms, may fit no caption to a real film (the
    # gate would then empty all of an image's caption maps)
    "explainability": {"roles": ["encoder_train", "head_train", "validation", "test"], "caption_gate": "none"},
}


def _with_real_overrides(project: Path) -> None:
    """The copied project's tiny parameters, merged with REAL_OVERRIDES (one file per env)."""
    import yaml

    from .conftest import TINY_PARAMETERS

    def merge(base: dict, extra: dict) -> dict:
        return {**base, **{k: merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in extra.items()}}

    path = project / "conf" / "tiny" / "parameters.yml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(TINY_PARAMETERS), REAL_OVERRIDES)), encoding="utf-8")


def independent_shape(path: Path) -> tuple[int, int]:
    """(height, width) read by the format's own library, not by the project's decoder."""
    if path.suffix.lower() == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    with Image.open(path) as image:
        return image.height, image.width


@pytest.fixture(scope="module")
def real_run(demo_run, tmp_path_factory):
    """A copy of the tiny demo project (its trained tiny encoder included) run on a copy of
    the real files; the shared folder itself is only read."""
    demo_project, _ = demo_run
    before = _tree(REAL_CXR)
    project = tmp_path_factory.mktemp("real_project") / "project"
    shutil.copytree(demo_project, project)
    _with_real_overrides(project)
    data_root = tmp_path_factory.mktemp("real_data") / "real_cxr"
    shutil.copytree(REAL_CXR, data_root)
    copied = _tree(data_root)
    result = kedro(project, "run", "--pipelines", PIPELINES, "--env", "tiny", "--params", f"data_root={data_root}")
    assert _tree(REAL_CXR) == before, "the run changed the shared real files"
    assert _tree(data_root) == copied, "the run changed the user's dataset folder"
    return project, data_root, " ".join((result.stdout + result.stderr).split())


def test_every_real_file_validates_with_its_true_size(real_run):
    project, data_root, _ = real_run
    manifest = pd.read_csv(data_root / "manifest.csv", dtype=str, keep_default_na=False)
    validated = pd.read_parquet(latest(project, "data/02_intermediate/image_manifest.parquet"))
    assert sorted(validated["image_id"]) == sorted(manifest["image_id"])
    assert len(validated) == 11
    for row in validated.itertuples():
        assert (row.height, row.width) == independent_shape(Path(row.image_path)), row.image_id
    report = json.loads(latest(project, "data/08_reporting/validation_report.json").read_text())
    assert report["counts"]["images"] == 11 and report["counts"]["skipped_images"] == 0
    assert report["provenance"]["data_root"] == str(data_root)


def test_every_real_image_gets_a_finite_unit_embedding_and_phenotypes(real_run):
    project, _, _ = real_run
    embeddings = pd.read_parquet(latest(project, "data/04_feature/image_embeddings.parquet"))
    vectors = embeddings.filter(regex=r"^e\d+$").to_numpy(dtype=np.float64)
    assert len(embeddings) == 11 and vectors.shape[1] == 512
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # eleven different radiographs: no two embeddings are the same vector
    assert len({tuple(np.round(v, 5)) for v in vectors}) == 11
    phenotypes = pd.read_parquet(latest(project, "data/03_primary/phenotype_table.parquet"))
    assert set(phenotypes["image_id"]) == set(embeddings["image_id"])


def test_every_real_image_gets_a_heatmap(real_run):
    from kedro.io.core import Version

    from medclip_residuals.datasets.heatmap_store import HeatmapStoreDataset

    project, _, _ = real_run
    plan = pd.read_parquet(latest(project, "data/07_model_output/heatmap_plan.parquet"))
    assert plan["image_id"].nunique() == 11
    store = HeatmapStoreDataset(filepath=str(project / "data/07_model_output/heatmaps"), version=Version(None, None)).load()
    assert len(store) == len(plan) and store.metadata["image_id"] == plan["image_id"].tolist()
    maps = np.concatenate([block for _, block in store.chunks()]).astype(np.float32)
    assert np.isfinite(maps).all()
    # each image's maps carry heat somewhere: not blank, not one constant value
    for image_id, rows in plan.groupby("image_id")["row"]:
        assert maps[rows.to_numpy()].std(axis=(1, 2)).max() > 0.01, image_id
    metrics = json.loads(latest(project, "data/08_reporting/explainability_metrics.json").read_text())
    assert metrics["provenance"]["encoder"]["profile"] == "demo"
    assert metrics["provenance"]["encoder"]["trained_on"]["demo_dataset"] is True


def test_the_log_says_the_demo_encoder_is_not_for_real_images(real_run):
    _, data_root, output = real_run
    assert f"data_root {data_root} is not the demo dataset, but encoder.profile is 'demo'" in output
