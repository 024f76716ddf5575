"""Residual_1 pipeline: r = i - w, fit the classifier on r and on i, evaluate, plot."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compute_residuals_1,
    evaluate_residual_1,
    plot_residual_1_roc,
    sweep_phenotype_settings,
    train_residual_1,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Reads the roles, the targets and the classifier of study_design."""
    return Pipeline(
        [
            Node(
                func=compute_residuals_1,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "phenotype_sentence_embeddings": "phenotype_sentence_embeddings",
                },
                outputs="residuals_1",
                name="compute_residuals_1",
            ),
            Node(
                func=train_residual_1,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "residuals_1": "residuals_1",
                    "image_manifest": "image_manifest",
                    "study_split": "study_split",
                    "residual_targets": "residual_targets",
                    "params": "params:study_design",
                    "seed": "params:seed",
                },
                outputs=["residual_1_heads", "residual_1_predictions"],
                name="train_residual_1",
            ),
            Node(
                func=evaluate_residual_1,
                inputs={
                    "residual_1_predictions": "residual_1_predictions",
                    "residual_targets": "residual_targets",
                    "study_split": "study_split",
                    "params": "params:study_design",
                    "seed": "params:seed",
                },
                outputs="residual_1_metrics",
                name="evaluate_residual_1",
            ),
            Node(
                func=sweep_phenotype_settings,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "phenotype_embeddings": "phenotype_embeddings",
                    "image_manifest": "image_manifest",
                    "report_mentions": "report_mentions",
                    "medclip_encoder": "medclip_encoder",
                    "study_split": "study_split",
                    "residual_targets": "residual_targets",
                    "params": "params:residual_1",
                    "phenotyping": "params:phenotyping",
                    "study_design": "params:study_design",
                    "seed": "params:seed",
                    "device": "params:device",
                },
                outputs="residual_1_sweep",
                name="sweep_phenotype_settings",
            ),
            Node(
                func=plot_residual_1_roc,
                inputs={"residual_1_predictions": "residual_1_predictions", "residual_1_metrics": "residual_1_metrics"},
                outputs="residual_1_roc_plot",
                name="plot_residual_1_roc",
            ),
        ],
        namespace="residual_1",
        prefix_datasets_with_namespace=False,
    )
