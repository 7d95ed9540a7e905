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


def _client(scheduler: str | None, workers: int, resources: dict[str, float] | None = None) -> tuple[Any, Any]:
    """A Dask client for ``scheduler``, or for a LocalCluster of ``workers`` processes (returned to close),
    each offering ``resources`` (this host holds every device)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "settings.executor: dask needs the Dask distributed package, which is not installed",
            "pip install 'bulkmig[dask]' (or set settings.executor: local)",
        ) from None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, resources=resources
        )
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
    *,
    resources: Callable[[Item], dict[str, float] | None] | None = None,
    on_error: Callable[[Item, Exception], Callable[[Item], bool] | None] | None = None,
) -> None:
    """Run ``unit(*args(item))`` for every item on the cluster; ``on_done`` here as each one finishes.

    ``resources(item)`` places a unit on the workers offering those resources (``{"device-b": 1}``: only an
    agent that mounts device b); every resource asked for must be offered by a worker of the cluster,
    else this refuses before submitting anything (a unit no worker can take would wait forever).

    The first failing unit cancels the ones not yet started and is raised; units already finished stay
    finished (a rerun skips them).  ``on_error(item, exc)`` may instead return a predicate: the failure is
    absorbed, and the units not yet finished whose items match it are cancelled (a full device stops its
    own parts, the others go on).  A scheduler that goes away mid-run raises :class:`ClusterLost`.
    """
    from distributed import as_completed
    from distributed.comm.core import CommClosedError

    # The client's own reconnect attempts log tracebacks; the error raised below says what happened.
    for logger in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    wanted = [resources(item) or {} for item in items] if resources else [{} for _ in items]
    offered = {r: 1.0 for want in wanted for r in want}  # a LocalCluster runs on this host: it holds them all
    client, cluster = _client(scheduler, workers, offered or None)
    where = scheduler or "a local Dask cluster"
    run = uuid.uuid4().hex[:8]
    try:
        if scheduler is not None and offered:
            _refuse_unoffered(client, where, set(offered))
        futures = {
            client.submit(unit, *args(item), key=f"{name}-{run}-{n}", pure=False, resources=want or None): item
            for n, (item, want) in enumerate(zip(items, wanted, strict=True))
        }
        dropped: set[Any] = set()  # cancelled here after their device failed (other cancels are a lost scheduler)
        try:
            for future in as_completed(futures):
                if future in dropped:
                    continue
                if future.status == "error":
                    exc = future.exception()
                    skip = on_error(futures[future], exc) if on_error and isinstance(exc, Exception) else None
                    if skip is not None:
                        for other, item in futures.items():
                            if not other.done() and skip(item):
                                dropped.add(other)
                                other.cancel()
                        continue
                    for other in futures:
                        if other is not future:  # cancelling the failed one would replace its error
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


def _refuse_unoffered(client: Any, where: str, wanted: set[str]) -> None:
    """Refuse units that ask for a resource (a device) no worker of the cluster offers."""
    info = client.scheduler_info()
    offered = {r for w in info.get("workers", {}).values() for r, n in (w.get("resources") or {}).items() if n > 0}
    missing = sorted(wanted - offered)
    if missing:
        raise ConfigError(
            f"no worker of the Dask cluster at {where} offers {', '.join(missing)}: the parts of "
            + ("that device" if len(missing) == 1 else "those devices")
            + " have nowhere to run",
            "start an agent on the host that mounts it (`dask worker <scheduler> --resources "
            f"{missing[0]}=<threads>`, or the bulkmig-agent@ unit; see agents/README.md), then rerun",
        )
