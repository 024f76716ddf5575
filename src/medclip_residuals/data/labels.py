"""The project's label convention: the CheXpert findings, the outcome columns, the
localization table's columns, and the one uncertainty policy that turns CheXpert labels into
training targets.

CheXpert-style labels are 1 (positive), 0 (negative), -1 (uncertain) and empty (not
mentioned). Every consumer (the encoder's label matching, the residual heads' targets)
turns them into numbers through `apply_uncertainty`, so the policy names mean one thing.

Example:
    >>> apply_uncertainty([1.0, -1.0, float("nan"), 0.0], "u_ones").tolist()
    [1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Manifest columns from the hospital record (a diagnosis, an admission, a death): named
# `outcome:<name>`, values 1, 0 or empty (unknown: left out, never counted as negative).
OUTCOME_PREFIX = "outcome:"

BOX_COLUMNS: tuple[str, ...] = ("x", "y", "w", "h")
LOCALIZATION_COLUMNS: tuple[str, ...] = ("image_id", "finding", "mask_path", *BOX_COLUMNS)
# Known to the demo data; present (possibly empty) in every validated localization table.
LOCALIZATION_EXTRA_COLUMNS: tuple[str, ...] = ("side", "zone")

# What an uncertain (-1) label becomes: 1, 0, left out (NaN), or a soft 0.5.
UNCERTAIN_VALUE: dict[str, float] = {"u_ones": 1.0, "u_zeros": 0.0, "ignore": np.nan, "u_half": 0.5}
UNCERTAINTY_POLICIES: tuple[str, ...] = tuple(UNCERTAIN_VALUE)


def apply_uncertainty(values: pd.Series | np.ndarray | list[float], policy: str) -> np.ndarray:
    """CheXpert labels (1, 0, -1, NaN) as float targets under an uncertainty policy.

    Args:
        values: labels as numbers; NaN (not mentioned) counts as negative, as in CheXpert
            training.
        policy: one of `UNCERTAINTY_POLICIES`: -1 becomes 1 (`u_ones`), 0 (`u_zeros`),
            NaN (`ignore`: the row is left out for this target) or 0.5 (`u_half`).

    Raises:
        ValueError: an unknown policy, or a value other than 1, 0, -1 or NaN.
    """
    if policy not in UNCERTAIN_VALUE:
        raise ValueError(f"uncertainty_policy must be one of {UNCERTAINTY_POLICIES}, got {policy!r}")
    y = np.asarray(values, dtype=float).copy()
    bad = ~(np.isnan(y) | np.isin(y, (1.0, 0.0, -1.0)))
    if bad.any():
        raise ValueError(f"label values must be 1, 0, -1 or empty; found {sorted({float(v) for v in y[bad]})[:5]}")
    uncertain = y == -1.0
    y[np.isnan(y)] = 0.0
    y[uncertain] = UNCERTAIN_VALUE[policy]
    return y


def is_outcome_column(column: str) -> bool:
    """A column of the data contract's outcome kind (`outcome:<name>`)."""
    return str(column).startswith(OUTCOME_PREFIX)


def outcome_columns(columns: list[str] | tuple[str, ...]) -> list[str]:
    """The outcome columns among `columns`, in their order."""
    return [c for c in columns if is_outcome_column(c)]
