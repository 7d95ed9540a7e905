"""kill -9 anywhere (issue 7, item 1) for extract, volume import and load.

The harness starts a stage as a subprocess (its own process group), kills the group with SIGKILL at a
seeded random point, and reruns; after a few kills per stage (early, middle, late) the last run goes to
completion.  Afterwards the volume verifies, validate says equal and the ledger holds each part once.

Kill points follow the stage's own durable progress (sidecars on the volume, objects in the bucket,
ledger rows) plus a random delay, not wall-clock time alone: these stages take about a second here,
and a pure timer would land in interpreter start-up on a slow machine and after the end on a fast one.
``BULKMIG_FAULT_SEED`` replays another sequence of kill points; the seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

SEED = int(os.environ.get("BULKMIG_FAULT_SEED", "20240607"))
ROWS = 300_000
# Kill points: "startup" is a pure timer (interpreter start, connections, pre-data); the others are
# fractions of the work still left when that run starts, so each kill lands inside the stage even
# though every rerun resumes with less to do.  A small jitter makes the exact moment random too.
POINTS = (("startup", 0.0, 0.0), ("early", 0.0, 0.1), ("middle", 0.3, 0.6), ("late", 0.75, 0.95))
POLL = 0.005
STAGE_TIMEOUT = 120.0


@dataclass
class Kill:
    """One kill: where it was aimed, and what the stage had done when the signal landed."""

    stage: str
    point: str
    threshold: int
    done_before: int
    done_at_kill: int
    total: int
    running: bool  # the process was still alive when SIGKILL was sent

    @property
    def mid_stage(self) -> bool:
        """Killed while alive with work done and work left: it really interrupted the stage."""
        return self.running and self.done_at_kill < self.total


def kill9(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the process group of ``proc``; True when the stage was still running at that moment."""
    running = proc.poll() is None
    if running:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between poll() and the kill
            running = False
    proc.wait(30)
    return running


def kill_at_points(
    flow, stage: str, progress: Callable[[], int], total: int, rng: random.Random, log: Path, *args: str
) -> list[Kill]:  # noqa: ANN001
    """Run ``stage`` once per kill point, killing it there; then once more to completion."""
    kills: list[Kill] = []
    for point, low, high in POINTS:
        done_before = progress()
        left = total - done_before
        if point == "startup":
            threshold, jitter = done_before, rng.uniform(0.1, 0.5)
        elif left >= 2:
            threshold = done_before + min(left - 1, max(1, round(left * rng.uniform(low, high))))
            jitter = rng.uniform(0.0, 0.02)
        else:
            continue  # nothing left to interrupt
        proc = flow.start(stage, *args, log=log)
        deadline = time.monotonic() + STAGE_TIMEOUT
        while proc.poll() is None and progress() < threshold and time.monotonic() < deadline:
            time.sleep(POLL)
        time.sleep(jitter)
        running = kill9(proc)
        kills.append(Kill(stage, point, threshold, done_before, progress(), total, running))
        if not running and proc.returncode != 0:
            pytest.fail(f"{stage} failed on its own (exit {proc.returncode}), seed {SEED}:\n{log.read_text()[-3000:]}")
    final = flow.bulkmig(stage, *args)
    assert final.code == 0, f"{stage} after kills {kills} (seed {SEED}):\n{final.text}"
    return kills


def test_kill9_extract_import_load(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path
) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE big (id bigint PRIMARY KEY, n int, t text, ts timestamptz);"
        "INSERT INTO big SELECT g, g % 1000, md5(g::text) || ' row ' || g,"
        " '2020-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, "
        f"{ROWS}) g;"
        "CREATE TABLE small (id int PRIMARY KEY, v text);"
        "INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 500) g;"
        "ANALYZE big; ANALYZE small;",
    )
    flow = make_flow(settings={"max_part_bytes": "1MB", "workers": 2})
    assert flow.bulkmig("plan").code == 0
    plan = json.loads((flow.volume / "plan.json").read_text())
    parts = sum(len(t["partitions"]) for t in plan["tables"])
    assert parts >= 20, parts
    log = tmp_path / "stages.log"
    kills: list[Kill] = []

    # extract: progress = parts whose sidecar is on the volume (a part counts once its sidecar exists).
    def sidecars() -> int:
        return sum(1 for _ in flow.volume.glob("data/*/*/part-*.json"))

    kills += kill_at_points(flow, "extract", sidecars, parts, random.Random(f"{SEED}-extract"), log, "--workers", "2")
    assert sidecars() == parts
    run = flow.run("volume", "seal", str(flow.volume))
    assert run.code == 0, run.text
    files = len(json.loads((flow.volume / "volume.json").read_text())["files"])

    # import: progress = objects of the volume in the bucket.
    s3 = s3_server.client()
    prefix = f"shop/volumes/{plan['volume_id']}/"

    def objects() -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sum(len(page.get("Contents", [])) for page in pages)

    kills += kill_at_points(flow, "volume import", objects, files + 1, random.Random(f"{SEED}-import"), log)

    # load: progress = rows in the ledger (0 until the ledger table exists).
    def ledger() -> int:
        try:
            return pg_target.execute(target_db, "SELECT count(*) FROM bulkmig.loaded_parts")[0][0]
        except psycopg.errors.UndefinedTable:
            return 0

    kills += kill_at_points(flow, "load", ledger, parts, random.Random(f"{SEED}-load"), log)

    report = "\n".join(map(str, kills)) + f"\nseed {SEED}"
    print(report)  # shown with -rP: where each kill landed
    for stage in ("extract", "volume import", "load"):
        assert any(k.mid_stage and k.stage == stage for k in kills), f"no kill interrupted {stage}:\n{report}"
        assert any(k.done_at_kill > k.done_before for k in kills if k.stage == stage and k.mid_stage), report

    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 0, verify.text
    bucket_verify = flow.run(
        "volume", "verify", f"{flow.bucket}/volumes/{plan['volume_id']}", "--s3-endpoint-url", s3_server.endpoint_url
    )
    assert bucket_verify.code == 0, bucket_verify.text
    check = flow.bulkmig("validate")
    assert check.code == 0, check.text
    dup = "SELECT part_key, count(*) FROM bulkmig.loaded_parts GROUP BY 1 HAVING count(*) > 1"
    assert pg_target.execute(target_db, dup) == []
    assert pg_target.execute(target_db, "SELECT count(*), sum(rows) FROM bulkmig.loaded_parts")[0] == (
        parts,
        ROWS + 500,
    )
    assert pg_target.execute(target_db, "SELECT count(*) FROM big")[0][0] == ROWS
