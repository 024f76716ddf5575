"""Project settings (https://docs.kedro.org/en/stable/kedro_project_setup/settings.html)."""

from kedro.config import OmegaConfigLoader

from medclip_residuals.distributed.hooks import DaskClientHook
from medclip_residuals.hooks import (
    MissingInputsHook,
    ParametersCheckHook,
    ProgressLoggingHook,
    RunProvenanceHook,
    RunTimingHook,
)
from medclip_residuals.pipelines.demo_data.hooks import DemoTargetGuardHook
from medclip_residuals.pipelines.study_design.hooks import StudySplitGuardHook

# Kedro calls hooks last registered first: the Dask hook reads conf/<env>/dask.yml first (it
# starts its client only for a pipeline with a sharded node), then the parameters are checked;
# the demo-data guard speaks before the missing-input check.
HOOKS = (
    MissingInputsHook(),
    DemoTargetGuardHook(),
    RunProvenanceHook(),
    StudySplitGuardHook(),
    ProgressLoggingHook(),
    RunTimingHook(),
    ParametersCheckHook(),
    DaskClientHook(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/local, conf/medclip_vit, ...) overrides single parameters inside a
    # pipeline's dict instead of replacing the whole dict; catalog entries are replaced whole.
    "merge_strategy": {"parameters": "soft"},
    # conf/<env>/dask.yml: the engine of the embedding and heatmap nodes (distributed/hooks.py)
    "config_patterns": {"dask": ["dask*", "dask*/**"]},
}
