"""Study design nodes: the study's one split by patient, then the targets.

`study_split` is made right after validation (it needs only the manifest) and read by every
pipeline: the encoder trains on `encoder_train`, the residual heads on `head_train`, every
choice is made on `validation` and every reported figure comes from `test`. The work is done
by `medclip_residuals.data.study_split` and `medclip_residuals.data.targets`.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from medclip_residuals.data import targets
from medclip_residuals.data.study_split import ROLES, assign_roles
from medclip_residuals.pipelines.study_design.params import StudyDesignParams

logger = logging.getLogger(__name__)


def make_study_split(image_manifest: pd.DataFrame, params: dict[str, Any], seed: int) -> pd.DataFrame:
    """One role per patient (encoder_train, head_train, validation, test), stratified by the
    candidate targets, seeded; a manifest split column wins where present.

    Returns image_id, patient_id, role.
    """
    p = StudyDesignParams.parse(params, "study_design")
    candidates, _ = targets.candidate_targets(image_manifest, p.targets, p.auto_exclude)
    split = assign_roles(image_manifest, p.split, candidates, seed)
    for role in ROLES:
        rows = split[split["role"] == role]
        logger.info("study_split: %-13s %5d images of %4d patients", role, len(rows), rows["patient_id"].nunique())
    return split


def select_targets(image_manifest: pd.DataFrame, study_split: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """The targets of residual_1 and residual_2, and why others were left out.

    Explicit targets (params targets: [..]) must have both classes in head_train and test.
    "auto" keeps every label and outcome column (less auto_exclude) with at least
    min_positives positives and min_negatives negatives in head_train and in test.
    """
    p = StudyDesignParams.parse(params, "study_design")
    candidates, explicit = targets.candidate_targets(image_manifest, p.targets, p.auto_exclude)
    return targets.select_targets(
        image_manifest, study_split, candidates, explicit, p.min_positives, p.min_negatives, p.uncertainty_policy
    )
