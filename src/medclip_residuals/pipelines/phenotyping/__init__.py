"""Phenotyping: top-k phenotype phrases per image and the phenotype text embedding `w`."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
