"""The study_design pipeline's hook: the encoder in use was trained on this split's
encoder_train role, so that no validation or test patient was among its training pairs."""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl

from medclip_residuals.data.study_split import role_fingerprint
from medclip_residuals.hooks import context_roots


class StudySplitMismatchError(RuntimeError):
    """The encoder was trained on another study split than the one this run uses."""


class StudySplitGuardHook:
    """Compare the `encoder_train_fingerprint` an encoder trained on this run's data_root
    records with the fingerprint of the current `study_split`'s encoder_train role, as soon
    as a run has seen both (loaded or saved). A mismatch means the split changed after
    training (other fractions, seed or data): validation or test patients may have trained
    the encoder, so the run stops. An encoder trained on another data_root (the demo encoder
    on your data) saw none of this dataset, and published weights record no fingerprint:
    neither is checked."""

    def __init__(self) -> None:
        self._data_root: str | None = None
        self._split: str | None = None
        self._encoder: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._data_root, _ = context_roots(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        self._split = self._encoder = None

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        self._see(dataset_name, data)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self._see(dataset_name, data)

    def _see(self, dataset_name: str, data: Any) -> None:
        if dataset_name == "study_split" and isinstance(data, pd.DataFrame):
            self._split = role_fingerprint(data, "encoder_train")
        elif dataset_name == "medclip_encoder":
            trained_on = getattr(data, "trained_on", None) or {}
            same_data = trained_on.get("data_root") in (None, self._data_root)
            self._encoder = trained_on.get("encoder_train_fingerprint") if same_data else None
        else:
            return
        if self._split and self._encoder and self._split != self._encoder:
            raise StudySplitMismatchError(
                "medclip_encoder was trained on another study split's encoder_train role than this "
                "run's study_split (its fingerprint differs): some validation or test patients may "
                "have trained it. Retrain it with `kedro run --pipelines encoder_training`, or rerun "
                "with the study_design parameters and data it was trained with."
            )
