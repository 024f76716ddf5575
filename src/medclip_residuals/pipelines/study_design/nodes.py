"""Study design nodes: split the embedded images by patient, then choose the target diseases.

Both outputs (`data_split`, `residual_targets`) are read by residual_1 and residual_2, so
that every head is fitted and scored on the same images and targets. The work is done by
`medclip_residuals.data.targets`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from medclip_residuals.data import targets
from medclip_residuals.pipelines.study_design.params import StudyDesignParams
from medclip_residuals.utils.frames import check_ids_known, embeddings_to_matrix


def split_by_patient(
    image_manifest: pd.DataFrame, image_embeddings: pd.DataFrame, params: dict[str, Any], seed: int
) -> pd.DataFrame:
    """One train/test split of the embedded images, by patient, stratified by the candidate
    targets, seeded. Images without a patient_id are their own patient.

    Returns image_id, patient_id, split (train / test).
    """
    p = StudyDesignParams.parse(params, "study_design")
    ids, _ = embeddings_to_matrix(image_embeddings, dataset="image_embeddings")
    check_ids_known(ids, image_manifest, "image_embeddings")
    candidates, _ = targets.candidate_targets(image_manifest, p.targets, p.auto_exclude)
    return targets.split_by_patient(image_manifest, ids, candidates, p.split.test_size, seed)


def select_targets(image_manifest: pd.DataFrame, data_split: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """The target diseases of residual_1 and residual_2, and why others were left out.

    Explicit targets (params targets: [..]) must have both classes in each split. "auto"
    keeps every label column (less auto_exclude) with at least min_positives positives and
    min_negatives negatives in train and in test.
    """
    p = StudyDesignParams.parse(params, "study_design")
    candidates, explicit = targets.candidate_targets(image_manifest, p.targets, p.auto_exclude)
    return targets.select_targets(
        image_manifest, data_split, candidates, explicit, p.min_positives, p.min_negatives, p.uncertainty_policy
    )
