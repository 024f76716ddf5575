"""Project hooks: every parameter checked before the run, a clear error for missing inputs,
the provenance of every output (data_root and encoder), and a one-line log per node. (The guard that keeps demo data off a
user's folder is demo_data's own: pipelines/demo_data/hooks.py.)"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.framework.hooks import hook_impl

from medclip_residuals.data.folders import absolute_root, is_demo_folder
from medclip_residuals.utils.catalog import catalog_dataset, dataset_filepath
from medclip_residuals.utils.provenance import encoder_record, is_tensor_dict, provenance_of, stamp

logger = logging.getLogger(__name__)

__all__ = [
    "DataRootMismatchError",
    "MissingInputsError",
    "MissingInputsHook",
    "ParametersCheckHook",
    "ProgressLoggingHook",
    "RunTimingHook",
    "RunProvenanceHook",
]

# The dataset folder itself (DATA_CONTRACT.md): the user's files, never stamped or checked.
RAW_DATASETS = frozenset({"manifest", "localizations", "demo_images", "demo_masks", "demo_marker"})
# Datasets whose contents come from the encoder, so that a run using them names the encoder.
ENCODER_PRODUCTS = frozenset({"medclip_encoder", "image_embeddings", "caption_embeddings", "phenotype_embeddings"})


class MissingInputsError(RuntimeError):
    """A pipeline was started before the datasets it reads were produced."""


class DataRootMismatchError(RuntimeError):
    """An input of this run was made from another data_root than this run's."""


def _producers() -> dict[str, list[str]]:
    """Map each dataset name to the project's pipelines that write it.

    Built from every pipeline of the registry's PIPELINE_ORDER (not Kedro's registry, which
    under `--pipelines a,b` holds only the pipelines that were asked for).
    """
    from importlib import import_module

    from medclip_residuals.pipeline_registry import PIPELINE_ORDER

    producers: dict[str, list[str]] = {}
    for name in PIPELINE_ORDER:
        pipe = import_module(f"medclip_residuals.pipelines.{name}").create_pipeline()
        for output in pipe.all_outputs():
            producers.setdefault(output, []).append(name)
    return producers


def context_roots(context: Any) -> tuple[str | None, str | None]:
    """(this run's data_root, the demo's default data_root), both absolute."""
    base = getattr(context, "project_path", None)
    params = getattr(context, "params", None) or {}
    data_root = params.get("data_root")
    try:
        demo_root = context.config_loader["globals"].get("demo_root")
    except Exception:  # noqa: BLE001 - an environment without globals has no demo default
        demo_root = None
    return (
        absolute_root(data_root, base) if data_root else None,
        absolute_root(demo_root, base) if demo_root else None,
    )


class MissingInputsHook:
    """Fail at once, naming what to do, when a pipeline's inputs do not exist."""

    def __init__(self) -> None:
        self._data_root: str | None = None
        self._demo_root: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._data_root, self._demo_root = context_roots(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        missing = []
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:") or name == "parameters":
                continue
            try:
                exists = catalog.exists(name)
            except Exception:  # noqa: BLE001
                exists = False
            if not exists:
                missing.append(name)
        if not missing:
            return
        producers = _producers()
        lines = []
        for name in missing:
            where = dataset_filepath(catalog, name)
            lines.append(f"  - {name}{f' ({where})' if where else ''}: {self._hint(name, producers.get(name), where)}")
        raise MissingInputsError(
            "These inputs of the selected pipelines do not exist yet:\n" + "\n".join(lines)
        )

    def _hint(self, name: str, makers: list[str] | None, where: str | None) -> str:
        if name in RAW_DATASETS and not self._is_demo_root(where):
            # a user's own dataset: the demo generator must never be offered for it
            return (
                "it is part of your dataset: write it as docs/DATA_CONTRACT.md describes "
                "(manifest.csv: one row per image with image_id and image_path)"
            )
        if makers:
            return f"run `kedro run --pipelines {','.join(makers)}` first"
        return "it is an input of the project: see docs/DATA_CONTRACT.md on bringing your own data"

    def _is_demo_root(self, where: str | None) -> bool:
        root = Path(where).parent if where else None
        if root is not None and is_demo_folder(root):
            return True
        return self._demo_root is not None and self._data_root == self._demo_root


class RunProvenanceHook:
    """Record where every output came from, and refuse inputs made from another data_root.

    Every output of a run (tables, tensor dicts, JSON reports; not the dataset folder itself)
    is stamped with this run's data_root and the encoder in use (its profile and what it was
    trained on, `utils/provenance.py`); every stamped input is compared with this run's
    data_root: a table or report made from another one stops the run, naming the pipeline to
    rerun; a model (a tensor dict: heads, the map f) is applied with a warning. A run whose
    data_root is not the demo's but whose encoder profile is `demo` says so at its start.
    """

    def __init__(self) -> None:
        self._data_root: str | None = None
        self._demo_root: str | None = None
        self._profile: str | None = None
        self._catalog: Any = None
        self._encoder: dict[str, Any] | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._data_root, self._demo_root = context_roots(context)
        encoder = (getattr(context, "params", None) or {}).get("encoder") or {}
        self._profile = encoder.get("profile") if isinstance(encoder, dict) else None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._catalog, self._encoder = catalog, None
        if self._data_root is None or self._profile != "demo" or self._is_demo_root(pipeline):
            return
        if not ENCODER_PRODUCTS & set(pipeline.datasets()):
            return
        if "medclip_encoder" in pipeline.all_outputs():
            what = "encoder_training will train the small demo encoder on this dataset"
        else:
            trained_on = _saved_encoder_trained_on(catalog)
            what = f"the saved demo encoder was trained on {describe_trained_on(trained_on)}"
        logger.warning(
            "data_root %s is not the demo dataset, but encoder.profile is 'demo': %s (a small "
            "MedCLIP-class model, not MedCLIP's published weights). For the published weights run "
            "with `--env medclip_vit` (README: MedCLIP weights). Every metrics file of this run "
            "records the encoder's profile and what it was trained on.",
            self._data_root, what,
        )

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name.startswith("params:") or dataset_name == "parameters" or dataset_name in RAW_DATASETS:
            return
        if dataset_name == "medclip_encoder":
            self._encoder = encoder_record(data)
            return
        record = provenance_of(data)
        if record is None:
            return
        made_from = record.get("data_root")
        if self._data_root is not None and made_from and made_from != self._data_root:
            if is_tensor_dict(data):
                # a model (heads, a map) carries over to other data, as an encoder does: said, not stopped
                logger.warning("%s was trained on data_root %s; this run applies it to %s", dataset_name, made_from, self._data_root)
                return
            makers = _producers().get(dataset_name, [])
            rerun = (
                f"Rerun `kedro run --pipelines {','.join(makers)} --params data_root={self._data_root}`"
                if makers else "Make it again"
            )
            raise DataRootMismatchError(
                f"{dataset_name} was made from data_root {made_from}, but this run's data_root is "
                f"{self._data_root}. {rerun} to make it from this dataset (or run with "
                f"`--params data_root={made_from}`)."
            )
        if self._encoder is None and isinstance(record.get("encoder"), dict):
            self._encoder = record["encoder"]

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name in RAW_DATASETS or self._data_root is None:
            return
        if dataset_name == "medclip_encoder":
            if hasattr(data, "trained_on") and "data_root" not in data.trained_on and "dataset" not in data.trained_on:
                # trained in this run (train_encoder records its images and patients)
                data.trained_on = {**self._training_record(), **data.trained_on}
            self._encoder = encoder_record(data)
            return
        record: dict[str, Any] = {"data_root": self._data_root}
        if self._encoder is not None:
            record["encoder"] = self._encoder
        dataset = catalog_dataset(self._catalog, dataset_name) if self._catalog is not None else None
        stamp(data, record, json_report=type(dataset).__name__ == "JSONDataset")

    def _is_demo_root(self, pipeline: Any) -> bool:
        """The demo's own folder, the default data_root, or one this run makes with demo_data."""
        return (
            is_demo_folder(self._data_root)
            or self._data_root == self._demo_root
            or "demo_marker" in pipeline.all_outputs()
        )

    def _training_record(self) -> dict[str, Any]:
        """What an encoder trained in this run was trained on."""
        return {"data_root": self._data_root, "demo_dataset": is_demo_folder(self._data_root)}


def describe_trained_on(trained_on: dict[str, Any] | None) -> str:
    """One phrase for a log line: what an encoder's `trained_on` record says."""
    if not trained_on:
        return "an unrecorded dataset (an encoder saved before training data was recorded)"
    if "dataset" in trained_on:
        return str(trained_on["dataset"])
    kind = "the demo phantoms" if trained_on.get("demo_dataset") else "a dataset"
    counts = f", {trained_on['images']} images of {trained_on['patients']} patients" if "images" in trained_on else ""
    return f"{kind} at {trained_on.get('data_root')}{counts}"


def _saved_encoder_trained_on(catalog: Any) -> dict[str, Any] | None:
    """The `trained_on` record of the encoder this run would load, when it can be read."""
    dataset = catalog_dataset(catalog, "medclip_encoder")
    try:
        config = Path(str(dataset._get_load_path())) / "config.json"
        return json.loads(config.read_text(encoding="utf-8")).get("trained_on")
    except Exception:  # noqa: BLE001 - a published or missing encoder has no such file
        return None


def _describe(value: Any) -> str:
    if isinstance(value, pd.DataFrame):
        return f"{len(value)} rows x {value.shape[1]} cols"
    if isinstance(value, np.ndarray):
        return f"array {tuple(value.shape)}"
    if isinstance(value, dict):
        numbers = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers and len(numbers) <= 6:
            return ", ".join(f"{k}={v:.3g}" for k, v in numbers.items())
        return f"{len(value)} entries"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} items"
    return type(value).__name__


class ParametersCheckHook:
    """Parse every parameter group into its typed class when the context is made: a typo or a
    wrong value anywhere stops the run before its first node (parameters.check_parameters)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from medclip_residuals.parameters import check_parameters

        check_parameters(getattr(context, "params", None) or {})


class ProgressLoggingHook:
    """Log what each node produced, and where it went, in one line."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        parts = []
        for name, value in outputs.items():
            where = dataset_filepath(self._catalog, name) if self._catalog is not None else None
            parts.append(f"{name}: {_describe(value)}" + (f" -> {where}" if where else ""))
        logger.info("%s | %s", node.short_name if hasattr(node, "short_name") else node.name, "; ".join(parts))


class RunTimingHook:
    """Record how long each node and each pipeline (a node's namespace) of a run took, and
    save it as the versioned `run_timings` dataset when the run ends, so that a run's timing
    comes from the run itself (benchmarks/demo_run.py prints it). A node's time runs from its
    start to its last saved output: a generator node (compute_heatmaps) computes while its
    chunks are saved, after Kedro's after_node_run."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._spans: dict[str, list[Any]] = {}

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._started, self._spans = time.perf_counter(), {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        now = time.perf_counter()
        self._spans[node.name] = [node.namespace or "", now, now]

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        self._touch(node)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._touch(node)

    def _touch(self, node: Any) -> None:
        if node is not None and node.name in self._spans:
            self._spans[node.name][2] = time.perf_counter()

    @hook_impl
    def after_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if self._started is None or "run_timings" not in catalog:
            return
        nodes = [{"node": name, "pipeline": namespace, "seconds": round(end - begin, 3)}
                 for name, (namespace, begin, end) in self._spans.items()]
        by_pipeline: dict[str, float] = {}
        for entry in nodes:
            by_pipeline[entry["pipeline"]] = round(by_pipeline.get(entry["pipeline"], 0.0) + entry["seconds"], 3)
        catalog.save("run_timings", {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "pipelines": run_params.get("pipeline_names") or ["__default__"],
            "wall_seconds": round(time.perf_counter() - self._started, 3),
            "seconds_by_pipeline": by_pipeline,
            "nodes": nodes,
        })
