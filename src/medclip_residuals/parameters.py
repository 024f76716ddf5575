"""Every parameter group of the project and the typed class that reads it.

`check_parameters` parses all of them at once (the run's parameters after environments and
`--params` are merged), so that a typo anywhere stops a run before its first node, naming
the key and the keys that are known. Each node still parses its own group (`Params.parse`
returns at once for an already typed value).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from medclip_residuals.utils.params import ParameterError, Parameters

# group -> "module:class" (imported when checked: a pipeline's module may import torch)
PARAMETER_CLASSES: dict[str, str] = {
    "demo_data": "medclip_residuals.pipelines.demo_data.params:DemoDataParams",
    "data_validation": "medclip_residuals.pipelines.data_validation.params:DataValidationParams",
    "encoder": "medclip_residuals.models.medclip_loader:EncoderParams",
    "encoder_training": "medclip_residuals.pipelines.encoder_training.params:EncoderTrainingParams",
    "embedding": "medclip_residuals.pipelines.embedding.params:EmbeddingParams",
    "phenotyping": "medclip_residuals.pipelines.phenotyping.params:PhenotypingParams",
    "study_design": "medclip_residuals.pipelines.study_design.params:StudyDesignParams",
    "residual_1": "medclip_residuals.pipelines.residual_1.params:Residual1Params",
    "residual_2": "medclip_residuals.pipelines.residual_2.params:Residual2Params",
    "explainability": "medclip_residuals.pipelines.explainability.params:ExplainabilityParams",
    "tracking": "medclip_residuals.tracking:TrackingParams",
}
# Shared scalars (conf/base/parameters.yml).
SCALAR_PARAMETERS: dict[str, type] = {"data_root": str, "seed": int, "device": str}
# Keys of earlier versions -> where they live now.
MOVED_KEYS: dict[str, str] = {
    **{f"residual_1.{key}": f"study_design.{key}" for key in (
        "targets", "auto_exclude", "min_positives", "min_negatives", "uncertainty_policy", "split", "bootstrap")},
    "residual_1.logistic": "study_design.classifier",
    "residual_2.bootstrap": "study_design.bootstrap",
    "encoder_training.test_fraction": "study_design.split.fractions",
}


def parameter_class(group: str) -> type[Parameters]:
    """The typed class of a parameter group."""
    module, _, name = PARAMETER_CLASSES[group].partition(":")
    return getattr(import_module(module), name)


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parse every group of `params`; returns group -> typed value (scalars as given).

    Raises:
        ParameterError: an unknown group, a key that moved (naming where it lives now), a
            scalar of the wrong type, or the first problem of a group, naming the key.
    """
    known = sorted([*PARAMETER_CLASSES, *SCALAR_PARAMETERS])
    typed: dict[str, Any] = {}
    for group, value in params.items():
        moved = [f"{group}.{key}" for key in (value if isinstance(value, Mapping) else ()) if f"{group}.{key}" in MOVED_KEYS]
        if moved:
            raise ParameterError("parameters: " + "; ".join(f"{old} moved to {MOVED_KEYS[old]}" for old in moved))
        if group in SCALAR_PARAMETERS:
            expected = SCALAR_PARAMETERS[group]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ParameterError(f"parameters: {group} must be {expected.__name__}, got {value!r}")
            typed[group] = value
        elif group in PARAMETER_CLASSES:
            typed[group] = parameter_class(group).parse(value, group)
        else:
            raise ParameterError(f"parameters: unknown group {group!r} (known: {', '.join(known)})")
    return typed
