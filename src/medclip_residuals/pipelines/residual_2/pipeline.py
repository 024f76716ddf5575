"""Residual_2 pipeline: f: i -> w on the head_train role, r = f(i) - w, g on r, compare, plot."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compute_residuals_2,
    evaluate_residual_2,
    fit_embedding_map,
    plot_residual_2_accuracy,
    train_residual_2,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Reads study_design's roles, targets and classifier, and residual_1's predictions (to compare)."""
    return Pipeline(
        [
            Node(
                func=fit_embedding_map,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "phenotype_sentence_embeddings": "phenotype_sentence_embeddings",
                    "study_split": "study_split",
                    "params": "params:residual_2",
                    "seed": "params:seed",
                },
                outputs="residual_2_map",
                name="fit_embedding_map",
            ),
            Node(
                func=compute_residuals_2,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "phenotype_sentence_embeddings": "phenotype_sentence_embeddings",
                    "residual_2_map": "residual_2_map",
                },
                outputs="residuals_2",
                name="compute_residuals_2",
            ),
            Node(
                func=train_residual_2,
                inputs={
                    "residuals_2": "residuals_2",
                    "image_manifest": "image_manifest",
                    "study_split": "study_split",
                    "residual_targets": "residual_targets",
                    "residual_2_map": "residual_2_map",
                    "params": "params:study_design",
                    "seed": "params:seed",
                },
                outputs=["residual_2_heads", "residual_2_predictions"],
                name="train_residual_2",
            ),
            Node(
                func=evaluate_residual_2,
                inputs={
                    "residual_1_predictions": "residual_1_predictions",
                    "residual_2_predictions": "residual_2_predictions",
                    "residual_2_map": "residual_2_map",
                    "residual_targets": "residual_targets",
                    "study_split": "study_split",
                    "params": "params:residual_2",
                    "study_design": "params:study_design",
                    "seed": "params:seed",
                },
                outputs="residual_2_metrics",
                name="evaluate_residual_2",
            ),
            Node(
                func=plot_residual_2_accuracy,
                inputs={"residual_2_metrics": "residual_2_metrics"},
                outputs="residual_2_accuracy_plot",
                name="plot_residual_2_accuracy",
            ),
        ],
        namespace="residual_2",
        prefix_datasets_with_namespace=False,
    )
