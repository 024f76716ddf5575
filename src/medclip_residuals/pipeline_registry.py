"""Project pipelines: one per folder of `pipelines/`, and the selections made of them."""

from importlib import import_module

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Every pipeline, in the order a whole demo runs them (each starts where an earlier one ends).
PIPELINE_ORDER = (
    "demo_data",
    "data_validation",
    "study_design",
    "encoder_training",
    "embedding",
    "phenotyping",
    "residual_1",
    "residual_2",
    "explainability",
)
# Selections: `kedro run` (__default__) is the analysis of an existing dataset with an existing
# encoder, as a user with their own data and the MedCLIP weights needs it; `demo_data` (writes
# a phantom dataset) and `encoder_training` run only when named, or through `demo` (everything).
SELECTIONS = {
    "__default__": tuple(name for name in PIPELINE_ORDER if name not in ("demo_data", "encoder_training")),
    "demo": PIPELINE_ORDER,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Each pipeline under its folder's name, plus the selections of SELECTIONS."""
    # Under `--pipelines a,b` Kedro 1.7's find_pipelines builds only a and b, so the pipelines
    # a selection is made of are built here when it did not.
    pipelines = find_pipelines()
    for name in PIPELINE_ORDER:
        if name not in pipelines:
            pipelines[name] = import_module(f"medclip_residuals.pipelines.{name}").create_pipeline()
    for selection, names in SELECTIONS.items():
        pipelines[selection] = sum((pipelines[name] for name in names), Pipeline([]))
    return pipelines
