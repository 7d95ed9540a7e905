"""Helpers of the Dask end-to-end tests (test_dask_extract.py, test_agents.py): real `dask scheduler` and
`dask worker` processes, and the rest of a migration once a cluster has extracted it.

Helpers are fixtures returning functions (as in tests/faults/conftest.py), so test modules import
nothing from a conftest."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    """A TCP port nothing listens on now (the machine is shared: never a fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``argv`` in its own process group (a kill takes a nanny's worker processes with it), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _start_dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m dask <args>`` with this interpreter (the one that has bulkmig and distributed)."""
    return _start_process([sys.executable, "-m", "dask", *args], log)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill each still running process group and reap it."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _units_run(address: str) -> dict[str, set[str]]:
    """The extract units each worker of the cluster at ``address`` has run, from the workers' own logs."""
    import distributed

    def keys(dask_worker) -> list[str]:  # noqa: ANN001 - runs inside the worker process
        return sorted({str(e[0]) for e in dask_worker.state.log if str(e[0]).startswith("extract-")})

    with distributed.Client(address, timeout="20s") as client:
        return {w: set(ks) for w, ks in client.run(keys).items()}


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def units_run(self) -> dict[str, set[str]]:
        return _units_run(self.address)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A `dask scheduler` and two one-process workers (as on two extraction-agent hosts)."""
    distributed = pytest.importorskip("distributed")
    port = str(_free_port())
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start_dask(
        "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log=tmp_path / "sched.log"
    )
    workers = [
        _start_dask(
            "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"agent-{n}",
            "--local-directory", str(tmp_path / f"agent-{n}"), log=tmp_path / f"agent-{n}.log",
        )
        for n in (1, 2)
    ]  # fmt: skip
    try:
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield Cluster(address, scheduler, workers)
    finally:
        _stop([*workers, scheduler])


def _parts(flow: Any) -> list[str]:
    plan = json.loads((flow.volume / "plan.json").read_text())
    return [f"{t['schema']}.{t['name']}/{i}" for t in plan["tables"] for i in range(len(t["partitions"]))]


def _finish_migration(flow: Any) -> None:
    """Seal, verify (every part against its sidecar), import, load, validate: all equal."""
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 0, verify.text
    for step in ("volume import", "load"):  # here: the agents are source-side hosts, without the bucket's keys
        run = flow.bulkmig(step, "--executor", "local")
        assert run.code == 0, f"{step}: {run.text}"
    # Validation on this host too (the task's scheduler may be one a test killed; test_dask_load validates on Dask).
    check = flow.bulkmig("validate", "--json", "--executor", "local")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True
    assert all(t["equal"] and t["source_rows"] == t["target_rows"] for t in report["tables"])


def _wait_for_first_part(flow: Any) -> None:
    """Until the first sidecar is on the volume: the cluster is mid-extract."""
    deadline = time.monotonic() + 120
    while not list((flow.volume / "data").rglob("*.json")):
        assert time.monotonic() < deadline, "no part on the volume after 120 s"
        time.sleep(0.2)


@pytest.fixture
def planned_parts() -> Callable[[Any], list[str]]:
    """``planned_parts(flow)``: every part of the flow's plan, as ``schema.table/index``."""
    return _parts


@pytest.fixture
def finish_migration() -> Callable[[Any], None]:
    """``finish_migration(flow)``: seal, verify, import, load and validate an extracted flow; all equal."""
    return _finish_migration


@pytest.fixture
def wait_for_first_part() -> Callable[[Any], None]:
    """``wait_for_first_part(flow)``: block until a part's sidecar is on the volume (120 s at most)."""
    return _wait_for_first_part


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback TCP port nothing listens on now."""
    return _free_port


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``processes(argv, log, env=None)``: start a process in its own group; killed at teardown if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        started.append(_start_process(argv, log, env))
        return started[-1]

    yield start
    _stop(started)


@pytest.fixture
def start_dask(processes: Callable[..., subprocess.Popen[bytes]]) -> Callable[..., subprocess.Popen[bytes]]:
    """``start_dask(*args, log=path)``: ``python -m dask <args>``; killed at teardown if still running."""

    def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
        return processes([sys.executable, "-m", "dask", *args], log)

    return start


@pytest.fixture
def units_run() -> Callable[[str], dict[str, set[str]]]:
    """``units_run(address)``: worker address -> the extract units that worker ran."""
    return _units_run
