"""Heatmaps for every row of a plan, batched through one `CamExplainer`, yielded in chunks.

Batches are formed over the whole plan, independently of the chunks, so the chunk size
never changes a map; each chunk (`chunk_size` rows of float16 maps, in plan order) is
yielded as soon as it is full, so that memory holds one chunk, not every map (see
datasets/heatmap_store.py). Every chunk carries the run's metadata (method, target layer,
shifts, bf16 or float32, image size, image ids and target ids in row order).

Example:
    >>> chunks = generate_heatmaps(encoder, manifest, plan, heads={}, w_by_image={},  # doctest: +SKIP
    ...                            method="hirescam", target_layer="model.encoder.layers.0.blocks.-1",
    ...                            shifts_px=[0], contrast_caption=None, batch_size=16, chunk_size=256,
    ...                            device="cpu")
    >>> heatmaps = ArrayHeatmaps.collect(chunks)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from medclip_residuals.data.preprocess import preprocess_image
from medclip_residuals.datasets.heatmap_store import HeatmapChunk
from medclip_residuals.explain.cam import CamExplainer
from medclip_residuals.explain.heatmap_model import HeatMapModel
from medclip_residuals.explain.layers import layer_label, resolve_target_layers
from medclip_residuals.explain.targets import HeadTarget, Target, caption_margin, caption_target, caption_texts
from medclip_residuals.models.compute import Auto, plan_compute
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.heads import heads_from_tensors
from medclip_residuals.utils.frames import embeddings_to_matrix
from medclip_residuals.utils.progress import progress_bar

logger = logging.getLogger(__name__)


class ImageCache:
    """Preprocessed images by path, the most recent few kept (the plan is image-ordered)."""

    def __init__(self, size: int, capacity: int = 64) -> None:
        self.size, self.capacity = size, capacity
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, path: str) -> torch.Tensor:
        if path not in self._items:
            self._items[path] = preprocess_image(path, self.size)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        self._items.move_to_end(path)
        return self._items[path]


def w_by_image(table: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """image_id -> its phenotype sentence embedding `w`, from an embedding table."""
    if table is None or len(table) == 0:
        return {}
    ids, matrix = embeddings_to_matrix(table)
    return dict(zip(ids, matrix))


def stored_heads(*stored: Mapping[str, Any] | None) -> dict[str, torch.nn.Module]:
    """Head name -> module, from TensorDictDataset payloads of heads (None skipped)."""
    modules: dict[str, torch.nn.Module] = {}
    for payload in stored:
        if payload:
            modules.update(heads_from_tensors(payload["tensors"], payload["metadata"]))
    return modules


@dataclass
class CaptionTargets:
    """What the caption rows of a plan need, computed once per plan (and sent to every shard
    of a sharded run, so that its targets are the in-process run's): the embedding of each
    caption, of the contrast phrase, and the captions that are the contrast phrase itself."""

    text_embeddings: dict[str, np.ndarray]
    contrast_embedding: np.ndarray | None
    plain_texts: set[str]


def caption_targets(encoder: MedCLIPEncoder, heatmap_plan: pd.DataFrame, contrast_caption: str | None) -> CaptionTargets:
    """Embed every caption of the plan (and the contrast phrase) with the encoder's text model.

    A caption that is the contrast phrase itself (a normal study's report) keeps its plain target.
    """
    texts = caption_texts(heatmap_plan)  # the captions and their contrast sets
    text_embeddings = dict(zip(texts, encoder.encode_texts(texts))) if texts else {}
    contrast_embedding = encoder.encode_texts([contrast_caption])[0] if contrast_caption and texts else None
    plain_texts = {t for t in texts if contrast_caption and t.strip().lower() == contrast_caption.strip().lower()}
    return CaptionTargets(text_embeddings, contrast_embedding, plain_texts)


class PlanTargets:
    """The CAM target of each plan row: a caption's similarity or a head's probability.

    Caption embeddings come from `caption_targets` (computed here unless given). A head is
    wrapped in a `HeatMapModel` the first time a row needs it.
    """

    def __init__(
        self,
        encoder: MedCLIPEncoder,
        heatmap_plan: pd.DataFrame,
        heads: Mapping[str, torch.nn.Module],
        w_by_image: Mapping[str, np.ndarray],
        contrast_caption: str | None,
        device: torch.device,
        captions: CaptionTargets | None = None,
    ) -> None:
        captions = captions if captions is not None else caption_targets(encoder, heatmap_plan, contrast_caption)
        self.text_embeddings = captions.text_embeddings
        self.contrast_embedding = captions.contrast_embedding
        self.plain_texts = captions.plain_texts
        self.vision, self.heads, self.w_by_image, self.device = encoder.vision_model, heads, w_by_image, device
        self.models: dict[str, HeatMapModel] = {}

    def __call__(self, row: Any) -> Target:
        if row.kind == "caption":
            contrast = None if row.text in self.plain_texts else self.contrast_embedding
            return caption_target(row, self.text_embeddings, contrast)
        model = self._model(row.head)
        w = None
        if model.needs_w:
            if row.image_id not in self.w_by_image:
                raise KeyError(
                    f"phenotype_sentence_embeddings has no w for image {row.image_id!r} (needed by head {row.head!r})"
                )
            w = self.w_by_image[row.image_id]
        return HeadTarget(model, w, label=row.head)

    def _model(self, name: str) -> HeatMapModel:
        if name not in self.heads:
            raise KeyError(f"head {name!r} is not in residual_1_heads / residual_2_heads")
        if name not in self.models:
            head = self.heads[name].to(self.device).requires_grad_(False)  # no weight gradients
            if self.device.type == "mps":
                head = head.float()  # MPS has no float64
            self.models[name] = HeatMapModel(self.vision, head)
        return self.models[name]


def plain_contrast_rows(heatmap_plan: pd.DataFrame, plain_texts: set[str]) -> int:
    """How many rows of the plan are captions that are the contrast phrase itself."""
    return int(heatmap_plan["text"].isin(plain_texts).sum()) if plain_texts else 0


def heatmap_metadata(
    encoder: MedCLIPEncoder,
    heatmap_plan: pd.DataFrame,
    method: str,
    layer_name: str,
    shifts_px: Sequence[int],
    contrast_caption: str | None,
    captions: CaptionTargets | PlanTargets,
    bf16: bool,
    caption_gate: str = "none",
) -> dict[str, Any]:
    """The run's metadata that every chunk of the heatmap store carries."""
    return {
        "method": method,
        "target_layer": layer_name,
        "shift_smoothing_px": [int(v) for v in shifts_px],
        "bf16": bool(bf16),
        "caption_gate": caption_gate,
        "contrast_caption": contrast_caption if captions.contrast_embedding is not None else None,
        "n_plain_contrast_targets": plain_contrast_rows(heatmap_plan, captions.plain_texts),
        "image_size": int(encoder.image_size),
        "profile": getattr(encoder, "profile", ""),
        "image_id": heatmap_plan["image_id"].tolist(),
        "target_id": heatmap_plan["target_id"].tolist(),
    }


def empty_unfit_captions(
    maps: np.ndarray,
    embedding_model: torch.nn.Module,
    pixels: torch.Tensor,
    targets: list[Target],
    reduce: Literal["mean", "max"],
) -> int:
    """Empty (all zeros: no maximum, so no hit) the maps of captions the image does not fit
    better than their contrasts (`explain.targets.caption_margin` <= 0), in place; the count.

    Why: a map always has a maximum, so a caption naming a finding the image lacks still
    points somewhere, most often at the finding the image has. The image's own embedding says
    whether the caption fits; where it does not, the map says "not here". Rows without a
    contrast (plain captions, heads) are kept.
    """
    device = next(embedding_model.parameters()).device
    with torch.no_grad():
        embeddings = embedding_model(pixels.to(device, dtype=torch.float32))
    emptied = 0
    for k, target in enumerate(targets):
        margin = caption_margin(target, embeddings[k], reduce)
        if margin is not None and margin <= 0:
            maps[k] = 0.0
            emptied += 1
    return emptied


def rechunk(
    batches: Iterable[np.ndarray], chunk_size: int, total: int, metadata: dict[str, Any]
) -> Iterator[HeatmapChunk]:
    """Batches of maps (in row order) regrouped as float16 chunks of `chunk_size` rows (the
    last one shorter), each with the same `metadata` dict."""
    pending: list[np.ndarray] = []  # maps not yet yielded, fewer than chunk_size + one batch
    pending_rows, next_start = 0, 0
    for maps in batches:
        pending.append(np.asarray(maps, dtype=np.float16))
        pending_rows += len(maps)
        while pending_rows >= chunk_size or (pending_rows and next_start + pending_rows == total):
            block = np.concatenate(pending)
            out, rest = block[:chunk_size], block[chunk_size:]
            pending, pending_rows = ([rest] if len(rest) else []), len(rest)
            yield HeatmapChunk(next_start, out, total, metadata)
            next_start += len(out)


def generate_heatmaps(
    encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    heatmap_plan: pd.DataFrame,
    *,
    heads: Mapping[str, torch.nn.Module],
    w_by_image: Mapping[str, np.ndarray],
    method: str,
    target_layer: str | Sequence[str],
    shifts_px: Sequence[int],
    contrast_caption: str | None,
    batch_size: int,
    chunk_size: int,
    device: str,
    bf16: bool | Auto = False,
    caption_gate: Literal["none", "mean", "max"] = "none",
    captions: CaptionTargets | None = None,
    progress: bool = True,
) -> Iterator[HeatmapChunk]:
    """Heatmaps (S, S) on the model input for every row of the plan, in chunks.

    Args:
        encoder: the MedCLIP encoder (its vision model is explained, its text model embeds captions).
        image_manifest: image_id and image_path per image.
        heatmap_plan: the rows to explain (explain/plan.py).
        heads: head name -> module, for the plan's head rows (`stored_heads`).
        w_by_image: image_id -> `w`, for residual heads (`w_by_image`).
        method: the CAM method (`explain.cam.resolve_cam_method`).
        target_layer: the target layer(s) (`explain.layers.resolve_target_layers`).
        shifts_px: per-axis shifts of the shift smoothing; [0]: none.
        contrast_caption: caption targets subtract the similarity to this phrase; None: plain.
        batch_size: image x target pairs per CAM call.
        chunk_size: maps per yielded chunk.
        device: "cpu", "cuda", "mps" or "auto".
        bf16: the CAM passes under bf16 autocast: True, False, or "auto" (where the device
            computes bf16 natively, `models.compute.plan_compute`).
        caption_gate: "mean" / "max": a caption's map is emptied where the image fits the
            caption no better than the mean / max of its contrasts (`empty_unfit_captions`);
            "none": every map is kept.
        captions: the plan's caption embeddings (`caption_targets`); None: computed here.
        progress: a progress bar over the batches.
    """
    vision = encoder.vision_model
    layer_names, _ = resolve_target_layers(vision, target_layer)  # a clear error before any work
    layer_name = layer_label(layer_names)
    torch_device = resolve_device(device)
    encoder.to(torch_device)
    use_bf16 = plan_compute(torch_device, bf16=bf16).bf16

    paths = dict(zip(image_manifest["image_id"].astype(str), image_manifest["image_path"].astype(str)))
    missing = sorted(set(heatmap_plan["image_id"]) - set(paths))
    if missing:
        raise ValueError(f"heatmap_plan names images that image_manifest lacks: {missing[:5]}")
    targets = PlanTargets(encoder, heatmap_plan, heads, w_by_image, contrast_caption, torch_device, captions)
    size = int(encoder.image_size)
    images = ImageCache(size)
    n_plain = plain_contrast_rows(heatmap_plan, targets.plain_texts)
    total = len(heatmap_plan)
    metadata = heatmap_metadata(encoder, heatmap_plan, method, layer_name, shifts_px, contrast_caption, targets,
                                use_bf16, caption_gate)
    logger.info("compute_heatmaps: %d heatmaps, written in chunks of %d (%.1f MB each as float16)",
                total, chunk_size, chunk_size * size * size * 2 / 2**20)
    rows = list(heatmap_plan.itertuples(index=False))
    with CamExplainer(
        vision, method, layer_names, batch_size=batch_size, progress=False, device=torch_device, shifts_px=shifts_px,
        bf16=use_bf16,
    ) as explainer:

        emptied = 0

        def batches() -> Iterator[np.ndarray]:
            nonlocal emptied
            for start in progress_bar(range(0, total, batch_size), desc=f"{method} heatmaps", unit="batch", disable=not progress):
                batch = rows[start : start + batch_size]
                pixels = torch.stack([images(paths[row.image_id]) for row in batch])
                batch_targets = [targets(row) for row in batch]
                maps = explainer.explain_batch(pixels, batch_targets)
                if caption_gate != "none":
                    emptied += empty_unfit_captions(maps, explainer.model, pixels, batch_targets, caption_gate)
                yield maps

        yield from rechunk(batches(), chunk_size, total, metadata)
    logger.info(
        "%d heatmaps (%s on %s, %d shift(s) averaged, %s) for %d images",
        total, method, layer_name, len(explainer.shifts), "bf16 autocast" if use_bf16 else "float32",
        heatmap_plan["image_id"].nunique(),
    )
    if caption_gate != "none":
        logger.info("%d caption heatmap(s) emptied: the image fits the caption no better than the %s of its contrasts "
                    "(explainability.caption_gate)", emptied, caption_gate)
    if n_plain:
        logger.info(
            "%d caption heatmap(s) whose caption is the contrast caption %r used the plain similarity",
            n_plain, contrast_caption,
        )
