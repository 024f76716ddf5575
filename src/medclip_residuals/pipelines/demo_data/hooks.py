"""The demo_data pipeline's hook: the phantom dataset is never written over a user's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from medclip_residuals.data.folders import demo_target_refusal


class UnsafeDemoTargetError(RuntimeError):
    """demo_data was pointed at a folder that may hold a user's data."""


class DemoTargetGuardHook:
    """Refuse, before anything is written, to let a run that writes `manifest` (the demo_data
    pipeline) write into a folder that is neither new, empty, nor the demo's own
    (`data/folders.py`).

    Registered in settings.py's HOOKS after MissingInputsHook, so that (hooks run last
    registered first) it speaks before the missing-input check.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        if "manifest" not in pipeline.all_outputs():
            return
        folder = _manifest_folder(catalog)
        refusal = demo_target_refusal(folder) if folder is not None else None
        if refusal:
            raise UnsafeDemoTargetError(refusal)


def _manifest_folder(catalog: Any) -> Path | None:
    """The folder that the catalog's `manifest` dataset writes into (data_root), when known."""
    try:
        dataset = catalog.get("manifest") if hasattr(catalog, "get") else catalog._get_dataset("manifest")
    except Exception:  # describing a dataset must never break a run
        return None
    for attr in ("_filepath", "_path", "filepath", "path"):
        value = getattr(dataset, attr, None)
        if value:
            return Path(str(value)).parent
    return None
