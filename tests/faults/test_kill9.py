"""kill -9 anywhere (issue 7, item 1): plan, extract, seal, volume import, load, capture and replay.

The harness starts a stage as a subprocess (its own process group), kills the group with SIGKILL at a
seeded random point, and reruns; after a few kills per stage (startup, early, middle, late) the last run
goes to completion.  Afterwards the volume verifies, validate says equal, the ledger holds each part
once, and for the change stream every change is in exactly one batch and every batch applied once.

Kill points follow the stage's own durable progress (files on the volume, objects in the bucket,
ledger rows, the replay position) plus a random delay, not wall-clock time alone: these stages take
about a second here, and a pure timer would land in interpreter start-up on a slow machine and after
the end on a fast one.  ``plan`` and ``seal`` have too few durable steps to aim at (``seal`` writes
nothing before its last one), so their points are fractions of a measured clean run on this machine.
``BULKMIG_FAULT_SEED`` replays another sequence of kill points; the seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bulkmig.cdc.batch import list_batches, read_batch
from bulkmig.core.store import S3Options, S3Store
from bulkmig.testing import workload

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
    flow,  # noqa: ANN001
    stage: str,
    progress: Callable[[], int],
    total: int,
    rng: random.Random,
    log: Path,
    *args: str,
    final: tuple[str, ...] | None = None,
    task: bool = True,
    on_start: Callable[[subprocess.Popen[bytes] | None], None] | None = None,
) -> list[Kill]:
    """Run ``stage`` once per kill point, killing it there; then once more to completion.

    ``final``: the arguments of the last run when they differ (``capture`` follows until killed, its
    last run is ``--once``); ``task=False`` for commands without ``--task`` (``volume seal``);
    ``on_start(proc)`` tells a progress function which process to watch (None once it is gone).
    """
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
        proc = flow.start(stage, *args, log=log, task=task)
        if on_start:
            on_start(proc)
        deadline = time.monotonic() + STAGE_TIMEOUT
        while proc.poll() is None and progress() < threshold and time.monotonic() < deadline:
            time.sleep(POLL)
        time.sleep(jitter)
        before_kill = progress()
        running = kill9(proc)
        kills.append(Kill(stage, point, threshold, done_before, max(before_kill, progress()), total, running))
        if on_start:
            on_start(None)
        if not running and proc.returncode != 0:
            pytest.fail(f"{stage} failed on its own (exit {proc.returncode}), seed {SEED}:\n{log.read_text()[-3000:]}")
    final_args = args if final is None else final
    run = flow.bulkmig(stage, *final_args) if task else flow.run(*stage.split(), *final_args)
    assert run.code == 0, f"{stage} after kills {kills} (seed {SEED}):\n{run.text}"
    return kills


def kill_after(flow, stage: str, done: Callable[[], bool], log: Path) -> None:  # noqa: ANN001
    """Start ``stage`` and SIGKILL it the moment ``done()`` turns true (polled every millisecond)."""
    proc = flow.start(stage, log=log)
    deadline = time.monotonic() + STAGE_TIMEOUT
    while not done() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert kill9(proc), f"{stage} ended before it could be killed (seed {SEED}):\n{log.read_text()[-2000:]}"


class Elapsed:
    """Progress of a stage whose durable steps are too few or too quick to aim at (plan, seal): the
    milliseconds its process has run.  A measured clean run gives the total, so the kill points are
    fractions of this machine's own duration, and a killed run counts as "interrupted" only if it
    was still running before the measured end."""

    def __init__(self) -> None:
        self.started: float | None = None

    def watch(self, proc: subprocess.Popen[bytes] | None) -> None:
        self.started = time.monotonic() if proc is not None else None

    def __call__(self) -> int:
        return 0 if self.started is None else int((time.monotonic() - self.started) * 1000)

    def measure(self, flow, stage: str, *args: str, log: Path, task: bool = True) -> int:  # noqa: ANN001
        """Run ``stage`` to completion once; its duration in milliseconds."""
        proc = flow.start(stage, *args, log=log, task=task)
        self.watch(proc)
        code = proc.wait(STAGE_TIMEOUT)
        took = self()
        self.watch(None)
        assert code == 0, log.read_text()[-3000:]
        return took


def assert_interrupted(kills: list[Kill], *stages: str) -> None:
    report = "\n".join(map(str, kills)) + f"\nseed {SEED}"
    print(report)  # shown with -rP: where each kill landed
    for stage in stages:
        assert any(k.mid_stage and k.stage == stage for k in kills), f"no kill interrupted {stage}:\n{report}"
        assert any(k.done_at_kill > k.done_before for k in kills if k.stage == stage and k.mid_stage), report


def test_kill9_plan_extract_seal_import_load(
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
        "CREATE SEQUENCE counter; SELECT setval('counter', 4242);"
        "ANALYZE big; ANALYZE small;",
    )
    flow = make_flow(settings={"max_part_bytes": "1MB", "workers": 2})
    log = tmp_path / "stages.log"
    kills: list[Kill] = []

    # plan: a measured run, then kills at fractions of its duration (each rerun starts from scratch).
    clock = Elapsed()
    took = clock.measure(flow, "plan", log=log)
    shutil.rmtree(flow.volume)
    rng = random.Random(f"{SEED}-plan")
    kills += kill_at_points(flow, "plan", clock, took, rng, log, on_start=clock.watch)
    plan = json.loads((flow.volume / "plan.json").read_text())
    parts = sum(len(t["partitions"]) for t in plan["tables"])
    assert parts >= 20, parts

    # extract: progress = parts whose sidecar is on the volume (a part counts once its sidecar exists).
    def sidecars() -> int:
        return sum(1 for _ in flow.volume.glob("data/*/*/part-*.json"))

    kills += kill_at_points(flow, "extract", sidecars, parts, random.Random(f"{SEED}-extract"), log, "--workers", "2")
    assert sidecars() == parts

    # seal: the same (it writes nothing before volume.json, its last step).
    took = clock.measure(flow, "volume seal", str(flow.volume), log=log, task=False)
    root_hash = json.loads((flow.volume / "volume.json").read_text())["root_hash"]
    (flow.volume / "volume.json").unlink()
    rng = random.Random(f"{SEED}-seal")
    kills += kill_at_points(
        flow, "volume seal", clock, took, rng, log, str(flow.volume), task=False, on_start=clock.watch
    )
    # Sealing is deterministic: killed and rerun, it writes the same manifest as one clean run.
    assert json.loads((flow.volume / "volume.json").read_text())["root_hash"] == root_hash
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

    assert_interrupted(kills, "plan", "extract", "volume seal", "volume import", "load")
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
    assert pg_target.execute(target_db, "SELECT last_value FROM counter") == [(4242,)]


# ------------------------------------------------------------------------------------- change stream


def _stream_id(s3, bucket: str) -> str:  # noqa: ANN001
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="shop/cdc/").get("Contents", [])]
    ids = {k.split("/")[2] for k in keys if k.endswith("/stream.json")}
    assert len(ids) == 1, keys
    return ids.pop()


def test_kill9_plan_capture_replay(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    """migration_type cdc onto a target that already holds the (empty) tables, under a steady workload
    of unique inserts: the keyless ``fw_log`` turns a batch applied twice into duplicate rows."""
    pg_source.execute(source_db, workload.SCHEMA_SQL)
    pg_target.execute(target_db, workload.SCHEMA_SQL)
    flow = make_flow(
        migration_type="cdc", volume=None, settings={"allow_replica_identity_full": True, "retry_timeout": 30}
    )
    log = tmp_path / "stages.log"
    s3 = s3_server.client()
    kills: list[Kill] = []

    # plan (cdc: publication, slot, then stream.json): progress = those that exist.
    def started() -> int:
        slot = pg_source.execute(
            source_db, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
        )
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="shop/cdc/").get("Contents", [])
        return slot[0][0] + sum(1 for o in listed if o["Key"].endswith("/stream.json"))

    # Exactly between creating the slot and recording the stream first (a window of milliseconds) ...
    with psycopg.connect(pg_source.conninfo(source_db), autocommit=True) as watch:
        slots = "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
        kill_after(flow, "plan", lambda: watch.execute(slots).fetchone()[0] == 1, log)
    assert started() == 1, "the kill missed the window between the slot and stream.json"
    # ... then at random points: every rerun starts from what the killed one left.
    kills += kill_at_points(flow, "plan", started, 2, random.Random(f"{SEED}-cdc-plan"), log)
    assert started() == 2

    writer = workload.InsertWorkload(pg_source.conninfo(source_db, options="-c synchronous_commit=on")).start()
    stream_id = _stream_id(s3, bucket)
    prefix = f"shop/cdc/{stream_id}/"

    def batches() -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sum(1 for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/batch.json"))

    try:
        writer.wait_for(20)
        # capture follows until killed; its last run (--once) ends at what is flushed when it starts.
        rng = random.Random(f"{SEED}-capture")
        kills += kill_at_points(flow, "capture", batches, 20, rng, log, final=("--once",))
    finally:
        writer.stop()
    run = flow.bulkmig("capture", "--once")  # everything the workload committed
    assert run.code == 0, run.text
    total = batches()

    # replay: progress = the batch the target's position row names.
    def applied() -> int:
        try:
            rows = pg_target.execute(target_db, "SELECT seq FROM bulkmig.replay_position")
        except psycopg.errors.UndefinedTable:
            return 0
        return rows[0][0] if rows else 0

    kills += kill_at_points(flow, "replay", applied, total, random.Random(f"{SEED}-replay"), log)
    assert_interrupted(kills, "capture", "replay")
    assert applied() == total

    # Every change is in exactly one batch: the inserted ids, over all batches, are 1..N once each.
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3Store(bucket, "shop", S3Options(endpoint_url=s3_server.endpoint_url, region="us-east-1"))
    seen: dict[str, list[int]] = {"fw_keyed": [], "fw_log": []}
    for seq in list_batches(store, f"cdc/{stream_id}"):
        for table in read_batch(store, f"cdc/{stream_id}", seq).tables:
            seen[table.table] += [int(r.values[0]) for r in table.rows if r.op == "I"]
    assert seen["fw_log"] == list(range(1, writer.committed + 1)), "a change is missing or repeated in the batches"
    assert sorted(seen["fw_keyed"]) == seen["fw_log"]
    # ... and every batch was applied once: the keyless table would show a repeat as duplicate rows.
    want = workload.fingerprints(pg_source.execute, source_db)
    assert want["fw_log"][:3] == (writer.committed, writer.committed, writer.committed)
    assert workload.fingerprints(pg_target.execute, target_db) == want


def test_kill9_plan_between_its_steps(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path
) -> None:  # noqa: ANN001
    """full-load-and-cdc's plan creates the slot, records the stream (stream.json), writes plan.json and then
    holds the slot's snapshot while extraction runs.  Killed right after each step, reruns recover: an
    unrecorded slot and an unplanned stream are dropped and started again; a snapshot that died with its
    holder is reported at once, and ``plan --restart`` starts over.  One slot is left, and the migration
    replays to equal."""
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;",
    )
    flow = make_flow(migration_type="full-load-and-cdc", settings={"max_part_bytes": "64kB"})
    log = tmp_path / "plan.log"
    s3 = s3_server.client()
    watch = psycopg.connect(pg_source.conninfo(source_db), autocommit=True)
    slots = "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"

    def streams() -> int:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="shop/cdc/").get("Contents", [])
        return sum(1 for o in listed if o["Key"].endswith("/stream.json"))

    steps = {
        "slot created": lambda: watch.execute(slots).fetchone()[0] == 1,
        "stream recorded": lambda: streams() == 1,
        "plan written": lambda: (flow.volume / "plan.json").exists(),
    }
    states: list[tuple[str, int, int, bool]] = []  # after each kill: slots, stream.json, plan.json
    for step, done in steps.items():
        kill_after(flow, "plan", done, log)
        states.append((step, watch.execute(slots).fetchone()[0], streams(), (flow.volume / "plan.json").exists()))
        if step != "plan written":
            assert not (flow.volume / "plan.json").exists(), f"killed after {step}, yet plan.json exists"
    watch.close()
    assert states == [
        ("slot created", 1, 0, False),
        ("stream recorded", 1, 1, False),
        ("plan written", 1, 1, True),
    ], "a kill missed its step"

    rerun = flow.bulkmig("plan")  # the snapshot died with the killed holder; no part was read in it
    assert rerun.code == 4 and "ended with the `bulkmig plan` that held it" in rerun.err, rerun.text
    planner = flow.start("plan", "--restart", log=log, quiet=False)
    old = json.loads((flow.volume / "plan.json").read_text())["volume_id"]
    deadline = time.monotonic() + STAGE_TIMEOUT
    while not _planned_anew(flow, old) and planner.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL)
    extract = flow.bulkmig("extract")
    assert extract.code == 0, extract.text
    assert planner.wait(STAGE_TIMEOUT) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "dropped replication slot" in text or "discarded stream" in text, text
    assert pg_source.execute(source_db, slots) == [(1,)] and streams() == 1
    pg_source.execute(source_db, "UPDATE t SET v = 'changed' WHERE id <= 5; DELETE FROM t WHERE id = 6")
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in (("volume import",), ("load",), ("capture", "--once"), ("replay",), ("validate",)):
        run = flow.bulkmig(*step)
        assert run.code == 0, (step, run.text)
    assert pg_target.execute(target_db, "SELECT count(*) FROM t WHERE v = 'changed'") == [(5,)]


def _planned_anew(flow, old: str) -> bool:  # noqa: ANN001
    try:
        return json.loads((flow.volume / "plan.json").read_text())["volume_id"] != old
    except (OSError, ValueError):
        return False
