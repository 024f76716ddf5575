"""The `demo` pipeline: all of the project's pipelines, composed through their create_pipeline."""

from importlib import import_module

from kedro.pipeline import Pipeline

DEMO_ORDER = (
    "demo_data",
    "data_validation",
    "encoder_training",
    "embedding",
    "phenotyping",
    "study_design",
    "residual_1",
    "residual_2",
    "explainability",
)


def create_pipeline(**kwargs) -> Pipeline:
    """Generate the demo dataset, train the demo encoder and run every analysis on it."""
    return sum(
        (import_module(f"medclip_residuals.pipelines.{name}").create_pipeline() for name in DEMO_ORDER),
        Pipeline([]),
    )
