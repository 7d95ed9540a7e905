"""full-load-and-cdc from MariaDB into MariaDB (issue 18) under a live write workload, through the real CLI: capture
killed -9 once, replay killed -9 once, then ``cutover``; the target converges exactly.

Source and target are two databases of one throwaway server.  The table set holds every MySQL type of the type map,
with the values PostgreSQL cannot hold and a MySQL target must keep (tinyint(1) = 5, zero dates and zero months or
days, an invalid ENUM's '', TIME beyond 24 h, NUL in text, 4-byte UTF-8, binary with trailing zero bytes, BIT(64),
unsigned maxima), a table keyed by text whose key changes, and a table without a key.  The proof is independent of
bulkmig: every column of every row read on both sides by a query of our own (type by type, as text), and the
server's own ``CHECKSUM TABLE``; plus the AUTO_INCREMENT counters cutover sets.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

from bulkmig.demo.servers import MariaDBServer, load_dataset

EVERY_TYPE = """
CREATE TABLE every_type (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  flag tinyint(1), ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned, mi mediumint,
  miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
  d65 decimal(65,30), du decimal(10,2) unsigned, f float, fu float unsigned, g double, gu double unsigned,
  b5 bit(5), b64 bit(64),
  c char(10), vc varchar(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, latin varchar(20) CHARACTER SET latin1,
  tt tinytext, tx text, mt mediumtext, lt longtext,
  bn binary(4), vb varbinary(40), tb tinyblob, bl blob, mb mediumblob, lb longblob,
  e enum('a','b c','d'), s set('x','y','z'),
  y year, dt date, born date NOT NULL DEFAULT '0000-00-00', dtm datetime, dt6 datetime(6), dt1 datetime(1),
  ts timestamp NULL, ts6 timestamp(6) NULL, tm time(3), tm0 time,
  j json, u uuid, ip4 inet4, ip6 inet6, pt point, geo geometry
) AUTO_INCREMENT=1 DEFAULT CHARSET=utf8mb4
"""
ACCOUNTS = "CREATE TABLE acct (code varchar(24) PRIMARY KEY, balance decimal(14,2) NOT NULL, note text)"
KEYLESS = "CREATE TABLE journal (at datetime(6) NOT NULL, amount decimal(10,2), memo varchar(40))"


# Per column, a few values (SQL expressions) including every edge a MySQL target must keep.
VALUES: dict[str, list[str]] = {
    "flag": ["0", "1", "5", "-128", "127", "NULL"],
    "ti": ["-128", "127", "0"],
    "tiu": ["255", "0"],
    "si": ["-32768", "32767"],
    "siu": ["65535", "0"],
    "mi": ["-8388608", "8388607"],
    "miu": ["16777215"],
    "i": ["-2147483648", "2147483647"],
    "iu": ["4294967295", "0"],
    "bi": ["-9223372036854775808", "9223372036854775807"],
    "biu": ["18446744073709551615", "0"],
    "d65": [
        "'12345678901234567890123456789012345.123456789012345678901234567890'",
        "'-0.000000000000000000000000000001'",
    ],
    "du": ["'99999999.99'", "0"],
    "f": ["3.4028234e38", "-1.17549435e-38", "0.1", "16777217", "NULL"],
    "fu": ["1.5", "0"],
    "g": ["1.7976931348623157e308", "2.2250738585072014e-308", "-0.1", "NULL"],
    "gu": ["1e300", "0"],
    "b5": ["b'10101'", "b'0'", "b'11111'"],
    "b64": ["b'1111111111111111111111111111111111111111111111111111111111111111'", "b'1'", "0"],
    "c": ["'abc'", "''", "'😀x'", "NULL"],
    "vc": ["'emoji 😀 tab\\there\\nnew \\\\N back\\\\slash'", "'nul\\0in text'", "''", "'Ab'"],
    "latin": ["'café'", "'€ œ'", "NULL"],
    "tt": ["'tiny'", "NULL"],
    "tx": ["REPEAT('t😀', 300)", "''"],
    "mt": ["REPEAT('m', 70000)", "'mid'"],
    "lt": ["'long'", "NULL"],
    "bn": ["X'00010000'", "X'FF'", "X'00000000'"],
    "vb": ["X'00090A0D5C4E2700'", "X''", "NULL"],
    "tb": ["X'00'", "X'FF00'"],
    "bl": ["X'DEADBEEF00'", "NULL"],
    "mb": ["RANDOM_BYTES(1024)", "X'01'"],
    "lb": ["X'FF00'", "NULL"],
    "e": ["'a'", "'b c'", "'d'", "NULL"],
    "s": ["'x,z'", "''", "'y'", "'x,y,z'", "NULL"],
    "y": ["0", "1901", "2155", "2024", "NULL"],
    "dt": ["'0000-00-00'", "'2020-00-15'", "'2020-05-00'", "'1000-01-01'", "'9999-12-31'", "NULL"],
    "born": ["'0000-00-00'", "'1999-12-31'", "'2001-00-00'"],
    "dtm": ["'0000-00-00 00:00:00'", "'2020-00-00 10:11:12'", "'1000-01-01 00:00:00'", "'9999-12-31 23:59:59'"],
    "dt6": ["'1000-01-01 00:00:00.000001'", "'2024-02-29 23:59:59.999999'", "'0000-00-00 00:00:00.000000'"],
    "dt1": ["'2024-01-01 00:00:00.5'", "'2020-00-01 01:02:03.1'", "NULL"],
    "ts": ["'0000-00-00 00:00:00'", "'1970-01-01 00:00:01'", "'2038-01-19 03:14:07'", "NULL"],
    "ts6": ["'2038-01-19 03:14:07.999999'", "'2000-01-01 00:00:00.000001'", "NULL"],
    "tm": ["'-838:59:59.000'", "'838:59:59.999'", "'25:00:00.5'", "'00:00:00'", "NULL"],
    "tm0": ["'-00:00:01'", "'100:00:00'", "NULL"],
    "j": ['\'{"k": [1, 2.50, "😀"], "z": null}\'', "'null'", "'[]'", "NULL"],
    "u": ["'123e4567-e89b-12d3-a456-426614174000'", "'00000000-0000-0000-0000-000000000000'", "NULL"],
    "ip4": ["'0.0.0.0'", "'255.255.255.255'", "'10.0.0.1'", "NULL"],
    "ip6": ["'::'", "'2001:db8::ff00:42:8329'", "'::ffff:10.0.0.1'", "NULL"],
    "pt": ["ST_GeomFromText('POINT(1.5 -2.25)', 4326)", "ST_GeomFromText('POINT(0 0)')", "NULL"],
    "geo": ["ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)', 3857)", "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')"],
}


COLUMNS = list(VALUES)


def _row(rng: random.Random) -> str:
    return "(" + ", ".join(rng.choice(VALUES[c]) for c in COLUMNS) + ")"


def insert_every_type(cur: Any, rng: random.Random, n: int) -> None:
    cur.execute(f"INSERT INTO every_type ({', '.join(COLUMNS)}) VALUES " + ", ".join(_row(rng) for _ in range(n)))


class Workload:
    """One transaction after another on the source until stopped: inserts, updates, deletes, key changes over the
    three tables; once ``invalid_enums`` is set (after the full load, which refuses them), also invalid ENUM ''."""

    def __init__(self, mariadb: MariaDBServer, db: str) -> None:
        self.args = mariadb.connect_args(db)
        self.stop = threading.Event()
        self.invalid_enums = threading.Event()
        self.errors: list[BaseException] = []
        self.transactions = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(18)
        try:
            conn = pymysql.connect(**self.args, autocommit=False)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES'")
                    while not self.stop.is_set():
                        self.step(cur, rng, self.transactions)
                        conn.commit()
                        self.transactions += 1
                        time.sleep(0.002)
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def step(self, cur: Any, rng: random.Random, n: int) -> None:
        cur.execute("SELECT COALESCE(MAX(id), 1) FROM every_type")
        top = int(cur.fetchone()[0])
        k = rng.randrange(1, top + 1)
        choice = n % 9
        if choice in (0, 1):
            insert_every_type(cur, rng, rng.randrange(1, 4))
        elif choice == 2:  # several columns to other edge values, NULLs among them
            cols = rng.sample(COLUMNS, 6)
            cur.execute(
                f"UPDATE every_type SET {', '.join(f'{c} = {rng.choice(VALUES[c])}' for c in cols)} WHERE id = %s", (k,)
            )
        elif choice == 3:
            cur.execute("DELETE FROM every_type WHERE id = %s", (k,))
        elif choice == 4:  # a key change, and a row of another table in the same transaction
            # To a negative key: an UPDATE to a larger key moves MariaDB's AUTO_INCREMENT counter past it, and the
            # inserts that follow would come to take the keys later changes move rows to (a duplicate key).
            cur.execute("UPDATE every_type SET id = -id WHERE id = %s AND id > 0", (k,))
            cur.execute(
                "UPDATE acct SET balance = balance - 1.25, note = CONCAT('moved ', %s) WHERE code = %s",
                (n, f"A{rng.randrange(0, 400):05d}"),
            )
        elif choice == 5:  # the text key changes
            old = f"A{rng.randrange(0, 400):05d}"
            cur.execute("UPDATE acct SET code = %s WHERE code = %s", (f"R{n:07d}", old))
            cur.execute("INSERT INTO acct VALUES (%s, %s, %s)", (f"N{n:07d}", n / 4, "new 😀"))
        elif choice == 6:  # the table without a key: an insert, an update and a delete of one row each
            cur.execute("INSERT INTO journal VALUES (NOW(6), %s, %s)", (n % 500, f"tx {n}"))
            cur.execute("UPDATE journal SET memo = CONCAT(LEFT(memo, 30), '+', %s MOD 10) ORDER BY at LIMIT 1", (n,))
            if n % 4 == 0:
                cur.execute("DELETE FROM journal ORDER BY at DESC LIMIT 1")
        elif choice == 7:
            cur.execute("DELETE FROM acct WHERE code = %s", (f"A{rng.randrange(0, 400):05d}",))
        else:
            cur.execute(
                "UPDATE every_type SET flag = %s, dt = '2021-00-00', tm = '-100:00:00.5' WHERE id = %s",
                (rng.choice([5, -7, 0]), k),
            )
            if self.invalid_enums.is_set():  # what a non-strict session stores for a label that does not exist
                cur.execute("SET SESSION sql_mode = ''")
                cur.execute("UPDATE every_type SET e = 'no such label' WHERE id = %s", (k,))
                insert_every_type(cur, rng, 1)
                cur.execute("UPDATE every_type SET e = 'nope' WHERE id = LAST_INSERT_ID()")
                cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")


def create_source(mariadb: MariaDBServer, db: str) -> None:
    conn = pymysql.connect(**mariadb.connect_args(db), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES'")
            for ddl in (EVERY_TYPE, ACCOUNTS, KEYLESS):
                cur.execute(ddl)
            rng = random.Random(1)
            for _ in range(20):
                insert_every_type(cur, rng, 25)
            cur.execute(
                "INSERT INTO acct SELECT CONCAT('A', LPAD(seq, 5, '0')), seq / 3, CONCAT('n', seq) FROM seq_0_to_399"
            )
            cur.execute(
                "INSERT INTO journal SELECT '2024-01-01' + INTERVAL seq SECOND, seq % 50, CONCAT('j', seq)"
                " FROM seq_1_to_300"
            )
    finally:
        conn.close()


def _expression(column: str, data_type: str) -> str:
    """How the independent check reads one column: as text that shows every bit of the value."""
    c = f"`{column}`"
    if data_type in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "point", "geometry"):
        return f"HEX({c})"
    if data_type == "bit":
        return f"CAST({c} + 0 AS CHAR)"
    if data_type in ("enum", "set"):
        return f"CONCAT({c}, '#', {c} + 0)"  # the label and its index: an invalid ENUM's '' is index 0
    if data_type in ("float", "double"):
        return f"CAST({c} + 0E0 AS CHAR)"  # a FLOAT's own text keeps 6 digits; widened, every bit shows
    return f"CAST({c} AS CHAR)"


def every_row(mariadb: MariaDBServer, db: str, table: str) -> list[tuple[Any, ...]]:
    """Every column of every row, in an order of our own (all columns: the keyless table has duplicates)."""
    cols = mariadb.execute(
        db,
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
        " ORDER BY ORDINAL_POSITION",
        (db, table),
    )
    exprs = [_expression(name, dtype) for name, dtype in cols]
    order = ", ".join(str(n + 1) for n in range(len(exprs)))
    return [tuple(r) for r in mariadb.execute(db, f"SELECT {', '.join(exprs)} FROM `{table}` ORDER BY {order}")]


def checksums(mariadb: MariaDBServer, db: str, tables: list[str]) -> dict[str, int]:
    rows = mariadb.execute(db, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
    return {r[0].split(".", 1)[1]: r[1] for r in rows}


def _wait(what: str, check: Any, proc: subprocess.Popen[bytes] | None = None, workload: Workload | None = None) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if workload is not None and workload.errors:
            raise AssertionError(f"the workload failed: {workload.errors}")
        with contextlib.suppress(Exception):
            if check():
                return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended (exit {proc.returncode}) before")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stream_document(s3_server: Any, bucket_url: str) -> dict[str, Any]:
    bucket, prefix = bucket_url.removeprefix("s3://").split("/", 1)
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/cdc/")["Contents"]]
    key = next(k for k in keys if k.endswith("/stream.json"))
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_every_type_mariadb_to_mariadb_converges_with_capture_and_replay_killed(
    make_mysql_flow, mariadb, mysql_db, request, tmp_path: Path, s3_server
) -> None:  # noqa: ANN001
    source = f"src_{mysql_db}"[:64]
    mariadb.create_database(source)
    request.addfinalizer(lambda: mariadb.drop_database(source))
    create_source(mariadb, source)
    flow = make_mysql_flow(
        database=source,
        target=mariadb.url(mysql_db),
        migration_type="full-load-and-cdc",
        settings={"max_part_bytes": "64kB", "workers": 2},
    )
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    logs = {n: tmp_path / f"{n}.log" for n in ("capture", "capture2", "replay", "replay2")}
    position = f"SELECT COALESCE(MAX(seq), -1) FROM bulkmig.replay_position WHERE target_db = '{mysql_db}'"
    workload = Workload(mariadb, source)
    workload.thread.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.3)
        run = flow.bulkmig("plan")
        assert run.code == 0, run.text
        capture = flow.start("capture", log=logs["capture"], quiet=False)
        procs.append(capture)
        run = flow.bulkmig("extract")
        assert run.code == 0, run.text
        _wait("capture's first batch", lambda: "capture: batch" in logs["capture"].read_text(), capture, workload)
        _kill(capture)  # capture killed -9 mid-workload
        capture = flow.start("capture", log=logs["capture2"], quiet=False)
        procs.append(capture)
        assert flow.run("volume", "seal", str(flow.volume)).code == 0
        for step in ("volume import", "load"):
            run = flow.bulkmig(step)
            assert run.code == 0, (step, run.text)
        workload.invalid_enums.set()  # from here on only CDC carries rows: values the full load refuses too
        replayer = flow.start("replay", "--follow", log=logs["replay"], quiet=False)
        procs.append(replayer)
        _wait("replay's first batch", lambda: mariadb.execute(None, position)[0][0] >= 1, replayer, workload)
        _kill(replayer)  # replay killed -9 between (or inside) batches
        killed_at = mariadb.execute(None, position)[0][0]
        replayer = flow.start("replay", "--follow", log=logs["replay2"], quiet=False)
        procs.append(replayer)
        _wait(
            "replay to go on after the kill",
            lambda: mariadb.execute(None, position)[0][0] > killed_at + 2,
            replayer,
            workload,
        )
    finally:
        workload.stop.set()
        workload.thread.join(timeout=30)
    try:
        assert not workload.errors, workload.errors
        assert workload.transactions > 150, workload.transactions
        replayer.send_signal(signal.SIGTERM)  # the follower stops between batches; cutover replays the rest
        assert replayer.wait(timeout=60) == 0, logs["replay2"].read_text()[-3000:]
        cut = flow.bulkmig("cutover")
        assert cut.code == 0, cut.text + "".join(p.read_text()[-2000:] for p in logs.values() if p.exists())
        assert "verdict       GO" in cut.err, cut.err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    assert capture.returncode == 0, logs["capture2"].read_text()[-3000:]

    # Independent of bulkmig: every column of every row, the server's checksums, the counters.
    tables = ["every_type", "acct", "journal"]
    for table in tables:
        src, dst = every_row(mariadb, source, table), every_row(mariadb, mysql_db, table)
        assert len(src) > 100
        assert src == dst, (table, [(a, b) for a, b in zip(src, dst, strict=False) if a != b][:3], len(src), len(dst))
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, source, tables)
    auto = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'every_type'"
    assert mariadb.execute(mysql_db, auto, (mysql_db,)) == mariadb.execute(source, auto, (source,))
    # The edges arrived through CDC, not only through the full load.
    edges = (
        "SELECT SUM(flag = 5), SUM(e + 0 = 0), SUM(dt = '0000-00-00' OR MONTH(dt) = 0 OR DAYOFMONTH(dt) = 0), "
        "SUM(id < 0), SUM(tm < '-24:00:00') FROM every_type"
    )
    counts = mariadb.execute(mysql_db, edges)[0]
    assert all(int(n or 0) > 0 for n in counts), counts
    assert stream_document(s3_server, flow.bucket)["value_forms"] == "mysql"
    again = flow.bulkmig("replay")
    assert again.code == 0 and "replay: 0 batches" in again.err, again.text  # exactly once


def test_sakila_mariadb_to_mariadb_converges_under_a_workload_with_kills(
    make_mysql_flow, mariadb, mysql_db, datasets, tmp_path: Path
) -> None:  # noqa: ANN001
    """sakila under its own workload (``test_mysql_cdc.sakila_step``: rentals, payments, several tables per
    transaction, a trigger's rows, blobs, geometry), capture and replay each killed -9 once.  sakila's triggers
    (film_text, create dates) are held back until cutover, so none fires on a replayed row; at the end the schema
    is what ``mysqldump --no-data`` prints for the source, and every table's rows are equal."""
    from test_mysql_cdc import Workload as SakilaWorkload
    from test_mysql_cdc import sakila_step
    from test_mysql_target import schema_dump

    load_dataset(mariadb, "sakila-mysql", "sakila")
    mariadb.execute("sakila", "ANALYZE TABLE payment, rental")
    flow = make_mysql_flow(
        database="sakila",
        target=mariadb.url(mysql_db),
        migration_type="full-load-and-cdc",
        settings={"max_part_bytes": "256kB", "workers": 2},
    )
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    logs = {n: tmp_path / f"{n}.log" for n in ("capture", "capture2", "replay", "replay2")}
    position = f"SELECT COALESCE(MAX(seq), -1) FROM bulkmig.replay_position WHERE target_db = '{mysql_db}'"
    triggers = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
    workload = SakilaWorkload(mariadb, "sakila", sakila_step)
    workload.thread.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.5)
        assert flow.bulkmig("plan").code == 0
        capture = flow.start("capture", log=logs["capture"], quiet=False)
        procs.append(capture)
        run = flow.bulkmig("extract")
        assert run.code == 0, run.text
        _wait("capture's first batch", lambda: "capture: batch" in logs["capture"].read_text(), capture)
        _kill(capture)
        capture = flow.start("capture", log=logs["capture2"], quiet=False)
        procs.append(capture)
        assert flow.run("volume", "seal", str(flow.volume)).code == 0
        for step in ("volume import", "load"):
            run = flow.bulkmig(step)
            assert run.code == 0, (step, run.text)
        assert "trigger(s) held back until cutover" in run.err, run.err
        assert mariadb.execute(None, triggers, (mysql_db,))[0][0] == 0
        replayer = flow.start("replay", "--follow", log=logs["replay"], quiet=False)
        procs.append(replayer)
        _wait("replay's first batch", lambda: mariadb.execute(None, position)[0][0] >= 1, replayer)
        _kill(replayer)
        killed_at = mariadb.execute(None, position)[0][0]
        replayer = flow.start("replay", "--follow", log=logs["replay2"], quiet=False)
        procs.append(replayer)
        _wait("replay to go on after the kill", lambda: mariadb.execute(None, position)[0][0] > killed_at, replayer)
    finally:
        workload.stop.set()
        workload.thread.join(timeout=30)
    try:
        assert not workload.errors, workload.errors
        assert workload.transactions > 100, workload.transactions
        replayer.send_signal(signal.SIGTERM)
        assert replayer.wait(timeout=60) == 0, logs["replay2"].read_text()[-3000:]
        cut = flow.bulkmig("cutover")
        assert cut.code == 0, cut.text + "".join(p.read_text()[-2000:] for p in logs.values() if p.exists())
        assert "verdict       GO" in cut.err and "(triggers) created" in cut.err, cut.err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    assert capture.returncode == 0, logs["capture2"].read_text()[-3000:]
    tables = [
        r[0]
        for r in mariadb.execute(
            "sakila",
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'sakila'"
            " AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
        )
    ]
    assert len(tables) == 16
    for table in tables:
        src, dst = every_row(mariadb, "sakila", table), every_row(mariadb, mysql_db, table)
        assert src == dst, (table, [(a, b) for a, b in zip(src, dst, strict=False) if a != b][:3], len(src), len(dst))
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, "sakila", tables)
    assert int(mariadb.execute("sakila", "SELECT COUNT(*) FROM rental")[0][0]) > 16_044  # the workload's rentals
    source, target = schema_dump(mariadb, "sakila"), schema_dump(mariadb, mysql_db)
    strip = re.compile(r" AUTO_INCREMENT=\d+")  # the counters: compared below, once the workload has stopped
    assert strip.sub("", source) == strip.sub("", target)
    auto = "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY 1"
    assert mariadb.execute(mysql_db, auto, (mysql_db,)) == mariadb.execute("sakila", auto, ("sakila",))


def test_migrate_with_cdc_then_until_caught_up_and_an_added_column(make_mysql_flow, mariadb, mysql_db, request) -> None:  # noqa: ANN001
    """``migrate`` (capture in the background, cutover at the end) for MariaDB → MariaDB; then more changes, among
    them an ADD COLUMN with a default, reach the target with ``capture --once`` and ``replay --until-caught-up``:
    the column is added with the source's type and default (the rows that got it without a change agree).  A row
    put on the target beforehand under a key the source inserts later (as overlapping snapshots could leave it)
    makes the compacted batch's INSERT clash: the batch is applied again in order and converges."""
    source = f"src_{mysql_db}"[:64]
    mariadb.create_database(source)
    request.addfinalizer(lambda: mariadb.drop_database(source))
    create_source(mariadb, source)
    flow = make_mysql_flow(database=source, target=mariadb.url(mysql_db), migration_type="full-load-and-cdc")
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "verdict       GO" in run.err, run.err
    tables = ["every_type", "acct", "journal"]
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, source, tables)

    mariadb.execute(mysql_db, "INSERT INTO acct (code, balance, note) VALUES ('Z1', 99, 'not the source''s')")
    conn = pymysql.connect(**mariadb.connect_args(source), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00', sql_mode = ''")
            insert_every_type(cur, random.Random(3), 40)
            cur.execute("UPDATE every_type SET flag = 9, e = 'gone', dt = '2000-00-01' WHERE id % 7 = 0")
            cur.execute("ALTER TABLE acct ADD COLUMN region varchar(8) CHARACTER SET latin1 DEFAULT 'eu-ü'")
            cur.execute("INSERT INTO acct (code, balance, region) VALUES ('Z1', 1, 'us'), ('Z2', 2, NULL)")
            cur.execute("UPDATE acct SET region = 'ap' WHERE code LIKE 'A0001%'")
            cur.execute("DELETE FROM journal ORDER BY at LIMIT 5")
    finally:
        conn.close()
    for step in (("capture", "--once"), ("replay", "--until-caught-up")):
        run = flow.bulkmig(*step)
        assert run.code == 0, (step, run.text)
    assert "added column 'region' (varchar(8) character set latin1 DEFAULT 'eu-ü')" in run.err, run.err
    assert "Duplicate entry 'Z1'" in run.err and "applying it again change by change" in run.err, run.err
    for table in tables:
        assert every_row(mariadb, source, table) == every_row(mariadb, mysql_db, table), table
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, source, tables)
