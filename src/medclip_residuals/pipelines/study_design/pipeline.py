"""Study design pipeline: the split by patient and the targets, shared by the residual pipelines."""

from kedro.pipeline import Node, Pipeline

from .nodes import select_targets, split_by_patient


def create_pipeline(**kwargs) -> Pipeline:
    """data_split and residual_targets, read by residual_1 and residual_2."""
    return Pipeline(
        [
            Node(
                func=split_by_patient,
                inputs={
                    "image_manifest": "image_manifest",
                    "image_embeddings": "image_embeddings",
                    "params": "params:study_design",
                    "seed": "params:seed",
                },
                outputs="data_split",
                name="split_by_patient",
            ),
            Node(
                func=select_targets,
                inputs={"image_manifest": "image_manifest", "data_split": "data_split", "params": "params:study_design"},
                outputs="residual_targets",
                name="select_targets",
            ),
        ],
        namespace="study_design",
        prefix_datasets_with_namespace=False,
    )
