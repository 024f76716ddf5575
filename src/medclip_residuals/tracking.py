"""Experiment tracking: every `kedro run` recorded in MLflow through kedro-mlflow, never fatal.

`TrackingHook` drives kedro-mlflow's own `MlflowHook` (the plugin's auto-registered copy is
switched off in settings.py) and adds what the project's datasets hold:

- parameters: kedro-mlflow logs every `params:` input of the nodes that run, one MLflow
  parameter per key (conf/base/mlflow.yml flattens the groups);
- metrics: every JSON report of the reporting layer (`*_metrics`, `validation_report`), each
  number under `<dataset>/<path>` (`residual_1_metrics/targets.Edema.auc.image.low`; a list
  of records is keyed by its text fields: `explainability_metrics/by_group.report.hit_rate`),
  and the report itself as an artifact under `metrics/`;
- a history: a reporting table with an `epoch` column (the encoder's training history) as
  per-epoch means, one MLflow step per epoch (`encoder_training_history/loss`);
- plots: every figure (MatplotlibDataset) as an artifact under `plots/`;
- models: the encoder's saved folder and the heads' and the map's safetensors, as artifacts
  under `models/<dataset>/`. Why artifacts, not MLflow "logged models": they are the very
  files the catalog wrote (safetensors, config, tokenizer), loaded back by the project's own
  datasets with no pickle; an MLflow pytorch or pyfunc model would pickle code and weights.
- tags: the version of every versioned input that an earlier run made
  (`input_version.medclip_encoder`), so that an analysis names the encoder it used.

The JSON, CSV and figure files in data/ are written by the catalog as before; this hook only
reads what was saved. Whatever fails in tracking (kedro-mlflow missing, a server that does not
answer, a store that cannot be written) is one warning, and the run goes on untracked.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from kedro.framework.hooks import hook_impl

from medclip_residuals.utils.catalog import catalog_dataset
from medclip_residuals.utils.params import Parameters

logger = logging.getLogger(__name__)

# Dataset classes whose saved files are models, logged under models/<dataset>/.
MODEL_DATASETS = frozenset({"MedCLIPEncoderDataset", "TensorDictDataset"})
REPORTING_LAYER = "reporting"
# MLflow's metric and parameter names: letters, digits, and _ - . space : /
_NOT_IN_NAME = re.compile(r"[^/\w.\- :]")
_MAX_NAME = 250


@dataclass(frozen=True)
class TrackingParams(Parameters):
    """`params:tracking`: whether and what to track (the store itself: conf/base/mlflow.yml)."""

    enabled: bool
    http_request_max_retries: int  # MLflow's HTTP retries when the store is a server
    http_request_timeout_s: int  # and its timeout per request
    log_plots: bool
    log_models: bool


# --------------------------------------------------------------------------------------------
# What a dataset becomes in MLflow (pure functions)
# --------------------------------------------------------------------------------------------


def metric_name(*parts: str) -> str:
    """An MLflow-safe metric name: parts joined by '.', other characters replaced by '_'."""
    name = _NOT_IN_NAME.sub("_", ".".join(part for part in parts if part))
    return name[:_MAX_NAME]


def _record_key(record: Mapping[str, Any], index: int) -> str:
    """How a record of a list is named: its text fields ('report.Edema'), else its index."""
    texts = [str(value) for value in record.values() if isinstance(value, str) and value]
    return ".".join(texts) if texts else str(index)


def _numbers(value: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        # a list of records (one per group, finding, target); a list of plain numbers is a
        # setting (shift offsets), not a measurement
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            if isinstance(item, Mapping):
                key = _record_key(item, index)
                seen[key] = seen.get(key, 0) + 1
                key = key if seen[key] == 1 else f"{key}.{index}"
                yield from _numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, bool):
        yield path, float(value)
    elif isinstance(value, (int, float)):
        yield path, float(value)


def report_metrics(report: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Every number of a JSON report as `<prefix>/<dotted path>` -> value (see the module)."""
    metrics: dict[str, float] = {}
    for path, value in _numbers(report, ""):
        metrics[f"{prefix}/{metric_name(path)}"[:_MAX_NAME]] = value
    return metrics


def history_metrics(history: pd.DataFrame, prefix: str) -> list[tuple[str, float, int]]:
    """(name, value, epoch) per epoch: each numeric column's mean over the epoch (the elapsed
    `seconds`: its value at the epoch's end)."""
    numeric = [c for c in history.select_dtypes("number").columns if c not in ("epoch", "step")]
    how = {column: "max" if column == "seconds" else "mean" for column in numeric}
    per_epoch = history.groupby("epoch", sort=True).agg(how)
    return [
        (f"{prefix}/{metric_name(str(column))}", float(value), int(epoch))
        for epoch, row in per_epoch.iterrows()
        for column, value in row.items()
        if not math.isnan(value)
    ]


def local_store_uri(uri: str | None, project_path: str | os.PathLike) -> str | None:
    """A relative `sqlite:///path` made absolute inside the project, its folder created.

    kedro-mlflow anchors relative folders at the project but leaves a database URI as it is,
    which SQLite would resolve from whatever the current directory is.
    """
    if not uri or not uri.startswith("sqlite:///") or uri.startswith("sqlite:////"):
        return uri
    path = Path(project_path) / uri[len("sqlite:///"):]
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def saved_path(dataset: Any) -> Path | None:
    """The file or folder a catalog dataset has just written (its version's path)."""
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None:
        return None
    if getattr(dataset, "_version", None) is not None:
        # after a save, _get_save_path refuses the now existing version: name it directly
        filepath = dataset._get_versioned_path(dataset.resolve_save_version())
    path = Path(str(filepath))
    return path if path.exists() else None


def _layer(dataset: Any) -> str | None:
    metadata = getattr(dataset, "metadata", None) or {}
    viz = metadata.get("kedro-viz") if isinstance(metadata, Mapping) else None
    return viz.get("layer") if isinstance(viz, Mapping) else None


# --------------------------------------------------------------------------------------------
# The hook
# --------------------------------------------------------------------------------------------


class TrackingHook:
    """kedro-mlflow's hook, made harmless when tracking fails, plus the project's metrics,
    history, plots and models (see the module docstring)."""

    def __init__(self) -> None:
        self._params: TrackingParams | None = None
        self._mlflow_hook: Any = None  # kedro_mlflow's MlflowHook once set up
        self._catalog: Any = None
        self._failed = False

    # -- the guard ---------------------------------------------------------------------------

    @property
    def _running(self) -> bool:
        """An MLflow run of this pipeline is open and nothing has failed."""
        return not self._failed and self._mlflow_hook is not None and self._mlflow_hook.run_id is not None

    def _guard(self, what: str, call: Callable[..., Any], *args: Any) -> None:
        """Run one tracking step; on any error warn once and stop tracking for this run."""
        if self._failed:
            return
        try:
            call(*args)
        except Exception as error:  # noqa: BLE001 - tracking must never stop a run
            self._failed = True
            hint = (
                "kedro-mlflow is a dependency of the project: `pip install -e .` installs it"
                if isinstance(error, ImportError)
                else "check the store in conf/base/mlflow.yml, or run with --params tracking.enabled=false"
            )
            logger.warning(
                "Experiment tracking failed while %s (%s: %s); this run goes on untracked (%s).",
                what, type(error).__name__, str(error).splitlines()[0] if str(error) else "", hint,
            )
            self._abandon_run()

    def _abandon_run(self) -> None:
        """Close a run that tracking had opened, as failed, if the store still answers."""
        hook = self._mlflow_hook
        if hook is None or hook.run_id is None:
            return
        try:
            import mlflow

            mlflow.end_run("FAILED")
        except Exception:  # noqa: BLE001 - the store is what failed: nothing more to do
            logger.debug("could not close MLflow run %s", hook.run_id)

    # -- Kedro's hooks -----------------------------------------------------------------------

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        # settings.HOOKS holds one instance for every session of a process (a notebook's reloads)
        self._mlflow_hook, self._catalog, self._failed = None, None, False
        params = getattr(context, "params", None) or {}
        # a typo in params:tracking stops the run, as any other parameter does
        self._params = TrackingParams.parse(params.get("tracking"), "tracking")
        if not self._params.enabled:
            logger.info("Experiment tracking is off (tracking.enabled: false)")
            return
        self._guard("setting up MLflow", self._set_up, context)

    def _set_up(self, context: Any) -> None:
        from kedro.config import MissingConfigException
        from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self._params.http_request_max_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self._params.http_request_timeout_s))
        loader = context.config_loader
        if "mlflow" not in loader.config_patterns:
            loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        try:
            conf = dict(loader["mlflow"])
        except MissingConfigException:
            conf = {}
        server = dict(conf.get("server") or {})
        if server.get("mlflow_tracking_uri"):
            server["mlflow_tracking_uri"] = local_store_uri(server["mlflow_tracking_uri"], context.project_path)
            conf["server"] = server
            loader["mlflow"] = conf  # what kedro-mlflow's hook reads next
        hook = MlflowHook()
        hook.after_context_created(context)
        self._mlflow_hook = hook
        uri = hook.mlflow_config.server.mlflow_tracking_uri
        logger.info("Experiment tracking: %s, experiment %r", _display_uri(uri), hook.mlflow_config.tracking.experiment.name)

    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_catalog: Any, conf_creds: Any, parameters: Any,
                              save_version: Any, load_versions: Any) -> None:
        if self._mlflow_hook is not None:
            self._guard("reading the catalog", self._mlflow_hook.after_catalog_created,
                        catalog, conf_catalog, conf_creds, parameters, save_version, load_versions)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._catalog = catalog
        if self._mlflow_hook is not None:
            self._guard("starting the MLflow run", self._mlflow_hook.before_pipeline_run, run_params, pipeline, catalog)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        if self._running:
            self._guard(f"logging the parameters of {node.name}", self._mlflow_hook.before_node_run,
                        node, catalog, inputs, is_async)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._running:
            self._guard(f"tagging {dataset_name}", self._tag_version, dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._running:
            self._guard(f"logging {dataset_name}", self._log_dataset, dataset_name, data)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if self._running:
            run_id = self._mlflow_hook.run_id
            self._guard("closing the MLflow run", self._mlflow_hook.after_pipeline_run, run_params, pipeline, catalog)
            if not self._failed:
                logger.info("MLflow run %s recorded (browse with `kedro mlflow ui`)", run_id)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if self._running:
            self._guard("closing the failed MLflow run", self._mlflow_hook.on_pipeline_error,
                        error, run_params, pipeline, catalog)

    # -- what the project logs ---------------------------------------------------------------

    def _client(self) -> Any:
        return self._mlflow_hook.mlflow_config.server._mlflow_client

    def _tag_version(self, dataset_name: str) -> None:
        """Tag the version of an input that an earlier run made (the encoder an analysis used)."""
        dataset = catalog_dataset(self._catalog, dataset_name)
        if getattr(dataset, "_version", None) is None or not hasattr(dataset, "resolve_load_version"):
            return
        version = dataset.resolve_load_version()
        if version and version != dataset.resolve_save_version():
            self._client().set_tag(self._mlflow_hook.run_id, metric_name("input_version", dataset_name), version)

    def _log_dataset(self, dataset_name: str, data: Any) -> None:
        dataset = catalog_dataset(self._catalog, dataset_name)
        if dataset is None:
            return
        kind, layer = type(dataset).__name__, _layer(dataset)
        if kind == "JSONDataset" and layer == REPORTING_LAYER and isinstance(data, Mapping):
            self._log_metrics(report_metrics(data, dataset_name).items())
            self._log_file(saved_path(dataset), "metrics")
        elif layer == REPORTING_LAYER and isinstance(data, pd.DataFrame) and "epoch" in data.columns:
            self._log_history(history_metrics(data, dataset_name))
        elif kind == "MatplotlibDataset" and self._params.log_plots:
            self._log_file(saved_path(dataset), "plots")
        elif kind in MODEL_DATASETS and self._params.log_models:
            self._log_file(saved_path(dataset), f"models/{dataset_name}")

    def _log_metrics(self, items: Any, step: int = 0) -> None:
        self._log_history([(name, value, step) for name, value in items])

    def _log_history(self, rows: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key=name, value=value, timestamp=stamp, step=step) for name, value, step in rows]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            self._client().log_batch(self._mlflow_hook.run_id, metrics=metrics[start : start + 1000])

    def _log_file(self, path: Path | None, artifact_path: str) -> None:
        if path is None:
            return
        client, run_id = self._client(), self._mlflow_hook.run_id
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path)
        else:
            client.log_artifact(run_id, str(path), artifact_path)


def _display_uri(uri: str) -> str:
    """A tracking URI for the log, without any user:password it may carry."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(f"{parsed.username}:{parsed.password}@", "")
    return uri
