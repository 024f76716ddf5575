"""Explainability pipeline: plan -> Grad-CAM heatmaps -> scores and interpretation -> grid figure."""

from kedro.pipeline import Node, Pipeline

from .nodes import compute_heatmaps, plan_heatmaps, plot_caption_heatmap_grid, score_heatmaps, select_images


def create_pipeline(**kwargs) -> Pipeline:
    """Heatmaps for captions and for the residual pipelines' heads, scored against the
    localizations (images without any are counted, not scored)."""
    return Pipeline(
        [
            Node(
                func=select_images,
                inputs={"image_manifest": "image_manifest", "study_split": "study_split", "params": "params:explainability"},
                outputs="explained_manifest",
                name="select_images",
            ),
            Node(
                func=plan_heatmaps,
                inputs={
                    "image_manifest": "explained_manifest",
                    "image_localizations": "image_localizations",
                    "residual_1_heads": "residual_1_heads",
                    "residual_2_heads": "residual_2_heads",
                    "params": "params:explainability",
                    "seed": "params:seed",
                },
                outputs="heatmap_plan",
                name="plan_heatmaps",
            ),
            Node(
                func=compute_heatmaps,
                inputs={
                    "medclip_encoder": "medclip_encoder",
                    "image_manifest": "explained_manifest",
                    "heatmap_plan": "heatmap_plan",
                    "phenotype_sentence_embeddings": "phenotype_sentence_embeddings",
                    "residual_1_heads": "residual_1_heads",
                    "residual_2_heads": "residual_2_heads",
                    "params": "params:explainability",
                    "device": "params:device",
                },
                outputs="heatmaps",
                name="compute_heatmaps",
            ),
            Node(
                func=score_heatmaps,
                inputs={
                    "heatmaps": "heatmaps",
                    "heatmap_plan": "heatmap_plan",
                    "image_manifest": "explained_manifest",
                    "image_localizations": "image_localizations",
                    "params": "params:explainability",
                    "seed": "params:seed",
                },
                outputs=["heatmap_scores", "explainability_metrics"],
                name="score_heatmaps",
            ),
            Node(
                func=plot_caption_heatmap_grid,
                inputs={
                    "heatmaps": "heatmaps",
                    "heatmap_plan": "heatmap_plan",
                    "heatmap_scores": "heatmap_scores",
                    "image_manifest": "explained_manifest",
                    "image_localizations": "image_localizations",
                    "params": "params:explainability",
                    "seed": "params:seed",
                },
                outputs="caption_heatmap_grid",
                name="plot_caption_heatmap_grid",
            ),
        ],
        namespace="explainability",
        prefix_datasets_with_namespace=False,
    )
