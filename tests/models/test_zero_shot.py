"""models/zero_shot.py: the held-out labels of the encoder's metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.models.zero_shot import finding_labels


def test_finding_labels_treat_uncertain_as_unknown_and_empty_as_negative():
    rows = pd.DataFrame({"Pneumonia": [1.0, 0.0, -1.0, np.nan], "Edema": [0.0, 0.0, np.nan, 0.0],
                         "No Finding": [0.0, 1.0, 0.0, 1.0]})
    labels = finding_labels(rows, None, ["No Finding"])
    assert list(labels) == ["Pneumonia"]  # Edema has no positive; No Finding is excluded
    np.testing.assert_array_equal(labels["Pneumonia"], [1.0, 0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="Fracture"):
        finding_labels(rows, ["Fracture"], [])
