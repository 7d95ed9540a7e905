"""`bulkmig capture`: the change stream of the source into change batches in S3, whatever the engine.

The stage looks up the source engine's driver (``bulkmig.engines.cdc_driver``) and runs it in the one
reconnect loop (:mod:`bulkmig.cdc.loop`).  A MySQL stream that has no ``stream.json`` yet is started here
from the plan (:mod:`bulkmig.capture.start`), so engine drivers never read the plan or the volume.
"""

from __future__ import annotations

import threading
from typing import Any

from bulkmig.capture.start import start_missing_stream
from bulkmig.cdc.driver import CaptureReport
from bulkmig.cdc.loop import run_capture
from bulkmig.cdc.stream import bucket_store, read_progress, read_stream, stream_names, stream_prefix
from bulkmig.config.task import Task
from bulkmig.engines import cdc_driver


def capture(
    task: Task,
    *,
    follow: bool = True,
    until_pos: int | None = None,
    max_changes: int = 10000,
    poll_interval: float = 1.0,
    heartbeat_interval: float = 10.0,
    stop: threading.Event | None = None,
) -> CaptureReport:
    """Capture the task's change stream into change batches until told to stop.

    Each read (PostgreSQL: ``max_changes`` pgoutput messages, rounded up to whole transactions) becomes at
    most one batch.  Stops when ``stop`` is set; when ``captured_through`` reaches ``until_pos`` (heartbeats
    are emitted to get past WAL that holds nothing for this stream; this wins over ``follow``); or, with
    ``follow=False`` and no ``until_pos``, after one pass over what the source had written when the call
    started.

    A lost source connection (a restart, a failover, a killed session) is retried with back-off for up to
    ``settings.retry_timeout`` (state is always recovered from the bucket); which errors count is
    :mod:`bulkmig.core.retry`'s table.  Any other error ends the call.  Safe to kill at any moment and run again.
    """
    driver = cdc_driver(task.source.engine)
    return run_capture(
        task,
        driver,
        follow=follow,
        until_pos=until_pos,
        max_changes=max_changes,
        poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval,
        stop=stop,
        prepare=lambda: start_missing_stream(task),
    )


def stream_status(task: Task) -> dict[str, Any]:
    """The stream at a glance, for ``bulkmig status``: the last batch, how far capture has stored, the
    source's view (slot lag and retained WAL, or binlog position) and warnings."""
    return cdc_driver(task.source.engine).status(task)


def drop_stream(task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
    """``bulkmig cleanup``: drop what the stream holds on the source (slot, publication); with
    ``delete_from_bucket`` also its documents and batches.  Refuses while a capture of the stream runs."""
    return cdc_driver(task.source.engine).drop(task, delete_from_bucket=delete_from_bucket)


__all__ = [
    "CaptureReport",
    "bucket_store",
    "capture",
    "drop_stream",
    "read_progress",
    "read_stream",
    "stream_names",
    "stream_prefix",
    "stream_status",
]
