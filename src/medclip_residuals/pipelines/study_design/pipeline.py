"""Study design pipeline: the study's one split by patient and the targets."""

from kedro.pipeline import Node, Pipeline

from .nodes import make_study_split, select_targets


def create_pipeline(**kwargs) -> Pipeline:
    """study_split (read by every pipeline after validation) and residual_targets."""
    return Pipeline(
        [
            Node(
                func=make_study_split,
                inputs={"image_manifest": "image_manifest", "params": "params:study_design", "seed": "params:seed"},
                outputs="study_split",
                name="make_study_split",
            ),
            Node(
                func=select_targets,
                inputs={"image_manifest": "image_manifest", "study_split": "study_split", "params": "params:study_design"},
                outputs="residual_targets",
                name="select_targets",
            ),
        ],
        namespace="study_design",
        prefix_datasets_with_namespace=False,
    )
