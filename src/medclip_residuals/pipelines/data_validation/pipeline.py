"""The data_validation pipeline: manifest.csv + localizations.csv -> typed tables, report labels, report."""

from kedro.pipeline import Node, Pipeline

from medclip_residuals.pipelines.data_validation.nodes import fill_labels_from_reports, label_reports, validate_dataset


def create_pipeline(**kwargs) -> Pipeline:
    """Validate (one node, so that every problem of the dataset is reported at once), label
    the reports, and fill the labels the manifest leaves empty when asked.

    The report labeller lives here because it reads only the dataset: its labels must exist
    before anything trains on labels (encoder_training's label matching, the residual targets).
    """
    return Pipeline(
        [
            Node(
                func=validate_dataset,
                inputs={
                    "manifest": "manifest",
                    "localizations": "localizations",
                    "data_root": "params:data_root",
                    "params": "params:data_validation",
                    "encoder_params": "params:encoder",
                },
                outputs=["contract_manifest", "image_localizations", "contract_report"],
                name="validate_dataset",
            ),
            Node(
                func=label_reports,
                inputs={"image_manifest": "contract_manifest", "params": "params:data_validation"},
                outputs=["report_labels", "report_mentions"],
                name="label_reports",
            ),
            Node(
                func=fill_labels_from_reports,
                inputs={
                    "image_manifest": "contract_manifest",
                    "report_labels": "report_labels",
                    "validation_report": "contract_report",
                    "params": "params:data_validation",
                },
                outputs=["image_manifest", "validation_report"],
                name="fill_labels_from_reports",
            ),
        ],
        namespace="data_validation",
        prefix_datasets_with_namespace=False,
    )
