"""Custom Kedro datasets, only where kedro-datasets has none that fits.

- ContractCSVDataset: manifest.csv read as the data contract reads it (Python's csv module):
  CSV-level faults and each record's line number travel with the table, for validation to
  report as file:row [column] reason instead of a traceback at load time.
- OptionalCSVDataset: the same for localizations.csv, optional in the data contract; a
  missing file loads as an empty table instead of failing.
- MedCLIPEncoderDataset: a MedCLIP model (the `medclip` package's classes) saved as
  safetensors with its backbone configuration and tokenizer, versioned.
- TensorDictDataset: named arrays in one safetensors file (heads, maps), versioned.
- HeatmapStoreDataset (heatmap_store): heatmaps written and read back in chunks.
"""

from importlib import import_module

_MODULES = {
    "ContractCSVDataset": "contract_csv",
    "OptionalCSVDataset": "contract_csv",
    "MedCLIPEncoderDataset": "encoder_dataset",
    "TensorDictDataset": "tensor_dict",
}

__all__ = list(_MODULES)


def __getattr__(name: str):
    # Lazy, so that reading a CSV does not import torch.
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(name)
