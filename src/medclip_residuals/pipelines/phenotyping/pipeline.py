"""Phenotyping pipeline: scores -> top-k table -> w per image -> evaluation against truth."""

from kedro.pipeline import Node, Pipeline

from .nodes import embed_phenotypes, evaluate_phenotypes, make_phenotype_table, score_phenotypes


def create_pipeline(**kwargs) -> Pipeline:
    """Score images against the vocabulary, embed each image's phenotypes, evaluate."""
    return Pipeline(
        [
            Node(
                func=score_phenotypes,
                inputs={
                    "image_embeddings": "image_embeddings",
                    "phenotype_embeddings": "phenotype_embeddings",
                    "image_manifest": "image_manifest",
                    "params": "params:phenotyping",
                    "device": "params:device",
                },
                outputs="phenotype_scores",
                name="score_phenotypes",
            ),
            Node(
                func=make_phenotype_table,
                inputs={"phenotype_scores": "phenotype_scores", "phenotype_embeddings": "phenotype_embeddings"},
                outputs="phenotype_table",
                name="make_phenotype_table",
            ),
            Node(
                func=embed_phenotypes,
                inputs={
                    "phenotype_scores": "phenotype_scores",
                    "phenotype_embeddings": "phenotype_embeddings",
                    "image_manifest": "image_manifest",
                    "report_mentions": "report_mentions",
                    "medclip_encoder": "medclip_encoder",
                    "params": "params:phenotyping",
                },
                outputs="phenotype_sentence_embeddings",
                name="embed_phenotypes",
            ),
            Node(
                func=evaluate_phenotypes,
                inputs={
                    "phenotype_scores": "phenotype_scores",
                    "phenotype_embeddings": "phenotype_embeddings",
                    "phenotype_sentence_embeddings": "phenotype_sentence_embeddings",
                    "image_manifest": "image_manifest",
                    "image_localizations": "image_localizations",
                    "study_split": "study_split",
                    "params": "params:phenotyping",
                },
                outputs="phenotyping_metrics",
                name="evaluate_phenotypes",
            ),
        ],
        namespace="phenotyping",
        prefix_datasets_with_namespace=False,
    )
