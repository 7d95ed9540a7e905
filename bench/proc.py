"""Run one command as a whole process and measure it: wall seconds and the peak RSS of its process tree.

Why sampling /proc rather than ``/usr/bin/time -v`` or ``wait4``'s rusage: those report ``ru_maxrss`` of
the biggest single process, which misses a tree (a shell pipeline, a tool that forks workers) whose
members peak together; and a child forked from this Python process counts this process's pages until it
execs, so ``ru_maxrss`` read here says ~65 MB for a 10 MB psql.  A sampler thread sums the RSS of the
child and all its descendants every 50 ms; the peak reported is the larger of that sum and the largest
per-process ``VmHWM`` (the kernel's high-water mark, reset at exec), which catches a spike of one process
between two samples.  PostgreSQL server processes are never descendants of the command (the cluster is
started by the harness and daemonised by pg_ctl), so they are not counted.

Every command runs in its own session so that Ctrl-C (or any exception in the harness) can end exactly
that process group and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 0.05


@dataclass
class Measured:
    """One finished command."""

    argv: list[str]
    returncode: int
    seconds: float
    peak_rss: int  # bytes, whole process tree
    peak_rss_one: int  # bytes, the largest single process
    stderr: str
    cpu_seconds: float = 0.0  # user + system time of the command's own process (its threads; not the server's)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_line(self) -> str:
        """The last non-empty stderr line: what a failed row of the table shows."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {self.returncode}"


def _snapshot() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, rss bytes) of every process we can see."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            raw = (PROC / entry.name / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = raw.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE)
    return out


def _hwm(pid: int) -> int:
    """The process's own RSS high-water mark (VmHWM), reset by exec: catches spikes between samples."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss(root: int) -> tuple[int, int]:
    """(sum of current RSS, largest VmHWM) in bytes over ``root`` and every descendant alive right now."""
    procs = _snapshot()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total = biggest = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
            with contextlib.suppress(OSError, ValueError, IndexError):
                biggest = max(biggest, _hwm(pid))
        todo.extend(children.get(pid, ()))
    return total, biggest


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.peak = 0
        self.peak_one = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total, biggest = tree_rss(self.pid)
                self.peak = max(self.peak, total)
                self.peak_one = max(self.peak_one, biggest)
            self.done.wait(SAMPLE_SECONDS)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the command's whole process group (it runs in its own session): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    timeout: float = 3600.0,
) -> Measured:
    """Run ``argv`` to its end and measure it; stderr is kept (in a file, so a chatty tool cannot block)."""
    errfile = cwd / f".stderr-{os.getpid()}-{time.monotonic_ns()}"
    with errfile.open("w+b") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout, stderr=err, start_new_session=True
        )
        sampler = _Sampler(proc.pid)
        sampler.start()
        try:
            deadline = started + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    kill_group(proc)
                    raise TimeoutError(f"{argv[0]} ran longer than {timeout:.0f}s")
                time.sleep(0.01)
            seconds = time.monotonic() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            kill_group(proc)
            raise
        finally:
            sampler.done.set()
            sampler.join()
        err.seek(0)
        text = err.read().decode(errors="replace")
    errfile.unlink(missing_ok=True)
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        seconds=seconds,
        peak_rss=max(sampler.peak, sampler.peak_one),
        peak_rss_one=sampler.peak_one,
        stderr=text,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (or of ``path`` itself when it is a file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
