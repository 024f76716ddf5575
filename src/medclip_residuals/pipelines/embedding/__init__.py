"""The embedding pipeline: MedCLIP embeddings of images, captions and the phenotype vocabulary."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
