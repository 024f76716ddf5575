"""A Dask client from the settings: a LocalCluster on 127.0.0.1, or an existing scheduler.

Example:
    >>> cluster_client = start_client(settings)  # doctest: +SKIP
    >>> cluster_client.client.submit(...)         # doctest: +SKIP
    >>> cluster_client.close()                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask

from medclip_residuals.distributed.settings import DaskSettings

logger = logging.getLogger(__name__)

DAEMON_KEY = "distributed.worker.daemon"
PRE_SPAWN_ENVIRON_KEY = "distributed.nanny.pre-spawn-environ"


class ClusterUnavailableError(RuntimeError):
    """The scheduler did not answer, or no worker joined it, in time."""


@dataclass
class ClusterClient:
    """A client, and the LocalCluster it owns (None for an existing scheduler)."""

    client: Any
    cluster: Any = None
    _config: Any = None  # the dask config set for the LocalCluster's life (dask.config.set, undone on close)
    _log_level_before: int = logging.NOTSET

    def close(self) -> None:
        """Close the client, then the LocalCluster it started (its worker processes stop)."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                try:
                    self.cluster.close()
                finally:
                    self._config.__exit__(None, None, None)
                    logging.getLogger("distributed").setLevel(self._log_level_before)
                    self.cluster = None


def start_client(settings: DaskSettings) -> ClusterClient:
    """A client of the settings' cluster, with at least one worker.

    LocalCluster: `n_workers` processes of `threads_per_worker` threads on 127.0.0.1 (no
    dashboard). While it lives, the dask config says `distributed.worker.daemon` =
    `worker_daemon`, and `worker_environ` is added to the environment its nannies give a
    worker process before it starts (`distributed.nanny.pre-spawn-environ`): a nanny reads
    both again when it restarts a worker that died. An address: `Client(address)`.

    Raises:
        ClusterUnavailableError: no scheduler or no worker within `connect_timeout_s`.
    """
    from distributed import Client, LocalCluster

    timeout = settings.connect_timeout_s
    if settings.local:
        config = dask.config.set({
            DAEMON_KEY: settings.worker_daemon,
            **{f"{PRE_SPAWN_ENVIRON_KEY}.{name}": value for name, value in settings.worker_environ.items()},
        })
        # A LocalCluster's scheduler and nannies live in this process: their start-and-stop
        # chatter (about 30 INFO lines) would fill the run's log; warnings still show.
        distributed_logger = logging.getLogger("distributed")
        level_before = distributed_logger.level
        distributed_logger.setLevel(max(logging.WARNING, level_before))
        try:
            cluster = LocalCluster(
                n_workers=settings.n_workers, threads_per_worker=settings.threads_per_worker, processes=True,
                host="127.0.0.1", dashboard_address=None, memory_limit=settings.memory_limit,
                silence_logs=logging.WARNING,
            )
            client = Client(cluster, set_as_default=False, timeout=timeout)
        except BaseException:
            config.__exit__(None, None, None)
            distributed_logger.setLevel(level_before)
            raise
        logger.info("dask: LocalCluster of %d worker(s) x %d thread(s) on 127.0.0.1 (scheduler %s)",
                    settings.n_workers, settings.threads_per_worker, cluster.scheduler_address)
        return ClusterClient(client, cluster, config, level_before)
    try:
        client = Client(settings.scheduler_address, set_as_default=False, timeout=timeout)
    except OSError as error:
        raise ClusterUnavailableError(
            f"dask.scheduler_address {settings.scheduler_address}: no scheduler answered within {timeout:g} s "
            f"({error}); start it (`dask scheduler`) or fix conf/<env>/dask.yml"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        client.close()
        raise ClusterUnavailableError(
            f"dask scheduler {settings.scheduler_address}: no worker joined within {timeout:g} s; start workers "
            f"(`dask worker {settings.scheduler_address}`)"
        ) from None
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    logger.info("dask: connected to %s, %d worker(s)", settings.scheduler_address, len(workers))
    return ClusterClient(client)
