"""The embedding pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import embed_captions, embed_images, embed_phenotype_vocabulary


def create_pipeline(**kwargs) -> Pipeline:
    """Images, captions and the phenotype vocabulary through the MedCLIP encoder."""
    return Pipeline(
        [
            Node(
                embed_images,
                ["medclip_encoder", "image_manifest", "params:device", "params:embedding"],
                "image_embeddings",
                name="embed_images",
            ),
            Node(
                embed_captions,
                ["medclip_encoder", "image_manifest", "params:device", "params:embedding"],
                "caption_embeddings",
                name="embed_captions",
            ),
            Node(
                embed_phenotype_vocabulary,
                ["medclip_encoder", "params:device", "params:embedding"],
                "phenotype_embeddings",
                name="embed_phenotype_vocabulary",
            ),
        ]
    )
