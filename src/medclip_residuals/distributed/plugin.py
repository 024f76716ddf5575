"""`EncoderPlugin`: the encoder sent to every worker of the cluster once, and to every worker
that joins later (one that replaces a worker that died), kept in the worker's encoder cache
(`worker.cached_encoder`) until the node's shards are done.

Why a worker plugin and not `Client.scatter`: scattered data is not a task Dask can redo. Its
replicas are the only copies, and the scheduler's active memory manager drops the replicas
it thinks unneeded; once the last holder dies every shard that depends on the encoder is
forgotten. A registered plugin is kept by the scheduler and set up on each new worker, so a
replaced worker loads the encoder and retries its shard. The scheduler holds one pickled
copy of the encoder while the plugin is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from medclip_residuals.distributed import worker as worker_side


class EncoderPlugin(WorkerPlugin):
    """Puts `encoder` into each worker's cache under `fingerprint` (setup) and takes it out (teardown)."""

    idempotent = True  # registering the same encoder twice changes nothing

    def __init__(self, encoder: Any, fingerprint: str) -> None:
        self.encoder = encoder
        self.fingerprint = fingerprint
        self.name = f"medclip-encoder-{fingerprint}"

    def setup(self, worker: Any) -> None:
        worker_side.cache_encoder(self.fingerprint, self.encoder)

    def teardown(self, worker: Any) -> None:
        worker_side.forget_encoder(self.fingerprint)


def register_encoder(client: Any, encoder: Any, fingerprint: str) -> str:
    """Send the encoder (on the CPU: a worker may have no GPU) to every worker; returns the
    plugin's name for `client.unregister_worker_plugin`."""
    device = encoder.device
    if device.type != "cpu":
        encoder.to("cpu")
    try:
        plugin = EncoderPlugin(encoder, fingerprint)
        client.register_plugin(plugin)
    finally:
        if device.type != "cpu":
            encoder.to(device)
    return plugin.name


@contextmanager
def encoder_on_workers(client: Any, encoder: Any, fingerprint: str) -> Iterator[Callable[[], None]]:
    """Yields `send()`, which registers the encoder's plugin the first time it is called (with
    the first shard: a run whose every row is reused sends nothing); the plugin is unregistered
    when the block ends, also on error."""
    names: list[str] = []

    def send() -> None:
        if not names:
            names.append(register_encoder(client, encoder, fingerprint))

    try:
        yield send
    finally:
        for name in names:
            client.unregister_worker_plugin(name)
