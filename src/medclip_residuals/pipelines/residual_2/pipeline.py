"""Residual_2 pipeline: builds on residual_1's split, targets and predictions (via the catalog)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compute_residuals_2,
    evaluate_residual_2,
    fit_embedding_map,
    plot_residual_2_accuracy,
    train_residual_2,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Fit f on the training split, r = f(i) - w, fit g, compare with image and residual_1."""
    return Pipeline(
        [
            Node(
                fit_embedding_map,
                ["image_embeddings", "phenotype_sentence_embeddings", "data_split", "params:residual_2", "params:seed"],
                "residual_2_map",
                name="fit_embedding_map",
            ),
            Node(
                compute_residuals_2,
                ["image_embeddings", "phenotype_sentence_embeddings", "residual_2_map"],
                "residuals_2",
                name="compute_residuals_2",
            ),
            Node(
                train_residual_2,
                [
                    "residuals_2",
                    "image_manifest",
                    "data_split",
                    "residual_targets",
                    "residual_2_map",
                    "params:residual_1",
                    "params:seed",
                ],
                ["residual_2_heads", "residual_2_predictions"],
                name="train_residual_2",
            ),
            Node(
                evaluate_residual_2,
                [
                    "residual_1_predictions",
                    "residual_2_predictions",
                    "residual_2_map",
                    "residual_targets",
                    "params:residual_2",
                    "params:seed",
                ],
                "residual_2_metrics",
                name="evaluate_residual_2",
            ),
            Node(
                plot_residual_2_accuracy,
                ["residual_2_metrics"],
                "residual_2_accuracy_plot",
                name="plot_residual_2_accuracy",
            ),
        ]
    )
