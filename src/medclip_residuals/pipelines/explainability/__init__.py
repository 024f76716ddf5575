"""Grad-CAM heatmaps for captions and regression heads, scored against ground truth."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
