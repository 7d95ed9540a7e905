"""MySQL/MariaDB change data capture end to end against real servers: MariaDB (row binlog, FULL image) →
change batches in moto's S3 → the unchanged replay → PostgreSQL, compared value by value.

What must hold (issue 6): every mapped type arrives exactly (inserted, updated, deleted); a transaction
spanning two tables stays whole in one batch; rotation is followed; a purged start position stops capture
saying what was lost; DDL stops capture naming the statement, except ADD COLUMN (nullable, at the end),
which replay applies; kill -9 of capture at random moments under a running workload loses and repeats
nothing.  ``pytest -s -k throughput`` prints capture throughput and lag under a workload.

The PostgreSQL tables are created from the type map (``engines/mysql/types.py``) by this file, not by
``bulkmig.convert``, so these tests pin the capture's values and nothing else.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from bulkmig import capture as capture_stage
from bulkmig.cdc.batch import Batch, list_batches, read_batch
from bulkmig.cdc.position import parse_lsn
from bulkmig.cdc.stream import bucket_store, read_progress
from bulkmig.config.task import Task
from bulkmig.core.errors import SourceError
from bulkmig.core.model import Table
from bulkmig.core.store import Store
from bulkmig.demo.servers import MariaDBServer, MotoS3Server, PostgresServer
from bulkmig.engines.mysql import binlog, reflect
from bulkmig.engines.mysql import capture as cdc
from bulkmig.engines.mysql import session as mysql_session
from bulkmig.engines.mysql.connect import connect
from bulkmig.replay import replay

# (column, MySQL type, [MySQL literal per row], [PostgreSQL text per row]) — row 1 typical, row 2 extremes.
EVERY_TYPE: list[tuple[str, str, list[str], list[str]]] = [
    ("c_bool", "tinyint(1)", ["1", "0"], ["true", "false"]),
    ("c_tiny", "tinyint", ["-128", "127"], ["-128", "127"]),
    ("c_utiny", "tinyint unsigned", ["0", "255"], ["0", "255"]),
    ("c_small", "smallint", ["-32768", "32767"], ["-32768", "32767"]),
    ("c_usmall", "smallint unsigned", ["1", "65535"], ["1", "65535"]),
    ("c_med", "mediumint", ["-8388608", "8388607"], ["-8388608", "8388607"]),
    ("c_umed", "mediumint unsigned", ["7", "16777215"], ["7", "16777215"]),
    ("c_int", "int", ["-2147483648", "2147483647"], ["-2147483648", "2147483647"]),
    ("c_uint", "int unsigned", ["42", "4294967295"], ["42", "4294967295"]),
    ("c_big", "bigint", ["-9223372036854775808", "9223372036854775807"],
     ["-9223372036854775808", "9223372036854775807"]),
    ("c_ubig", "bigint unsigned", ["9223372036854775808", "18446744073709551615"],
     ["9223372036854775808", "18446744073709551615"]),
    ("c_dec", "decimal(65,30)", ["12345678901234567890123456789012345.12345678901234567890123456789",
                                  "-0.000000000000000000000000000001"],
     ["12345678901234567890123456789012345.123456789012345678901234567890", "-0.000000000000000000000000000001"]),
    ("c_decu", "decimal(10,2) unsigned", ["0.5", "99999999.99"], ["0.50", "99999999.99"]),
    ("c_float", "float", ["0.1", "-3.40282e38"], ["0.1", "-3.40282e+38"]),
    ("c_double", "double", ["0.1", "1.7976931348623157e308"], ["0.1", "1.7976931348623157e+308"]),
    ("c_bit", "bit(10)", ["b'1000000001'", "b'0'"], ["1000000001", "0000000000"]),
    ("c_bit1", "bit(1)", ["b'1'", "b'0'"], ["1", "0"]),
    ("c_char", "char(5)", ["'ab'", "'  x'"], ["ab", "  x"]),
    ("c_varchar", "varchar(20)", ["'héllo 🎉'", "''"], ["héllo 🎉", ""]),
    ("c_latin", "varchar(10) CHARACTER SET latin1", ["'café€'", "'x'"], ["café€", "x"]),
    ("c_text", "text", ["'line1\\nline2 \\\\ back'", "'\"quoted\" ''single'''"],
     ["line1\nline2 \\ back", "\"quoted\" 'single'"]),
    ("c_long", "longtext", ["REPEAT('xyz', 100000)", "'a'"], ["xyz" * 100000, "a"]),
    ("c_bin", "binary(4)", ["x'00010000'", "x'ffffffff'"], ["\\x00010000", "\\xffffffff"]),
    ("c_varbin", "varbinary(10)", ["x'ff00'", "x''"], ["\\xff00", "\\x"]),
    ("c_blob", "blob", ["x'deadbeef'", "x'00'"], ["\\xdeadbeef", "\\x00"]),
    ("c_enum", "enum('a','b c','it''s')", ["'b c'", "'it''s'"], ["b c", "it's"]),
    ("c_set", "set('x','y','z')", ["'x,z'", "''"], ["{x,z}", "{}"]),
    ("c_year", "year", ["2024", "1901"], ["2024", "1901"]),
    ("c_date", "date", ["'2024-02-29'", "'1000-01-01'"], ["2024-02-29", "1000-01-01"]),
    ("c_dt", "datetime(6)", ["'2024-02-29 23:59:59.123456'", "'9999-12-31 23:59:59.999999'"],
     ["2024-02-29 23:59:59.123456", "9999-12-31 23:59:59.999999"]),
    ("c_dt0", "datetime", ["'2024-01-02 03:04:05'", "'1000-01-01 00:00:00'"],
     ["2024-01-02 03:04:05", "1000-01-01 00:00:00"]),
    ("c_ts", "timestamp(3) NULL", ["'2024-01-01 00:00:00.5'", "'2038-01-19 03:14:07.999'"],
     ["2024-01-01 00:00:00.5+00", "2038-01-19 03:14:07.999+00"]),
    ("c_time", "time(2)", ["'12:34:56.78'", "'00:00:00'"], ["12:34:56.78", "00:00:00"]),
    ("c_json", "json", ["'{\"a\": [1, 2.5, \"x\"]}'", "'[]'"], ['{"a": [1, 2.5, "x"]}', "[]"]),
    ("c_uuid", "uuid", ["'123e4567-e89b-12d3-a456-426614174000'", "'550e8400-e29b-41d4-a716-446655440000'"],
     ["123e4567-e89b-12d3-a456-426614174000", "550e8400-e29b-41d4-a716-446655440000"]),
    ("c_inet4", "inet4", ["'1.2.3.4'", "'255.255.255.0'"], ["1.2.3.4/32", "255.255.255.0/32"]),
    ("c_inet6", "inet6", ["'::ffff:1.2.3.4'", "'2001:db8::1'"], ["::ffff:1.2.3.4/128", "2001:db8::1/128"]),
    ("c_geom", "point", ["ST_GeomFromText('POINT(1 2)')", "ST_GeomFromText('POINT(-1.5 0)', 4326)"],
     ["\\x0101000000000000000000f03f0000000000000040", "\\x0101000000000000000000f8bf0000000000000000"]),
]  # fmt: skip


@dataclass
class Env:
    my: MariaDBServer
    db: str
    pg: PostgresServer
    target_db: str
    task: Task
    task_file: Path
    store: Store
    child_env: dict[str, str]

    @property
    def prefix(self) -> str:
        return "cdc/" + cdc.stream_id_for(self.task)

    def sql(self, statements: str) -> None:
        """Run statements on the source (UTC session, strict mode unless they say otherwise)."""
        self.my.execute(self.db, "SET time_zone = '+00:00'; " + statements)

    def tables(self, *names: str) -> list[Table]:
        """The source tables as plan would hand them over: catalog + the type map's target types."""
        conn = connect(self.task.source)
        try:
            catalog = reflect.reflect(conn, self.db, objects=False)
        finally:
            conn.close()
        out = []
        for ct in catalog.tables:
            if names and ct.table.name not in names:
                continue
            for column, cc in zip(ct.table.columns, ct.columns, strict=True):
                column.target_type = cc.mapping.target_type
            out.append(ct.table)
        return out

    def create_target(self, tables: list[Table]) -> None:
        """The PostgreSQL tables, typed by the type map (enum types included), with the same primary keys."""
        statements = [f'CREATE SCHEMA IF NOT EXISTS "{self.db}"']
        for t in tables:
            cols = []
            for c in t.columns:
                typ = c.target_type or "text"
                if c.source_type.startswith("enum("):
                    labels = ", ".join("'" + x.replace("'", "''") + "'" for x in _enum_labels(c.source_type))
                    statements.append(f'CREATE TYPE "{self.db}"."{typ}" AS ENUM ({labels})')
                    typ = f'"{self.db}"."{typ}"'
                cols.append(f'"{c.name}" {typ}')
            if t.primary_key:
                cols.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in t.primary_key) + ")")
            statements.append(f'CREATE TABLE "{self.db}"."{t.name}" ({", ".join(cols)})')
        self.pg.execute(self.target_db, "; ".join(statements))

    def start(self, *names: str) -> list[Table]:
        """Target tables, then the stream from the source's current position."""
        tables = self.tables(*names)
        self.create_target(tables)
        conn = connect(self.task.source)
        try:
            now = binlog.binlog_status(conn)
        finally:
            conn.close()
        assert now is not None
        cdc.start_stream(self.task, tables, {"binlog_file": now.file, "binlog_pos": now.pos})
        return tables

    def batches(self) -> list[Batch]:
        return [read_batch(self.store, self.prefix, s) for s in list_batches(self.store, self.prefix)]

    def source_rows(self, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
        cols = ", ".join(f"`{c}`" for c in columns)
        return [tuple(r) for r in self.my.execute(self.db, f"SELECT {cols} FROM `{table}` ORDER BY 1")]

    def target_text(self, table: str, columns: list[str]) -> list[tuple[str | None, ...]]:
        """The target's rows as PostgreSQL prints them (UTC), ordered by the first column's own type."""
        cols = ", ".join(f't."{c}"::text' for c in columns)
        query = f'SELECT {cols} FROM "{self.db}"."{table}" AS t ORDER BY t."{columns[0]}"'
        with psycopg.connect(self.pg.conninfo(self.target_db), options="-c TimeZone=UTC") as conn:
            return [tuple(r) for r in conn.execute(query)]


def _enum_labels(column_type: str) -> list[str]:
    from bulkmig.engines.mysql.types import parse_column_type

    return parse_column_type(column_type).args


@pytest.fixture
def env(
    mariadb: MariaDBServer,
    mysql_db: str,
    pg_target: PostgresServer,
    target_db: str,
    s3_server: MotoS3Server,
    bucket: str,
    tmp_path: Path,
    repo_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    doc = {
        "name": "mysql capture test",
        "source": mariadb.url(mysql_db),
        "target": pg_target.url(target_db),
        "migration_type": "full-load-and-cdc",
        "volume": str(tmp_path / "volume"),
        "bucket": f"s3://{bucket}/shop",
        "s3": {"endpoint_url": s3_server.endpoint_url, "region": s3_server.region},
        "settings": {"retry_timeout": 5},
    }
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump(doc, allow_unicode=True))
    secrets = {"BULKMIG_SOURCE_PASSWORD": mariadb.password, "BULKMIG_TARGET_PASSWORD": pg_target.password}
    task = Task.from_dict(doc, tmp_path, path=task_file, env=secrets)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_", "MYSQL"))}
    child_env.update({**s3_server.env(), **secrets, "PYTHONPATH": str(repo_root)})
    yield Env(mariadb, mysql_db, pg_target, target_db, task, task_file, bucket_store(task), child_env)


def insert_values(row: int, index: int) -> str:
    return f"({row}, " + ", ".join(values[index] for _, _, values, _ in EVERY_TYPE) + ")"


# ------------------------------------------------------------------------------------------ values


def test_every_type_is_inserted_updated_and_deleted_exactly(env: Env) -> None:
    ddl = ", ".join(f"`{name}` {typ}" for name, typ, _, _ in EVERY_TYPE)
    env.sql(f"CREATE TABLE every (id int PRIMARY KEY, {ddl})")
    env.start()
    columns = ["id", *(name for name, *_ in EVERY_TYPE)]
    env.sql(f"INSERT INTO every VALUES {insert_values(1, 0)}, {insert_values(2, 1)}; INSERT INTO every (id) VALUES (3)")
    capture_stage.capture(env.task, follow=False)
    replay(env.task)
    expected = {1: [e[0] for *_, e in EVERY_TYPE], 2: [e[1] for *_, e in EVERY_TYPE], 3: [None] * len(EVERY_TYPE)}
    got = env.target_text("every", columns)
    for row in got:
        want = ["%d" % int(row[0]), *expected[int(row[0])]]  # noqa: UP031
        for name, have, should in zip(columns, row, want, strict=True):
            assert have == should, f"row {row[0]} column {name}"
    assert len(got) == 3

    # Every column of row 1 takes row 2's values, row 2 becomes all NULL, row 3 goes; then a zero-date row.
    sets = ", ".join(f"`{name}` = {values[1]}" for name, _, values, _ in EVERY_TYPE)
    nulls = ", ".join(f"`{name}` = NULL" for name, *_ in EVERY_TYPE)
    env.sql(
        f"UPDATE every SET {sets} WHERE id = 1; UPDATE every SET {nulls} WHERE id = 2; DELETE FROM every WHERE id = 3"
    )
    env.sql(
        "SET SESSION sql_mode = ''; INSERT INTO every (id, c_date, c_dt, c_ts, c_set, c_year) "
        "VALUES (4, '0000-00-00', '2024-00-10 00:00:00', '0000-00-00 00:00:00', '', 0)"
    )
    capture_stage.capture(env.task, follow=False)
    replay(env.task)
    got = env.target_text("every", columns)
    assert [r[0] for r in got] == ["1", "2", "4"]
    assert list(got[0][1:]) == [e[1] for *_, e in EVERY_TYPE]
    assert list(got[1][1:]) == [None] * len(EVERY_TYPE)
    row4 = dict(zip(columns, got[2], strict=True))
    assert (row4["c_date"], row4["c_dt"], row4["c_ts"], row4["c_set"], row4["c_year"]) == (None, None, None, "{}", "0")


def test_a_transaction_over_two_tables_stays_whole(env: Env) -> None:
    env.sql("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, a_id int)")
    env.start()
    for i in range(30):  # 30 transactions of 4 rows over both tables; batches of at most ~5 rows
        env.sql(
            f"BEGIN; INSERT INTO a VALUES ({i}, 'a{i}'); INSERT INTO b VALUES ({i}, {i}); "
            f"UPDATE a SET v = 'b{i}' WHERE id = {i}; INSERT INTO b VALUES ({1000 + i}, {i}); COMMIT"
        )
    capture_stage.capture(env.task, follow=False, max_changes=5)
    batches = env.batches()
    assert len(batches) >= 10
    seen: dict[str, int] = {}
    for b in batches:
        for t in b.tables:
            for r in t.rows:
                assert seen.setdefault(r.pos, b.seq) == b.seq, "a transaction was split over two batches"
    assert len(seen) == 30 and sum(b.rows for b in batches) == 120
    for prev, nxt in zip(batches, batches[1:], strict=False):
        assert parse_lsn(prev.last_pos) < parse_lsn(nxt.first_pos)
    replay(env.task)
    assert env.target_text("a", ["id", "v"]) == [(str(i), f"b{i}") for i in range(30)]
    assert len(env.target_text("b", ["id"])) == 60


# ------------------------------------------------------------------------------- rotation and purge


def test_rotation_is_followed_and_a_purged_position_is_refused(env: Env) -> None:
    env.sql("CREATE TABLE r (id int PRIMARY KEY, v int)")
    env.start()
    for i in range(6):
        env.sql(f"INSERT INTO r VALUES ({i}, {i}); FLUSH BINARY LOGS")
    report = capture_stage.capture(env.task, follow=False)
    assert report.changes == 6
    files = {binlog.BinlogPos.from_ordinal("binlog", parse_lsn(r.pos)).file for b in env.batches() for t in b.tables
             for r in t.rows}  # fmt: skip
    assert len(files) == 6  # one transaction per binlog file, all followed
    replay(env.task)
    assert env.target_text("r", ["id"]) == [(str(i),) for i in range(6)]

    progress = read_progress(env.store, cdc.stream_id_for(env.task))
    assert progress is not None
    at = progress["captured_binlog"].split(":")[0]
    env.sql("INSERT INTO r VALUES (100, 100)")  # captured by nobody before the purge
    purge_all_but_the_newest_binlog(env.my)
    with pytest.raises(SourceError) as err:
        capture_stage.capture(env.task, follow=False)
    assert f"in binlog file {at}, which the source has purged" in err.value.message
    assert "is lost to change data capture" in err.value.message
    assert "a new full load is needed" in err.value.hint


def purge_all_but_the_newest_binlog(my: MariaDBServer) -> None:
    """FLUSH + PURGE until only the newest binlog is left: MariaDB keeps a file until its binlog checkpoint
    says InnoDB no longer needs it for crash recovery (a second or so with a lazily flushed redo log)."""
    my.execute(None, "FLUSH BINARY LOGS")
    deadline = time.monotonic() + 30
    while True:
        newest = my.execute(None, "SHOW MASTER STATUS")[0][0]
        my.execute(None, f"PURGE BINARY LOGS TO '{newest}'")
        if [r[0] for r in my.execute(None, "SHOW BINARY LOGS")] == [newest]:
            return
        assert time.monotonic() < deadline, "the server kept its old binlogs"
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------- DDL


def test_added_column_is_replayed_and_other_ddl_stops_capture_by_name(env: Env) -> None:
    env.sql("CREATE TABLE d (id int PRIMARY KEY, v varchar(10)); CREATE TABLE untouched (id int PRIMARY KEY)")
    env.start("d")
    env.sql("INSERT INTO d VALUES (1, 'one'); ALTER TABLE d ADD COLUMN note varchar(20)")
    env.sql("INSERT INTO d VALUES (2, 'two', 'noted'); UPDATE d SET note = 'later' WHERE id = 1")
    env.sql("ALTER TABLE untouched ADD COLUMN x int; ALTER TABLE d ADD INDEX (v); TRUNCATE untouched")
    capture_stage.capture(env.task, follow=False)
    changes = [c for b in env.batches() for c in b.schema_changes]
    assert [(c["table"], c["kind"], c["column"], c["type"]) for c in changes] == [
        ("d", "column_added", "note", "varchar(20)")
    ]
    replay(env.task)
    assert env.target_text("d", ["id", "v", "note"]) == [("1", "one", "later"), ("2", "two", "noted")]

    env.sql("INSERT INTO d VALUES (3, 'three', NULL); ALTER TABLE d DROP COLUMN v; INSERT INTO d VALUES (4, 'x')")
    with pytest.raises(SourceError) as err:
        capture_stage.capture(env.task, follow=False)
    assert "ALTER TABLE d DROP COLUMN v" in err.value.message and f"{env.db}.d" in err.value.message
    assert "a new full load is needed" in err.value.hint
    with pytest.raises(SourceError, match="DROP COLUMN v"):  # a restart stops at the same statement
        capture_stage.capture(env.task, follow=False)
    replay(env.task)  # everything before the statement was stored
    assert [r[0] for r in env.target_text("d", ["id"])] == ["1", "2", "3"]


class Crash(BaseException):
    """Stands in for kill -9 at one exact point: nothing of capture's own error handling catches it."""


def test_a_crash_before_progress_keeps_the_added_column(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.sql("CREATE TABLE d (id int PRIMARY KEY, v varchar(10))")
    env.start()
    env.sql("INSERT INTO d VALUES (1, 'one'); ALTER TABLE d ADD COLUMN note varchar(20)")
    env.sql("INSERT INTO d VALUES (2, 'two', 'n2')")
    write_progress = mysql_session.CaptureSession.write_progress

    def crash_after_the_change(self: Any) -> None:
        if self.report.schema_changes:  # the batch carrying ADD COLUMN is durable, progress.json is not
            raise Crash()
        write_progress(self)

    monkeypatch.setattr(mysql_session.CaptureSession, "write_progress", crash_after_the_change)
    with pytest.raises(Crash):
        capture_stage.capture(env.task, follow=False)
    monkeypatch.setattr(mysql_session.CaptureSession, "write_progress", write_progress)
    progress = read_progress(env.store, cdc.stream_id_for(env.task))
    assert progress is not None and progress["last_batch_seq"] == 1  # stale: it predates the change
    assert [c["name"] for c in progress["tables"][0]["columns"]] == ["id", "v"]
    env.sql("INSERT INTO d VALUES (3, 'three', 'n3')")
    capture_stage.capture(env.task, follow=False)  # the definition comes back from the durable batch, no drift
    assert [len(b.schema_changes) for b in env.batches()] == [0, 1, 0]
    replay(env.task)
    assert env.target_text("d", ["id", "v", "note"]) == [("1", "one", None), ("2", "two", "n2"), ("3", "three", "n3")]


def test_cdc_only_starts_now_or_at_a_given_binlog_position(env: Env, tmp_path: Path) -> None:
    from bulkmig.capture.start import start_cdc_stream

    env.sql("CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c VALUES (1, 'before')")
    env.create_target(env.tables())  # a target loaded by other means: the row that is already there
    env.pg.execute(env.target_db, f"INSERT INTO \"{env.db}\".c VALUES (1, 'before')")
    conn = binlog.control_connection(env.task)
    try:
        earlier = binlog.binlog_status(conn)
    finally:
        conn.close()
    assert earlier is not None
    env.sql("INSERT INTO c VALUES (2, 'after the position')")
    doc = yaml.safe_load(env.task_file.read_text())
    doc.update(migration_type="cdc", cdc_start_position=str(earlier))
    cdc_task = Task.from_dict(
        doc, tmp_path, env={"BULKMIG_SOURCE_PASSWORD": env.my.password, "BULKMIG_TARGET_PASSWORD": env.pg.password}
    )
    assert start_cdc_stream(cdc_task) is True and start_cdc_stream(cdc_task) is False
    env.sql("INSERT INTO c VALUES (3, 'after the start')")
    capture_stage.capture(cdc_task, follow=False)
    replay(cdc_task)
    assert env.target_text("c", ["id", "v"]) == [("1", "before"), ("2", "after the position"), ("3", "after the start")]


def test_truncate_is_captured_as_a_truncate(env: Env) -> None:
    env.sql("CREATE TABLE t (id int PRIMARY KEY)")
    env.start()
    env.sql("INSERT INTO t VALUES (1), (2); TRUNCATE t; INSERT INTO t VALUES (3)")
    capture_stage.capture(env.task, follow=False)
    ops = [r.op for b in env.batches() for t in b.tables for r in sorted(t.rows, key=lambda r: r.seq)]
    assert ops == ["I", "I", "T", "I"]
    replay(env.task)
    assert env.target_text("t", ["id"]) == [("3",)]


def test_a_second_capture_of_the_stream_is_refused(env: Env) -> None:
    env.sql("CREATE TABLE s (id int PRIMARY KEY)")
    env.start()
    stop = threading.Event()
    first = threading.Thread(target=capture_stage.capture, args=(env.task,), kwargs={"stop": stop}, daemon=True)
    first.start()
    try:
        deadline = time.monotonic() + 30
        while read_progress(env.store, cdc.stream_id_for(env.task)) is None and time.monotonic() < deadline:
            env.sql("INSERT INTO s VALUES (FLOOR(RAND() * 1000000000))")
            time.sleep(0.2)
        with pytest.raises(SourceError, match="another bulkmig capture is already running"):
            capture_stage.capture(env.task, follow=False)
    finally:
        stop.set()
        first.join(timeout=30)
    assert not first.is_alive()


# ------------------------------------------------------------------------------------------ kill -9

CHILD = """
import sys
from pathlib import Path
from bulkmig.capture import capture
from bulkmig.config.task import load_task
capture(load_task(Path(sys.argv[1])), max_changes=25)
"""


def test_kill_9_at_random_moments_under_a_workload_loses_and_repeats_nothing(env: Env, repo_root: Path) -> None:
    seed = int(os.environ.get("BULKMIG_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    env.sql("CREATE TABLE items (id int PRIMARY KEY, name varchar(20), qty int); CREATE TABLE bag (a int, b text)")
    env.sql("INSERT INTO bag VALUES (1, 'one'), (2, 'two')")
    env.start()
    env.pg.execute(env.target_db, f"INSERT INTO \"{env.db}\".bag VALUES (1, 'one'), (2, 'two')")  # the "full load"
    done, enough = threading.Event(), threading.Event()
    committed: list[int] = []

    def workload() -> None:
        conn = pymysql.connect(**env.my.connect_args(env.db), autocommit=False)
        try:
            for i in range(100_000):  # until told: one insert each, plus updates/deletes over both tables
                if enough.is_set():
                    break
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (i, f"w{i}", i))
                    if i % 3 == 0:
                        cur.execute("UPDATE bag SET b = %s WHERE a = 1", (f"v{i}",))
                    if i % 7 == 0 and i:
                        cur.execute("DELETE FROM items WHERE id = %s", (i - 7,))
                    if i % 11 == 0:
                        cur.execute("UPDATE items SET qty = qty + 1000 WHERE id < %s", (i,))
                conn.commit()
                committed.append(i)
                time.sleep(rng.random() * 0.004)
        finally:
            conn.close()
            done.set()

    worker = threading.Thread(target=workload, daemon=True)
    worker.start()
    kills = 0
    while kills < 5:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(env.task_file)],
            env=env.child_env,
            cwd=repo_root,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        wanted, seen = rng.randint(1, 3), 0
        for line in child.stderr:
            seen += "capture: batch" in line
            if seen >= wanted:
                time.sleep(rng.random() * 0.2)  # into the next read, batch write or progress write
                break
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait(timeout=30)
        assert child.returncode == -9, f"seed {seed}: " + child.stderr.read()
        kills += 1
        assert not done.is_set(), f"seed {seed}: the workload stopped early"
    enough.set()
    worker.join(timeout=60)
    total = len(committed)
    assert total > 200
    capture_stage.capture(env.task, follow=False)
    batches = env.batches()
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1)), f"seed {seed}"
    inserted = [int(r.values[0]) for b in batches for t in b.tables if t.table == "items" for r in
                sorted(t.rows, key=lambda r: r.seq) if r.op == "I"]  # fmt: skip
    assert inserted == list(range(total)), f"seed {seed}: every insert exactly once, in commit order"
    positions = [parse_lsn(r.pos) for b in batches for t in b.tables for r in t.rows]
    assert len(set(positions)) == total, f"seed {seed}"
    for prev, nxt in zip(batches, batches[1:], strict=False):
        assert parse_lsn(prev.last_pos) < parse_lsn(nxt.first_pos), f"seed {seed}"
    replay(env.task)
    assert env.target_text("items", ["id", "name", "qty"]) == [
        tuple(str(v) for v in row) for row in env.source_rows("items", ["id", "name", "qty"])
    ], f"seed {seed}"
    assert env.target_text("bag", ["a", "b"]) == [
        tuple(str(v) for v in row) for row in env.source_rows("bag", ["a", "b"])
    ], f"seed {seed}"


# ---------------------------------------------------------------------------------------- throughput


def test_throughput_and_lag_under_a_workload(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.sql("CREATE TABLE workload (id int PRIMARY KEY, name varchar(40), qty int, at datetime(6))")
    env.start()
    # 1. A backlog: 30,000 single-row inserts in 30 transactions, then one capture pass over it.
    conn = pymysql.connect(**env.my.connect_args(env.db), autocommit=False)
    try:
        with conn.cursor() as cur:
            for part in range(30):
                rows = [(part * 1000 + i, f"name {part * 1000 + i}", i) for i in range(1000)]
                cur.executemany("INSERT INTO workload VALUES (%s, %s, %s, NOW(6))", rows)
                conn.commit()
    finally:
        conn.close()
    backlog = capture_stage.capture(env.task, follow=False)
    assert backlog.changes == 30_000 and backlog.transactions == 30

    # 2. Lag under a steady workload: two writers of small mixed transactions for ~6 s while capture follows.
    stop = threading.Event()
    samples: list[tuple[float, int]] = []  # (when, source binlog ordinal)
    lags: list[float] = []
    writes = [0, 0]

    def writer(n: int) -> None:
        c = pymysql.connect(**env.my.connect_args(env.db), autocommit=False)
        try:
            i = 0
            with c.cursor() as cur:
                while not stop.is_set():
                    key = 200_000 + n * 1_000_000 + i
                    cur.execute("INSERT INTO workload VALUES (%s, 'w', 1, NOW(6))", (key,))
                    cur.execute("UPDATE workload SET qty = qty + 1 WHERE id = %s", (i % 30_000,))
                    if i % 5 == 0:
                        cur.execute("DELETE FROM workload WHERE id = %s", (key,))
                    c.commit()
                    writes[n] += 3 if i % 5 == 0 else 2
                    i += 1
        finally:
            c.close()

    follow_stop = threading.Event()
    before = backlog.changes
    follower = threading.Thread(
        target=capture_stage.capture, args=(env.task,), kwargs={"stop": follow_stop}, daemon=True
    )
    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(2)]
    started = time.monotonic()
    follower.start()
    for t in threads:
        t.start()
    ctl = binlog.control_connection(env.task)
    stream_id = cdc.stream_id_for(env.task)
    try:
        while time.monotonic() - started < 6:
            now = binlog.binlog_status(ctl)
            assert now is not None
            samples.append((time.monotonic(), now.ordinal))
            progress = read_progress(env.store, stream_id)
            if progress:
                captured = parse_lsn(progress["captured_through"])
                reached = [t for t, pos in samples if pos <= captured]
                if reached:
                    lags.append(time.monotonic() - max(reached))
            time.sleep(0.25)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        end = binlog.binlog_status(ctl)
    finally:
        ctl.close()
    assert end is not None
    written = sum(writes)
    seconds = time.monotonic() - started
    drain_started = time.monotonic()
    while True:
        progress = read_progress(env.store, stream_id)
        if progress and parse_lsn(progress["captured_through"]) >= end.ordinal:
            break
        assert time.monotonic() - drain_started < 60, "capture did not catch up"
        time.sleep(0.1)
    drain = time.monotonic() - drain_started
    follow_stop.set()
    follower.join(timeout=30)
    captured_changes = sum(b.rows for b in env.batches()) - before
    assert captured_changes == written
    lags.sort()
    with capsys.disabled():
        print(
            f"\nmysql capture throughput (backlog): {backlog.changes:,} changes in {backlog.seconds:.2f}s = "
            f"{backlog.changes_per_second:,.0f} changes/s ({backlog.batches} batches)\n"
            f"mysql capture under 2 writers for {seconds:.1f}s: {written:,} changes written "
            f"({written / seconds:,.0f}/s), all captured; lag p50 {lags[len(lags) // 2]:.2f}s, "
            f"p90 {lags[int(len(lags) * 0.9)]:.2f}s, max {lags[-1]:.2f}s ({len(lags)} samples); "
            f"caught up {drain:.2f}s after the writers stopped"
        )
