"""The data contract in code (docs/DATA_CONTRACT.md).

- `contract`: reading and validating manifest.csv and localizations.csv, label policies.
- `images`: decoding PNG, JPEG and DICOM to grey float32 in [0, 1].
- `preprocess`: MedCLIP's preprocessing (torch) and its inverse geometry for heatmaps.

Import the submodule you need; this package imports nothing heavy.
"""
