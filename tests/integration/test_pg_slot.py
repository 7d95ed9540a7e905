"""Publication, slot with exported snapshot, peek / advance / heartbeat, decoded against a real PostgreSQL.

What is checked here is the contract capture builds on: the snapshot shows exactly the state at the
slot's start; the decoded stream is exactly what the source committed (values, operations, order,
positions), with unchanged TOAST values distinct from NULL and schema changes seen mid-stream; a peek
consumes nothing; an advance to a commit end LSN drops exactly the transactions before it.

The writing connections use ``synchronous_commit = on``: peek decodes only flushed WAL, and the test
cluster runs with ``synchronous_commit = off`` for speed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bulkmig.core.errors import ConnectError, SourceError
from bulkmig.demo.servers import PostgresServer
from bulkmig.engines.postgres import slot as pgslot
from bulkmig.engines.postgres.pgoutput import (
    NOT_IN_KEY,
    UNCHANGED_TOAST,
    Delete,
    Insert,
    LogicalMessage,
    Truncate,
    Update,
)
from bulkmig.engines.postgres.pgoutput_decoder import Decoder
from bulkmig.engines.postgres.pgoutput_transactions import Transaction, decode_transactions

PUB = "Pub Mixed"  # needs quoting in publication_names: proves peek quotes it


@dataclass
class Source:
    server: PostgresServer
    db: str
    writer: psycopg.Connection  # the "application": autocommit, synchronous_commit on
    capture: psycopg.Connection  # what capture uses: autocommit, UTF8

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.db)

    def run(self, statements: str, params: Any = None) -> None:
        self.writer.execute(statements, params)


@pytest.fixture
def src(pg_source: PostgresServer, source_db: str) -> Iterator[Source]:
    info = pg_source.conninfo(source_db)
    with (
        psycopg.connect(info, autocommit=True, options="-c synchronous_commit=on") as writer,
        psycopg.connect(info, autocommit=True, client_encoding="UTF8") as capture,
    ):
        yield Source(pg_source, source_db, writer, capture)


def slot_for(s: Source, tables: list[tuple[str, str]], **kwargs: Any) -> str:
    """Publication first, then the slot; the snapshot holder is closed since no reader needs it."""
    pgslot.create_publication(s.capture, PUB, tables, **kwargs)
    holder, name, _, _ = pgslot.create_slot_with_snapshot(s.conninfo)
    holder.close()
    return name


def transactions(s: Source, slot: str, upto: int | None = None) -> list[Transaction | LogicalMessage]:
    return decode_transactions(pgslot.peek(s.capture, slot, PUB, upto))


def summary(change: Any) -> tuple[Any, ...]:
    """(op, table, values…) of a change, for exact comparison."""
    match change:
        case Insert():
            return ("I", change.relation.name, change.new)
        case Update():
            return ("U", change.relation.name, change.old_kind, change.old, change.new)
        case Delete():
            return ("D", change.relation.name, change.old_kind, change.old)
        case Truncate():
            return ("T", tuple(r.name for r in change.relations), change.options)
        case LogicalMessage():
            return ("M", change.prefix, change.content)
    raise AssertionError(change)


# ---------------------------------------------------------------------------------------- snapshot


def test_exported_snapshot_is_the_slot_start(src: Source) -> None:
    src.run(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'before' FROM generate_series(1, 3) g"
    )
    pgslot.create_publication(src.capture, PUB, [("public", "t")])
    holder, slot, consistent, snapshot = pgslot.create_slot_with_snapshot(src.conninfo)
    try:
        assert slot.startswith("bulkmig_") and snapshot and consistent > 0
        # written after the slot: must be in the stream and not in the snapshot
        src.run("INSERT INTO t VALUES (4, 'after')")
        src.run("UPDATE t SET v = 'changed' WHERE id = 1")
        with psycopg.connect(src.conninfo) as reader:
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            reader.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            seen = reader.execute("SELECT id, v FROM t ORDER BY id").fetchall()
            reader.rollback()
        assert seen == [(1, "before"), (2, "before"), (3, "before")]
    finally:
        holder.close()
    with psycopg.connect(src.conninfo) as late, pytest.raises(psycopg.errors.InvalidParameterValue):
        late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        late.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # the holder is gone, so is the snapshot
    units = transactions(src, slot)
    assert [[summary(c) for c in u.changes] for u in units if isinstance(u, Transaction)] == [
        [("I", "t", ("4", "after"))],
        [("U", "t", None, None, ("1", "changed"))],
    ]
    assert all(isinstance(u, Transaction) and u.commit_lsn > consistent for u in units)
    lag = pgslot.slot_lag(src.capture, slot)
    assert lag["confirmed_flush_lsn"] == consistent and lag["active"] is False


# ------------------------------------------------------------------------------------ decoded stream

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, big text, m mood);
CREATE TABLE "Other Things" ("Key" text PRIMARY KEY, "Op" text);
CREATE TABLE bag (a int, b text);
INSERT INTO items VALUES (1, 'pre', 0, NULL, 'ok');
INSERT INTO bag VALUES (1, 'one'), (2, NULL);
"""
TABLES = [("public", "items"), ("public", "Other Things"), ("public", "bag")]


def test_decoded_stream_is_exactly_what_was_committed(src: Source) -> None:
    src.run(SCHEMA)
    assert pgslot.create_publication(src.capture, PUB, TABLES, allow_replica_identity_full=True) == [("public", "bag")]
    holder, slot, _, _ = pgslot.create_slot_with_snapshot(src.conninfo)
    holder.close()
    big = secrets.token_hex(1_500_000)  # 3 MB that does not compress: stored out of line in TOAST

    src.run("INSERT INTO items VALUES (2, 'two', 2, %s, 'sad')", (big,))
    src.run("UPDATE items SET qty = 3 WHERE id = 2")  # big untouched -> 'u'
    src.run("UPDATE items SET id = 20 WHERE id = 1")  # key changed -> old key 'K'
    with src.writer.transaction():  # one transaction over three tables
        src.run("""INSERT INTO "Other Things" VALUES ('k1', 'I')""")
        src.run("UPDATE bag SET b = 'uno' WHERE a = 1")
        src.run("DELETE FROM bag WHERE a = 2")
        src.run("DELETE FROM items WHERE id = 20")
    with src.writer.cursor() as cur, cur.copy("""COPY "Other Things" FROM STDIN""") as copy:
        for row in [("c1", None), ("c2", "U"), ("c3", "ß")]:
            copy.write_row(row)
    src.run("""TRUNCATE "Other Things" RESTART IDENTITY""")
    src.run("ALTER TABLE items ADD COLUMN extra int DEFAULT 7")
    src.run("INSERT INTO items (id, name, extra) VALUES (3, 'three', 8)")
    src.run("UPDATE items SET name = 'TWO' WHERE id = 2")

    decoder = Decoder()
    units = decode_transactions(pgslot.peek(src.capture, slot, PUB), decoder)
    assert all(isinstance(u, Transaction) for u in units)
    txns = [u for u in units if isinstance(u, Transaction)]
    got = [[summary(c) for c in t.changes] for t in txns]
    k = NOT_IN_KEY
    assert got == [
        [("I", "items", ("2", "two", "2", big, "sad"))],
        [("U", "items", None, None, ("2", "two", "3", UNCHANGED_TOAST, "sad"))],
        [("U", "items", "K", ("1", k, k, k, k), ("20", "pre", "0", None, "ok"))],
        [
            ("I", "Other Things", ("k1", "I")),
            ("U", "bag", "O", ("1", "one"), ("1", "uno")),
            ("D", "bag", "O", ("2", None)),
            ("D", "items", "K", ("20", k, k, k, k)),
        ],
        [("I", "Other Things", ("c1", None)), ("I", "Other Things", ("c2", "U")), ("I", "Other Things", ("c3", "ß"))],
        [("T", ("Other Things",), 2)],
        [("I", "items", ("3", "three", None, None, None, "8"))],
        [("U", "items", None, None, ("2", "TWO", "3", UNCHANGED_TOAST, "sad", "7"))],
    ]
    # positions: strictly increasing commits; a transaction's changes lie between its begin and commit
    ends = [t.end_lsn for t in txns]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    for t in txns:
        assert t.commit_lsn < t.end_lsn
        assert all(0 < c.lsn <= t.commit_lsn for c in t.changes if not isinstance(c, LogicalMessage))
    # COPY writes one multi-insert WAL record: three changes, one LSN
    assert len({c.lsn for c in txns[4].changes if isinstance(c, Insert)}) == 1
    assert len({c.lsn for c in txns[3].changes}) == 4
    # the unchanged value and the key identity helpers
    toast_update = txns[1].changes[0]
    assert isinstance(toast_update, Update) and toast_update.unchanged_toast() == ("big",)
    assert toast_update.key() == {"id": "2"}
    rekey = txns[2].changes[0]
    assert isinstance(rekey, Update) and rekey.key() == {"id": "1"} and rekey.new_row()["id"] == "20"
    # replica identities as the Relation messages report them; the enum came with a Type message
    items_v1 = txns[0].changes[0].relation  # type: ignore[union-attr]
    assert items_v1.replica_identity == "d" and items_v1.key_columns == ("id",)
    assert txns[3].changes[1].relation.replica_identity == "f"  # type: ignore[union-attr]
    assert [(t.namespace, t.name) for t in decoder.types.values()] == [("public", "mood")]
    # schema drift: the ALTER shows up as a new Relation, before the first change that uses it
    items_v2 = txns[6].changes[0].relation  # type: ignore[union-attr]
    assert items_v2.column_names == ("id", "name", "qty", "big", "m", "extra")
    assert [r.column_names for r in txns[6].relations] == [items_v2.column_names]
    assert [(d.after.name, [c.describe() for c in d.changes]) for d in decoder.drift] == [
        ("items", ["column 'extra' added (integer)"])
    ]


def test_peek_consumes_nothing_and_advance_drops_exactly_the_acknowledged(src: Source) -> None:
    src.run("CREATE TABLE t (id int PRIMARY KEY)")
    slot = slot_for(src, [("public", "t")])
    for i in range(1, 4):
        src.run("INSERT INTO t VALUES (%s)", (i,))
    first = pgslot.peek(src.capture, slot, PUB)
    assert pgslot.peek(src.capture, slot, PUB) == first
    t1, t2, t3 = (u for u in decode_transactions(first) if isinstance(u, Transaction))

    assert pgslot.advance(src.capture, slot, t1.end_lsn) == t1.end_lsn
    assert pgslot.slot_lag(src.capture, slot)["confirmed_flush_lsn"] == t1.end_lsn
    rest = transactions(src, slot)
    assert [(u.xid, u.end_lsn) for u in rest if isinstance(u, Transaction)] == [
        (t2.xid, t2.end_lsn),
        (t3.xid, t3.end_lsn),
    ]
    # every call is a fresh decoding context: the Relation comes again before the first change
    assert [r.name for r in rest[0].relations] == ["t"]  # type: ignore[union-attr]
    # a restarted capture re-acknowledging an older position is harmless
    assert pgslot.advance(src.capture, slot, t1.commit_lsn) == t1.end_lsn
    assert pgslot.advance(src.capture, slot, t3.end_lsn) == t3.end_lsn
    assert pgslot.peek(src.capture, slot, PUB) == []


def test_a_big_transaction_comes_back_whole_even_with_upto_one(src: Source) -> None:
    src.run("CREATE TABLE t (id int PRIMARY KEY, v text)")
    slot = slot_for(src, [("public", "t")])
    src.run("INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 5000) g")
    src.run("INSERT INTO t VALUES (0, 'small')")
    units = transactions(src, slot, upto=1)
    assert len(units) == 1 and isinstance(units[0], Transaction)
    assert [c.new[0] for c in units[0].changes if isinstance(c, Insert)] == [str(i) for i in range(1, 5001)]
    pgslot.advance(src.capture, slot, units[0].end_lsn)
    rest = transactions(src, slot, upto=1)
    assert [[summary(c) for c in u.changes] for u in rest if isinstance(u, Transaction)] == [
        [("I", "t", ("0", "small"))]
    ]


def test_heartbeat_is_seen_and_moves_an_idle_slot(src: Source) -> None:
    src.run("CREATE TABLE t (id int PRIMARY KEY)")
    slot = slot_for(src, [("public", "t")])
    before = pgslot.slot_lag(src.capture, slot)
    # WAL the slot has no interest in (another table), then a checkpoint so decoding can move restart_lsn
    src.run("CREATE TABLE noise AS SELECT g, repeat('n', 200) AS pad FROM generate_series(1, 20000) g")
    src.run("CHECKPOINT")
    lsn = pgslot.emit_heartbeat(src.capture)
    rows = pgslot.peek(src.capture, slot, PUB)  # no sleep: emit_heartbeat flushed it
    assert [(r_lsn, xid) for r_lsn, xid, _ in rows] == [(lsn, 0)]
    assert decode_transactions(rows) == [LogicalMessage(False, lsn, "bulkmig", b"heartbeat")]
    assert pgslot.advance(src.capture, slot, lsn) == lsn
    after = pgslot.slot_lag(src.capture, slot)
    assert after["confirmed_flush_lsn"] == lsn > (before["confirmed_flush_lsn"] or 0)
    assert after["current_lsn"] >= lsn
    assert after["retained_bytes"] is not None and before["retained_bytes"] is not None
    assert after["restart_lsn"] is not None and after["restart_lsn"] > (before["restart_lsn"] or 0)
    assert after["unconfirmed_bytes"] == after["current_lsn"] - lsn
    assert after["wal_status"] == "reserved"
    assert pgslot.peek(src.capture, slot, PUB) == []


# --------------------------------------------------------------------------------------- publication

IDENTITY_SCHEMA = """
CREATE TABLE keyed (id int PRIMARY KEY, v text);
CREATE TABLE nokey (a int, b text);
CREATE TABLE nothing (id int PRIMARY KEY) ; ALTER TABLE nothing REPLICA IDENTITY NOTHING;
CREATE TABLE uniq (u int NOT NULL, v text); CREATE UNIQUE INDEX uniq_u ON uniq (u);
ALTER TABLE uniq REPLICA IDENTITY USING INDEX uniq_u;
CREATE TABLE parted (d date, v text) PARTITION BY RANGE (d);
CREATE TABLE "parted 2024" PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO nokey VALUES (1, 'x');
"""
ALL = [("public", t) for t in ("keyed", "nokey", "nothing", "uniq", "parted")]


def identities(s: Source) -> dict[str, str]:
    rows = s.capture.execute(
        "SELECT relname::text, relreplident::text FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
    ).fetchall()
    return dict(rows)


def test_publication_refuses_tables_without_identity_unless_allowed(
    src: Source, capsys: pytest.CaptureFixture[str]
) -> None:
    src.run(IDENTITY_SCHEMA)
    untouched = identities(src)
    with pytest.raises(SourceError) as info:
        pgslot.create_publication(src.capture, PUB, ALL)
    assert '"public"."nokey", "public"."nothing", "public"."parted 2024"' in info.value.message
    assert "REPLICA IDENTITY" in info.value.hint
    assert identities(src) == untouched
    assert src.capture.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)

    # inserts only: nothing to check, nothing changed
    assert pgslot.create_publication(src.capture, "inserts", ALL, publish=["insert"]) == []
    assert identities(src) == untouched
    assert pgslot.drop_publication(src.capture, "inserts") is True
    assert pgslot.drop_publication(src.capture, "inserts") is False

    altered = pgslot.create_publication(src.capture, PUB, ALL, allow_replica_identity_full=True)
    assert altered == [("public", "nokey"), ("public", "nothing"), ("public", "parted 2024")]
    assert "REPLICA IDENTITY FULL on 3 table(s)" in capsys.readouterr().err
    assert identities(src) == {**untouched, "nokey": "f", "nothing": "f", "parted 2024": "f"}
    # the application's own UPDATE and DELETE still work on the source
    src.run("UPDATE nokey SET b = 'y'; DELETE FROM nokey")
    # rerun of plan: same publication accepted; a different one refused
    assert pgslot.create_publication(src.capture, PUB, ALL) == []
    with pytest.raises(SourceError, match="already exists"):
        pgslot.create_publication(src.capture, PUB, ALL[:2])
    with pytest.raises(SourceError, match=r'not found on the source: "public"."missing"'):
        pgslot.create_publication(src.capture, "other", [("public", "missing")])


# ------------------------------------------------------------------------------------------- refusals


def test_slot_errors_say_what_to_do(src: Source) -> None:
    src.run("CREATE TABLE t (id int PRIMARY KEY)")
    slot = slot_for(src, [("public", "t")])
    with pytest.raises(SourceError, match="already exists"):
        pgslot.create_slot_with_snapshot(src.conninfo, slot)
    with pytest.raises(SourceError, match='replication slot "nope" does not exist'):
        pgslot.peek(src.capture, "nope", PUB)
    src.run("INSERT INTO t VALUES (1)")
    with pytest.raises(SourceError, match='publication "Pub Other" does not exist'):
        pgslot.peek(src.capture, slot, "Pub Other")
    with psycopg.connect(src.conninfo) as in_transaction, pytest.raises(ValueError, match="autocommit"):
        pgslot.peek(in_transaction, slot, PUB)
    with pytest.raises(ValueError, match="slot names"):
        pgslot.create_slot_with_snapshot(src.conninfo, "Bad-Name")
    bad = make_conninfo(src.conninfo, password="wrong")
    with pytest.raises(ConnectError, match="replication connection"):
        pgslot.create_slot_with_snapshot(bad)
    assert pgslot.drop_slot(src.capture, slot) is True
    assert pgslot.drop_slot(src.capture, slot) is False
    with pytest.raises(SourceError, match="does not exist"):
        pgslot.slot_lag(src.capture, slot)


@pytest.fixture(scope="module")
def pg_replica_level() -> Iterator[PostgresServer]:
    with PostgresServer(name="walreplica", settings={"wal_level": "replica"}) as server:
        yield server


def test_wal_level_replica_is_refused_with_the_setting_to_change(pg_replica_level: PostgresServer) -> None:
    with psycopg.connect(pg_replica_level.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
        with pytest.raises(SourceError) as info:
            pgslot.create_publication(conn, PUB, [("public", "t")])
        assert "wal_level = replica" in info.value.message
        assert "wal_level = logical" in info.value.hint and "restart" in info.value.hint
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    with pytest.raises(SourceError, match="wal_level = replica"):
        pgslot.create_slot_with_snapshot(pg_replica_level.conninfo("postgres"))
