"""Zero-shot finding detection: how well an image's similarity to a prompt ranks a finding.

The metric of encoder training: on held-out images, per CheXpert finding, the ROC AUC of
the image embedding's inner product with a prompt naming the finding ("there is pneumonia").
Labels follow data/labels.py: 1 positive, 0 or empty negative, uncertain (-1) left out (the
`ignore` policy).

Example:
    >>> evaluation = ZeroShotEvaluation.parse(raw["evaluation"], "encoder_training.evaluation")  # doctest: +SKIP
    >>> labels = finding_labels(held_out_rows, evaluation.findings, evaluation.exclude)  # doctest: +SKIP
    >>> scores = zero_shot_scores(encoder, image_embeddings, labels, evaluation)  # doctest: +SKIP
    >>> scores["auc"], scores["min_auc"], scores["meets_target"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medclip_residuals.data.labels import CHEXPERT_FINDINGS, apply_uncertainty
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.utils.params import Parameters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZeroShotEvaluation(Parameters):
    """`encoder_training.evaluation`: which findings, which prompts, and the bar to meet."""

    # None: every CheXpert column with positives and negatives, except `exclude`
    findings: tuple[str, ...] | None
    exclude: tuple[str, ...]
    prompt_template: str  # "{finding}" is replaced by the lower-cased finding name
    # per-finding prompts: a string, or a list whose embeddings are averaged
    prompts: dict[str, str | tuple[str, ...]]
    target_auc: float
    batch_size: int  # images per embedding batch


def finding_labels(
    rows: pd.DataFrame, findings: Sequence[str] | None, exclude: Sequence[str]
) -> dict[str, np.ndarray]:
    """0/1/NaN targets per finding: 1 positive, 0 or empty negative, -1 (uncertain) left out.

    With `findings` None: every CheXpert column with both classes among `rows`.
    """
    if findings is None:
        candidates = [name for name in CHEXPERT_FINDINGS if name in rows.columns and name not in set(exclude)]
    else:
        unknown = [name for name in findings if name not in rows.columns]
        if unknown:
            raise ValueError(f"encoder_training.evaluation.findings names column(s) not in image_manifest: {unknown}")
        candidates = list(findings)
    labels = {}
    for name in candidates:
        target = apply_uncertainty(pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float), "ignore")
        if findings is None and (np.nansum(target) == 0 or np.nansum(1 - target) == 0):
            continue
        labels[name] = target
    return labels


def finding_prompts(names: Sequence[str], evaluation: ZeroShotEvaluation) -> dict[str, str | tuple[str, ...]]:
    """The prompt of each finding: its entry in `prompts`, else the template."""
    overrides, template = evaluation.prompts, evaluation.prompt_template
    return {name: overrides[name] if name in overrides else template.format(finding=name.lower()) for name in names}


def prompt_vectors(encoder: MedCLIPEncoder, prompts: Sequence[str | Sequence[str]]) -> np.ndarray:
    """One L2-normalised embedding per prompt; a list of prompts is averaged (an ensemble)."""
    groups = [[p] if isinstance(p, str) else list(p) for p in prompts]
    flat = encoder.encode_texts([text for group in groups for text in group])
    vectors, start = [], 0
    for group in groups:
        mean = flat[start : start + len(group)].mean(axis=0)
        vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(group)
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, encoder.embed_dim), np.float32)


def zero_shot_scores(
    encoder: MedCLIPEncoder,
    image_embeddings: np.ndarray,
    labels: dict[str, np.ndarray],
    evaluation: ZeroShotEvaluation,
    role: str,
) -> dict[str, Any]:
    """Per finding, the ROC AUC of the images' similarity to its prompt, and whether the
    lowest AUC meets `target_auc`; each AUC and the verdict are logged.

    Returns prompt_template, prompts, auc, positives, negatives, min_auc, target_auc and
    meets_target (an AUC without both classes is NaN and not counted).
    """
    prompts = finding_prompts(list(labels), evaluation)
    target_auc = evaluation.target_auc
    aucs, positives, negatives = {}, {}, {}
    for (name, target), prompt_embedding in zip(labels.items(), prompt_vectors(encoder, list(prompts.values()))):
        known = ~np.isnan(target)
        positives[name], negatives[name] = int(target[known].sum()), int((1 - target[known]).sum())
        scores = image_embeddings[known] @ prompt_embedding
        aucs[name] = (
            float(roc_auc_score(target[known], scores)) if positives[name] and negatives[name] else float("nan")
        )
        level = logging.INFO if aucs[name] >= target_auc else logging.WARNING
        logger.log(level, "encoder_training: %s AUC %-20s %.3f  (prompt %s, %d+ / %d-)",
                   role, name, aucs[name], prompts[name], positives[name], negatives[name])
    finite = [value for value in aucs.values() if not math.isnan(value)]
    scores = {
        "prompt_template": evaluation.prompt_template,
        "prompts": prompts,
        "auc": aucs,
        "positives": positives,
        "negatives": negatives,
        "min_auc": min(finite) if finite else float("nan"),
        "target_auc": target_auc,
        "meets_target": bool(finite) and min(finite) >= target_auc,
    }
    logger.info(
        "encoder_training: %s min AUC %.3f over %d finding(s), target %.2f: %s",
        role, scores["min_auc"], len(finite), target_auc, "met" if scores["meets_target"] else "NOT met",
    )
    return scores


def json_safe(value: Any) -> Any:
    """NaN becomes null, in nested dicts too: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
