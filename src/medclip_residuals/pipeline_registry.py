"""Project pipelines: one per folder of `pipelines/`, and the selections made of them.

An explicit registry rather than Kedro's `find_pipelines()`: a selection (`demo`) is no
folder, and under `--pipelines demo` find_pipelines warns that it cannot import one.
tests/test_pipeline_registry.py checks that every folder of `pipelines/` is listed here.
"""

from importlib import import_module

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
    pipelines = {name: import_module(f"medclip_residuals.pipelines.{name}").create_pipeline() for name in PIPELINE_ORDER}
    for selection, names in SELECTIONS.items():
        pipelines[selection] = sum((pipelines[name] for name in names), Pipeline([]))
    return pipelines
