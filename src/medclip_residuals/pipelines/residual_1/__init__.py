"""Residual regression 1: r = i - w; logistic regression on r against the image alone."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
