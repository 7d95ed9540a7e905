"""Database restarts (issue 7, item 4): the target restarted during load and replay, the source restarted
during extract and capture — for real (``pg_ctl stop -m fast``: every session ends with SQLSTATE 57P01,
then connections are refused until the server is back).

What each stage does about it (``bulkmig.core.retry`` holds the one table of retryable errors):

- ``load`` and ``replay`` retry in-process: a part (with its ledger row) and a batch (with its position)
  are one transaction each, so redoing one on a new connection is exact.  A target that stays away longer
  than ``settings.retry_timeout`` stops the stage with a clear message; a rerun resumes.
- ``capture`` reconnects in-process the same way: its state is the bucket's and the slot's.
- ``extract`` cannot: the snapshot it reads in ends with the sessions.  It stops, saying so and what to
  do; a plain full load's rerun reads the remaining parts in a new snapshot, while full-load-and-cdc must
  start over (its parts belong to the stream's snapshot), which ``plan --restart`` does in one step.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bulkmig.testing import workload

ROWS = 200_000
WAIT = 60.0


def wait_for(
    what: str,
    condition: Callable[[], bool],
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = WAIT,
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` (and the stage's log when its process ended)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the stage ended first (exit {proc.returncode}):\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f}s\n{_tail(log)}")
        time.sleep(0.02)


def _tail(log: Path | None) -> str:
    return log.read_text()[-4000:] if log is not None and log.exists() else ""


def finish(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the stage did not end within {timeout:.0f}s") from None


def _big_source(pg_source, source_db: str) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE big (id bigint PRIMARY KEY, n int, t text);"
        f"INSERT INTO big SELECT g, g % 1000, md5(g::text) || ' row ' || g FROM generate_series(1, {ROWS}) g;"
        "CREATE TABLE small (id int PRIMARY KEY, v text);"
        "INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 500) g; ANALYZE big; ANALYZE small;",
    )


def _count(server, db: str, sql: str) -> int:  # noqa: ANN001
    try:
        rows = server.execute(db, sql)
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return 0
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _parts(flow) -> int:  # noqa: ANN001
    plan = json.loads((flow.volume / "plan.json").read_text())
    return sum(len(t["partitions"]) for t in plan["tables"])


def _volume_id(flow) -> str | None:  # noqa: ANN001
    try:
        return json.loads((flow.volume / "plan.json").read_text())["volume_id"]
    except (OSError, ValueError):
        return None


def _ok(run) -> None:  # noqa: ANN001
    assert run.code == 0, run.text


def test_target_restart_during_load(make_flow, pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    _big_source(pg_source, source_db)
    settings = {"max_part_bytes": "1MB", "workers": 2}
    flow = make_flow(settings={**settings, "retry_timeout": 2})
    for step in (("plan",), ("extract",)):
        _ok(flow.bulkmig(*step))
    _ok(flow.run("volume", "seal", str(flow.volume)))
    _ok(flow.bulkmig("volume import"))
    parts = _parts(flow)
    ledger = "SELECT count(*) FROM bulkmig.loaded_parts"

    # 1. The target goes away for longer than retry_timeout (2 s): load stops, saying why and what to do.
    log = tmp_path / "load-1.log"
    proc = flow.start("load", log=log, quiet=False)
    try:
        wait_for("3 parts loaded", lambda: _count(pg_target, target_db, ledger) >= 3, proc=proc, log=log)
        pg_target.shut_down()
        code = finish(proc)
    finally:
        pg_target.start_again()
    text = log.read_text()
    assert code == 3, text  # EXIT_CONNECT
    assert "load: gave up after" in text and "rerun `bulkmig load`" in text and "retry_timeout" in text, text
    assert "Traceback" not in text
    loaded = _count(pg_target, target_db, ledger)
    assert 3 <= loaded < parts

    # 2. A restart shorter than retry_timeout: load waits for the target, redoes the interrupted parts, ends.
    flow = make_flow(settings={**settings, "retry_timeout": 60})  # same task inputs: not part of the plan
    log = tmp_path / "load-2.log"
    proc = flow.start("load", log=log, quiet=False)
    try:
        wait_for("more parts loaded", lambda: _count(pg_target, target_db, ledger) >= loaded + 3, proc=proc, log=log)
        assert _count(pg_target, target_db, ledger) < parts, "load finished before the restart"
        pg_target.restart(down=1.5)
    finally:
        ensure_up(pg_target)
    assert finish(proc) == 0, log.read_text()
    text = log.read_text()
    assert "SQLSTATE 57P01 admin_shutdown" in text or "connection lost" in text, text
    assert f"{loaded} of {parts} parts already loaded (ledger)" in text
    dup = "SELECT part_key FROM bulkmig.loaded_parts GROUP BY 1 HAVING count(*) > 1"
    assert pg_target.execute(target_db, dup) == []
    assert pg_target.execute(target_db, "SELECT count(*), sum(rows) FROM bulkmig.loaded_parts")[0] == (
        parts,
        ROWS + 500,
    )
    _ok(flow.bulkmig("validate"))


def test_source_restart_during_extract_full_load(
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:  # noqa: ANN001
    _big_source(pg_source, source_db)
    flow = make_flow(settings={"max_part_bytes": "1MB", "workers": 2})
    _ok(flow.bulkmig("plan"))
    parts = _parts(flow)

    def sidecars() -> int:
        return sum(1 for _ in flow.volume.glob("data/*/*/part-*.json"))

    log = tmp_path / "extract.log"
    proc = flow.start("extract", log=log, quiet=False)
    try:
        wait_for("2 parts extracted", lambda: sidecars() >= 2, proc=proc, log=log)
        pg_source.shut_down()
        code = finish(proc)
    finally:
        pg_source.start_again()
    text = log.read_text()
    assert code == 1, text
    assert "lost the source while extracting" in text and "the snapshot this run reads in is gone" in text, text
    assert "rerun `bulkmig extract` once the source is back" in text and "Traceback" not in text, text
    done = sidecars()
    assert 2 <= done < parts

    rerun = flow.bulkmig("extract")
    _ok(rerun)
    assert f"{done} of {parts} parts already on the volume" in rerun.err
    assert "were read in snapshot(s)" in rerun.err  # the volume now mixes two moments, and says so
    _ok(flow.run("volume", "seal", str(flow.volume)))
    for step in ("volume import", "load", "validate"):
        _ok(flow.bulkmig(step))


def test_source_restart_during_extract_full_load_and_cdc(
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:  # noqa: ANN001
    """The parts of full-load-and-cdc belong to the stream's snapshot: after a source restart mid-extract
    extract and plan say so, a plain rerun refuses, and ``plan --restart`` starts the volume and the
    stream over in one step; the migration then completes and replays to equal."""
    _big_source(pg_source, source_db)
    flow = make_flow(migration_type="full-load-and-cdc", settings={"max_part_bytes": "1MB", "workers": 2})

    def sidecars() -> int:
        return sum(1 for _ in flow.volume.glob("data/*/*/part-*.json"))

    plan_log, extract_log = tmp_path / "plan.log", tmp_path / "extract.log"
    planner = flow.start("plan", log=plan_log, quiet=False)
    wait_for("plan.json", lambda: (flow.volume / "plan.json").exists(), proc=planner, log=plan_log)
    extractor = flow.start("extract", log=extract_log, quiet=False)
    try:
        wait_for("2 parts extracted", lambda: sidecars() >= 2, proc=extractor, log=extract_log)
        pg_source.shut_down()
        assert finish(extractor) == 1, extract_log.read_text()
        assert finish(planner) == 1, plan_log.read_text()
    finally:
        pg_source.start_again()
    text = extract_log.read_text()
    assert "lost the source while extracting" in text and "start over with `bulkmig plan --restart`" in text, text
    text = plan_log.read_text()
    assert "lost the source session holding snapshot" in text and "--restart" in text, text

    again = flow.bulkmig("plan")
    assert again.code == 4, again.text  # EXIT_INTEGRITY (PlanError)
    assert "ended with the `bulkmig plan` that held it" in again.err and "--restart" in again.err, again.text

    old = _volume_id(flow)
    planner = flow.start("plan", "--restart", log=plan_log, quiet=False)
    wait_for("the new plan", lambda: _volume_id(flow) not in (None, old), proc=planner, log=plan_log)
    assert sidecars() == 0
    _ok(flow.bulkmig("extract"))
    assert finish(planner) == 0, plan_log.read_text()
    assert "discarded stream" in plan_log.read_text()
    pg_source.execute(source_db, "UPDATE small SET v = 'after the restart' WHERE id <= 10")
    _ok(flow.run("volume", "seal", str(flow.volume)))
    for step in (("volume import",), ("load",), ("capture", "--once"), ("replay",), ("validate",)):
        _ok(flow.bulkmig(*step))
    assert pg_target.execute(target_db, "SELECT count(*) FROM small WHERE v = 'after the restart'") == [(10,)]
    slots = "SELECT count(*) FROM pg_replication_slots WHERE database = %s"
    assert pg_source.execute(source_db, slots, (source_db,)) == [(1,)]  # the old stream's slot is gone


# ------------------------------------------------------------------------------------- change stream


def _cdc_flow(make_flow, pg_source, pg_target, source_db, target_db, retry_timeout: int):  # noqa: ANN001, ANN202
    """migration_type cdc onto a target holding the same (empty) workload tables; the stream started."""
    pg_source.execute(source_db, workload.SCHEMA_SQL)
    pg_target.execute(target_db, workload.SCHEMA_SQL)
    flow = make_flow(
        migration_type="cdc",
        volume=None,
        settings={"allow_replica_identity_full": True, "retry_timeout": retry_timeout},
    )
    _ok(flow.bulkmig("plan"))
    return flow


def _writer(pg_source, source_db: str) -> workload.InsertWorkload:  # noqa: ANN001
    return workload.InsertWorkload(pg_source.conninfo(source_db, options="-c synchronous_commit=on"), pause=0.02)


def _stored(s3, bucket: str) -> int:  # noqa: ANN001
    """Change batches in the bucket (their batch.json is written last)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="shop/cdc/")
    return sum(1 for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/batch.json"))


def ensure_up(server) -> None:  # noqa: ANN001
    """Start a server a failed step left stopped, so the fixtures can clean up."""
    try:
        server.execute("postgres", "SELECT 1")
    except psycopg.OperationalError:
        server.start_again()


def test_target_restart_during_replay(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path
) -> None:  # noqa: ANN001
    flow = _cdc_flow(make_flow, pg_source, pg_target, source_db, target_db, retry_timeout=60)
    s3 = s3_server.client()
    position = "SELECT seq FROM bulkmig.replay_position"
    capture_log, replay_log = tmp_path / "capture.log", tmp_path / "replay.log"
    writer = _writer(pg_source, source_db).start()
    capturer = replayer = None
    try:
        writer.wait_for(10)
        capturer = flow.start("capture", log=capture_log, quiet=False)
        replayer = flow.start("replay", "--follow", log=replay_log, quiet=False)
        wait_for(
            "3 batches applied", lambda: _count(pg_target, target_db, position) >= 3, proc=replayer, log=replay_log
        )
        try:
            pg_target.restart(down=1.5)
        finally:
            ensure_up(pg_target)
        applied = _count(pg_target, target_db, position)
        wait_for(
            "replay going on after the restart",
            lambda: _count(pg_target, target_db, position) >= applied + 3,
            proc=replayer,
            log=replay_log,
        )
    finally:
        writer.stop()
        if capturer is not None:
            capturer.send_signal(signal.SIGTERM)
            assert finish(capturer) == 0, capture_log.read_text()
    _ok(flow.bulkmig("capture", "--once"))
    last = _stored(s3, bucket)
    wait_for(
        f"batch {last} applied", lambda: _count(pg_target, target_db, position) == last, proc=replayer, log=replay_log
    )
    replayer.send_signal(signal.SIGTERM)
    assert finish(replayer) == 0, replay_log.read_text()
    text = replay_log.read_text()
    assert "replay: SQLSTATE 57P01 admin_shutdown" in text or "replay: connection lost" in text, text
    assert workload.fingerprints(pg_target.execute, target_db) == workload.fingerprints(pg_source.execute, source_db)


def test_source_restart_during_capture(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path
) -> None:  # noqa: ANN001
    flow = _cdc_flow(make_flow, pg_source, pg_target, source_db, target_db, retry_timeout=60)
    log = tmp_path / "capture.log"
    writer = _writer(pg_source, source_db).start()
    s3 = s3_server.client()

    def stored() -> int:
        return _stored(s3, bucket)

    try:
        # 1. A short restart: capture reconnects and goes on in the same process.
        writer.wait_for(10)
        capturer = flow.start("capture", log=log, quiet=False)
        wait_for("3 batches", lambda: stored() >= 3, proc=capturer, log=log)
        try:
            pg_source.restart(down=1.5)
        finally:
            ensure_up(pg_source)
        batches = stored()
        wait_for("capture going on after the restart", lambda: stored() >= batches + 3, proc=capturer, log=log)
        capturer.send_signal(signal.SIGTERM)
        assert finish(capturer) == 0, log.read_text()
        text = log.read_text()
        assert "capture: source SQLSTATE 57P01 admin_shutdown" in text or "capture: source connection lost" in text

        # 2. The source stays away longer than retry_timeout: capture stops, saying so.
        flow = make_flow(
            migration_type="cdc", volume=None, settings={"allow_replica_identity_full": True, "retry_timeout": 1}
        )
        capturer = flow.start("capture", log=log, quiet=False)
        batches = stored()
        wait_for("a batch", lambda: stored() > batches, proc=capturer, log=log)
        try:
            pg_source.shut_down()
            code = finish(capturer)
        finally:
            pg_source.start_again()
        assert code == 3, log.read_text()
        assert "capture: gave up after" in log.read_text() and "rerun `bulkmig capture`" in log.read_text()
        writer.wait_for(writer.transactions + 5)
    finally:
        writer.stop()
    assert writer.outages >= 1  # the writer saw the restarts too (and knows which of its rows committed)
    _ok(flow.bulkmig("capture", "--once"))
    _ok(flow.bulkmig("replay"))
    want = workload.fingerprints(pg_source.execute, source_db)
    assert want["fw_log"][:3] == (writer.committed,) * 3
    assert workload.fingerprints(pg_target.execute, target_db) == want
