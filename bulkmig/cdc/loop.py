"""The one capture loop: sessions of a driver, reconnected with back-off when the source goes away.

State always comes back from the bucket (``stream.json``, ``progress.json``, the last batch), so a new
session after a lost connection, a restart or a kill -9 resumes exactly where the durable batches end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bulkmig.cdc.driver import CaptureDriver, CaptureReport, ReadLimits
from bulkmig.cdc.stream import bucket_store
from bulkmig.config.task import Task
from bulkmig.core.retry import Retry

RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


def run_capture(
    task: Task,
    driver: CaptureDriver,
    *,
    follow: bool,
    until_pos: int | None,
    max_changes: int,
    poll_interval: float,
    heartbeat_interval: float,
    stop: threading.Event | None,
    prepare: Callable[[], object] | None = None,
) -> CaptureReport:
    """Run ``driver`` sessions until one returns; a lost source connection is retried with back-off for up
    to ``settings.retry_timeout`` (which errors count is :mod:`bulkmig.core.retry`'s table, then the
    session's ``lost``).  Any other error ends the call.  ``prepare`` runs first in every attempt (it may
    need the source too)."""
    stop = stop or threading.Event()
    limits = ReadLimits(follow, until_pos, poll_interval, heartbeat_interval)
    report = CaptureReport(stream_id=driver.stream_id(task))
    store = bucket_store(task)
    started = time.monotonic()
    retry = Retry("capture", task.settings.retry_timeout, hint="it resumes where the bucket says", sleep=stop.wait)
    failures, since = 0, 0.0
    try:
        while True:
            session = driver.session(task, store, report, max_changes)
            try:
                if prepare is not None:
                    prepare()
                session.open()
                failures, retry.established = 0, True
                session.run(limits, stop)
                return report
            except driver.retryable as exc:
                reason = retry.should_retry(exc) or session.lost(exc)
                if reason is None:
                    raise
                since = since if failures else time.monotonic()
                step = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                retry.wait(exc, reason, failures, since, "source", base=step)
                failures += 1
                report.reconnects += 1
                if stop.is_set():
                    return report
            finally:
                session.close()
    finally:
        report.seconds = time.monotonic() - started
