"""Grad-CAM and what it is judged by, in one package.

- CAM: `cam` (CamExplainer: pytorch-grad-cam's hooks, methods by name), `layers` (target
  layers, Swin's token grid), `smoothing` (shift smoothing), `targets` (caption and head
  targets), `heatmap_model` (ImageEmbeddingModel, HeatMapModel).
- The pipeline's steps: `plan` (which heatmaps, the seeded image sample), `generate` (the
  batched loop, chunked), `scoring` (pointing game, Otsu IoU, ground-truth regions),
  `interpretation` (where the heat lies), `evaluate` (every map of a plan, the metrics),
  `figures` (the caption grid).
"""
