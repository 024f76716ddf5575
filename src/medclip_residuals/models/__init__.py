"""The model layer: the MedCLIP encoder and everything fitted on or with it.

- `medclip_loader`, `encoder`, `tokenizer`, `device`: MedCLIP built and loaded for every
  profile (`EncoderParams`), wrapped as `MedCLIPEncoder`, on the chosen device.
- `embed`: the one image-embedding loop (files or cached pixels); `compute`: how a model pass
  shares the machine (workers, threads, bf16, channels-last); `report_text`: which text of a
  report is embedded and how long it is in tokens.
- `training`, `image_source`, `zero_shot`: contrastive training of the encoder, its images
  (cached or streamed), and its held-out zero-shot AUC.
- `phenotypes`: top-k phenotypes and the phenotype embedding `w`, and their evaluation.
- `classifiers`, `residuals`, `evaluation`, `figures`, `heads`: the one classifier and the
  map `f`, the residual vectors, AUCs and accuracies with CIs, the slide plots, and the
  heads as torch modules (what explain/'s HeatMapModel runs).
"""
