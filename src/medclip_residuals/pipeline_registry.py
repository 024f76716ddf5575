"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that a user with their own data and MedCLIP weights runs by default.
# `demo_data` (writes a phantom dataset) and `encoder_training` (fine-tunes the encoder)
# only run when asked for, or through the `demo` pipeline that `make run` uses.
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
    pipelines["__default__"] = sum(
        (pipelines[name] for name in ANALYSIS_PIPELINES if name in pipelines), Pipeline([])
    )
    pipelines["demo"] = sum(
        (pipelines[name] for name in DEMO_ORDER if name in pipelines), Pipeline([])
    )
    return pipelines
