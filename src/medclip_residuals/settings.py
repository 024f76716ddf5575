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
from medclip_residuals.tracking import TrackingHook
from medclip_residuals.utils.known_warnings import silence_known_warnings

# Before Kedro makes its config loader: omegaconf's deprecation of a call Kedro makes.
silence_known_warnings()

# Kedro calls hooks last registered first: the Dask hook reads conf/<env>/dask.yml first (it
# starts its client only for a pipeline with a sharded node), then the parameters are checked;
# the demo-data guard speaks before the missing-input check. Tracking comes first in the tuple,
# so it is called last: an MLflow run opens only once every check has passed (a refused run
# leaves no run marked "running" in the store).
HOOKS = (
    TrackingHook(),
    MissingInputsHook(),
    DemoTargetGuardHook(),
    RunProvenanceHook(),
    StudySplitGuardHook(),
    ProgressLoggingHook(),
    RunTimingHook(),
    ParametersCheckHook(),
    DaskClientHook(),
)
# kedro-mlflow registers its own hook through its entry point; TrackingHook drives that hook
# itself, so that a store that fails warns instead of stopping the run (src/medclip_residuals/tracking.py).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow", "kedro_mlflow")

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
