"""`bulkmig capture` against a real PostgreSQL and moto's S3 server over HTTP.

What must hold (DESIGN §5, issue 4): every committed change lands in exactly one change batch, whole
transactions only, with exact values (unchanged TOAST values marked, never NULL), old keys / old rows,
commit positions and order; a table's definition change ends a batch and is named in the next; the slot
is acknowledged only up to what is durable, so a crash between writing a batch and advancing the slot
(or a kill -9 at any moment) neither loses nor duplicates a batch; an idle slot keeps moving.

The writing connection commits with ``synchronous_commit = on``: peek decodes only flushed WAL, and the
test cluster runs with ``synchronous_commit = off`` for speed.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from bulkmig.capture import CaptureReport, capture, read_progress, read_stream, stream_prefix, stream_status
from bulkmig.cdc import loop as loop_mod
from bulkmig.cdc.batch import Batch, list_batches, read_batch
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.store import Store
from bulkmig.demo.servers import MotoS3Server, PostgresServer
from bulkmig.engines.postgres import capture as capture_mod
from bulkmig.engines.postgres.capture import drop_stream, start_stream, start_stream_now

SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
CREATE TABLE bag (a int, b text);
CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);
INSERT INTO bag VALUES (1, 'one'), (2, NULL);
"""
TABLES = [("public", "items"), ("public", "bag"), ("public", "docs")]


class Crash(BaseException):
    """Stands in for kill -9 at one exact point: nothing of capture's own error handling catches it."""


def crash(*_: Any) -> NoReturn:
    raise Crash()


@dataclass
class Env:
    task: Task
    server: PostgresServer
    db: str
    writer: psycopg.Connection  # the application: autocommit, synchronous_commit on
    admin: psycopg.Connection  # inspection and start_stream: autocommit
    store: Store

    @property
    def slot(self) -> str:
        assert self.task.settings.slot_name
        return self.task.settings.slot_name

    @property
    def prefix(self) -> str:
        return stream_prefix(f"pg-{self.slot}")

    def txn(self, *statements: str | tuple[str, Any]) -> tuple[int, int]:
        """Run statements in one source transaction; returns (xid, WAL position right after its commit)."""
        with self.writer.transaction():
            for st in statements:
                sql, params = (st, None) if isinstance(st, str) else st
                self.writer.execute(sql, params)
            xid = self.writer.execute("SELECT txid_current()").fetchone()[0]
        return int(xid), self.lsn()

    def lsn(self) -> int:
        return parse_lsn(self.admin.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])

    def confirmed(self) -> int:
        row = self.admin.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        ).fetchone()
        return parse_lsn(row[0])

    def seqs(self) -> list[int]:
        return list_batches(self.store, self.prefix)

    def batches(self) -> list[Batch]:
        return [read_batch(self.store, self.prefix, s) for s in self.seqs()]

    def captured_through(self) -> int:
        """progress.json's captured_through, 0 before there is one."""
        doc = read_progress(self.store, f"pg-{self.slot}")
        return parse_lsn(doc["captured_through"]) if doc else 0

    def progress(self) -> dict[str, Any]:
        doc = read_progress(self.store, f"pg-{self.slot}")
        assert doc is not None
        return doc

    def start(self) -> None:
        start_stream(self.task, self.admin, TABLES, allow_replica_identity_full=True).release()


def make_task(pg: PostgresServer, db: str, s3: MotoS3Server, bucket: str, tmp: Path, **settings: Any) -> Task:
    doc = {
        "name": "capture test",
        "source": pg.url(db),
        "target": pg.url("postgres"),  # never connected to here
        "migration_type": "full-load-and-cdc",
        "volume": str(tmp / "volume"),
        "bucket": f"s3://{bucket}/shop",
        "s3": {"endpoint_url": s3.endpoint_url, "region": s3.region},
        "settings": {"slot_name": f"cap_{uuid.uuid4().hex[:12]}", **settings},
    }
    return Task.from_dict(doc, tmp, env={"BULKMIG_SOURCE_PASSWORD": pg.password})


@pytest.fixture
def env(
    pg_source: PostgresServer,
    source_db: str,
    s3_server: MotoS3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    task = make_task(pg_source, source_db, s3_server, bucket, tmp_path)
    info = pg_source.conninfo(source_db)
    with (
        psycopg.connect(info, autocommit=True, options="-c synchronous_commit=on") as writer,
        psycopg.connect(info, autocommit=True) as admin,
    ):
        writer.execute(SCHEMA)
        yield Env(task, pg_source, source_db, writer, admin, capture_mod.bucket_store(task))


def rows_of(batch: Batch) -> list[tuple[Any, ...]]:
    """(seq, table, op, values, unchanged, before) of every row of a batch, in seq order."""
    out = [(r.seq, t.table, r.op, r.values, r.unchanged, r.before) for t in batch.tables for r in t.rows]
    return sorted(out, key=lambda row: row[0])


def positions(batch: Batch) -> list[tuple[int, str, int]]:
    """(seq, pos, xid) of every row, in seq order."""
    return sorted((r.seq, r.pos, r.xid) for t in batch.tables for r in t.rows)


# ------------------------------------------------------------------------------------------ the stream


def test_capture_stores_exactly_the_committed_changes(env: Env) -> None:
    big1, big2 = secrets.token_hex(1_500_000), secrets.token_hex(1_200_000)  # 3 MB, 2.4 MB: out of line in TOAST
    env.writer.execute("INSERT INTO docs VALUES (1, 'd1', %s)", (big1,))
    st = start_stream(env.task, env.admin, TABLES, allow_replica_identity_full=True)
    assert st.replica_identity_full == [("public", "bag")]
    assert st.consistent_point == env.confirmed() and st.holder is not None and st.snapshot_name
    env.writer.execute("INSERT INTO items VALUES (99, 'after the snapshot', 0)")
    with psycopg.connect(env.server.conninfo(env.db)) as reader:  # what an extraction worker does
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        reader.execute(f"SET TRANSACTION SNAPSHOT '{st.snapshot_name}'")
        assert reader.execute("SELECT array_agg(id ORDER BY id) FROM items").fetchone()[0] == [1, 2, 3]
    st.release()
    stream = read_stream(env.store, st.stream_id)
    assert stream is not None
    assert (stream["slot"], stream["publication"], stream["start_pos"]) == (
        env.slot,
        "bulkmig_capture_test",
        st.start_pos,
    )
    assert stream["tables"] == [{"schema": s, "table": t} for s, t in TABLES]
    assert stream["source"] == env.task.source.redacted() and env.server.password not in str(stream)
    env.writer.execute("DELETE FROM items WHERE id = 99")

    marks = [env.lsn()]  # transaction i commits between marks[i] and marks[i + 1], as xids[i]
    xids = []
    for statements in [
        ["""INSERT INTO items VALUES (4, 'four ß "q"', NULL)"""],
        ["UPDATE items SET qty = 30 WHERE id = 3"],
        ["UPDATE items SET id = 10 WHERE id = 1"],  # the key changed: the old key is sent
        ["DELETE FROM items WHERE id = 2"],
        [  # one transaction over three tables
            "INSERT INTO items VALUES (5, 'five', 5)",
            "UPDATE bag SET b = 'uno' WHERE a = 1",
            "DELETE FROM bag WHERE a = 2",
            "UPDATE docs SET title = 'D1' WHERE id = 1",  # body untouched: not sent
        ],
        [("INSERT INTO docs VALUES (2, 'd2', %s)", (big2,))],
        ["TRUNCATE bag"],
        ["ALTER TABLE items ADD COLUMN note text"],
        ["INSERT INTO items VALUES (6, 'six', 6, 'hello')"],
        ["UPDATE items SET note = 'four' WHERE id = 4"],
    ]:
        xid, mark = env.txn(*statements)
        xids.append(xid)
        marks.append(mark)

    report = capture(env.task, follow=False)
    assert (report.batches, report.transactions, report.changes, report.schema_changes) == (2, 11, 14, 1)
    assert env.seqs() == [1, 2]
    first, second = env.batches()
    # everything after the slot's start (row 99 came after the snapshot, so it is in the stream), up to the ALTER
    assert rows_of(first) == [
        (1, "items", "I", ["99", "after the snapshot", "0"], [], None),
        (2, "items", "D", ["99", None, None], [], ["99", None, None]),
        (3, "items", "I", ["4", 'four ß "q"', None], [], None),
        (4, "items", "U", ["3", "three", "30"], [], None),
        (5, "items", "U", ["10", "one", "1"], [], ["1", None, None]),
        (6, "items", "D", ["2", None, None], [], ["2", None, None]),
        (7, "items", "I", ["5", "five", "5"], [], None),
        (8, "bag", "U", ["1", "uno"], [], ["1", "one"]),
        (9, "bag", "D", ["2", None], [], ["2", None]),
        (10, "docs", "U", ["1", "D1", None], ["body"], None),  # the 3 MB body: not sent, so marked, not NULL
        (11, "docs", "I", ["2", "d2", big2], [], None),
        (12, "bag", "T", [None, None], [], None),
    ]
    shapes = {t.table: (t.columns, t.types, t.key, t.identity) for t in first.tables}
    assert shapes == {
        "items": (["id", "name", "qty"], ["integer", "text", "integer"], ["id"], "d"),
        "bag": (["a", "b"], ["integer", "text"], ["a", "b"], "f"),
        "docs": (["id", "title", "body"], ["integer", "text", "text"], ["id"], "d"),
    }
    assert first.schema_changes == []  # stream.json's definitions are exactly what pgoutput sends
    # the ALTER ends the batch: one batch never holds two column lists for one table
    assert rows_of(second) == [
        (1, "items", "I", ["6", "six", "6", "hello"], [], None),
        (2, "items", "U", ["4", 'four ß "q"', None, "four"], [], None),
    ]
    assert [(t.table, t.columns, t.types) for t in second.tables] == [
        ("items", ["id", "name", "qty", "note"], ["integer", "text", "integer", "text"])
    ]
    assert second.schema_changes == [
        {
            "schema": "public",
            "table": "items",
            "kind": "column_added",
            "column": "note",
            "type": "text",
            "detail": "column 'note' added (text)",
            "default": None,
            "not_null": False,
        }
    ]
    # positions: each transaction's rows share its commit LSN and xid, which lie between the marks around it
    txn_of_seq = {3: 0, 4: 1, 5: 2, 6: 3, 7: 4, 8: 4, 9: 4, 10: 4, 11: 5, 12: 6}
    for batch, txn_of in ((first, txn_of_seq), (second, {1: 8, 2: 9})):
        by_seq = {seq: (parse_lsn(pos), xid) for seq, pos, xid in positions(batch)}
        for seq, i in txn_of.items():
            pos, xid = by_seq[seq]
            assert marks[i] < pos < marks[i + 1] and xid == xids[i], (batch.seq, seq)
    # whole transactions: as many distinct commit positions as transactions, each run of seqs contiguous
    for batch in (first, second):
        pos_seq = positions(batch)
        runs = [p for i, (_, p, _) in enumerate(pos_seq) if i == 0 or pos_seq[i - 1][1] != p]
        assert len(runs) == len(set(runs)) == batch.transactions
        assert batch.first_pos == pos_seq[0][1]
        assert parse_lsn(pos_seq[-1][1]) < parse_lsn(batch.last_pos) <= marks[-1]
    assert first.transactions == 9 and second.transactions == 2
    assert parse_lsn(first.last_pos) < parse_lsn(second.first_pos)
    # acknowledged exactly up to what is durable
    assert env.confirmed() == parse_lsn(second.last_pos)
    progress = env.progress()
    assert (progress["captured_through"], progress["last_batch_seq"]) == (second.last_pos, 2)

    # nothing new: nothing written, however often capture runs
    again = capture(env.task, follow=False)
    assert (again.batches, again.changes, again.skipped_transactions) == (0, 0, 0)
    assert env.seqs() == [1, 2]
    # caught up to the source's position read now (heartbeats carry it past WAL that holds nothing for us)
    env.writer.execute("CREATE TABLE unpublished AS SELECT g FROM generate_series(1, 1000) g")
    target = env.lsn()
    done = capture(env.task, follow=False, until_pos=target)
    assert done.batches == 0 and env.seqs() == [1, 2]
    assert parse_lsn(env.progress()["captured_through"]) >= target
    assert env.confirmed() == parse_lsn(env.progress()["captured_through"])

    status = stream_status(env.task)
    assert status["started"] and status["slot_exists"] and status["warnings"] == []
    assert (status["batches"], status["last_batch_seq"], status["last_batch_pos"]) == (2, 2, second.last_pos)
    assert status["captured_through"] == env.progress()["captured_through"]
    assert status["retained_bytes"] >= 0 and status["lag_bytes"] >= 0


def test_full_identity_update_carries_the_untouched_toast_value(env: Env) -> None:
    """Under REPLICA IDENTITY FULL the old row arrives whole, so the value pgoutput leaves out of the new
    tuple is filled from it: nothing for replay to keep, and the before-row matches the target's row."""
    big = secrets.token_hex(1_000_000)
    env.writer.execute("CREATE TABLE blob (a int, big text, n int)")
    env.writer.execute("INSERT INTO blob VALUES (1, %s, 0)", (big,))
    start_stream(env.task, env.admin, [("public", "blob")], allow_replica_identity_full=True).release()
    env.txn("UPDATE blob SET n = 1")
    env.txn("DELETE FROM blob")
    capture(env.task, follow=False)
    (batch,) = env.batches()
    assert rows_of(batch) == [
        (1, "blob", "U", ["1", big, "1"], [], ["1", big, "0"]),
        (2, "blob", "D", ["1", big, "1"], [], ["1", big, "1"]),
    ]


# --------------------------------------------------------------------------------------------- crashes


def test_crash_between_batch_and_advance_writes_nothing_twice(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.start()
    env.txn("ALTER TABLE items ADD COLUMN note varchar(20) NOT NULL DEFAULT 'none'")
    env.txn("INSERT INTO items VALUES (7, 'seven', 7, 'n7')")

    # 1. killed right after batch.json, before progress.json and before the slot moved
    with monkeypatch.context() as m:
        m.setattr(capture_mod._Session, "write_progress", crash)
        with pytest.raises(Crash):
            capture(env.task, follow=False)
    assert env.seqs() == [1]
    (batch,) = env.batches()
    assert [(c["kind"], c["type"], c["default"], c["not_null"]) for c in batch.schema_changes] == [
        ("column_added", "character varying(20)", "'none'::character varying", True)
    ]
    assert env.confirmed() < parse_lsn(batch.last_pos)
    report = capture(env.task, follow=False)
    assert (report.batches, report.skipped_transactions) == (0, 1)
    assert env.seqs() == [1] and env.confirmed() == parse_lsn(batch.last_pos)
    columns = {r["table"]: [c["name"] for c in r["columns"]] for r in env.progress()["relations"]}
    assert columns["items"] == ["id", "name", "qty", "note"]

    # 2. killed after progress.json, before the slot was told (a status update, or an advance when peeking)
    env.txn("INSERT INTO items VALUES (8, 'eight', 8, 'n8')")
    with monkeypatch.context() as m:
        m.setattr(capture_mod._Session, "confirm", crash)
        with pytest.raises(Crash):
            capture(env.task, follow=False)
    assert env.seqs() == [1, 2]
    second = env.batches()[1]
    assert env.confirmed() < parse_lsn(second.last_pos) == parse_lsn(env.progress()["captured_through"])
    report = capture(env.task, follow=False)
    assert (report.batches, report.skipped_transactions) == (0, 1)
    assert env.seqs() == [1, 2] and env.confirmed() == parse_lsn(second.last_pos)

    # the drift was stored once: later batches of the table carry no schema change
    env.txn("INSERT INTO items VALUES (9, 'nine', 9, 'n9')")
    assert capture(env.task, follow=False).batches == 1
    third = env.batches()[2]
    assert third.schema_changes == [] and rows_of(third) == [(1, "items", "I", ["9", "nine", "9", "n9"], [], None)]


CHILD = """
import sys
from pathlib import Path
from bulkmig.capture import capture
from bulkmig.config.task import load_task
capture(load_task(Path(sys.argv[1])), max_changes=40, poll_interval=0.05)
"""


def _child_task(env: Env, tmp_path: Path, s3_server: MotoS3Server) -> tuple[Path, dict[str, str]]:
    """A cdc task file for a capture run as its own process, and that process's environment."""
    env.start()
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        "name: capture test\n"
        f"source: {env.task.source.redacted()}\n"
        "target: postgresql://nobody@127.0.0.1:1/none\n"
        "migration_type: cdc\n"
        f"volume: {tmp_path / 'volume'}\n"
        f"bucket: {env.task.bucket}\n"
        f"s3: {{endpoint_url: '{s3_server.endpoint_url}', region: {s3_server.region}}}\n"
        f"settings: {{slot_name: {env.slot}}}\n"
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
    child_env.update(s3_server.env(), BULKMIG_SOURCE_PASSWORD=env.server.password)
    return task_file, child_env


def test_kill_9_at_any_moment_loses_and_repeats_nothing(env: Env, tmp_path: Path, s3_server: MotoS3Server) -> None:
    task_file, child_env = _child_task(env, tmp_path, s3_server)
    expected = []
    for i in range(400):  # 400 transactions of 1-2 rows over two tables
        statements = [f"INSERT INTO items VALUES ({100 + i}, 'w{i}', {i})"]
        if i % 3 == 0:
            statements.append(f"UPDATE bag SET b = 'v{i}' WHERE a = 1")
        env.txn(*statements)
        expected += [("items", "I", str(100 + i))] + ([("bag", "U", "1")] if i % 3 == 0 else [])
    target = env.lsn()
    for kill_after, delay in ((1, 0.0), (2, 0.02), (3, 0.07)):  # somewhere after the n-th logged batch
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(task_file)], env=child_env, stderr=subprocess.PIPE, text=True
        )
        assert child.stderr is not None
        seen = 0
        for line in child.stderr:
            seen += "capture: batch" in line
            if seen >= kill_after:
                time.sleep(delay)  # into the next peek, batch write or acknowledgement
                child.kill()  # SIGKILL: no cleanup of any kind
                break
        child.wait(timeout=30)
        assert child.returncode == -9, child.stderr.read()
    capture(env.task, follow=False, until_pos=target)
    batches = env.batches()
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1)) and len(batches) >= 4
    got = [
        row for b in batches for row in sorted((r.seq, t.table, r.op, r.values[0]) for t in b.tables for r in t.rows)
    ]
    assert [g[1:] for g in got] == expected  # every change once, in commit order
    commits = [parse_lsn(r.pos) for b in batches for t in b.tables for r in t.rows]
    assert len(set(commits)) == 400
    for a, b in zip(batches, batches[1:], strict=False):
        assert parse_lsn(a.last_pos) < parse_lsn(b.first_pos)  # no transaction in two batches
    assert env.confirmed() == parse_lsn(env.progress()["captured_through"]) >= target


# ------------------------------------------------------------------ long transactions, kills at the seams


def in_commit_order(batches: list[Batch]) -> list[tuple[int, str, str, str]]:
    """(xid, table, op, first value) of every row of every batch, batch by batch in seq order."""
    return [
        row[1:]
        for b in batches
        for row in sorted((r.seq, r.xid, t.table, r.op, r.values[0]) for t in b.tables for r in t.rows)
    ]


@pytest.mark.parametrize("read", ["stream", "peek"])
def test_a_long_open_transaction_is_captured_once_exactly(env: Env, read: str) -> None:
    """A transaction stays open while 150 others commit and capture confirms them batch after batch (so the
    slot's restart point stays behind it and its confirmed position passes its start), capture is stopped
    and started again meanwhile; when it commits, its 6,000 changes arrive once, whole, in one batch."""
    env.start()
    task = dataclasses.replace(env.task, settings=dataclasses.replace(env.task.settings, capture_read=read))
    info = env.server.conninfo(env.db)
    with psycopg.connect(info, autocommit=True, options="-c synchronous_commit=on") as long:
        long.execute("BEGIN")
        long_xid = int(long.execute("SELECT txid_current()").fetchone()[0])
        start_lsn = env.lsn()
        expected_small: list[tuple[int, str, str, str]] = []

        def follow(until: Callable[[], bool]) -> CaptureReport:
            stop, result = threading.Event(), []
            runner = threading.Thread(
                target=lambda: result.append(
                    capture(task, follow=True, max_changes=100, poll_interval=0.05, heartbeat_interval=60, stop=stop)
                )
            )
            runner.start()
            try:
                deadline = time.monotonic() + 60
                while not until():
                    assert time.monotonic() < deadline and runner.is_alive(), "capture did not get there"
                    time.sleep(0.05)
            finally:
                stop.set()
                runner.join(timeout=60)
            return result[0]

        for round_ in range(2):  # two capture runs while the transaction stays open
            for i in range(75):
                n = round_ * 75 + i
                long.execute(
                    "INSERT INTO items SELECT g, 'long', %s FROM generate_series(%s::int, %s::int) g",
                    (n, 1000 + n * 40, 1000 + n * 40 + 39),
                )
                xid, _ = env.txn(f"INSERT INTO docs VALUES ({n}, 'small {n}', NULL)")
                expected_small.append((xid, "docs", "I", str(n)))
            target = env.lsn()
            follow(lambda t=target: env.captured_through() >= t and env.confirmed() >= t)
            slot = env.admin.execute(
                "SELECT restart_lsn::text, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (env.slot,),
            ).fetchone()
            assert parse_lsn(slot[0]) <= start_lsn < parse_lsn(slot[1])  # pinned behind it, confirmed past it
        before_commit = env.seqs()
        assert in_commit_order(env.batches()) == expected_small and len(before_commit) >= 2
        long.execute("COMMIT")
    target = env.lsn()
    follow(lambda: env.captured_through() >= target)
    new = [b for b in env.batches() if b.seq not in before_commit]
    (batch,) = new  # one batch: the whole transaction, however many changes it has
    rows = in_commit_order([batch])
    assert rows == [(long_xid, "items", "I", str(k)) for k in range(1000, 1000 + 150 * 40)]
    assert batch.transactions == 1 and batch.rows == 6000
    everything = in_commit_order(env.batches())
    assert len(everything) == len(set(everything)) == 150 + 6000  # nothing twice, nothing missing
    assert env.confirmed() == parse_lsn(env.progress()["captured_through"]) >= target


KILL_CHILD = """
import os, signal, sys
from pathlib import Path
from bulkmig.capture import capture
from bulkmig.config.task import load_task
from bulkmig.engines.postgres import session

point, after = sys.argv[2], int(sys.argv[3])
calls = [0]
original = getattr(session.CaptureSession, point)


def killing(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == after:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind, at exactly this point
    return original(self, *args, **kwargs)


setattr(session.CaptureSession, point, killing)
capture(load_task(Path(sys.argv[1])), follow=False, max_changes=40, poll_interval=0.05)
"""


@pytest.mark.parametrize(
    ("point", "after"),
    [
        ("write_progress", 1),  # batches durable, progress.json not rewritten, nothing confirmed
        ("confirm", 1),  # batches and progress.json durable, the status update not sent
    ],
)
def test_kill_between_durable_and_confirmed_loses_and_doubles_nothing(
    env: Env, tmp_path: Path, s3_server: MotoS3Server, point: str, after: int
) -> None:
    task_file, child_env = _child_task(env, tmp_path, s3_server)
    expected = []
    for i in range(300):  # 300 transactions, 433 changes over two tables
        statements = [f"INSERT INTO items VALUES ({100 + i}, 'w{i}', {i})"]
        if i % 3 == 0:
            statements.append(f"UPDATE bag SET b = 'v{i}' WHERE a = 1")
        xid, _ = env.txn(*statements)
        expected += [(xid, "items", "I", str(100 + i))] + ([(xid, "bag", "U", "1")] if i % 3 == 0 else [])
    target = env.lsn()
    child = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, str(task_file), point, str(after)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    durable = env.batches()
    assert durable, child.stderr
    progress = read_progress(env.store, f"pg-{env.slot}")
    recorded = parse_lsn(progress["captured_through"]) if progress else 0
    # nothing was confirmed early: the slot is behind the last durable batch, and never past progress.json
    assert env.confirmed() < parse_lsn(durable[-1].last_pos)
    assert env.confirmed() <= max(recorded, parse_lsn(read_stream(env.store, f"pg-{env.slot}")["start_pos"]))
    capture(env.task, follow=False, until_pos=target, max_changes=40)  # reads again from the slot's position
    batches = env.batches()
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1))
    assert in_commit_order(batches) == expected  # every change once, in commit order
    for a, b in zip(batches, batches[1:], strict=False):
        assert parse_lsn(a.last_pos) < parse_lsn(b.first_pos)  # no transaction in two batches
    assert env.confirmed() == parse_lsn(env.progress()["captured_through"]) >= target


# ------------------------------------------------------------------------------------ idle and errors


def test_idle_heartbeat_moves_captured_through(env: Env) -> None:
    env.start()
    start = env.confirmed()
    env.writer.execute("CREATE TABLE noise AS SELECT g FROM generate_series(1, 5000) g")  # WAL the slot ignores
    stop = threading.Event()
    result: list[CaptureReport] = []
    runner = threading.Thread(
        target=lambda: result.append(
            capture(env.task, follow=True, poll_interval=0.05, heartbeat_interval=0.3, stop=stop)
        )
    )
    runner.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            doc = read_progress(env.store, f"pg-{env.slot}")
            if doc and parse_lsn(doc["captured_through"]) > start:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no heartbeat moved captured_through")
        with pytest.raises(SourceError, match="another bulkmig capture is already running"):
            capture(env.task, follow=False)
        with pytest.raises(SourceError, match="capture is running"):
            drop_stream(env.task, env.admin)
    finally:
        stop.set()
        runner.join(timeout=15)
    (report,) = result
    assert report.heartbeats >= 1 and report.batches == 0 and env.seqs() == []
    assert env.confirmed() == parse_lsn(env.progress()["captured_through"]) > start
    assert env.progress()["last_batch_seq"] is None
    # cleanup, then a new stream under the same name starts from scratch
    assert drop_stream(env.task, env.admin, delete_from_bucket=True) == {
        "slot": True,
        "publication": True,
        "objects": 2,
    }
    assert read_stream(env.store, f"pg-{env.slot}") is None
    env.start()
    assert stream_status(env.task)["slot_exists"]


def test_follow_reconnects_after_the_source_drops_the_connection(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_mod, "RECONNECT_DELAYS", (0.1,))
    env.start()
    stop = threading.Event()
    result: list[CaptureReport] = []
    runner = threading.Thread(
        target=lambda: result.append(capture(env.task, poll_interval=0.05, heartbeat_interval=60, stop=stop))
    )
    runner.start()

    def wait_for(seqs: list[int]) -> None:
        deadline = time.monotonic() + 15
        while env.seqs() != seqs:
            assert time.monotonic() < deadline, env.seqs()
            time.sleep(0.05)

    try:
        env.txn("INSERT INTO items VALUES (20, 'before', 0)")
        wait_for([1])
        # the capture session is the one holding the advisory lock in this database
        killed = env.admin.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        ).fetchall()
        assert killed == [(True,)]
        env.txn("INSERT INTO items VALUES (21, 'after', 0)")
        wait_for([1, 2])
    finally:
        stop.set()
        runner.join(timeout=15)
    (report,) = result
    assert report.reconnects >= 1 and report.batches == 2 and report.changes == 2
    assert [rows_of(b) for b in env.batches()] == [
        [(1, "items", "I", ["20", "before", "0"], [], None)],
        [(1, "items", "I", ["21", "after", "0"], [], None)],
    ]


def test_refusals_say_what_to_do(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no change stream"):
        capture(env.task, follow=False)
    status = stream_status(env.task)
    assert not status["started"] and not status["slot_exists"]
    env.start()
    with pytest.raises(SourceError, match="already exists in the bucket"):
        start_stream(env.task, env.admin, TABLES, allow_replica_identity_full=True)
    with pytest.raises(SourceError, match="already exists in the bucket"):
        start_stream_now(env.task, env.admin, TABLES, allow_replica_identity_full=True)
    strict = dataclasses.replace(env.task, settings=dataclasses.replace(env.task.settings, wal_retained_warning=1))
    env.writer.execute("CREATE TABLE noise AS SELECT g FROM generate_series(1, 5000) g")
    assert any("holds back" in w for w in stream_status(strict)["warnings"])
    assert not any("holds back" in w for w in stream_status(env.task)["warnings"])  # 1 GiB by default
    env.admin.execute("SELECT pg_drop_replication_slot(%s)", (env.slot,))
    with pytest.raises(SourceError) as info:
        capture(env.task, follow=False)
    assert "is gone" in info.value.message and "a new full load is needed" in info.value.hint
    assert any("is gone" in w for w in stream_status(env.task)["warnings"])


def test_start_now_and_a_slot_moved_behind_captures_back(env: Env) -> None:
    env.txn("INSERT INTO items VALUES (50, 'before', 0)")
    st = start_stream_now(env.task, env.admin, TABLES, allow_replica_identity_full=True)
    assert st.holder is None and st.snapshot_name is None and st.consistent_point == env.confirmed()
    env.txn("INSERT INTO items VALUES (51, 'after', 0)")
    assert capture(env.task, follow=False).changes == 1
    env.txn("INSERT INTO items VALUES (52, 'lost', 0)")
    # something else consumes the slot: capture must refuse rather than carry on past a gap
    env.admin.execute(
        "SELECT count(*) FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
        "'publication_names', 'bulkmig_capture_test')",
        (env.slot,),
    )
    with pytest.raises(SourceError, match="past everything stream"):
        capture(env.task, follow=False)


# ------------------------------------------------------------------------------------------- throughput


def test_throughput_100k_single_row_inserts(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.start()
    for part in range(4):  # 4 transactions of 25,000 one-row inserts
        low = part * 25_000 + 10
        env.txn(
            (
                "INSERT INTO items SELECT g, 'name ' || g, g FROM generate_series(%s::int, %s::int) g",
                (low, low + 24_999),
            )
        )
    report = capture(env.task, follow=False)
    assert (report.changes, report.transactions) == (100_000, 4)
    assert sum(b.rows for b in env.batches()) == 100_000
    with capsys.disabled():
        print(
            f"\ncapture throughput: {report.changes:,} changes in {report.seconds:.2f}s = "
            f"{report.changes_per_second:,.0f} changes/s ({report.batches} batches)"
        )
    assert format_lsn(env.confirmed()) == env.batches()[-1].last_pos
