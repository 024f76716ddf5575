"""Study design: the study's one split of patients into roles, and the targets."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
