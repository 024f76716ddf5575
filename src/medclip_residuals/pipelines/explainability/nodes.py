"""Explainability nodes: Grad-CAM heatmaps for captions and for the regression heads, scored
against the ground-truth regions, interpreted, and drawn as a grid.

Flow: `plan_heatmaps` (which image x target pairs; every bad parameter fails here, before
any model runs) -> `compute_heatmaps` (a generator node: the maps go to disk `chunk_size`
at a time, see datasets/heatmap_store.py) -> `score_heatmaps` (reads them back chunk by
chunk) -> `plot_caption_heatmap_grid`. The work is done in `medclip_residuals.explain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from medclip_residuals.data.study_split import rows_in_role
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapChunk, HeatmapStore
from medclip_residuals.distributed.engine import active_engine
from medclip_residuals.distributed.heatmaps import generate_heatmaps_sharded
from medclip_residuals.explain.evaluate import score_plan, summarise_metrics
from medclip_residuals.explain.figures import plot_caption_grid
from medclip_residuals.explain.generate import generate_heatmaps, stored_heads, w_by_image
from medclip_residuals.explain.plan import build_plan, head_names, heatmaps_of_plan
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.pipelines.explainability.params import ExplainabilityParams
from medclip_residuals.utils.params import ParameterError


def select_images(image_manifest: pd.DataFrame, study_split: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The manifest rows of the images to explain: those of the study roles `params.roles`
    (test by default: the reported figures; validation for choices). Every later node of the
    pipeline reads these rows as its manifest."""
    p = ExplainabilityParams.parse(params, "explainability")
    return rows_in_role(image_manifest, study_split, *p.roles)


def plan_heatmaps(
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    residual_1_heads: dict[str, Any] | None,
    residual_2_heads: dict[str, Any] | None,
    params: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Which (image, target) pairs get a heatmap, one row each, in computation order
    (`explain.plan.build_plan`): the image's report, each caption, the per-finding prompts
    the grounding metrics need, and the chosen heads."""
    p = ExplainabilityParams.parse(params, "explainability")
    heads = [h for h in head_names(residual_1_heads) + head_names(residual_2_heads) if h[2] in p.heads]
    plan = build_plan(
        image_manifest, image_localizations, heads,
        captions=p.captions, include_report_captions=p.include_report_captions,
        finding_synonyms=p.finding_synonyms, head_images=p.head_images,
        max_images=p.max_images, prefer_localized=p.prefer_localized, seed=seed,
        grounding=p.grounding, contrast_findings=p.contrast_findings,
    )
    if plan.empty:
        raise ParameterError(
            "nothing to explain: no image has a report, explainability.captions is empty and no head was chosen"
        )
    return plan


def compute_heatmaps(
    medclip_encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    residual_1_heads: dict[str, Any] | None,
    residual_2_heads: dict[str, Any] | None,
    params: dict[str, Any],
    device: str,
) -> Iterator[HeatmapChunk]:
    """Heatmaps (S, S) on the model input for every row of the plan, yielded in chunks of
    `chunk_size` float16 maps (`explain.generate.generate_heatmaps`); with a Dask cluster
    configured (conf/<env>/dask.yml), over shards of the plan on its workers, reusing
    unchanged maps of the latest version (`distributed.heatmaps`)."""
    p = ExplainabilityParams.parse(params, "explainability")
    size = int(medclip_encoder.image_size)
    if max(abs(v) for v in p.shift_smoothing_px) >= size:
        raise ParameterError(
            f"explainability.shift_smoothing_px {list(p.shift_smoothing_px)} must stay below the {size}-px input"
        )
    engine = active_engine()
    generate = generate_heatmaps if engine is None else partial(generate_heatmaps_sharded, engine)
    yield from generate(
        medclip_encoder, image_manifest, heatmap_plan,
        heads=stored_heads(residual_1_heads, residual_2_heads),
        w_by_image=w_by_image(phenotype_sentence_embeddings),
        method=p.method, target_layer=p.target_layer, shifts_px=p.shift_smoothing_px,
        contrast_caption=p.contrast_caption, batch_size=p.batch_size, chunk_size=p.chunk_size, device=device,
        bf16=p.bf16, caption_gate=p.caption_gate,
    )


def score_heatmaps(
    heatmaps: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-heatmap scores and interpretation (`explain.evaluate.score_plan`), and the metrics
    summary with bootstrap intervals (`explain.evaluate.summarise_metrics`), with the study
    roles the explained images (`image_manifest`: select_images' rows) come from."""
    p = ExplainabilityParams.parse(params, "explainability")
    source = heatmaps_of_plan(heatmaps, heatmap_plan)
    scores = score_plan(
        source, heatmap_plan, image_manifest, image_localizations,
        scoring=p.scoring, regions=p.regions, chunk_size=p.chunk_size,
    )
    metrics = summarise_metrics(
        scores, heatmap_plan, image_manifest, image_localizations, source.metadata, p.scoring, seed
    )
    roles = {"role": p.roles[0] if len(p.roles) == 1 else list(p.roles), "images": int(len(image_manifest)),
             "patients": int(image_manifest["patient_id"].nunique()) if "patient_id" in image_manifest else None}
    return scores, {"role": roles, **metrics}


def plot_caption_heatmap_grid(
    heatmaps: HeatmapStore | ArrayHeatmaps,
    heatmap_plan: pd.DataFrame,
    heatmap_scores: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> Figure:
    """Images with two findings (the prompt of each side by side), then the slide captions on
    images with and without their findings (`explain.figures.plot_caption_grid`)."""
    p = ExplainabilityParams.parse(params, "explainability")
    return plot_caption_grid(
        heatmaps_of_plan(heatmaps, heatmap_plan), heatmap_plan, heatmap_scores, image_manifest, image_localizations,
        two_finding_images=p.grid.two_finding_images, sample_size=p.grid.sample_size, seed=seed,
    )
