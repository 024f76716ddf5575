"""The data contract in code (docs/DATA_CONTRACT.md), and the demo dataset.

- `contract`: reading and validating manifest.csv and localizations.csv.
- `labels`: the CheXpert findings, the localization columns and the uncertainty policy.
- `targets`: labels as binary targets, the split by patient and the choice of targets.
- `study_split`: the study's one split of patients into roles (encoder_train, head_train,
  validation, test).
- `report_labels`: CheXpert labels from report text (mentions, negation, uncertainty).
- `images`: decoding PNG, JPEG and DICOM to grey float32 in [0, 1].
- `preprocess`: MedCLIP's preprocessing (torch) and its inverse geometry for heatmaps.
- `folders`: which folders the demo may write into.
- `phantom`, `phantom_latent`, `phantom_render`, `phantom_text`, `phantom_grid`: the procedural
  demo dataset (planning; the latent disease -> finding -> outcome model and label noise;
  drawing; captions and labels; a grid figure to look at).

Import the submodule you need; this package imports nothing heavy.
"""
