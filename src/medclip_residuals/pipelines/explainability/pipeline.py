"""Explainability pipeline: plan -> Grad-CAM heatmaps -> scores and interpretation -> grid figure."""

from kedro.pipeline import Node, Pipeline

from .nodes import compute_heatmaps, plan_heatmaps, plot_caption_heatmap_grid, score_heatmaps


def create_pipeline(**kwargs) -> Pipeline:
    """Heatmaps for captions and for the residual pipelines' heads, scored against the
    localizations (images without any are counted, not scored)."""
    return Pipeline(
        [
            Node(
                plan_heatmaps,
                [
                    "image_manifest",
                    "image_localizations",
                    "residual_1_heads",
                    "residual_2_heads",
                    "params:explainability",
                    "params:seed",
                ],
                "heatmap_plan",
                name="plan_heatmaps",
            ),
            Node(
                compute_heatmaps,
                [
                    "medclip_encoder",
                    "image_manifest",
                    "heatmap_plan",
                    "phenotype_sentence_embeddings",
                    "residual_1_heads",
                    "residual_2_heads",
                    "params:explainability",
                    "params:device",
                ],
                "heatmaps",
                name="compute_heatmaps",
            ),
            Node(
                score_heatmaps,
                [
                    "heatmaps",
                    "heatmap_plan",
                    "image_manifest",
                    "image_localizations",
                    "params:explainability",
                    "params:seed",
                ],
                ["heatmap_scores", "explainability_metrics"],
                name="score_heatmaps",
            ),
            Node(
                plot_caption_heatmap_grid,
                [
                    "heatmaps",
                    "heatmap_plan",
                    "heatmap_scores",
                    "image_manifest",
                    "image_localizations",
                    "params:explainability",
                    "params:seed",
                ],
                "caption_heatmap_grid",
                name="plot_caption_heatmap_grid",
            ),
        ]
    )
