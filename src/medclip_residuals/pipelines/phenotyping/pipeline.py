"""Phenotyping pipeline: scores -> top-k table -> w per image -> evaluation against truth."""

from kedro.pipeline import Node, Pipeline

from .nodes import embed_phenotypes, evaluate_phenotypes, make_phenotype_table, score_phenotypes


def create_pipeline(**kwargs) -> Pipeline:
    """Score images against the vocabulary, embed each image's phenotypes, evaluate."""
    return Pipeline(
        [
            Node(
                score_phenotypes,
                ["image_embeddings", "phenotype_embeddings", "image_manifest", "params:phenotyping", "params:device"],
                "phenotype_scores",
                name="score_phenotypes",
            ),
            Node(
                make_phenotype_table,
                ["phenotype_scores", "phenotype_embeddings"],
                "phenotype_table",
                name="make_phenotype_table",
            ),
            Node(
                embed_phenotypes,
                [
                    "phenotype_scores",
                    "phenotype_embeddings",
                    "image_manifest",
                    "report_mentions",
                    "medclip_encoder",
                    "params:phenotyping",
                ],
                "phenotype_sentence_embeddings",
                name="embed_phenotypes",
            ),
            Node(
                evaluate_phenotypes,
                [
                    "phenotype_scores",
                    "phenotype_embeddings",
                    "phenotype_sentence_embeddings",
                    "image_manifest",
                    "image_localizations",
                    "params:phenotyping",
                ],
                "phenotyping_metrics",
                name="evaluate_phenotypes",
            ),
        ]
    )
