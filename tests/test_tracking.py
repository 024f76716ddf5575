"""tracking.py: what each dataset becomes in MLflow, and a tracking failure that never stops a run."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import kedro_mlflow.framework.hooks.mlflow_hook  # noqa: F401 - imported here, it sets Kedro's logging up before caplog listens
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from medclip_residuals.tracking import (
    TrackingHook,
    TrackingParams,
    history_metrics,
    local_store_uri,
    metric_name,
    report_metrics,
)
from medclip_residuals.utils.params import ParameterError


def test_a_report_becomes_one_metric_per_number_keyed_by_path_and_record():
    report = {
        "targets": {"Lung Lesion": {"auc": {"image": {"estimate": 0.9, "low": 0.8, "high": 0.95}}}},
        "by_group_and_finding": [
            {"group": "report", "finding": "Edema", "hit_rate": 0.7, "n": 10},
            {"group": "report", "finding": "Edema", "hit_rate": 0.6, "n": 3},  # same text fields
            {"n": 4},  # no text field: its index
        ],
        "shift_smoothing_px": [-4, 0, 4],  # a setting, not a measurement
        "method": "hirescam",
        "met": True,
        "missing": None,
    }
    assert report_metrics(report, "explainability_metrics") == {
        "explainability_metrics/targets.Lung Lesion.auc.image.estimate": 0.9,
        "explainability_metrics/targets.Lung Lesion.auc.image.low": 0.8,
        "explainability_metrics/targets.Lung Lesion.auc.image.high": 0.95,
        "explainability_metrics/by_group_and_finding.report.Edema.hit_rate": 0.7,
        "explainability_metrics/by_group_and_finding.report.Edema.n": 10.0,
        "explainability_metrics/by_group_and_finding.report.Edema.1.hit_rate": 0.6,
        "explainability_metrics/by_group_and_finding.report.Edema.1.n": 3.0,
        "explainability_metrics/by_group_and_finding.2.n": 4.0,
        "explainability_metrics/met": 1.0,
    }


def test_metric_names_keep_only_what_mlflow_accepts():
    assert metric_name("auc", "Pleural Effusion (left)", "p<0.05") == "auc.Pleural Effusion _left_.p_0.05"
    assert len(metric_name("x" * 400)) == 250


def test_a_training_history_becomes_one_step_per_epoch():
    history = pd.DataFrame({
        "epoch": [1, 1, 2, 2], "step": [1, 2, 3, 4], "loss": [3.0, 2.0, 1.5, 0.5],
        "learning_rate": [0.1, 0.2, 0.3, 0.4], "seconds": [1.0, 2.0, 3.0, 4.0],
    })
    rows = history_metrics(history, "encoder_training_history")
    loss = [(step, value) for name, value, step in rows if name == "encoder_training_history/loss"]
    seconds = [(step, value) for name, value, step in rows if name == "encoder_training_history/seconds"]
    assert loss == [(1, 2.5), (2, 1.0)]
    assert seconds == [(1, 2.0), (2, 4.0)]  # the time at the epoch's end
    assert not [name for name, _, _ in rows if name.endswith(("/epoch", "/step"))]


def test_a_relative_sqlite_store_lies_in_the_project(tmp_path):
    uri = local_store_uri("sqlite:///mlruns/mlflow.db", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    assert local_store_uri("sqlite:////abs/mlflow.db", tmp_path) == "sqlite:////abs/mlflow.db"
    assert local_store_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def _context(tmp_path, mlflow_yml: str, tracking: dict) -> SimpleNamespace:
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "local").mkdir()
    (conf / "base" / "mlflow.yml").write_text(mlflow_yml, encoding="utf-8")
    loader = OmegaConfigLoader(str(conf), base_env="base", default_run_env="local")
    return SimpleNamespace(params={"tracking": tracking}, config_loader=loader, project_path=tmp_path)


def test_a_store_that_cannot_be_written_is_a_warning_not_an_error(tmp_path, base_params, caplog):
    (tmp_path / "a_file").write_text("not a folder", encoding="utf-8")
    context = _context(tmp_path, "server: {mlflow_tracking_uri: 'sqlite:///a_file/mlflow.db'}\n", base_params("tracking"))
    hook = TrackingHook()
    with caplog.at_level(logging.WARNING, logger="medclip_residuals.tracking"):
        hook.after_context_created(context)
        hook.before_pipeline_run({}, None, None)  # no run was started: nothing to do, no error
        hook.after_dataset_saved("residual_1_metrics", {"auc": 0.9}, None)
        hook.after_pipeline_run({}, None, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "this run goes on untracked" in warnings[0]
    assert "a_file" in warnings[0]  # the cause, named


class _BrokenStore:
    """kedro-mlflow's hook with a run open, whose store then stops answering."""

    run_id = "0123"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_node_run(self, *args: object) -> None:
        self.calls.append("before_node_run")
        raise ConnectionError("127.0.0.1:9 refused the connection")

    def after_pipeline_run(self, *args: object) -> None:
        self.calls.append("after_pipeline_run")


def test_a_store_that_fails_mid_run_warns_once_and_is_left_alone(base_params, caplog):
    hook = TrackingHook()
    hook._params = TrackingParams.parse(base_params("tracking"), "tracking")
    hook._mlflow_hook = _BrokenStore()
    node = SimpleNamespace(name="fit_residual_1_heads")
    with caplog.at_level(logging.WARNING, logger="medclip_residuals.tracking"):
        hook.before_node_run(node, None, {"params:study_design": {}}, False)
        hook.before_node_run(node, None, {"params:study_design": {}}, False)
        hook.after_pipeline_run({}, None, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0] and "fit_residual_1_heads" in warnings[0]
    assert hook._mlflow_hook.calls == ["before_node_run"]  # nothing more was asked of the store


def test_tracking_off_sets_nothing_up(tmp_path, base_params):
    context = _context(tmp_path, "server: {mlflow_tracking_uri: 'sqlite:///mlruns/mlflow.db'}\n",
                       base_params("tracking", enabled=False))
    hook = TrackingHook()
    hook.after_context_created(context)
    assert hook._mlflow_hook is None and not (tmp_path / "mlruns").exists()


def test_a_typo_in_the_tracking_parameters_stops_the_run(tmp_path, base_params):
    context = _context(tmp_path, "{}\n", base_params("tracking", log_plot=True))
    with pytest.raises(ParameterError, match="log_plot"):
        TrackingHook().after_context_created(context)


def test_each_session_starts_afresh(tmp_path, base_params):
    hook = TrackingHook()
    hook._failed, hook._mlflow_hook = True, _BrokenStore()  # what an earlier session left
    hook.after_context_created(_context(tmp_path, "{}\n", base_params("tracking", enabled=False)))
    assert hook._failed is False and hook._mlflow_hook is None
