"""full-load-and-cdc under a live write workload: the target equals the source once replay caught up.

pgbench (scale 10, four clients, 300 transactions/s) writes during plan, extract, import and load, together with a
workload of our own over many types: inserts, updates, deletes, updates that leave a multi-megabyte
TOASTed value untouched, TRUNCATE, and transactions over several tables.  Every table is then compared
value by value (each row's text, sorted), not only counted.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

WORKLOAD_SQL = """
CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), tags text[], doc jsonb,
                    seen timestamptz, flag boolean, raw bytea, big text);
CREATE TABLE notes ("Op" text, op int, "__op" text, id int PRIMARY KEY);
CREATE TABLE scratch (id int PRIMARY KEY, v text);
CREATE TABLE keyless (a int, b text);
CREATE SEQUENCE order_no;
INSERT INTO items SELECT g, 'item ' || g, g / 3.0, ARRAY['t' || g % 5], jsonb_build_object('g', g),
                         '2024-01-01'::timestamptz + g * interval '1 minute', g % 2 = 0, decode(md5(g::text), 'hex'),
                         CASE WHEN g % 100 = 0 THEN repeat(md5(g::text), 60000) END
FROM generate_series(1, 3000) g;
INSERT INTO notes SELECT 'I', g, 'D', g FROM generate_series(1, 200) g;
INSERT INTO scratch SELECT g, 'v' || g FROM generate_series(1, 50) g;
INSERT INTO keyless SELECT g % 7, 'k' || g FROM generate_series(1, 300) g;
"""


EVERYTHING = Path(__file__).parents[1] / "integration" / "everything.sql"  # every type, with edge values


class Workload:
    """Our own writer: a mix of statements over the tables above, until stopped."""

    def __init__(self, conninfo: str, everything_columns: list[str]) -> None:
        self.conninfo = conninfo
        self.everything_columns = everything_columns
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.transactions = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(7)
        next_id = 100_000
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                while not self.stop.is_set():
                    k = rng.randrange(1, 3000)
                    choice = rng.randrange(8)
                    with conn.transaction():
                        if choice == 0:
                            next_id += 1
                            conn.execute("SELECT nextval('order_no')")
                            conn.execute(
                                "INSERT INTO items VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s)",
                                (
                                    next_id,
                                    f"new 'quoted' \\ {next_id}",
                                    "12.34",
                                    ["a,b", 'q"'],
                                    '{"x": [1, null]}',
                                    True,
                                    b"\x00\xff" * 3,
                                    "z" * 3_000_000 if next_id % 5 == 0 else None,
                                ),
                            )
                        elif choice == 1:  # leaves the TOASTed column untouched
                            conn.execute(
                                "UPDATE items SET price = price + 1, seen = now() WHERE id = %s", (k - k % 100 or 100,)
                            )
                        elif choice == 2:
                            conn.execute("DELETE FROM items WHERE id = %s", (k,))
                        elif choice == 3:  # several tables in one transaction
                            conn.execute("UPDATE notes SET op = op + 1, \"Op\" = 'U' WHERE id = %s", (k % 200,))
                            conn.execute("UPDATE items SET tags = tags || 'x'::text WHERE id = %s", (k,))
                            conn.execute("INSERT INTO keyless VALUES (%s, 'tx')", (k,))
                        elif choice == 4 and rng.random() < 0.05:
                            conn.execute("TRUNCATE scratch")
                            conn.execute("INSERT INTO scratch SELECT g, 'again ' || g FROM generate_series(1, 20) g")
                        elif choice == 5:
                            conn.execute(
                                "UPDATE keyless SET b = b || '+' WHERE ctid = (SELECT ctid FROM keyless LIMIT 1)"
                            )
                        elif choice == 4:  # every type: copy an edge-value row, change some, delete copies
                            cols = ", ".join(f'"{c}"' for c in self.everything_columns if c != "id")
                            next_id += 1
                            conn.execute(
                                f"INSERT INTO everything (id, {cols}) SELECT %s, {cols} FROM everything WHERE id = %s",
                                (next_id, k % 8),  # not row 8: its multi-megabyte values would flood the WAL
                            )
                            conn.execute(
                                "UPDATE everything SET i4 = CASE WHEN i4 > 0 THEN i4 - 1 ELSE coalesce(i4, 0) + 1 END,"
                                " iv = coalesce(iv, '0') + interval '1 us', n = coalesce(n, 0) + 0.5 WHERE id = %s",
                                (k % 9,),  # row 8's TOASTed values stay untouched
                            )
                            conn.execute("DELETE FROM everything WHERE id = %s", (next_id - 3,))
                        elif choice == 6:
                            conn.execute(
                                "DELETE FROM keyless WHERE ctid = (SELECT ctid FROM keyless WHERE a = %s LIMIT 1)",
                                (k % 7,),
                            )
                        else:
                            conn.execute(
                                "UPDATE items SET doc = doc || '{\"n\": 1}', flag = NOT flag WHERE id = %s", (k,)
                            )
                    self.transactions += 1
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


def table_fingerprints(server, db: str) -> dict[str, tuple]:  # noqa: ANN001
    tables = server.execute(
        db,
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'bulkmig') ORDER BY 1",
    )
    out = {}
    for (name,) in tables:
        out[name] = server.execute(
            db, f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {name} t"
        )[0]
    return out


def test_full_load_and_cdc_converges_under_load(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, WORKLOAD_SQL)
    pg_source.psql_file(source_db, EVERYTHING)
    everything_columns = [
        r[0]
        for r in pg_source.execute(
            source_db,
            "SELECT attname FROM pg_attribute WHERE attrelid = 'everything'::regclass AND attnum > 0"
            " AND NOT attisdropped AND attgenerated = '' AND attidentity = '' ORDER BY attnum",
        )
    ]
    pgbench = str(Path(pg_source.bindir) / "pgbench")
    env = pg_source.env()
    subprocess.run([pgbench, "-i", "-s", "4", "-q", source_db], env=env, check=True, capture_output=True)
    flow = make_flow(
        migration_type="full-load-and-cdc",
        settings={"max_part_bytes": "8MB", "allow_replica_identity_full": True},
    )
    bench = subprocess.Popen(
        [pgbench, "-c", "4", "-j", "2", "-T", "600", "-R", "300", "-n", source_db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours = Workload(pg_source.conninfo(source_db) + " options='-c synchronous_commit=on'", everything_columns)
    ours.thread.start()
    capture = None
    try:
        time.sleep(1)
        # plan holds the slot's snapshot until extraction is complete: run it alongside extract.
        planner = subprocess.Popen(
            [sys.executable, "-m", "bulkmig.cli", "plan", "--task", str(flow.task)],
            env=flow.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(300):
            if (flow.volume / "plan.json").exists():
                break
            assert planner.poll() is None, planner.communicate()
            time.sleep(0.2)
        run = flow.bulkmig("extract")
        assert run.code == 0, run.text
        out, err = planner.communicate(timeout=120)
        assert planner.returncode == 0, err
        assert "holding snapshot" in err and "releasing the snapshot" in err
        capture = subprocess.Popen(
            [sys.executable, "-m", "bulkmig.cli", "capture", "--task", str(flow.task)],
            env=flow.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in (("volume", "seal", str(flow.volume)),):
            assert flow.run(*command).code == 0
        for step in ("volume import", "load"):
            result = flow.bulkmig(step)
            assert result.code == 0, (step, result.text)
        time.sleep(2)  # changes keep flowing while replay starts
        first = flow.bulkmig("replay", "--until-caught-up")
        assert first.code == 0, first.text
    finally:
        bench.terminate()
        bench.wait(timeout=30)
        ours.stop.set()
        ours.thread.join(timeout=30)
    assert not ours.errors, ours.errors
    assert ours.transactions > 50
    try:
        caught_up = flow.bulkmig("replay", "--until-caught-up")
        assert caught_up.code == 0, caught_up.text
        want, got = table_fingerprints(pg_source, source_db), table_fingerprints(pg_target, target_db)
        assert set(got) == set(want)
        assert {k: v for k, v in got.items() if v != want[k]} == {}
        # Unchanged TOAST values were kept, not nulled: the big values survived the price updates.
        q = "SELECT count(*) FROM items WHERE big IS NOT NULL"
        assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q) != [(0,)]
        cut = flow.bulkmig("cutover", "--timeout", "120")
        assert cut.code == 0, cut.text
        assert "GO" in cut.err and "NO-GO" not in cut.err
        # Sequences are not in logical decoding: cutover set them from the source.
        seq = "SELECT last_value FROM order_no"
        assert pg_target.execute(target_db, seq) == pg_source.execute(source_db, seq) != [(1,)]
    finally:
        if capture is not None:
            capture.terminate()
            capture.communicate(timeout=60)
    clean = flow.bulkmig("cleanup")
    assert clean.code == 0, clean.text
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_migrate_full_load_and_cdc_on_one_machine(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g;"
        "CREATE SEQUENCE s; SELECT setval('s', 42);",
    )
    flow = make_flow(migration_type="full-load-and-cdc")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "capture runs in the background" in run.err and "GO: point the application" in run.err
    assert pg_target.execute(target_db, "SELECT last_value FROM s") == [(42,)]
    # The stream stays until cleanup: the slot exists, and a change made now reaches the target by replay.
    pg_source.execute(source_db, "UPDATE t SET v = 'after migrate' WHERE id = 7")
    cap = flow.bulkmig("capture", "--once")
    assert cap.code == 0, cap.text
    # Plain replay: what capture put in the bucket.  (--until-caught-up would wait for a capture to pass the
    # source's position, which any WAL written meanwhile, by another database too, moves past this one.)
    rep = flow.bulkmig("replay")
    assert rep.code == 0, rep.text
    assert pg_target.execute(target_db, "SELECT v FROM t WHERE id = 7") == [("after migrate",)]
    # With no capture running, --until-caught-up says what it waits for instead of hanging silently.
    pg_source.execute(source_db, "UPDATE t SET v = 'not captured' WHERE id = 8")
    log = flow.task.parent / "waiting-replay.log"
    waiting = flow.start("replay", "--until-caught-up", log=log, quiet=False)
    try:
        deadline = time.monotonic() + 120
        while "is `bulkmig capture` running" not in log.read_text() and time.monotonic() < deadline:
            assert waiting.poll() is None, log.read_text()
            time.sleep(1)
        assert "replay: waiting for capture to pass" in log.read_text(), log.read_text()
    finally:
        waiting.terminate()
        waiting.wait(timeout=60)
    assert flow.bulkmig("cleanup").code == 0
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_plan_refuses_tables_whose_updates_would_fail(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db, "CREATE TABLE ok (id int PRIMARY KEY); CREATE TABLE loose (a int); CREATE TABLE log (b text)"
    )
    flow = make_flow(migration_type="full-load-and-cdc")
    run = flow.bulkmig("plan")
    assert run.code != 0, run.text
    assert '"public"."loose"' in run.err and '"public"."log"' in run.err and "allow_replica_identity_full" in run.err
    assert "Traceback" not in run.text
    # Nothing was created on the source: no publication, no slot.
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_publication")[0][0] == 0
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_cdc_only_replicates_onto_a_loaded_target(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    ddl = "CREATE TABLE t (id int PRIMARY KEY, v text, big text);"
    pg_source.execute(source_db, ddl + "INSERT INTO t SELECT g, 'v' || g, NULL FROM generate_series(1, 100) g;")
    pg_target.execute(target_db, ddl + "INSERT INTO t SELECT g, 'v' || g, NULL FROM generate_series(1, 100) g;")
    flow = make_flow(migration_type="cdc", volume=None)
    assert flow.bulkmig("plan").code == 0  # starts the stream: from now on every change is kept
    pg_source.execute(
        source_db,
        "INSERT INTO t VALUES (101, 'new', repeat('x', 2000000)); UPDATE t SET v = 'upd' WHERE id = 101;"
        "DELETE FROM t WHERE id = 5; UPDATE t SET v = 'changed' WHERE id = 6",
    )
    cap = flow.bulkmig("capture", "--once")
    assert cap.code == 0, cap.text
    # Plain replay, not --until-caught-up: with no capture running, WAL written meanwhile (a standby snapshot,
    # another database) puts the source's position past what `capture --once` reached, and it would wait.
    rep = flow.bulkmig("replay")
    assert rep.code == 0, rep.text
    assert "4 changes" in rep.err, rep.text
    q = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM t"
    assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q)
    status = json.loads(flow.bulkmig("status", "--json").out)
    assert status["capture"]["slot_exists"] is True and "retained_bytes" in status["capture"]
    assert status["replay"]["pending_batches"] == 0
    assert flow.bulkmig("cleanup").code == 0
