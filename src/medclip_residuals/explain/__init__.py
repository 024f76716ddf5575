"""Grad-CAM and what it is judged by, in one package.

- CAM: `cam` (CamExplainer: pytorch-grad-cam's hooks, methods by name), `token_similarity`
  (the gradient-free token-level similarity method, MaskCLIP-style), `layers` (target layers,
  Swin's token grid), `smoothing` (shift smoothing), `targets` (caption targets, with a
  contrast caption or a contrast set, and head targets), `heatmap_model` (ImageEmbeddingModel,
  HeatMapModel).
- The pipeline's steps: `plan` (which heatmaps, the seeded image sample, the per-finding
  prompts), `generate` (the batched loop, chunked), `scoring` (pointing game, Otsu IoU,
  ground-truth regions, caption specificity and distractor hit rate), `interpretation`
  (where the heat lies), `evaluate` (every map of a plan, the metrics), `figures` (the
  caption grid).
"""
