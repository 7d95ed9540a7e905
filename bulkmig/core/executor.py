"""Where units of work run: threads on this host (the default) or a Dask cluster.

A *unit* is one self-contained call — extract one part, say — that opens what it needs, does its work and
publishes its result the idempotent way (temporary name, rename, sidecar).  Running a unit twice is
therefore harmless, which is what lets Dask re-run the units of a worker it lost.

``settings.executor: local`` keeps today's thread pool (bulkmig.core.workers) and needs no cluster.
``settings.executor: dask`` sends each unit to the scheduler at ``settings.scheduler`` (an existing
cluster, e.g. extraction agents on source-side hosts) or, with no address, to a LocalCluster started for
the run.  Dask, not bulkmig, does the scheduling: placement, and rescheduling a lost worker's units
(``distributed.scheduler.allowed-failures`` times before it gives up with KilledWorker).

Units must be top-level functions whose arguments pickle (the task, the plan, a table): that is what
crosses to another host.  A unit's own errors are not retried (a wrong password stays wrong); they reach
the caller as raised.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bulkmig.core.errors import BulkmigError, ConfigError

Item = TypeVar("Item")
Result = TypeVar("Result")

CONNECT_TIMEOUT = "30s"


class ClusterLost(BulkmigError):
    """The Dask scheduler cannot be reached, or went away mid-run."""


def _client(scheduler: str | None, workers: int) -> tuple[Any, Any]:
    """A Dask client for ``scheduler``, or for a LocalCluster of ``workers`` processes (returned to close)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "settings.executor: dask needs the Dask distributed package, which is not installed",
            "pip install 'bulkmig[dask]' (or set settings.executor: local)",
        ) from None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT), None
    except (OSError, TimeoutError) as exc:
        raise ClusterLost(
            f"cannot reach the Dask scheduler at {scheduler}: {(str(exc) or type(exc).__name__).splitlines()[0]}",
            "start it (`dask scheduler`) or fix settings.scheduler / --scheduler",
        ) from None


def run_on_dask(
    name: str,
    scheduler: str | None,
    workers: int,
    unit: Callable[..., Result],
    items: Sequence[Item],
    args: Callable[[Item], tuple[Any, ...]],
    on_done: Callable[[Item, Result], None],
) -> None:
    """Run ``unit(*args(item))`` for every item on the cluster; ``on_done`` here as each one finishes.

    The first failing unit cancels the ones not yet started and is raised; units already finished stay
    finished (a rerun skips them).  A scheduler that goes away mid-run raises :class:`ClusterLost`.
    """
    from distributed import as_completed
    from distributed.comm.core import CommClosedError

    # The client's own reconnect attempts log tracebacks; the error raised below says what happened.
    for logger in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    client, cluster = _client(scheduler, workers)
    where = scheduler or "a local Dask cluster"
    run = uuid.uuid4().hex[:8]
    try:
        futures = {
            client.submit(unit, *args(item), key=f"{name}-{run}-{n}", pure=False): item for n, item in enumerate(items)
        }
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    for other in futures:
                        other.cancel()
                    future.result()  # raises the unit's own error
                on_done(futures[future], future.result())
        except (CommClosedError, OSError, TimeoutError) as exc:
            if isinstance(exc, BulkmigError):
                raise
            raise ClusterLost(
                f"lost the Dask scheduler at {where} mid-{name}: {type(exc).__name__}",
                f"start a scheduler and its workers again, then rerun `bulkmig {name}`: the finished units are kept "
                "and skipped",
            ) from None
        except Exception as exc:
            if type(exc).__name__ == "FutureCancelledError" and "connection-lost" in str(exc):
                raise ClusterLost(
                    f"lost the Dask scheduler at {where} mid-{name}",
                    f"start a scheduler and its workers again, then rerun `bulkmig {name}`: the finished units are "
                    "kept and skipped",
                ) from None
            if type(exc).__name__ == "KilledWorker":
                raise ClusterLost(
                    f"Dask gave up on a {name} unit after losing the workers running it: {exc}",
                    f"look at the workers' logs (memory? killed?), then rerun `bulkmig {name}`: the finished units are "
                    "kept and skipped",
                ) from None
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
