"""Residual_1 pipeline: split by patient, pick targets, r = i - w, fit, evaluate, plot."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compute_residuals_1,
    evaluate_residual_1,
    plot_residual_1_roc,
    select_targets,
    split_by_patient,
    train_residual_1,
)


def create_pipeline(**kwargs) -> Pipeline:
    """The split and target list made here are read again by residual_2."""
    return Pipeline(
        [
            Node(
                split_by_patient,
                ["image_manifest", "image_embeddings", "params:residual_1", "params:seed"],
                "data_split",
                name="split_by_patient",
            ),
            Node(
                select_targets,
                ["image_manifest", "data_split", "params:residual_1"],
                "residual_targets",
                name="select_targets",
            ),
            Node(
                compute_residuals_1,
                ["image_embeddings", "phenotype_sentence_embeddings"],
                "residuals_1",
                name="compute_residuals_1",
            ),
            Node(
                train_residual_1,
                [
                    "image_embeddings",
                    "residuals_1",
                    "image_manifest",
                    "data_split",
                    "residual_targets",
                    "params:residual_1",
                    "params:seed",
                ],
                ["residual_1_heads", "residual_1_predictions"],
                name="train_residual_1",
            ),
            Node(
                evaluate_residual_1,
                ["residual_1_predictions", "residual_targets", "params:residual_1", "params:seed"],
                "residual_1_metrics",
                name="evaluate_residual_1",
            ),
            Node(
                plot_residual_1_roc,
                ["residual_1_predictions", "residual_1_metrics"],
                "residual_1_roc_plot",
                name="plot_residual_1_roc",
            ),
        ]
    )
