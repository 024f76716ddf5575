"""Residual regression 2: f: i -> w, r = f(i) - w, g: r -> disease."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
