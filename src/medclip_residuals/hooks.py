"""Project hooks: a clear error for missing inputs, and a one-line log per node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

DEMO_MARKER = ".medclip_residuals_demo"


class MissingInputsError(RuntimeError):
    """A pipeline was started before the datasets it reads were produced."""


def _producers() -> dict[str, list[str]]:
    """Map each dataset name to the project's pipelines that write it.

    Built from every folder of `pipelines/` (not Kedro's registry, which under
    `--pipelines a,b` holds only the pipelines that were asked for).
    """
    import pkgutil
    from importlib import import_module

    from medclip_residuals import pipelines as package

    producers: dict[str, list[str]] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg or module.name == "demo":
            continue
        pipe = import_module(f"{package.__name__}.{module.name}").create_pipeline()
        for output in pipe.all_outputs():
            producers.setdefault(output, []).append(module.name)
    return producers


def _dataset_path(catalog: Any, name: str) -> str | None:
    try:
        dataset = catalog.get(name) if hasattr(catalog, "get") else catalog._get_dataset(name)
    except Exception:  # noqa: BLE001 - describing a dataset must never break a run
        return None
    for attr in ("_filepath", "_path", "filepath", "path"):
        value = getattr(dataset, attr, None)
        if value:
            return str(value)
    return None


class MissingInputsHook:
    """Fail at once, naming the pipeline to run, when a pipeline's inputs do not exist.

    Also refuses to let `demo_data` write over a user's own dataset.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        produced_here = pipeline.all_outputs()
        if "manifest" in produced_here:
            self._guard_demo_target(catalog)
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
            makers = producers.get(name)
            where = _dataset_path(catalog, name)
            hint = (
                f"run `kedro run --pipelines {','.join(makers)}` first"
                if makers
                else "it is an input of the project: see docs on bringing your own data"
            )
            lines.append(f"  - {name}{f' ({where})' if where else ''}: {hint}")
        raise MissingInputsError(
            "These inputs of the selected pipelines do not exist yet:\n" + "\n".join(lines)
        )

    @staticmethod
    def _guard_demo_target(catalog: Any) -> None:
        manifest_path = _dataset_path(catalog, "manifest")
        if not manifest_path:
            return
        root = Path(manifest_path).parent
        if (root / "manifest.csv").exists() and not (root / DEMO_MARKER).exists():
            raise MissingInputsError(
                f"demo_data would write its phantom dataset into {root}, which already holds "
                "a manifest.csv that the demo did not make. Run demo_data without "
                "`--params data_root=...`, or point data_root at an empty folder."
            )


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
            where = _dataset_path(self._catalog, name) if self._catalog is not None else None
            parts.append(f"{name}: {_describe(value)}" + (f" -> {where}" if where else ""))
        logger.info("%s | %s", node.short_name if hasattr(node, "short_name") else node.name, "; ".join(parts))
