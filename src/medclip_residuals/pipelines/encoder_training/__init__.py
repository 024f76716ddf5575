"""encoder_training: contrastive fine-tuning of the MedCLIP encoder (from scratch for `demo`)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
