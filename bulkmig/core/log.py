"""What bulkmig tells the operator while it works: status lines and progress bars, on stderr.

Stdout is kept for results (reports, JSON) so scripts can capture them.  On a terminal a progress bar
redraws in place; elsewhere (CI, a log file, systemd) it prints one line every few seconds instead, so
a log shows how fast things went without drowning in redraws.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import TextIO

from tqdm import tqdm

_lock = threading.Lock()
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def say(message: str) -> None:
    """One status line."""
    if _quiet:
        return
    with _lock:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Clock:
    """Where a stage's time went, for its closing line: operators (and the bench) read it."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        """Close the lap that began at the previous lap (or at the start) and call it ``name``."""
        now = time.monotonic()
        self.laps.append((name, now - self.last))
        self.last = now

    @property
    def total(self) -> float:
        return time.monotonic() - self.started

    def render(self) -> str:
        """``plan 0.1s, extract 11.4s, …``"""
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.laps)


class Progress:
    """Parts, rows, bytes, rate and ETA of one stage.  Thread-safe; call :meth:`advance` per unit.

    On a terminal it is a tqdm bar (bytes with rate and ETA when the total size is known, else units),
    with the parts and rows counts and the row rate beside it.  Elsewhere (CI, a log, ``-q`` aside) it
    prints :meth:`line` once every ``interval`` seconds, so a log shows how fast things went.
    ``unit`` names what the stage counts (``parts``; ``objects`` for seal/verify/import, which move files
    and have no rows; ``batches`` for capture and replay, whose rows are changes).
    """

    def __init__(
        self,
        stage: str,
        total_parts: int,
        total_bytes: int = 0,
        interval: float = 5.0,
        *,
        unit: str = "parts",
        rows: str | None = "rows",
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.stage = stage
        self.total_parts = total_parts
        self.total_bytes = total_bytes
        self.unit = unit
        self.rows_word = rows  # None: this stage moves no rows, so none are shown (and no rate of 0)
        self.parts = 0
        self.rows = 0
        self.bytes = 0
        self.note = ""  # e.g. capture's lag, shown after the counts
        self.started = time.monotonic()
        self._last = -math.inf  # the first advance always prints (monotonic time starts near 0 at boot)
        self._finished = False
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._interval = 0.2 if self._tty else interval
        self._bar: tqdm | None = None

    def advance(self, parts: int = 0, rows: int = 0, nbytes: int = 0, note: str | None = None) -> None:
        with _lock:
            self.parts += parts
            self.rows += rows
            self.bytes += nbytes
            if note is not None:
                self.note = note
            now = time.monotonic()
            if self.total_parts and self.parts >= self.total_parts:
                self._finished = True
                self._draw(final=True)
            elif now - self._last >= self._interval:
                self._last = now
                self._draw(final=False)

    def callback(self):  # noqa: ANN201 - volume.ProgressFn
        """An adapter for the volume stages, which report absolute totals rather than increments."""

        def report(done_bytes: int, total_bytes: int, done_files: int, total_files: int) -> None:
            with _lock:
                self.total_bytes, self.total_parts = total_bytes, total_files
            self.advance(parts=done_files - self.parts, nbytes=done_bytes - self.bytes)

        return report

    def _fraction(self) -> float | None:
        if self.total_bytes and self.bytes:
            return min(self.bytes / self.total_bytes, 1.0)
        if self.total_parts:
            return self.parts / self.total_parts
        return None  # open-ended (capture, replay): no ETA

    def counts(self) -> str:
        """``3/10 parts  120,000 rows  40,000 rows/s``: what the bar itself does not show."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        text = f"{self.parts:,}/{self.total_parts:,} {self.unit}" if self.total_parts else f"{self.parts:,} {self.unit}"
        if self.rows_word and (self.rows or self.parts):
            text += f"  {self.rows:,} {self.rows_word}  {self.rows / elapsed:,.0f} {self.rows_word}/s"
        return text + (f"  {self.note}" if self.note else "")

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        fraction = self._fraction()
        shown = 1.0 if fraction is None else fraction
        width = 24
        filled = int(width * shown)
        bar = "#" * filled + "-" * (width - filled)
        size = f"  {human_bytes(self.bytes)}  {human_bytes(self.bytes / elapsed)}/s" if self.bytes else ""
        if fraction is not None and fraction < 1:
            when = "ETA " + (human_duration(elapsed * (1 - fraction) / fraction) if fraction > 0 else "?")
        else:
            when = "elapsed " + human_duration(elapsed)
        return f"{self.stage} [{bar}] {self.counts()}{size}  {when}"

    def _draw(self, final: bool) -> None:
        if _quiet:
            return
        if not self._tty:
            self._stream.write(self.line() + "\n")
            self._stream.flush()
            return
        if self._bar is None:
            by_bytes = bool(self.total_bytes)
            self._bar = tqdm(
                total=self.total_bytes if by_bytes else (self.total_parts or None),
                desc=self.stage,
                unit="B" if by_bytes else self.unit.rstrip("s"),
                unit_scale=by_bytes,
                unit_divisor=1000,
                file=self._stream,
                dynamic_ncols=True,
                mininterval=0,
                smoothing=0,  # the average since the stage began, like the rows/s beside it
                leave=True,
            )
            # The stage began before its first draw: rates and ETA count from then.
            self._bar.start_t = self._bar.last_print_t = self._bar._time() - (time.monotonic() - self.started)
        bar = self._bar
        if self.total_bytes and bar.total != self.total_bytes:
            bar.total = self.total_bytes
        done = self.bytes if self.total_bytes else self.parts
        bar.update(done - bar.n)
        bar.set_postfix_str(self.counts(), refresh=False)
        bar.refresh()
        if final:
            bar.close()
            self._bar = None

    def finish(self) -> None:
        """Draw the last state once (a stage that failed part-way ends its bar here)."""
        with _lock:
            if not self._finished:
                self._finished = True
                self._draw(final=True)


# Open-ended stages (capture, replay) deep inside their loops advance the bar the command opened, by
# stage name, so the loops need no progress parameter threaded through every call.
_active: dict[str, Progress] = {}


def open_bar(progress: Progress) -> Progress:
    """Make ``progress`` the bar that :func:`tick` advances for its stage."""
    _active[progress.stage] = progress
    return progress


def close_bar(stage: str) -> None:
    bar = _active.pop(stage, None)
    if bar is not None:
        bar.finish()


def tick(stage: str, parts: int = 0, rows: int = 0, nbytes: int = 0, note: str | None = None) -> None:
    """Advance the bar opened for ``stage``, if any (library calls without a command open none)."""
    bar = _active.get(stage)
    if bar is not None:
        bar.advance(parts=parts, rows=rows, nbytes=nbytes, note=note)
