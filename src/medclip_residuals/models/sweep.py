"""The phenotype sweep: residual_1 for every k, strategy and source, beside the image-only head.

The research slides fix k = 2 and the sentence "The phenotype are: {list}"; a reader will ask
what other choices give. For each (k, strategy, source) the sweep builds `w` as the
phenotyping pipeline would, `r = i - w`, fits the study's one classifier on the head_train
role and reports the test-role AUC with its CI and the paired difference from the image-only
head on the same images. It reports; it chooses nothing (the run's own settings stay
params:phenotyping's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from medclip_residuals.data.targets import target_rows
from medclip_residuals.models.classifiers import HEAD_ROLES, ClassifierSettings, fit_target
from medclip_residuals.models.evaluation import BootstrapSettings, auc_block, compare_auc
from medclip_residuals.models.phenotypes import (
    PhraseMeanings,
    PhraseOrder,
    ReportFallback,
    ReportUncertain,
    Source,
    TextEncoder,
    choose_phenotypes,
    phenotype_w,
    top_k_scores,
    vocabulary_matrix,
)
from medclip_residuals.utils.frames import embeddings_to_matrix, matrix_to_embeddings
from medclip_residuals.utils.params import ParameterError, Parameters

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SweepSettings(Parameters):
    """params:residual_1.sweep: the grid of phenotype settings."""

    top_k: tuple[int, ...]
    # sentence or mean (concat gives k x D columns: it cannot be subtracted from i)
    strategies: tuple[str, ...]
    sources: tuple[Source, ...]

    def check(self, where: str) -> None:
        if not self.top_k or min(self.top_k) < 1:
            raise ParameterError(f"{where}.top_k must list k >= 1, got {list(self.top_k)}")
        bad = [s for s in self.strategies if s not in ("sentence", "mean")]
        if bad:
            raise ParameterError(f"{where}.strategies: {bad} cannot be swept (sentence and mean keep i's width)")


@dataclass(frozen=True)
class PhraseSettings:
    """How phrases become w, as params:phenotyping says (the sweep varies k, strategy, source)."""

    sentence_template: str
    separator: str
    phrase_order: PhraseOrder
    report_uncertain: ReportUncertain
    report_fallback: ReportFallback
    meanings: PhraseMeanings


def phenotype_sweep(
    image_embeddings: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    report_mentions: pd.DataFrame,
    encoder: TextEncoder,
    study_split: pd.DataFrame,
    targets: Sequence[str],
    policy: str,
    *,
    sweep: SweepSettings,
    phrases_settings: PhraseSettings,
    classifier: ClassifierSettings,
    bootstrap: BootstrapSettings,
    seed: int,
    device: torch.device,
) -> pd.DataFrame:
    """One row per (k, strategy, source, target): the test AUC of residual_1 with its CI,
    the image-only AUC, and the paired difference with its CI, p-value and minimum detectable
    difference. Only the images of the heads' roles (head_train, validation, test) are used."""
    heads_split = study_split[study_split["role"].isin(HEAD_ROLES)]
    keep = set(heads_split["image_id"].astype(str))
    images_table = image_embeddings[image_embeddings["image_id"].astype(str).isin(keep)].reset_index(drop=True)
    ids, images = embeddings_to_matrix(images_table, dataset="image_embeddings")
    phrases, vocabulary = vocabulary_matrix(phenotype_embeddings)
    k_max = min(max(sweep.top_k), len(phrases))
    ranked, _ = top_k_scores(images, vocabulary, k_max, 8192, device)

    image_only = {}
    for target in targets:
        rows, y, roles, patients = target_rows(image_manifest, heads_split, target, policy)
        _, probability = fit_target(images_table, rows, y, roles == "head_train", target, "image_embeddings", classifier, seed)
        image_only[target] = (rows, y, roles, patients, probability)

    records = []
    for k in sorted({min(k, k_max) for k in sweep.top_k}):
        for source in sweep.sources:
            chosen, sources = choose_phenotypes(
                ids, ranked[:, :k], phrases, report_mentions, source=source,
                phrase_order=phrases_settings.phrase_order, report_fallback=phrases_settings.report_fallback,
                report_uncertain=phrases_settings.report_uncertain, meanings=phrases_settings.meanings,
            )
            for strategy in sweep.strategies:
                w, _, _ = phenotype_w(
                    chosen, sources, ranked[:, :k], phrases, vocabulary, encoder, strategy=strategy,
                    sentence_template=phrases_settings.sentence_template, separator=phrases_settings.separator,
                )
                residuals = matrix_to_embeddings(ids, images - w)
                for target in targets:
                    rows, y, roles, patients, image_probability = image_only[target]
                    _, probability = fit_target(
                        residuals, rows, y, roles == "head_train", target, "residuals", classifier, seed
                    )
                    test = roles == "test"
                    auc = auc_block(y[test], probability[test], patients[test], bootstrap, seed)
                    base = auc_block(y[test], image_probability[test], patients[test], bootstrap, seed)
                    difference = compare_auc(
                        y[test], probability[test], image_probability[test], patients[test], bootstrap, seed
                    )
                    records.append({
                        "k": k, "strategy": strategy, "source": source, "target": target,
                        "n_test": int(test.sum()), "n_test_positive": int(y[test].sum()),
                        "fallback_share": float(np.mean([s == "fallback" for s in sources])),
                        "auc_residual_1": auc["estimate"], "auc_low": auc["low"], "auc_high": auc["high"],
                        "auc_image": base["estimate"],
                        "difference": difference["difference"], "difference_low": difference["low"],
                        "difference_high": difference["high"], "p_value": difference["p_value"],
                        "minimum_detectable_difference": difference["minimum_detectable_difference"],
                    })
                logger.info("residual_1 sweep: k=%d %s/%s done", k, source, strategy)
    return pd.DataFrame(records)
