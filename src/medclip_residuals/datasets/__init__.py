"""Custom Kedro datasets, only where kedro-datasets has none that fits.

- OptionalCSVDataset: localizations.csv is optional in the data contract; a missing file
  loads as an empty table instead of failing.
- MedCLIPEncoderDataset: a MedCLIP model (the `medclip` package's classes) saved as
  safetensors with its backbone configuration and tokenizer, versioned.
- TensorDictDataset: named arrays in one safetensors file (heads, heatmaps), versioned.
"""

from importlib import import_module

_MODULES = {
    "OptionalCSVDataset": "optional_csv",
    "MedCLIPEncoderDataset": "encoder_dataset",
    "TensorDictDataset": "tensor_dict",
}

__all__ = list(_MODULES)


def __getattr__(name: str):
    # Lazy, so that reading a CSV does not import torch.
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(name)
