"""The guard that an encoder trained here was trained on this run's encoder_train role."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from medclip_residuals.data.study_split import role_fingerprint
from medclip_residuals.pipelines.study_design.hooks import StudySplitGuardHook, StudySplitMismatchError


def split_with(encoder_train: list[str]) -> pd.DataFrame:
    ids = ["a", "b", "c", "d"]
    return pd.DataFrame({"image_id": ids, "patient_id": ids,
                         "role": ["encoder_train" if i in encoder_train else "test" for i in ids]})


def encoder_trained_on(split: pd.DataFrame) -> SimpleNamespace:
    return SimpleNamespace(trained_on={"images": 2, "encoder_train_fingerprint": role_fingerprint(split, "encoder_train")})


def test_the_encoder_of_this_split_passes_in_either_order():
    split = split_with(["a", "b"])
    for first, second in ((("study_split", split), ("medclip_encoder", encoder_trained_on(split))),
                          (("medclip_encoder", encoder_trained_on(split)), ("study_split", split))):
        hook = StudySplitGuardHook()
        hook.before_pipeline_run({}, None, None)
        hook.after_dataset_loaded(*first, None)
        hook.before_dataset_saved(*second, None)


def test_an_encoder_of_another_split_stops_the_run():
    hook = StudySplitGuardHook()
    hook.before_pipeline_run({}, None, None)
    hook.after_dataset_loaded("medclip_encoder", encoder_trained_on(split_with(["a", "b"])), None)
    with pytest.raises(StudySplitMismatchError, match="trained on another study split"):
        hook.before_dataset_saved("study_split", split_with(["a", "c"]), None)


def test_published_weights_are_not_checked():
    hook = StudySplitGuardHook()
    hook.before_pipeline_run({}, None, None)
    hook.after_dataset_loaded("medclip_encoder", SimpleNamespace(trained_on={"dataset": "MIMIC-CXR"}), None)
    hook.after_dataset_loaded("study_split", split_with([]), None)


def test_an_encoder_trained_on_another_data_root_is_not_checked():
    """The demo encoder on a user's dataset saw none of it: that split's roles are all unseen."""
    hook = StudySplitGuardHook()
    hook.after_context_created(SimpleNamespace(project_path="/p", params={"data_root": "/users/cxr"},
                                               config_loader={"globals": {}}))
    hook.before_pipeline_run({}, None, None)
    demo = encoder_trained_on(split_with(["a", "b"]))
    demo.trained_on["data_root"] = "/p/data/01_raw/demo_cxr"
    hook.after_dataset_loaded("medclip_encoder", demo, None)
    hook.after_dataset_loaded("study_split", split_with(["a", "c"]), None)
    here = encoder_trained_on(split_with(["a", "b"]))
    here.trained_on["data_root"] = "/users/cxr"
    with pytest.raises(StudySplitMismatchError):
        hook.after_dataset_loaded("medclip_encoder", here, None)
