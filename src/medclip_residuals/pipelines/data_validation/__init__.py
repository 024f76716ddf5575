"""Validate a dataset against the data contract before any model runs."""

from medclip_residuals.pipelines.data_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
