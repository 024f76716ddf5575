"""`image_embeddings` over shards of the manifest on a Dask cluster, incremental and resumable.

1. Key every image: its id-independent file key (absolute path, size, mtime) with the
   encoder's vision fingerprint and bf16 (`keys`).
2. Reuse: a row of the latest version of `image_embeddings` is taken where the shard
   store's index says this key produced exactly those 512 floats (`ShardStore.reusable`).
3. Cut the rest into shards of `embedding_batches_per_shard` batches; shards already in the
   store (a killed run's) are resumed, the others run on the workers
   (`worker.embed_shard`: the project's `embed_image_files`), retried by Dask.
4. Each finished shard is stored with its rows' keys (the index of the next run's reuse);
   the output is gathered in manifest order; the shards are deleted once it is saved (`hooks.DaskClientHook.after_dataset_saved`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from medclip_residuals.distributed.engine import ShardEngine
from medclip_residuals.distributed.keys import content_digests, image_keys, row_key, vision_fingerprint
from medclip_residuals.distributed.shards import RowSources, plan_shards, run_shards, where_in_manifest
from medclip_residuals.distributed.store import wanted_contents
from medclip_residuals.distributed.worker import embed_shard
from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.utils.frames import embeddings_to_matrix, matrix_to_embeddings

logger = logging.getLogger(__name__)

DATASET = "image_embeddings"


def embed_images_sharded(
    engine: ShardEngine,
    encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    device: str,
    *,
    batch_size: int,
    num_workers: int,
    bf16: bool,
) -> pd.DataFrame:
    """The embedding table of the manifest (as `embed_images` makes it in-process), computed
    over shards on the engine's cluster; rows of the latest version reused where unchanged."""
    from medclip_residuals.distributed.plugin import encoder_on_workers  # imports distributed: only here

    settings = engine.settings
    ids = image_manifest["image_id"].astype(str).tolist()
    paths = image_manifest["image_path"].astype(str).tolist()
    fingerprint = vision_fingerprint(encoder)
    files = image_keys(image_manifest)
    keys = [row_key("image_embedding", fingerprint, bool(bf16), files[image_id]) for image_id in ids]
    store = engine.store(DATASET)

    index = store.load_index() if settings.incremental else {}
    wanted = wanted_contents(index, keys)
    previous = engine.latest(DATASET) if wanted else None  # no key known: nothing to read
    previous_matrix = np.zeros((0, encoder.embed_dim), dtype=np.float32)
    previous_digests: dict[str, int] = {}
    if previous is not None:
        _, previous_matrix = embeddings_to_matrix(previous[1], dataset=f"{DATASET} version {previous[0]}")
        previous_digests = {c: row for row, c in enumerate(content_digests(previous_matrix)) if c in wanted}
    reused = store.reusable(keys, previous_digests, index)
    todo = [p for p in range(len(ids)) if p not in reused]
    if previous is not None:
        logger.info("%s: reused %d of %d rows from version %s (rows whose image file and encoder did not change "
                    "since they were computed); %d to embed", DATASET, len(reused), len(ids), previous[0], len(todo))
    else:
        logger.info("%s: %d to embed (%s)", DATASET, len(todo),
                    "incremental: false" if not settings.incremental else "no row computed before with these keys")

    shards = plan_shards(todo, keys, settings.embedding_batches_per_shard * batch_size,
                         {"what": "image_embedding", "batch_size": batch_size})
    with encoder_on_workers(engine.client, encoder, fingerprint) as send_encoder:

        def submit(shard, task_key):
            send_encoder()
            return engine.client.submit(
                embed_shard, fingerprint, [paths[p] for p in shard.positions],
                batch_size=batch_size, num_workers=num_workers, bf16=bf16, device=device,
                torch_threads=settings.torch_threads, key=task_key, retries=settings.retries,
                resources=settings.resources or None, priority=-shard.number,
            )

        run = run_shards(engine.client, store, shards, submit, row_keys=keys, what=DATASET,
                         where_is=where_in_manifest(image_manifest))

    run.rows, run.reused_rows = len(ids), len(reused)
    engine.runs[DATASET] = run
    sources = RowSources(len(ids), shards, reused)
    matrix = sources.rows(0, len(ids), store, lambda rows: previous_matrix[rows], (encoder.embed_dim,), np.float32)
    engine.clean_after_save(DATASET, [shard.key for shard in shards])
    return matrix_to_embeddings(ids, matrix)
