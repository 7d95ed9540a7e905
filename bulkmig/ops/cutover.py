"""`bulkmig cutover` and `bulkmig cleanup`: the last steps of a migration with change data capture.

Cutover is run once the application has stopped writing to the source.  It waits until replay has
applied everything up to the source's current position (capture must be running to get there), sets
every sequence on the target from a fresh read of the source (sequences are not in logical decoding),
compares every table, and prints a go/no-go report: GO only when replay caught up, sequences are set,
and every table is equal.  Cleanup drops the slot and the publication, so the source stops retaining
WAL for us; it is the operator's explicit last step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core.errors import NotEqual
from bulkmig.core.log import say
from bulkmig.validation.validate import ValidationReport, validate


class CaptureStopped(Exception):
    """Capture ended while cutover waited for it; the caller holds capture's own error."""


@dataclass
class CutoverReport:
    caught_up: bool
    applied_pos: str | None
    source_pos: str | None
    sequences: int
    validation: ValidationReport | None
    problems: list[str] = field(default_factory=list)
    held_back: int = 0  # schema objects the target held back while changes were replayed, created now

    @property
    def go(self) -> bool:
        return self.caught_up and not self.problems and (self.validation is None or self.validation.equal)

    def render(self) -> str:
        lines = [
            f"replay        {'caught up' if self.caught_up else 'NOT caught up'}: applied {self.applied_pos}, "
            f"source at {self.source_pos}",
            f"sequences     {self.sequences} set on the target from the source's current values",
        ]
        if self.validation is not None:
            bad = [t.table for t in self.validation.tables if not t.equal]
            lines.append(
                f"validation    {len(self.validation.tables)} tables, "
                + ("all equal" if not bad else f"{len(bad)} differ: {', '.join(bad[:10])}")
            )
        if self.held_back:
            lines.append(f"schema        {self.held_back} object(s) held back while replaying (triggers) created")
        lines += [f"problem       {p}" for p in self.problems]
        lines.append(
            "verdict       GO: point the application at the target, then run `bulkmig cleanup`"
            if self.go
            else "verdict       NO-GO: fix the problems above (were writes to the source stopped?) and rerun cutover"
        )
        return "\n".join(lines)


def sync_sequences(task: Task) -> int:
    """Set every target sequence that also exists on the source to the source's value now (a MySQL target sets
    its counterpart, the AUTO_INCREMENT counters)."""
    from bulkmig.targets import target_for

    return int(target_for(task).sync_sequences())


def finish_schema(task: Task) -> int:
    """What the target held back while changes were replayed (a MySQL target's triggers, which nothing could keep
    from firing on the replayed rows), created once cutover is GO; a PostgreSQL target holds nothing back."""
    from bulkmig.targets import target_for

    return int(target_for(task).finish_schema())


def cutover(
    task: Task, *, timeout: float = 600.0, check: bool = True, abort: threading.Event | None = None
) -> CutoverReport:
    """``abort``: set by whoever runs capture when it dies, so cutover stops waiting for it at once."""
    from bulkmig.replay import replay, replay_status

    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.daemon = True
    timer.start()
    if abort is not None:
        threading.Thread(target=lambda: (abort.wait(timeout), stop.set()), daemon=True).start()
    try:
        result = replay(task, until_caught_up=True, stop=stop)
    finally:
        timer.cancel()
    if abort is not None and abort.is_set():
        raise CaptureStopped()
    state = replay_status(task)
    caught_up = bool(result.caught_up)
    problems = []
    if not caught_up:
        problems.append(
            f"replay did not reach the source's position within {timeout:.0f}s — is `bulkmig capture` running?"
        )
    n = sync_sequences(task)
    validation = validate(task, raise_on_difference=False) if check else None
    report = CutoverReport(
        caught_up=caught_up,
        applied_pos=str(state.get("applied_pos")),
        source_pos=str(state.get("source_pos")),
        sequences=n,
        validation=validation,
        problems=problems,
    )
    if report.go:
        report.held_back = finish_schema(task)
    say(report.render())
    if not report.go:
        raise NotEqual("cutover: NO-GO", "see the report above")
    return report


def cleanup(task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
    """Drop the stream's slot and publication on the source (and its batches, when asked)."""
    from bulkmig.capture import drop_stream

    dropped = drop_stream(task, delete_from_bucket=delete_from_bucket)
    say(
        "cleanup: "
        + ("dropped the replication slot" if dropped["slot"] else "no replication slot to drop")
        + ", "
        + ("dropped the publication" if dropped["publication"] else "no publication to drop")
        + (f", deleted {dropped['objects']} objects of the stream from the bucket" if delete_from_bucket else "")
    )
    return dropped
