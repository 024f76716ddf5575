"""Experiment tracking end to end: the tiny demo run read back through the MLflow client, and a
run whose tracking server does not answer (it warns and finishes)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import kedro_env
from .test_demo_run import latest

pytestmark = pytest.mark.slow


def _demo_mlflow_run(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medclip_residuals")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'demo'")
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return client, runs[0]


def test_the_demo_run_is_in_mlflow_with_its_parameters_metrics_plots_and_models(demo_run):
    project, _ = demo_run
    client, run = _demo_mlflow_run(project)
    assert run.info.status == "FINISHED"
    metrics, params = run.data.metrics, run.data.params
    # parameters, one per key, as the run's environment set them (conf/tiny)
    assert params["embedding.batch_size"] == "16" and params["seed"] == "1234"
    # every pipeline's figures, read back equal to its JSON report
    encoder = json.loads(latest(project, "data/08_reporting/encoder_training_metrics.json").read_text())
    for finding, auc in encoder["auc"].items():
        assert metrics[f"encoder_training_metrics/auc.{finding}"] == pytest.approx(auc)
    residual = json.loads(latest(project, "data/08_reporting/residual_1_metrics.json").read_text())
    target, figures = next(iter(residual["targets"].items()))
    for bound in ("estimate", "low", "high"):  # an AUC with its confidence interval
        assert metrics[f"residual_1_metrics/targets.{target}.auc.image.{bound}"] == pytest.approx(figures["auc"]["image"][bound])
    explain = json.loads(latest(project, "data/08_reporting/explainability_metrics.json").read_text())
    report = next(group for group in explain["by_group"] if group["group"] == "report")
    assert metrics["explainability_metrics/by_group.report.hit_rate"] == pytest.approx(report["hit_rate"])
    phenotyping = json.loads(latest(project, "data/08_reporting/phenotyping_metrics.json").read_text())
    assert metrics["phenotyping_metrics/evaluation.all.precision_at_k"] == pytest.approx(
        phenotyping["evaluation"]["all"]["precision_at_k"])
    assert "residual_2_metrics/map.r2_test" in metrics and "validation_report/counts.images" in metrics
    # the encoder's loss per epoch, as a history
    history = pd.read_csv(latest(project, "data/08_reporting/encoder_training_history.csv"))
    logged = client.get_metric_history(run.info.run_id, "encoder_training_history/loss")
    assert [(m.step, pytest.approx(m.value)) for m in sorted(logged, key=lambda m: m.step)] == [
        (epoch, pytest.approx(loss)) for epoch, loss in history.groupby("epoch")["loss"].mean().items()
    ]
    # plots, and the models as the very files the catalog wrote
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"residual_1_roc.png", "residual_2_accuracy.png", "caption_heatmap_grid.png", "encoder_loss_curve.png"} <= plots
    heads = Path(client.download_artifacts(run.info.run_id, "models/residual_1_heads/residual_1_heads.safetensors"))
    assert heads.read_bytes() == latest(project, "data/06_models/residual_1_heads.safetensors").read_bytes()
    encoder_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "models/medclip_encoder")}
    assert {"config.json", "model.safetensors", "tokenizer"} <= encoder_files


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_is_a_warning_and_the_run_goes_on(demo_run, tmp_path):
    project, _ = demo_run
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("mlruns"))
    env = copy / "conf" / "unreachable"
    shutil.copytree(copy / "conf" / "tiny", env)
    (env / "mlflow.yml").write_text(f"server:\n  mlflow_tracking_uri: http://127.0.0.1:{_closed_port()}\n", encoding="utf-8")
    before = sorted((copy / "data/08_reporting/residual_1_metrics.json").iterdir())
    result = subprocess.run(
        # the copy's inputs were made from the original's data_root (hooks.RunProvenanceHook)
        [sys.executable, "-m", "kedro", "run", "--pipelines", "residual_1", "--env", "unreachable",
         "--params", f"data_root={project / 'data/01_raw/demo_cxr'}"],
        check=False, cwd=copy, env=kedro_env(), capture_output=True, text=True, timeout=600,
    )
    output = " ".join((result.stdout + result.stderr).split())  # the log wraps long lines
    assert result.returncode == 0, output[-4000:]
    assert "Experiment tracking failed" in output and "this run goes on untracked" in output
    assert output.count("Experiment tracking failed") == 1
    assert len(sorted((copy / "data/08_reporting/residual_1_metrics.json").iterdir())) == len(before) + 1
    assert not (copy / "mlruns").exists()
