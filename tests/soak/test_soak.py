"""Soak (issue 7, item 9): full-load-and-cdc under a steady pgbench workload for minutes, with faults
injected periodically, then cutover: the target must equal the source.

Runs with ``make soak`` (``BULKMIG_SOAK_SECONDS``, default 300 there); ``make test`` skips it.

What runs: pgbench (4 clients, a fixed rate) and a writer of unique inserts (``bulkmig.testing.workload``,
whose keyless table turns a batch applied twice into duplicate rows) write to the source the whole time.
The full load (plan holding the slot's snapshot, extract, seal, import, load) runs first; S3 goes
through a fault-injecting proxy.  Then ``capture`` and ``replay --follow`` run as processes while, every
``BULKMIG_SOAK_FAULT_EVERY`` seconds, the next fault of the rotation hits them: kill -9 of capture (restarted
at once), kill -9 of replay (restarted), a burst of S3 errors (500, 503 SlowDown, connection resets), and a
target restart.  A stage that dies on its own fails the soak.  At the end the writers stop, replay
--follow is stopped, and ``cutover`` (capture still running) waits for replay to catch up, sets the
sequences and compares every table: it must say GO, and the writer's tables must match exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bulkmig.testing import workload
from bulkmig.testing.faultproxy import Fault, FaultProxy

SECONDS = float(os.environ.get("BULKMIG_SOAK_SECONDS", "0"))
FAULT_EVERY = float(os.environ.get("BULKMIG_SOAK_FAULT_EVERY", "25"))
SEED = int(os.environ.get("BULKMIG_FAULT_SEED", "20240607"))
ROTATION = ("kill capture", "s3 errors", "kill replay", "target restart")

pytestmark = [
    pytest.mark.skipif(SECONDS <= 0, reason="the soak runs with `make soak` (set BULKMIG_SOAK_SECONDS)"),
    pytest.mark.timeout(int(SECONDS) + 1800),
]


def s3_burst() -> list[Fault]:
    """Random 500s, 503 SlowDowns and resets on every object request, for as long as the plan is armed."""
    return [
        Fault("status", path=r"/shop/", status=503, code="SlowDown", probability=0.03, limit=None, name="503"),
        Fault("status", path=r"/shop/", status=500, code="InternalError", probability=0.1, limit=None, name="500"),
        Fault("reset", method="PUT", path=r"/shop/", after_bytes=64, probability=0.05, limit=None, name="reset"),
    ]


class Stage:
    """A long-running stage (capture, replay --follow) as a process that faults may kill and restart."""

    def __init__(self, flow, command: str, *args: str, log: Path) -> None:  # noqa: ANN001
        self.flow, self.command, self.args, self.log = flow, command, args, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.proc = self.flow.start(self.command, *self.args, log=self.log, quiet=False)
        self.starts += 1

    def check(self) -> None:
        """Fail the soak when the stage ended without being told to."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log.read_text()[-4000:]
            raise AssertionError(f"{self.command} ended on its own (exit {self.proc.returncode}):\n{tail}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.start()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def run_ok(flow, *args: str, timeout: int = 900) -> str:  # noqa: ANN001
    run = flow.bulkmig(*args, timeout=timeout)
    assert run.code == 0, (args, run.text)
    return run.text


def test_soak_full_load_and_cdc_under_faults(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path
) -> None:  # noqa: ANN001
    rng = random.Random(SEED)
    pgbench = str(Path(pg_source.bindir) / "pgbench")
    env = pg_source.env()
    subprocess.run([pgbench, "-i", "-s", "10", "-q", source_db], env=env, check=True, capture_output=True)
    pg_source.execute(source_db, workload.SCHEMA_SQL + "CREATE SEQUENCE soak_seq; SELECT setval('soak_seq', 7);")
    started = time.monotonic()
    with FaultProxy(s3_server.endpoint_url, seed=SEED) as proxy:
        flow = make_flow(
            endpoint_url=proxy.endpoint_url,
            migration_type="full-load-and-cdc",
            settings={"max_part_bytes": "16MB", "allow_replica_identity_full": True, "retry_timeout": 120},
        )
        bench = subprocess.Popen(
            [pgbench, "-c", "4", "-j", "2", "-T", str(int(SECONDS) + 1800), "-R", "200", "-n", source_db],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        writer = workload.InsertWorkload(pg_source.conninfo(source_db, options="-c synchronous_commit=on"))
        writer.start()
        faults: list[tuple[float, str]] = []
        capture = replay = None
        try:
            # ---- full load, S3 faults on during import and load
            plan_log = tmp_path / "plan.log"
            planner = flow.start("plan", log=plan_log, quiet=False)
            while not (flow.volume / "plan.json").exists():
                assert planner.poll() is None, plan_log.read_text()
                time.sleep(0.2)
            run_ok(flow, "extract")
            assert planner.wait(300) == 0, plan_log.read_text()
            assert flow.run("volume", "seal", str(flow.volume)).code == 0
            capture = Stage(flow, "capture", log=tmp_path / "capture.log")
            capture.start()  # from now on the slot moves on while the load runs
            proxy.set_plan(s3_burst())
            run_ok(flow, "volume import")
            run_ok(flow, "load")
            proxy.clear()
            full_load = time.monotonic() - started

            # ---- change data capture under faults
            replay = Stage(flow, "replay", "--follow", log=tmp_path / "replay.log")
            replay.start()
            soak_started = time.monotonic()
            next_fault = soak_started + FAULT_EVERY
            burst_until = 0.0
            n = 0
            while time.monotonic() - soak_started < SECONDS:
                time.sleep(0.5)
                capture.check()
                replay.check()
                if writer.errors:
                    raise writer.errors[0]
                assert bench.poll() is None, bench.communicate()[0]
                now = time.monotonic()
                if burst_until and now >= burst_until:
                    proxy.clear()
                    burst_until = 0.0
                if now < next_fault:
                    continue
                kind = ROTATION[n % len(ROTATION)]
                n += 1
                faults.append((round(now - soak_started, 1), kind))
                if kind == "kill capture":
                    capture.kill9()
                elif kind == "kill replay":
                    replay.kill9()
                elif kind == "s3 errors":
                    proxy.set_plan(s3_burst())
                    burst_until = now + 15
                else:
                    pg_target.restart(down=3)
                next_fault = time.monotonic() + FAULT_EVERY * rng.uniform(0.7, 1.3)
            proxy.clear()
        finally:
            bench.send_signal(signal.SIGINT)
            bench.communicate(timeout=120)
            writer.stop()
        # ---- cutover: the application stopped writing; capture still runs, replay --follow stops first
        assert replay.stop() == 0, replay.log.read_text()[-4000:]
        cut_started = time.monotonic()
        cut = flow.bulkmig("cutover", "--timeout", "600", timeout=900)
        cut_seconds = time.monotonic() - cut_started
        capture.check()
        assert capture.stop() == 0, capture.log.read_text()[-4000:]
        assert cut.code == 0 and "GO: point the application" in cut.err, cut.text
        assert flow.bulkmig("cleanup").code == 0

    want = workload.fingerprints(pg_source.execute, source_db)
    assert want["fw_log"][:3] == (writer.committed,) * 3
    assert workload.fingerprints(pg_target.execute, target_db) == want
    assert pg_target.execute(target_db, "SELECT last_value FROM soak_seq") == [(7,)]
    dup = "SELECT part_key FROM bulkmig.loaded_parts GROUP BY 1 HAVING count(*) > 1"
    assert pg_target.execute(target_db, dup) == []
    kinds = {k for _, k in faults}
    assert kinds == set(ROTATION), f"not every fault kind was injected: {faults}"
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="shop/cdc/")
    batches = sum(1 for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/batch.json"))
    summary = {
        "soak_seconds": SECONDS,
        "full_load_seconds": round(full_load, 1),
        "faults": faults,
        "s3_injected": proxy.total_injected(),
        "capture_starts": capture.starts,
        "replay_starts": replay.starts,
        "writer_transactions": writer.transactions,
        "writer_outages": writer.outages,
        "batches": batches,
        "pgbench_transactions": pg_source.execute(source_db, "SELECT count(*) FROM pgbench_history")[0][0],
        "cutover_seconds": round(cut_seconds, 1),
    }
    print("soak summary: " + json.dumps(summary))
