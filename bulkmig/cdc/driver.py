"""What a source engine supplies to capture: the CDC driver protocol, and the report every capture returns.

The capture core (:mod:`bulkmig.cdc.loop`) owns the reconnect loop; a driver supplies only what differs
between engines: how to name the stream, connect and recover its state from the bucket (``open``), read and
decode changes into whole-transaction batches (``run``), and what its source can say about the stream
(``status``, ``drop``).  ``engines/postgres/capture.py`` (pgoutput) and ``engines/mysql/capture.py``
(binlog) are the two drivers; ``bulkmig.engines.cdc_driver`` finds one by engine name.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bulkmig.cdc.batch import Batch
from bulkmig.config.task import Task
from bulkmig.core.log import tick
from bulkmig.core.retry import Reason
from bulkmig.core.store import Store


@dataclass
class CaptureReport:
    """What one ``capture`` call did.  Positions are LSN text; lag is WAL bytes behind the source."""

    stream_id: str
    batches: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    transactions: int = 0
    changes: int = 0
    skipped_transactions: int = 0  # re-peeked after a crash, already in a durable batch
    heartbeats: int = 0
    schema_changes: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    captured_through: str | None = None
    lag_bytes: int | None = None

    def count_batch(self, batch: Batch) -> None:
        """Count a batch once it is durable (whatever happens to its acknowledgement), and say so on the
        progress line."""
        self.batches += 1
        self.first_seq = batch.seq if self.first_seq is None else self.first_seq
        self.last_seq = batch.seq
        self.transactions += batch.transactions
        self.changes += batch.rows
        self.schema_changes += len(batch.schema_changes)
        tick("capture", parts=1, rows=batch.rows, note=f"captured through {batch.last_pos}")

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changes_per_second": round(self.changes_per_second, 1)}


@dataclass(frozen=True)
class ReadLimits:
    """How long one capture call reads and how it paces itself: what the loop hands every session's ``run``.

    ``follow``: keep reading once caught up; ``until_pos``: stop once ``captured_through`` reaches it (wins over
    ``follow``); ``horizon``: a one-pass read's end, the source's position when the pass began (a session that
    needs one sets it: under a steady write load the stream never runs dry); ``poll_interval``: the longest a
    change waits to be committed (and a peek loop's pause); ``heartbeat_interval``: an idle stream's heartbeat
    pace, so that it pins nothing on the source.
    """

    follow: bool
    until_pos: int | None
    poll_interval: float
    heartbeat_interval: float
    horizon: int | None = None


class CaptureSession(Protocol):
    """One connection's worth of capture: state recovered from the bucket in ``open``, then changes read
    until ``run`` returns; ``close`` releases the connection and the stream's lock."""

    def open(self) -> None: ...

    def run(self, limits: ReadLimits, stop: threading.Event) -> None: ...

    def lost(self, exc: BaseException) -> Reason | None:
        """The driver's own judgement that ``exc`` lost the source (after :mod:`bulkmig.core.retry` said no):
        a reason to reconnect, None to fail, or raise the error the operator should see."""
        ...

    def close(self) -> None: ...


class CaptureDriver(Protocol):
    """One source engine's change capture."""

    #: exceptions the reconnect loop looks at; anything else ends the capture at once
    retryable: tuple[type[BaseException], ...]
    #: True: nothing on the source marks the stream's start, so capture may write ``stream.json`` itself
    #: (``start_from`` the plan's snapshot position, or ``start_now``); False: plan starts the stream
    starts_lazily: bool

    def stream_id(self, task: Task) -> str: ...

    def session(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> CaptureSession: ...

    def status(self, task: Task) -> dict[str, Any]: ...

    def drop(self, task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]: ...
