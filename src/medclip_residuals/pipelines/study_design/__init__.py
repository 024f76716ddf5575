"""Study design: the one split of the embedded images by patient and the target diseases,
read by residual_1 and residual_2 alike."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
