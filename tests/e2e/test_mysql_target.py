"""MySQL/MariaDB as the target (issue 18): sakila MySQL → MariaDB through the real CLI, checked three ways —
bulkmig's own value-by-value validation, ``mysqldump --no-data`` of both databases (the schema as the source has
it), and ``CHECKSUM TABLE`` of every table (the server's own row checksum, independent of bulkmig).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time

from bulkmig.core.manifest import validate_document
from bulkmig.demo.servers import load_dataset

SAKILA_TABLES = 16
SAKILA_ROWS = 47_273


def mysql_target_flow(make_mysql_flow, mariadb, target: str, database: str, **overrides):  # noqa: ANN001, ANN003, ANN201
    flow = make_mysql_flow(database=database, target=mariadb.url(target), **overrides)
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    return flow


def schema_dump(mariadb, database: str) -> str:  # noqa: ANN001
    """``mysqldump --no-data`` with what differs by construction taken out: comments, DEFINER clauses."""
    out = subprocess.run(
        [
            "mysqldump",
            "-h",
            mariadb.host,
            "-P",
            str(mariadb.port),
            "-u",
            mariadb.user,
            "--no-data",
            "--routines",
            "--triggers",
            "--skip-comments",
            "--skip-dump-date",
            database,
        ],
        env={"MYSQL_PWD": mariadb.password, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = re.sub(r"DEFINER=`[^`]*`@`[^`]*`\s*", "", out)
    return out


def checksums(mariadb, database: str, tables: list[str]) -> dict[str, int]:  # noqa: ANN001
    rows = mariadb.execute(database, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
    return {r[0].split(".", 1)[1]: r[1] for r in rows}


def test_sakila_mysql_to_mariadb_is_equal_in_schema_and_data(make_mysql_flow, mariadb, mysql_db, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "sakila-mysql", "sakila")
    flow = mysql_target_flow(make_mysql_flow, mariadb, mysql_db, "sakila")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert f"{SAKILA_ROWS:,} rows loaded" in run.err, run.err
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True
    assert len(report["tables"]) == SAKILA_TABLES
    assert sum(t["target_rows"] for t in report["tables"]) == SAKILA_ROWS

    # Independent of bulkmig: the schema as mysqldump prints it, and the server's checksum of every table.
    source, target = schema_dump(mariadb, "sakila"), schema_dump(mariadb, mysql_db)
    diff = "\n".join(difflib.unified_diff(source.splitlines(), target.splitlines(), "source", "target", lineterm=""))
    assert not diff, diff[:6000]
    tables = [t["table"].split(".", 1)[1] for t in report["tables"]]
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, "sakila", tables)

    # Every object is in the assessment report; only DEFINER clauses changed.
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    assert assessment["summary"]["needs_action"] == 0
    changed = [o for o in assessment["objects"] if o["status"] != "converted"]
    assert changed and all("DEFINER dropped" in n["message"] for o in changed for n in o["notes"])

    # Exactly once: a second load finds every part in the ledger and loads nothing.
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert "already loaded (ledger)" in again.err and " 0 rows loaded" in again.err, again.err
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, "sakila", tables)


EDGE_TABLE = """
CREATE TABLE edge (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  t varchar(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  latin varchar(20) CHARACTER SET latin1,
  big decimal(65,30),
  d datetime(6), ts timestamp(6) NULL, dt date, tm time(3), y year,
  b varbinary(40), bl longblob,
  j json,
  bits bit(5),
  flag tinyint(1),
  e enum('a','b c','d'), s set('x','y','z'),
  f float, g double,
  pt point SRID 4326 NULL,
  u bigint unsigned,
  KEY t_idx (t), UNIQUE KEY u_idx (u), FULLTEXT KEY ft (t)
) AUTO_INCREMENT=1000 DEFAULT CHARSET=utf8mb4
"""


def test_every_kind_of_value_lands_exactly(make_mysql_flow, mariadb, mysql_db, request) -> None:  # noqa: ANN001
    source = f"src_{mysql_db}"[:64]
    mariadb.create_database(source)
    request.addfinalizer(lambda: mariadb.drop_database(source))
    mariadb.execute(source, EDGE_TABLE.replace(" SRID 4326", ""))  # MariaDB 10.11 has no column SRID clause
    mariadb.execute(
        source,
        "INSERT INTO edge (id, t, latin, big, d, ts, dt, tm, y, b, bl, j, bits, flag, e, s, f, g, pt, u) VALUES "
        "(1, 'emoji 😀 tab\\there\\nnew \\\\N back\\\\slash', 'café', "
        "'12345678901234567890123456789012345.123456789012345678901234567890', "
        "'1000-01-01 00:00:00.000001', '2038-01-19 03:14:07.999999', '9999-12-31', '-838:59:59.000', 1901, "
        "X'00090A0D5C4E27', X'FF00', '{\"k\": [1, 2.50, \"😀\"], \"z\": null}', b'10101', 5, 'b c', 'x,z', "
        "3.4028e38, 2.2250738585072014e-308, ST_GeomFromText('POINT(1.5 -2.25)', 4326), 18446744073709551615),"
        "(2, '', NULL, 0, NULL, NULL, NULL, '00:00:00', 0, '', NULL, 'null', b'0', 0, 'a', '', -0.0, 0.1, NULL, 0),"
        "(0, 'zero id', NULL, -1.5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, NULL, NULL, NULL)",
    )
    mariadb.execute(source, "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")  # (the id 0 row above is explicit)
    flow = mysql_target_flow(make_mysql_flow, mariadb, mysql_db, source)
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert checksums(mariadb, mysql_db, ["edge"]) == checksums(mariadb, source, ["edge"])
    columns = "id, t, latin, big, d, ts, dt, tm, y, HEX(b), HEX(bl), j, bits + 0, flag, e, s, f, g, ST_AsText(pt), "
    columns += "ST_SRID(pt), u"
    query = f"SELECT {columns} FROM edge ORDER BY id"
    assert mariadb.execute(mysql_db, query) == mariadb.execute(source, query)
    auto = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
    assert mariadb.execute(mysql_db, auto, (mysql_db,)) == mariadb.execute(source, auto, (source,))
    assert schema_dump(mariadb, mysql_db).replace(mysql_db, "X") == schema_dump(mariadb, source).replace(source, "X")


def steps_to_load(flow) -> str:  # noqa: ANN001
    """plan, extract, seal, import, load one by one; the load's output."""
    for args in (("plan",), ("extract",)):
        run = flow.bulkmig(*args)
        assert run.code == 0, run.text
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for args in (("volume import",), ("load",)):
        run = flow.bulkmig(*args)
        assert run.code == 0, run.text
    return run.err


def test_pagila_postgresql_to_mariadb(make_flow, pg_source, source_db, mariadb, mysql_db, datasets) -> None:  # noqa: ANN001
    load_dataset(pg_source, "pagila", source_db)
    flow = make_flow(target=mariadb.url(mysql_db))
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    out = steps_to_load(flow)
    assert "rows loaded" in out, out
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    by_name = {o["name"]: o for o in assessment["objects"]}
    # The conversions that need a person are named, with the reason.
    features = by_name["public.film.special_features"]
    assert features["status"] == "needs action" and "arrays" in features["notes"][0]["message"]
    assert by_name["public.payment.payment_date"]["details"]["target_type"] == "datetime(6)"
    assert by_name["public.payment"]["status"] == "converted with changes"  # partitions into one table
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True and report["converted_values"] == 0
    assert sum(t["target_rows"] for t in report["tables"]) == sum(t["source_rows"] for t in report["tables"])
    # status reads the MySQL target's ledger: every planned part loaded, each table's rows as loaded.
    status = flow.bulkmig("status", "--json")
    assert status.code == 0, status.text
    doc = json.loads(status.out)
    validate_document(doc, "status", "status --json")
    plan = json.loads((flow.volume / "plan.json").read_text())
    assert doc["target"]["loaded"] == doc["volume"]["parts"] == sum(len(t["partitions"]) for t in plan["tables"])
    assert doc["target"]["schema_applied"] == ["post-data", "pre-data"]
    rows = {t["target"]: t["full_load_rows"] for t in doc["tables"]}
    assert rows[f"{mysql_db}.rental"] == int(mariadb.execute(mysql_db, "SELECT count(*) FROM rental")[0][0]) > 0
    assert "DIFFERS" not in flow.bulkmig("status").out

    # Independent of bulkmig: per table the row count and a sum over a numeric key and amounts, on both sides.
    tables = {
        "actor": "actor_id",
        "film": "film_id",
        "customer": "customer_id",
        "rental": "rental_id",
        "payment": "payment_id",
        "inventory": "inventory_id",
        "address": "address_id",
    }
    for table, key in tables.items():
        pg = pg_source.execute(source_db, f"SELECT count(*), sum({key}) FROM public.{table}")[0]
        my = mariadb.execute(mysql_db, f"SELECT count(*), sum({key}) FROM `{table}`")[0]
        assert (int(pg[0]), int(pg[1])) == (int(my[0]), int(my[1])), table
    pg = pg_source.execute(
        source_db, "SELECT sum(amount)::text, max(payment_date AT TIME ZONE 'UTC')::text FROM payment"
    )
    my = mariadb.execute(mysql_db, "SELECT CAST(sum(amount) AS CHAR), CAST(max(payment_date) AS CHAR) FROM payment")
    assert pg[0][0] == my[0][0] and my[0][1].startswith(pg[0][1][:19]), (pg, my)
    titles = "SELECT film_id, title, description, rating, length FROM film ORDER BY film_id"
    assert [tuple(r) for r in pg_source.execute(source_db, titles.replace("rating", "rating::text"))] == [
        tuple(r) for r in mariadb.execute(mysql_db, titles)
    ]


def test_values_mysql_cannot_hold_are_refused_at_plan(make_flow, pg_source, source_db, mariadb, mysql_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE events (id int PRIMARY KEY, at timestamptz, amount numeric, ok numeric(10,2));"
        "INSERT INTO events VALUES (1, '2020-01-01', 1, 1), (2, '0900-01-01 00:00+00', 'NaN', 2),"
        " (3, 'infinity', 3, 3)",
    )
    flow = make_flow(target=mariadb.url(mysql_db))
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    run = flow.bulkmig("plan")
    assert run.code != 0
    assert "public.events.at: 2 dates outside 1000-01-01 .. 9999-12-31 or infinite" in run.err, run.err
    assert "public.events.amount: 1 NaN or infinite numerics (MySQL cannot hold them), first at key 2" in run.err
    assert "public.events.ok" not in run.err
    assert not (flow.volume / "plan.json").exists()


def test_chinook_sqlite_to_mariadb_validates_equal(make_flow, mariadb, mysql_db, datasets, tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "chinook.db"
    shutil.copyfile(datasets / "chinook" / "Chinook_Sqlite.sqlite", db)
    flow = make_flow(source=f"sqlite:///{db}", target=mariadb.url(mysql_db))
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True and len(report["tables"]) == 11
    assert sum(t["target_rows"] for t in report["tables"]) == 15607
    # Independent: the invoice totals and track lengths summed on both sides.
    with sqlite3.connect(db) as conn:
        lite = conn.execute(
            "SELECT (SELECT printf('%.2f', sum(Total)) FROM Invoice), (SELECT sum(Milliseconds) FROM Track)"
        )
        lite_row = lite.fetchone()
    my = mariadb.execute(
        mysql_db, "SELECT (SELECT CAST(SUM(Total) AS CHAR) FROM Invoice), (SELECT SUM(Milliseconds) FROM Track)"
    )
    assert (lite_row[0], int(lite_row[1])) == (my[0][0], int(my[0][1]))
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    assert assessment["target"]["engine"] == "MySQL/MariaDB"


def test_load_killed_mid_way_loads_every_part_exactly_once(make_mysql_flow, mariadb, mysql_db, request, tmp_path):  # noqa: ANN001, ANN201
    """kill -9 of ``load`` while parts are going in: the rerun loads exactly the parts the ledger lacks."""
    source = f"src_{mysql_db}"[:64]
    mariadb.create_database(source)
    request.addfinalizer(lambda: mariadb.drop_database(source))
    tables = [f"t{n:02}" for n in range(12)]  # one part each
    for t in tables:
        mariadb.execute(source, f"CREATE TABLE {t} (id bigint PRIMARY KEY, v varchar(100), n decimal(20,4), KEY (v))")
        mariadb.execute(
            source, f"INSERT INTO {t} SELECT seq, CONCAT('v', seq, REPEAT('x', seq % 50)), seq / 7 FROM seq_1_to_40000"
        )
    flow = mysql_target_flow(make_mysql_flow, mariadb, mysql_db, source, settings={"workers": 1})
    for args in (("plan",), ("extract",)):
        assert flow.bulkmig(*args).code == 0
    assert len(list((flow.volume / "data").rglob("*.parquet"))) >= 5
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    assert flow.bulkmig("volume import").code == 0
    ledger = "SELECT COUNT(*) FROM bulkmig.loaded_parts WHERE part_key LIKE %s"
    key = f"data/{source}/%"
    proc = flow.start("load", log=tmp_path / "load.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = mariadb.execute(None, ledger, (key,))[0][0] if _has_ledger(mariadb) else 0
        if done >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "load finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    loaded_before = mariadb.execute(None, ledger, (key,))[0][0]
    assert loaded_before >= 2
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert f"{loaded_before} of " in again.err or loaded_before == 0, again.err
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, source, tables)
    parts = mariadb.execute(
        None, "SELECT COUNT(*), SUM(part_rows) FROM bulkmig.loaded_parts WHERE part_key LIKE %s", (key,)
    )[0]
    assert int(parts[1]) == 12 * 40_000 and parts[0] == 12 > loaded_before


def _has_ledger(mariadb) -> bool:  # noqa: ANN001
    return bool(
        mariadb.execute(
            None,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bulkmig'"
            " AND TABLE_NAME = 'loaded_parts'",
        )[0][0]
    )


def test_check_reports_the_mysql_target(make_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    flow = make_flow(target=mariadb.url(mysql_db))
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    run = flow.bulkmig("check")
    assert "MySQL/MariaDB 10." in run.text and "(local_infile on)" in run.text, run.text


def test_postgresql_changes_replay_into_mariadb_exactly_once(
    make_flow, pg_source, source_db, mariadb, mysql_db
) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, v text, flag boolean, b bytea, at timestamptz, n numeric(10,2),"
        " tags text[]);"
        "INSERT INTO t SELECT g, 'v' || g, g % 2 = 0, decode(md5(g::text), 'hex'), '2024-01-01 00:00+02'::timestamptz"
        " + g * interval '1 minute', g / 3.0, ARRAY['a', g::text] FROM generate_series(1, 3000) g",
    )
    flow = make_flow(target=mariadb.url(mysql_db), migration_type="full-load-and-cdc")
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    planner = subprocess.Popen(
        flow.argv("plan", "--task", str(flow.task)),
        env=flow.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    for _ in range(300):
        if (flow.volume / "plan.json").exists():
            break
        assert planner.poll() is None, planner.communicate()
        time.sleep(0.2)
    assert flow.bulkmig("extract").code == 0
    assert planner.wait(timeout=120) == 0, planner.stderr.read() if planner.stderr else ""
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, run.text
    pg_source.execute(
        source_db,
        "INSERT INTO t VALUES (5001, 'new 😀', true, '\\x00ff', '1999-12-31 23:59:59.5-05', 12.34, '{x,\"y z\"}');"
        "UPDATE t SET v = 'changed', flag = NOT flag, at = at + interval '1 second' WHERE id % 100 = 0;"
        "UPDATE t SET id = 9000 WHERE id = 1;"
        "DELETE FROM t WHERE id BETWEEN 10 AND 19;"
        "UPDATE t SET b = NULL, tags = NULL WHERE id = 2",
    )
    cap = flow.bulkmig("capture", "--once")
    assert cap.code == 0, cap.text
    rep = flow.bulkmig("replay")
    assert rep.code == 0, rep.text
    assert "batch" in rep.err, rep.err
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    assert json.loads(check.out)["equal"] is True
    # Exactly once: a second replay finds every batch applied.
    again = flow.bulkmig("replay")
    assert again.code == 0 and "replay: 0 batches" in again.err, again.text
    # status reads the replay position kept in the MySQL target: nothing pending.
    doc = json.loads(flow.bulkmig("status", "--json").out)
    validate_document(doc, "status", "status --json")
    assert doc["replay"]["applied_seq"] == doc["replay"]["latest_seq"] is not None
    assert doc["replay"]["pending_batches"] == 0 and doc["cdc"]["pending_batches"] == 0
    rows = mariadb.execute(mysql_db, "SELECT v, HEX(b), at, tags FROM t WHERE id IN (5001, 9000) ORDER BY id")
    assert rows[0][0] == "new 😀" and rows[0][1] == "00FF" and str(rows[0][2]) == "2000-01-01 04:59:59.500000"
    assert rows[0][3] == '{x,"y z"}' and rows[1][0] == "v1"
    assert flow.bulkmig("cleanup").code == 0


def test_postgresql_to_mariadb_cdc_converges_with_capture_and_replay_killed(
    make_flow, pg_source, source_db, mariadb, mysql_db, tmp_path
) -> None:  # noqa: ANN001
    """A workload of 40 transactions while capture runs; capture is killed -9 once, then replay is killed -9
    once between batches; the reruns converge exactly (validate value by value)."""
    pg_source.execute(
        source_db,
        "CREATE TABLE acct (id int PRIMARY KEY, balance numeric(12,2) NOT NULL, note text);"
        "INSERT INTO acct SELECT g, 100, 'n' || g FROM generate_series(1, 4000) g",
    )
    flow = make_flow(target=mariadb.url(mysql_db), migration_type="full-load-and-cdc")
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    planner = subprocess.Popen(
        flow.argv("plan", "--task", str(flow.task)), env=flow.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        if (flow.volume / "plan.json").exists():
            break
        time.sleep(0.2)
    assert flow.bulkmig("extract").code == 0
    assert planner.wait(timeout=120) == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    assert flow.bulkmig("volume import").code == 0 and flow.bulkmig("load").code == 0

    capture = flow.start("capture", log=tmp_path / "capture.log", quiet=False)
    for n in range(40):  # 4000 changes per transaction: several batches of whole transactions
        pg_source.execute(
            source_db,
            f"UPDATE acct SET balance = balance + {n % 7} - 3, note = 'tx{n}' WHERE id % 2 = {n % 2};"
            f"INSERT INTO acct VALUES ({10000 + n}, {n}, 'new');"
            f"DELETE FROM acct WHERE id = {100 + n}",
        )
        if n == 20:
            time.sleep(1.0)
            os.killpg(capture.pid, signal.SIGKILL)  # mid-workload
            capture.wait()
    rest = flow.bulkmig("capture", "--once")
    assert rest.code == 0, rest.text

    position = f"SELECT COALESCE(MAX(seq), -1) FROM bulkmig.replay_position WHERE target_db = '{mysql_db}'"
    replayer = flow.start("replay", log=tmp_path / "replay.log", quiet=False)
    deadline = time.monotonic() + 120
    seen = -1
    while time.monotonic() < deadline and replayer.poll() is None:
        with contextlib.suppress(Exception):  # the position table appears with the first batch
            seen = mariadb.execute(None, position)[0][0]
        if seen >= 1:
            break
        time.sleep(0.05)
    killed = replayer.poll() is None
    if killed:
        os.killpg(replayer.pid, signal.SIGKILL)
        replayer.wait()
    again = flow.bulkmig("replay")
    assert again.code == 0, again.text
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    if not report["equal"]:
        logs = {n: (tmp_path / n).read_text()[-3000:] for n in ("capture.log", "replay.log")}
        positions = mariadb.execute(None, "SELECT * FROM bulkmig.replay_position")
        raise AssertionError(
            f"{report['tables'][0]['differences'][:3]}\n{positions}\n{rest.text}\n{again.text}\n{logs}"
        )
    assert report["tables"][0]["target_rows"] == 4000 + 40 - 40
    assert killed, "replay finished before it could be killed (too few batches)"
    assert flow.bulkmig("cleanup").code == 0


def test_postgresql_to_mariadb_migrate_with_cdc_ends_go_with_counters_set(
    make_flow, pg_source, source_db, mariadb, mysql_db
) -> None:  # noqa: ANN001
    """``migrate`` with full-load-and-cdc into MariaDB: capture in the background, then cutover (replay until
    caught up, AUTO_INCREMENT from the source's sequences, validation) says GO."""
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id serial PRIMARY KEY, v text, at timestamptz);"
        "INSERT INTO t (v, at) SELECT 'v' || g, '2024-01-01 00:00+02' FROM generate_series(1, 500) g;"
        "SELECT setval('t_id_seq', 900)",  # rows inserted and rolled back / deleted: the counter is past max(id)
    )
    flow = make_flow(target=mariadb.url(mysql_db), migration_type="full-load-and-cdc")
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "verdict       GO" in run.err and "sequences     1 set" in run.err, run.err
    auto = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 't'"
    assert mariadb.execute(mysql_db, auto, (mysql_db,))[0][0] == 901
    assert flow.bulkmig("cleanup").code == 0
