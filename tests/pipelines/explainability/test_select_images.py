"""select_images: the explainability pipeline explains the images of the chosen study roles."""

from __future__ import annotations

import pandas as pd
import pytest

from medclip_residuals.pipelines.explainability.nodes import select_images
from medclip_residuals.utils.params import ParameterError


def test_only_the_chosen_roles_are_explained(base_params):
    manifest = pd.DataFrame({"image_id": ["d", "c", "b", "a"], "patient_id": ["p4", "p3", "p2", "p1"]})
    split = manifest.assign(role=["test", "validation", "encoder_train", "test"])
    assert select_images(manifest, split, base_params("explainability"))["image_id"].tolist() == ["a", "d"]
    both = select_images(manifest, split, base_params("explainability", roles=["validation", "test"]))
    assert both["image_id"].tolist() == ["a", "c", "d"]
    with pytest.raises(ParameterError, match=r"explainability.roles\[0\]: 'heldout' is not one of"):
        select_images(manifest, split, base_params("explainability", roles=["heldout"]))
