"""Project pipelines."""

from importlib import import_module

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# What `kedro run` runs: the analysis of an existing dataset with an existing encoder, as a
# user with their own data and the MedCLIP weights needs it. `demo_data` (writes a phantom
# dataset) and `encoder_training` run only when named, or through `demo` (everything).
ANALYSIS_PIPELINES = (
    "data_validation",
    "embedding",
    "phenotyping",
    "study_design",
    "residual_1",
    "residual_2",
    "explainability",
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines: one per folder of `pipelines/`, plus `__default__`."""
    pipelines = find_pipelines()
    # Kedro 1.7's find_pipelines loads only the names given to `--pipelines`; __default__
    # is made of the analysis pipelines, so those are always built.
    for name in ANALYSIS_PIPELINES:
        if name not in pipelines:
            pipelines[name] = import_module(f"medclip_residuals.pipelines.{name}").create_pipeline()
    pipelines["__default__"] = sum((pipelines[name] for name in ANALYSIS_PIPELINES), Pipeline([]))
    return pipelines
