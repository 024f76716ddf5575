"""`heatmaps` over shards of the heatmap plan on a Dask cluster, incremental and resumable.

The same steps as `distributed.embedding`, on plan rows: a row's key is its image's file
key, the vision fingerprint, the method, the layers, the shifts and its target (a caption's
embedding and the contrast phrase's, or a head's weights and the image's `w`); the caption
embeddings are computed once here, as in-process, and sent to every shard; the maps are
yielded in chunks in plan order, exactly as `explain.generate.generate_heatmaps` yields them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from medclip_residuals.datasets.heatmap_store import HeatmapChunk
from medclip_residuals.distributed.engine import ShardEngine
from medclip_residuals.distributed.keys import (
    array_digest,
    content_digests,
    image_keys,
    module_fingerprint,
    row_key,
    vision_fingerprint,
)
from medclip_residuals.distributed.shards import RowSources, plan_shards, run_shards, where_in_manifest
from medclip_residuals.distributed.store import wanted_contents
from medclip_residuals.distributed.worker import heatmap_shard
from medclip_residuals.explain.generate import CaptionTargets, caption_targets, heatmap_metadata
from medclip_residuals.explain.layers import layer_label, resolve_target_layers
from medclip_residuals.explain.targets import ContrastSetTarget, caption_target, caption_texts
from medclip_residuals.models.compute import Auto, plan_compute
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.encoder import MedCLIPEncoder

logger = logging.getLogger(__name__)

DATASET = "heatmaps"


def heatmap_row_keys(
    heatmap_plan: pd.DataFrame,
    files: Mapping[str, Mapping[str, Any]],
    run: Sequence[Any],
    captions: CaptionTargets,
    heads: Mapping[str, torch.nn.Module],
    w_by_image: Mapping[str, np.ndarray],
) -> list[str]:
    """One key per plan row: what its map depends on (`run`: the vision fingerprint, method,
    layers and shifts shared by every row)."""
    head_keys: dict[str, tuple[str, bool]] = {}
    keys = []
    for row in heatmap_plan.itertuples(index=False):
        if row.kind == "caption":
            contrast = None if row.text in captions.plain_texts else captions.contrast_embedding
            target = ["caption", array_digest(captions.text_embeddings[row.text]),
                      None if contrast is None else array_digest(contrast)]
            # contrast_findings mean / max: the key follows the target the shard will build (a
            # plain caption's key stays as it was, so maps stored before stay reusable)
            built = caption_target(row, captions.text_embeddings, contrast)
            if isinstance(built, ContrastSetTarget):
                target += [built.reduce, array_digest(built.contrast_embeddings.numpy())]
        else:
            if row.head not in head_keys:
                if row.head not in heads:
                    raise KeyError(f"head {row.head!r} is not in residual_1_heads / residual_2_heads")
                head = heads[row.head]
                # the rule of explain.heatmap_model.HeatMapModel: a head with `residual` subtracts w
                head_keys[row.head] = (module_fingerprint(head), callable(getattr(head, "residual", None)))
            fingerprint, needs_w = head_keys[row.head]
            w = None
            if needs_w:
                if row.image_id not in w_by_image:
                    raise KeyError(
                        f"phenotype_sentence_embeddings has no w for image {row.image_id!r} (needed by head {row.head!r})"
                    )
                w = array_digest(np.asarray(w_by_image[row.image_id]))
            target = ["head", fingerprint, w]
        keys.append(row_key("heatmap", *run, files[str(row.image_id)], target))
    return keys


def previous_maps(engine: ShardEngine, wanted: set[str]) -> tuple[str, Any, dict[str, int]] | None:
    """(version, store, content digest -> row) of the latest heatmaps version, read chunk by
    chunk; only the contents in `wanted` are kept (none wanted: nothing is read)."""
    previous = engine.latest(DATASET) if wanted else None
    if previous is None:
        return None
    version, stored = previous
    digests: dict[str, int] = {}
    for start, rows in stored.chunks():
        for offset, content in enumerate(content_digests(np.asarray(rows))):
            if content in wanted:
                digests.setdefault(content, start + offset)
    return version, stored, digests


def generate_heatmaps_sharded(
    engine: ShardEngine,
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
    caption_gate: str = "none",
) -> Iterator[HeatmapChunk]:
    """What `explain.generate.generate_heatmaps` yields (same arguments), computed over
    shards of the plan on the engine's cluster; maps of the latest version reused where their
    key did not change."""
    from medclip_residuals.distributed.plugin import encoder_on_workers  # imports distributed: only here

    settings = engine.settings
    layer_names, _ = resolve_target_layers(encoder.vision_model, target_layer)  # a clear error before any work
    paths = dict(zip(image_manifest["image_id"].astype(str), image_manifest["image_path"].astype(str)))
    missing = sorted(set(heatmap_plan["image_id"]) - set(paths))
    if missing:
        raise ValueError(f"heatmap_plan names images that image_manifest lacks: {missing[:5]}")
    plan_images = image_manifest[image_manifest["image_id"].astype(str).isin(set(heatmap_plan["image_id"]))]

    encoder.to(resolve_device(device))  # the caption embeddings on the device the in-process run uses
    captions = caption_targets(encoder, heatmap_plan, contrast_caption)
    # "auto" is settled by each worker for its own hardware; the metadata says this machine's
    metadata = heatmap_metadata(encoder, heatmap_plan, method, layer_label(layer_names), shifts_px,
                                contrast_caption, captions, plan_compute(resolve_device(device), bf16=bf16).bf16,
                                caption_gate)
    size = int(encoder.image_size)
    fingerprint = vision_fingerprint(encoder)
    run = [fingerprint, method, list(layer_names), [int(v) for v in shifts_px], bf16, caption_gate]
    keys = heatmap_row_keys(heatmap_plan, image_keys(plan_images), run, captions, heads, w_by_image)
    store = engine.store(DATASET)

    index = store.load_index() if settings.incremental else {}
    previous = previous_maps(engine, wanted_contents(index, keys))
    reused = store.reusable(keys, previous[2], index) if previous else {}
    total = len(heatmap_plan)
    todo = [p for p in range(total) if p not in reused]
    if previous is not None:
        logger.info("%s: reused %d of %d maps from version %s (maps whose image, target, method, layers, shifts, "
                    "precision, caption gate and encoder did not change since they were computed); %d to compute",
                    DATASET, len(reused), total, previous[0], len(todo))
    else:
        logger.info("%s: %d to compute (%s)", DATASET, len(todo),
                    "incremental: false" if not settings.incremental else "no map computed before with these keys")

    shards = plan_shards(todo, keys, settings.heatmap_batches_per_shard * batch_size,
                         {"what": "heatmap", "batch_size": batch_size, "image_size": size})
    rows = heatmap_plan.reset_index(drop=True)
    heads_on_cpu = {name: module.to("cpu") for name, module in heads.items()}

    with encoder_on_workers(engine.client, encoder, fingerprint) as send_encoder:

        def submit(shard, task_key):
            send_encoder()
            part = rows.iloc[list(shard.positions)]
            images, texts = set(part["image_id"]), set(caption_texts(part))
            # what this shard's rows need (captions and their contrast sets), no more: a plan's
            # report captions are one text per image
            shard_captions = CaptionTargets({t: captions.text_embeddings[t] for t in texts},
                                            captions.contrast_embedding, captions.plain_texts & texts)
            return engine.client.submit(
                heatmap_shard, fingerprint, {h: heads_on_cpu[h] for h in set(part["head"]) if h in heads_on_cpu},
                plan_images[plan_images["image_id"].astype(str).isin(images)],
                part, {i: w_by_image[i] for i in images if i in w_by_image}, shard_captions,
                method=method, target_layer=list(layer_names), shifts_px=list(shifts_px),
                contrast_caption=contrast_caption, batch_size=batch_size, device=device, bf16=bf16,
                caption_gate=caption_gate, torch_threads=settings.torch_threads, key=task_key, retries=settings.retries,
                resources=settings.resources or None, priority=-shard.number,
            )

        run = run_shards(engine.client, store, shards, submit, row_keys=keys, what=DATASET,
                         where_is=where_in_manifest(image_manifest))

    run.rows, run.reused_rows = total, len(reused)
    engine.runs[DATASET] = run
    sources = RowSources(total, shards, reused)
    # registered before the chunks go out: the hook deletes the shards when the last one is saved
    engine.clean_after_save(DATASET, [shard.key for shard in shards])
    read_previous = (lambda r: previous[1].rows(r.tolist())) if previous else None
    for start in range(0, total, chunk_size):
        stop = min(total, start + chunk_size)
        maps = sources.rows(start, stop, store, read_previous, (size, size), np.float16)
        yield HeatmapChunk(start, maps, total, metadata)
