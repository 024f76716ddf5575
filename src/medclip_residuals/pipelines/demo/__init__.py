"""The `demo` selection: every pipeline, from the phantom dataset to the heatmaps."""

from .pipeline import DEMO_ORDER, create_pipeline

__all__ = ["DEMO_ORDER", "create_pipeline"]
