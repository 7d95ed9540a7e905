"""What bulkmig tells the operator while it works: status lines and progress bars, on stderr.

Stdout is kept for results (reports, JSON) so scripts can capture them.  On a terminal a progress bar
redraws in place; elsewhere (CI, a log file, systemd) it prints one line every few seconds instead, so
a log shows how fast things went without drowning in redraws.
"""

from __future__ import annotations

import sys
import threading
import time

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
    """Parts, rows, bytes, rate and ETA of one stage.  Thread-safe; call :meth:`advance` per unit."""

    def __init__(self, stage: str, total_parts: int, total_bytes: int = 0, interval: float = 5.0) -> None:
        self.stage = stage
        self.total_parts = total_parts
        self.total_bytes = total_bytes
        self.parts = 0
        self.rows = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._finished = False
        self._tty = sys.stderr.isatty()
        self._interval = 0.2 if self._tty else interval

    def advance(self, parts: int = 0, rows: int = 0, nbytes: int = 0) -> None:
        with _lock:
            self.parts += parts
            self.rows += rows
            self.bytes += nbytes
            now = time.monotonic()
            if self.parts >= self.total_parts:
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

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate_rows = self.rows / elapsed
        rate_bytes = self.bytes / elapsed
        if self.total_bytes and self.bytes:
            fraction = min(self.bytes / self.total_bytes, 1.0)
        elif self.total_parts:
            fraction = self.parts / self.total_parts
        else:
            fraction = 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0
        width = 24
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"{self.stage} [{bar}] {self.parts}/{self.total_parts} parts  {self.rows:,} rows  "
            f"{human_bytes(self.bytes)}  {rate_rows:,.0f} rows/s  {human_bytes(rate_bytes)}/s  "
            f"{'ETA ' + human_duration(eta) if fraction < 1 else 'elapsed ' + human_duration(elapsed)}"
        )

    def _draw(self, final: bool) -> None:
        if _quiet:
            return
        if self._tty:
            sys.stderr.write("\r" + self.line() + ("\n" if final else ""))
        else:
            sys.stderr.write(self.line() + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        """Draw the last state once (a stage that failed part-way ends its bar here)."""
        with _lock:
            if not self._finished:
                self._finished = True
                self._draw(final=True)
