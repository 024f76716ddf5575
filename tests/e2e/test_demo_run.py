"""The whole demo, tiny: every pipeline runs from nothing and writes its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import kedro

pytestmark = pytest.mark.slow


def latest(project: Path, relative: str) -> Path:
    """The newest version of a versioned dataset (`<filepath>/<timestamp>/<file>`)."""
    folder = project / relative
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    assert versions, f"no version written under {folder}"
    return versions[-1] / folder.name


def test_demo_run_writes_every_layer(demo_run):
    project, result = demo_run
    manifest = pd.read_csv(project / "data/01_raw/demo_cxr/manifest.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == 150
    embeddings = pd.read_parquet(latest(project, "data/04_feature/image_embeddings.parquet"))
    assert len(embeddings) == 150 and embeddings.shape[1] == 513
    metrics = json.loads(latest(project, "data/08_reporting/encoder_training_metrics.json").read_text())
    demo_root = str(project / "data/01_raw/demo_cxr")
    trained_on = metrics["provenance"]["encoder"]["trained_on"]
    assert metrics["provenance"]["data_root"] == demo_root
    assert trained_on["data_root"] == demo_root and trained_on["demo_dataset"] is True
    assert 0 < trained_on["images"] < 150  # the encoder's training patients only
    # the encoder's record reaches pipelines that never load the encoder, through the embeddings
    residual_metrics = json.loads(latest(project, "data/08_reporting/residual_1_metrics.json").read_text())
    assert residual_metrics["provenance"]["encoder"] == metrics["provenance"]["encoder"]
    assert pd.read_parquet(latest(project, "data/02_intermediate/image_manifest.parquet")).attrs["provenance"] == {
        "data_root": demo_root
    }
    for relative in (
        "data/03_primary/phenotype_table.parquet",
        "data/02_intermediate/study_split.parquet",
        "data/08_reporting/residual_1_sweep.csv",
        "data/05_model_input/residuals_1.parquet",
        "data/05_model_input/residuals_2.parquet",
        "data/08_reporting/residual_1_roc.png",
        "data/08_reporting/residual_2_accuracy.png",
        "data/08_reporting/caption_heatmap_grid.png",
        "data/08_reporting/explainability_metrics.json",
    ):
        assert latest(project, relative).stat().st_size > 0, relative


def test_one_split_serves_the_whole_study(demo_run):
    """No patient in two roles; the encoder trained on encoder_train patients only, never on a
    validation or test patient; every metrics file says which role its numbers come from."""
    project, _ = demo_run
    split = pd.read_parquet(latest(project, "data/02_intermediate/study_split.parquet"))
    assert set(split["role"]) == {"encoder_train", "head_train", "validation", "test"}
    assert (split.groupby("patient_id")["role"].nunique() == 1).all()
    trained_on = pd.read_parquet(latest(project, "data/08_reporting/encoder_training_images.parquet"))
    role_of = dict(zip(split["image_id"], split["role"]))
    assert len(trained_on) > 0 and {role_of[i] for i in trained_on["image_id"]} == {"encoder_train"}
    held_out = set(split.loc[split["role"].isin(["validation", "test"]), "patient_id"])
    assert not held_out & set(trained_on["patient_id"])
    test = split[split["role"] == "test"]
    expected = {"role": "test", "images": len(test), "patients": test["patient_id"].nunique()}
    for name in ("encoder_training_metrics", "phenotyping_metrics", "residual_1_metrics", "residual_2_metrics",
                 "explainability_metrics"):
        metrics = json.loads(latest(project, f"data/08_reporting/{name}.json").read_text())
        if name == "explainability_metrics":
            assert metrics["role"]["role"] == "test" and 0 < metrics["role"]["images"] <= len(test), name
        else:
            assert metrics["role"] == expected, name
    predictions = pd.read_parquet(latest(project, "data/07_model_output/residual_1_predictions.parquet"))
    assert set(predictions["role"]) == {"head_train", "validation", "test"}
    assert set(predictions["image_id"]) <= set(split.loc[split["role"] != "encoder_train", "image_id"])


def test_an_outcome_column_is_a_target_end_to_end(demo_run):
    project, _ = demo_run
    manifest = pd.read_csv(project / "data/01_raw/demo_cxr/manifest.csv", dtype=str, keep_default_na=False)
    assert {"outcome:heart_failure", "outcome:lung_cancer", "outcome:icu_admission"} <= set(manifest.columns)
    metrics = json.loads(latest(project, "data/08_reporting/residual_1_metrics.json").read_text())
    assert list(metrics["targets"]) == ["outcome:heart_failure", "outcome:icu_admission"]
    for block in metrics["targets"].values():
        assert 0.0 <= block["auc"]["image"]["estimate"] <= 1.0
        assert block["residual_1_minus_image"]["minimum_detectable_difference"] > 0
        assert block["auc"]["image"]["resampled"] == "groups"  # whole patients: a cluster bootstrap
        assert 0 < block["n_test_patients"] <= block["n_test"]
    sweep = pd.read_csv(latest(project, "data/08_reporting/residual_1_sweep.csv"))
    assert len(sweep) == 2 * 2 * 2 * 2  # k in {1, 2} x (sentence, mean) x (predicted, report) x 2 targets


def test_the_run_times_itself_per_pipeline(demo_run):
    from medclip_residuals.pipeline_registry import PIPELINE_ORDER

    project, _ = demo_run
    timings = json.loads(latest(project, "data/08_reporting/run_timings.json").read_text())
    assert timings["pipelines"] == ["demo"] and set(timings["seconds_by_pipeline"]) == set(PIPELINE_ORDER)
    assert 0 < sum(timings["seconds_by_pipeline"].values()) <= timings["wall_seconds"]


def test_demo_results_prints_the_readme_tables_from_the_run(demo_run):
    """scripts/demo_results.py (the README's figures) reads this run's metrics: the test role
    it names and the AUCs it prints are the run's own."""
    project, _ = demo_run
    script = Path(__file__).resolve().parents[2] / "scripts" / "demo_results.py"
    printed = subprocess.run([sys.executable, str(script), "--project", str(project)], capture_output=True,
                             text=True, check=True, timeout=120).stdout
    residual_1 = json.loads(latest(project, "data/08_reporting/residual_1_metrics.json").read_text())
    role = residual_1["role"]
    assert f"test role: {role['images']} images of {role['patients']} patients" in printed
    for target, entry in residual_1["targets"].items():
        auc = entry["auc"]["image"]
        assert f"| {target} | {entry['n_test']} ({entry['n_test_positive']}) | {auc['estimate']:.3f} [" in printed
        assert f"| {target} | residual_1 - image | {entry['residual_1_minus_image']['difference']:+.3f} [" in printed
    sweep = pd.read_csv(latest(project, "data/08_reporting/residual_1_sweep.csv"))
    settings = sweep.drop_duplicates(["k", "strategy", "source"])
    for row in settings.itertuples():
        assert f"| {row.k} | {row.strategy} | {row.source} | " in printed
    assert "Caption specificity" in printed and "Distractor hit rate" in printed


def test_second_run_keeps_the_first_runs_outputs(demo_run):
    project, _ = demo_run
    before = sorted((project / "data/04_feature/image_embeddings.parquet").iterdir())
    kedro(project, "run", "--pipelines", "embedding", "--env", "tiny")
    after = sorted((project / "data/04_feature/image_embeddings.parquet").iterdir())
    assert len(after) == len(before) + 1 and set(before) <= set(after)


def test_pipeline_started_before_its_inputs_exist_names_the_pipeline(tmp_path, tiny_project):
    import shutil
    import subprocess
    import sys

    from .conftest import kedro_env

    project = tmp_path / "fresh"
    # everything but the top-level data/ (src/medclip_residuals/data is code)
    shutil.copytree(tiny_project, project, ignore=lambda folder, names: ["data"] if Path(folder) == tiny_project else [])
    for layer in ("01_raw", "02_intermediate", "04_feature", "06_models", "08_reporting"):
        (project / "data" / layer).mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "embedding", "--env", "tiny"],
        check=False, cwd=project, env=kedro_env(), capture_output=True, text=True, timeout=300,
    )
    output = " ".join((result.stdout + result.stderr).split())  # the log wraps long lines
    assert result.returncode != 0
    assert "image_manifest" in output and "--pipelines data_validation" in output
    assert "medclip_encoder" in output and "--pipelines encoder_training" in output


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _kedro_fails(project: Path, *args: str) -> str:
    import subprocess
    import sys

    from .conftest import kedro_env

    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args], check=False, cwd=project, env=kedro_env(),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0, f"kedro {' '.join(args)} should have failed:\n{result.stdout[-3000:]}"
    return " ".join((result.stdout + result.stderr).split())  # the log wraps long lines


def test_a_new_users_folder_is_never_touched_by_demo_data(tmp_path, tiny_project):
    """The issue's scenario: images copied into DIR/images/, no manifest yet."""
    import numpy as np
    from PIL import Image

    users_data = tmp_path / "my_cxr"
    (users_data / "images").mkdir(parents=True)
    (users_data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in ("p1_s1.png", "p1_s2.png", "p2_s1.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(users_data / "images" / name)
    Image.fromarray(np.zeros((40, 48), dtype=np.uint8)).save(users_data / "masks" / "p1_s1_effusion.png")
    (users_data / "notes.txt").write_text("from the hospital export\n", encoding="utf-8")
    before = _tree(users_data)

    output = _kedro_fails(tiny_project, "run", "--pipelines", "data_validation", "--env", "tiny",
                          "--params", f"data_root={users_data}")
    assert "manifest" in output and "docs/DATA_CONTRACT.md" in output
    assert "--pipelines demo_data" not in output

    output = _kedro_fails(tiny_project, "run", "--pipelines", "demo_data", "--env", "tiny",
                          "--params", f"data_root={users_data}")
    assert "is not empty" in output and "Nothing was written" in output
    assert _tree(users_data) == before


def test_demo_data_refuses_to_write_over_a_users_dataset(tmp_path, tiny_project):
    users_data = tmp_path / "hospital_export"
    users_data.mkdir()
    manifest = users_data / "manifest.csv"
    manifest.write_text("image_id,image_path\nx1,images/x1.png\n", encoding="utf-8")
    output = _kedro_fails(tiny_project, "run", "--pipelines", "demo_data", "--env", "tiny",
                          "--params", f"data_root={users_data}")
    assert "is not empty (manifest.csv)" in output
    assert manifest.read_text(encoding="utf-8") == "image_id,image_path\nx1,images/x1.png\n"
    assert sorted(p.name for p in users_data.iterdir()) == ["manifest.csv"]
