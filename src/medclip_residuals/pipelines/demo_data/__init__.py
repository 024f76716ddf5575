"""The `demo_data` pipeline: writes the bundled phantom chest X-ray dataset (a data_root)."""

from medclip_residuals.pipelines.demo_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
