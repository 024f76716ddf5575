"""Heatmap scoring and interpretation."""
