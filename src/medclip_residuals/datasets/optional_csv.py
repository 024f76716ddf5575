"""A CSV that may be absent: localizations.csv is optional in the data contract.

Kept as an import path; the dataset itself lives in `contract_csv.py` beside `ContractCSVDataset`.
"""

from medclip_residuals.datasets.contract_csv import OptionalCSVDataset

__all__ = ["OptionalCSVDataset"]
