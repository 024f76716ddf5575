"""The demo_data pipeline's hook: the phantom dataset is never written over a user's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from medclip_residuals.data.folders import demo_target_refusal
from medclip_residuals.utils.catalog import dataset_filepath


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
        manifest = dataset_filepath(catalog, "manifest")
        refusal = demo_target_refusal(Path(manifest).parent) if manifest else None
        if refusal:
            raise UnsafeDemoTargetError(refusal)
