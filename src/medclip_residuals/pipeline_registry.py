"""Project pipelines."""

from importlib import import_module

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that a user with their own data and MedCLIP weights runs by default.
# `demo_data` (writes a phantom dataset) and `encoder_training` (fine-tunes the encoder)
# only run when asked for, or through the `demo` selection.
ANALYSIS_PIPELINES = (
    "data_validation",
    "embedding",
    "phenotyping",
    "residual_1",
    "residual_2",
    "explainability",
)
DEMO_ORDER = ("demo_data", "data_validation", "encoder_training") + ANALYSIS_PIPELINES[1:]


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    `__default__` runs the analysis on an existing dataset with an existing encoder;
    `demo` runs everything, from generating the phantom dataset to the heatmaps.
    """
    pipelines = find_pipelines()
    # Kedro 1.7's find_pipelines loads only the names given to `--pipelines`; the two
    # selections below are made of the others, so those are always built here.
    for name in DEMO_ORDER:
        if name not in pipelines:
            pipelines[name] = import_module(f"medclip_residuals.pipelines.{name}").create_pipeline()
    pipelines["__default__"] = sum((pipelines[name] for name in ANALYSIS_PIPELINES), Pipeline([]))
    pipelines["demo"] = sum((pipelines[name] for name in DEMO_ORDER), Pipeline([]))
    return pipelines
