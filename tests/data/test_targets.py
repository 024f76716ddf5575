"""data/targets.py: CheXpert labels as binary targets under the project's uncertainty policy."""

from __future__ import annotations

import numpy as np
import pytest

from medclip_residuals.data.targets import target_labels


def test_uncertainty_policies():
    raw = np.array([1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(target_labels(raw, "u_ones"), [1, 0, 1, 0])
    np.testing.assert_array_equal(target_labels(raw, "u_zeros"), [1, 0, 0, 0])
    np.testing.assert_array_equal(target_labels(raw, "ignore"), [1, 0, np.nan, 0])
    with pytest.raises(ValueError, match="must be one of"):
        target_labels(raw, "u_maybe")
    with pytest.raises(ValueError, match=r"1, 0, -1 or empty; found \[2.0\]"):
        target_labels(np.array([2.0]), "ignore")


def test_soft_labels_are_not_targets():
    """u_half is a policy of data.labels (soft labels), but a target must be 0/1."""
    with pytest.raises(ValueError, match=r"'u_half' gives soft labels \(\[0.5\]\)"):
        target_labels(np.array([1.0, -1.0]), "u_half")
    np.testing.assert_array_equal(target_labels(np.array([1.0, 0.0]), "u_half"), [1, 0])  # no -1: nothing soft
