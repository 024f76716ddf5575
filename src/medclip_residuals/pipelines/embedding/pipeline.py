"""The embedding pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import embed_captions, embed_images, embed_phenotype_vocabulary


def create_pipeline(**kwargs) -> Pipeline:
    """Images, captions and the phenotype vocabulary through the MedCLIP encoder."""
    return Pipeline(
        [
            Node(
                func=embed_images,
                inputs={"medclip_encoder": "medclip_encoder", "image_manifest": "image_manifest",
                        "device": "params:device", "params": "params:embedding"},
                outputs="image_embeddings",
                name="embed_images",
            ),
            Node(
                func=embed_captions,
                inputs={"medclip_encoder": "medclip_encoder", "image_manifest": "image_manifest",
                        "device": "params:device", "params": "params:embedding"},
                outputs="caption_embeddings",
                name="embed_captions",
            ),
            Node(
                func=embed_phenotype_vocabulary,
                inputs={"medclip_encoder": "medclip_encoder", "device": "params:device", "params": "params:embedding"},
                outputs="phenotype_embeddings",
                name="embed_phenotype_vocabulary",
            ),
        ],
        namespace="embedding",
        prefix_datasets_with_namespace=False,
    )
