"""The data_validation pipeline: manifest.csv + localizations.csv -> typed tables + report."""

from kedro.pipeline import Node, Pipeline

from medclip_residuals.pipelines.data_validation.nodes import validate_dataset


def create_pipeline(**kwargs) -> Pipeline:
    """One node, so that every problem of the dataset is reported at once."""
    return Pipeline(
        [
            Node(
                func=validate_dataset,
                inputs=["manifest", "localizations", "params:data_root", "params:data_validation", "params:encoder"],
                outputs=["image_manifest", "image_localizations", "validation_report"],
                name="validate_dataset",
            )
        ]
    )
