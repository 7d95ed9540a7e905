"""pgoutput decoding on hand-built bytes: every message type, and the slots that are not NULL.

The bytes are built here from the protocol documentation (PostgreSQL "Logical Replication Message
Formats", proto_version 1), independently of the decoder, so a misread field fails a test.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.core.errors import SourceError
from bulkmig.engines.postgres.pgoutput import (
    NOT_IN_KEY,
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgoutputError,
    Relation,
    SchemaChange,
    Truncate,
    TypeMessage,
    Update,
    pg_timestamp,
)
from bulkmig.engines.postgres.pgoutput_decoder import Decoder
from bulkmig.engines.postgres.pgoutput_transactions import (
    Transaction,
    TransactionAssembler,
    assemble,
    decode_transactions,
)

# ------------------------------------------------------------------------------------ byte builders

TS = 760_000_000_123_456  # µs after 2000-01-01 UTC
TS_DT = datetime(2024, 1, 31, 7, 6, 40, 123456, tzinfo=UTC)  # Unix 1706684800.123456


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int, ts: int = TS) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int = TS, flags: int = 0) -> bytes:
    return b"C" + struct.pack(">BQQq", flags, commit_lsn, end_lsn, ts)


def relation(rel_id: int, ns: str, name: str, identity: str, cols: list[tuple[int, str, int, int]]) -> bytes:
    body = struct.pack(">I", rel_id) + cstr(ns) + cstr(name) + identity.encode() + struct.pack(">H", len(cols))
    for flags, col, oid, typmod in cols:
        body += struct.pack(">B", flags) + cstr(col) + struct.pack(">Ii", oid, typmod)
    return b"R" + body


def tup(*values: object) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(v, bytes):
            out += b"b" + struct.pack(">i", len(v)) + v
        else:
            raw = str(v).encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def insert(rel_id: int, *values: object) -> bytes:
    return b"I" + struct.pack(">I", rel_id) + b"N" + tup(*values)


def update(rel_id: int, new: tuple[object, ...], old: tuple[object, ...] | None = None, kind: bytes = b"") -> bytes:
    head = b"U" + struct.pack(">I", rel_id)
    if old is not None:
        head += kind + tup(*old)
    return head + b"N" + tup(*new)


def delete(rel_id: int, kind: bytes, *old: object) -> bytes:
    return b"D" + struct.pack(">I", rel_id) + kind + tup(*old)


def truncate(options: int, *rel_ids: int) -> bytes:
    return b"T" + struct.pack(">IB", len(rel_ids), options) + b"".join(struct.pack(">I", r) for r in rel_ids)


def message(transactional: bool, lsn: int, prefix: str, content: bytes) -> bytes:
    return b"M" + struct.pack(">BQ", int(transactional), lsn) + cstr(prefix) + struct.pack(">I", len(content)) + content


# public.items (id integer key, name text, body text); public.bag (a integer, b text) with REPLICA IDENTITY FULL
ITEMS = relation(16384, "public", "items", "d", [(1, "id", 23, -1), (0, "name", 25, -1), (0, "body", 25, -1)])
BAG = relation(16390, "public", "bag", "f", [(1, "a", 23, -1), (1, "b", 1043, 14)])


def decoder_with(*relations: bytes) -> Decoder:
    d = Decoder()
    for r in relations:
        d.decode(r)
    return d


# ---------------------------------------------------------------------------------------------- LSNs


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text
    assert parse_lsn(text.lower()) == value


@pytest.mark.parametrize(
    "bad", ["", "16", "16/", "/1", "x/1", "1/2/3", "100000000/0", "0/-1", "+1/2", "0x1/2", " 1/ 2"]
)
def test_lsn_parse_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        parse_lsn(bad)


def test_lsn_format_refuses_out_of_range() -> None:
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            format_lsn(bad)


# ------------------------------------------------------------------------------------------ messages


def test_begin_and_commit() -> None:
    d = Decoder()
    assert d.decode(begin(0x1925330, 728)) == Begin(final_lsn=0x1925330, commit_ts=TS_DT, xid=728)
    assert d.decode(commit(0x1925330, 0x1925360)) == Commit(0, 0x1925330, 0x1925360, TS_DT)
    assert pg_timestamp(0) == datetime(2000, 1, 1, tzinfo=UTC)
    assert pg_timestamp(-1) == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_relation_and_type() -> None:
    d = Decoder()
    rel = d.decode(BAG)
    assert rel == Relation(16390, "public", "bag", "f", (Column("a", 23, -1, 1), Column("b", 1043, 14, 1)))
    assert isinstance(rel, Relation)
    assert rel.key_columns == ("a", "b")
    assert rel.qualname == "public.bag"
    assert d.relations[16390] is rel
    # pg_catalog relations come with an empty namespace
    cat = d.decode(relation(1, "", "pg_thing", "n", []))
    assert isinstance(cat, Relation) and cat.namespace == "pg_catalog" and cat.columns == ()
    y = d.decode(b"Y" + struct.pack(">I", 70000) + cstr("Odd Schema") + cstr("mood"))
    assert y == TypeMessage(70000, "Odd Schema", "mood")
    assert d.types[70000] == y


def test_insert_kinds_text_null_unchanged_binary() -> None:
    d = decoder_with(ITEMS)
    ins = d.decode(insert(16384, "1", None, "naïve ✓ 'quoted'"), lsn=0xABC)
    assert isinstance(ins, Insert)
    assert ins.new == ("1", None, "naïve ✓ 'quoted'")
    assert ins.lsn == 0xABC
    assert ins.relation.name == "items"
    assert ins.new_row() == {"id": "1", "name": None, "body": "naïve ✓ 'quoted'"}
    # an empty string is a value, not NULL
    assert d.decode(insert(16384, "2", "", "x")).new[1] == ""  # type: ignore[union-attr]
    binary = d.decode(insert(16384, b"\x00\x00\x00\x03", None, b"\xff\x00"))
    assert isinstance(binary, Insert) and binary.new == (b"\x00\x00\x00\x03", None, b"\xff\x00")


def test_fast_and_general_paths_decode_alike() -> None:
    """Row changes take a fast path (ASCII messages sliced once, others decoded per value); whatever it
    returns must be what the general reader returns, and binary values are refused when capture says so."""
    d = decoder_with(ITEMS)
    for values in [("1", "plain ascii", None), ("2", "naïve ✓", "ß"), ("3", "", "x" * 300)]:
        fast = d.decode(insert(16384, *values))
        assert isinstance(fast, Insert) and fast.new == values
        assert d.decode(update(16384, values, old=values, kind=b"O")) == Update(fast.relation, values, values, "O")
    text_only = Decoder(binary=False)
    text_only.decode(ITEMS)
    with pytest.raises(PgoutputError, match="binary value"):
        text_only.decode(insert(16384, "1", b"\x00", "x"))


def test_update_unchanged_toast_is_not_null() -> None:
    d = decoder_with(ITEMS)
    upd = d.decode(update(16384, ("1", None, UNCHANGED_TOAST)))
    assert isinstance(upd, Update)
    assert upd.old is None and upd.old_kind is None
    assert upd.new == ("1", None, UNCHANGED_TOAST)
    assert upd.new[2] is UNCHANGED_TOAST and upd.new[2] is not None
    assert upd.new[1] is None  # 'n' in a new tuple really is NULL
    assert upd.unchanged_toast() == ("body",)
    assert upd.key() == {"id": "1"}  # key unchanged: read from the new tuple
    assert upd.resolved_new() == upd.new  # nothing to fill from without the old row
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"


def test_update_with_old_key_n_means_not_in_key() -> None:
    d = decoder_with(ITEMS)
    upd = d.decode(update(16384, ("10", "a", UNCHANGED_TOAST), old=("1", None, None), kind=b"K"))
    assert isinstance(upd, Update)
    assert upd.old_kind == "K"
    assert upd.old == ("1", NOT_IN_KEY, NOT_IN_KEY)  # not NULL: simply not part of the key
    assert upd.key() == {"id": "1"}
    assert upd.new_row() == {"id": "10", "name": "a", "body": UNCHANGED_TOAST}


def test_update_with_full_old_row() -> None:
    d = decoder_with(BAG)
    upd = d.decode(update(16390, ("1", UNCHANGED_TOAST), old=("1", None), kind=b"O"))
    assert isinstance(upd, Update)
    assert upd.old_kind == "O"
    assert upd.old == ("1", None)  # under REPLICA IDENTITY FULL 'n' is a real NULL
    assert upd.key() == {"a": "1", "b": None}
    assert upd.resolved_new() == ("1", None)  # unchanged TOAST filled from the old row
    assert upd.old_row() == {"a": "1", "b": None}


def test_update_key_refuses_unsent_toasted_key() -> None:
    d = decoder_with(ITEMS)
    upd = d.decode(update(16384, (UNCHANGED_TOAST, "a", "b")))
    assert isinstance(upd, Update)
    with pytest.raises(PgoutputError, match="REPLICA IDENTITY FULL"):
        upd.key()


def test_delete_key_and_full() -> None:
    d = decoder_with(ITEMS, BAG)
    by_key = d.decode(delete(16384, b"K", "7", None, None), lsn=5)
    assert by_key == Delete(d.relations[16384], ("7", NOT_IN_KEY, NOT_IN_KEY), "K", 5)
    assert isinstance(by_key, Delete) and by_key.key() == {"id": "7"}
    full = d.decode(delete(16390, b"O", "3", None))
    assert isinstance(full, Delete)
    assert full.old == ("3", None) and full.key() == {"a": "3", "b": None}


def test_truncate() -> None:
    d = decoder_with(ITEMS, BAG)
    t = d.decode(truncate(3, 16384, 16390), lsn=9)
    assert isinstance(t, Truncate)
    assert [r.name for r in t.relations] == ["items", "bag"]
    assert t.cascade and t.restart_identity and t.lsn == 9
    plain = d.decode(truncate(0, 16390))
    assert isinstance(plain, Truncate) and not plain.cascade and not plain.restart_identity


def test_origin_and_logical_message() -> None:
    d = Decoder()
    assert d.decode(b"O" + struct.pack(">Q", 0x42) + cstr("upstream")) == Origin(0x42, "upstream")
    hb = d.decode(message(False, 0x1925420, "bulkmig", b"heartbeat"))
    assert hb == LogicalMessage(False, 0x1925420, "bulkmig", b"heartbeat")
    tx = d.decode(message(True, 7, "app", b"\x00\xff"))
    assert tx == LogicalMessage(True, 7, "app", b"\x00\xff")


# -------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"Z", "unknown pgoutput message type 'Z'"),
        (b"S\x00\x00\x00\x01\x01", "streaming or two-phase"),
        (begin(1, 2)[:-1], "truncated"),
        (begin(1, 2) + b"\x00", "trailing bytes"),
        (insert(999, "1"), "before its Relation"),
        (insert(16384, "1", "2"), "has 2 columns but its Relation message has 3"),
        (b"I" + struct.pack(">I", 16384) + b"X" + tup("1", "2", "3"), "'X' where 'N'"),
        (b"I" + struct.pack(">I", 16384) + b"N" + struct.pack(">H", 3) + b"t\x00\x00\x00\x01" + b"1" + b"q", "'q'"),
        (update(16384, ("1", "2", "3"), old=("1", None, None), kind=b"Q"), "'Q' where 'N'"),
        (delete(16384, b"N", "1", "2", "3"), "'N' where 'K' or 'O'"),
        (insert(16384, "1", "2", b""), ""),  # an empty binary value is fine
        (b"R" + struct.pack(">I", 1) + b"public", "unterminated string"),
        (b"I" + struct.pack(">I", 16384) + b"N" + struct.pack(">H", 3) + b"t\x00\x00\x00\x02\xff\xfe", "not valid"),
    ],
)
def test_decoder_refuses_what_it_cannot_read(data: bytes, match: str) -> None:
    d = decoder_with(ITEMS)
    if not match:
        d.decode(data)
        return
    with pytest.raises(PgoutputError, match=match) as info:
        d.decode(data)
    assert isinstance(info.value, SourceError)  # capture stops with an operator-facing error


# ------------------------------------------------------------------------------------------- drift


def rel(*cols: Column, name: str = "items", identity: str = "d") -> Relation:
    return Relation(16384, "public", name, identity, cols)


ID, NAME, BODY = Column("id", 23, -1, 1), Column("name", 25), Column("body", 25)


def test_diff_added_dropped_renamed_type() -> None:
    base = rel(ID, NAME, BODY)
    assert rel(ID, NAME, BODY).diff(base) == ()
    added = rel(ID, NAME, BODY, Column("extra", 23)).diff(base)
    assert added == (SchemaChange("column_added", "extra", after=Column("extra", 23)),)
    assert added[0].describe() == "column 'extra' added (integer)"
    dropped = rel(ID, BODY).diff(base)
    assert dropped == (SchemaChange("column_dropped", "name", before=NAME),)
    assert dropped[0].describe() == "column 'name' dropped (was text)"
    # drop a middle column and add one: not a rename
    moved = rel(ID, BODY, Column("title", 25)).diff(base)
    assert [c.kind for c in moved] == ["column_dropped", "column_added"]
    renamed = rel(ID, Column("title", 25), BODY).diff(base)
    assert renamed == (SchemaChange("column_renamed", "title", NAME, Column("title", 25)),)
    assert "renamed to 'title'" in renamed[0].describe()
    retyped = rel(ID, Column("name", 1043, 24), BODY).diff(base)
    assert retyped == (SchemaChange("type_changed", "name", NAME, Column("name", 1043, 24)),)
    assert retyped[0].describe() == "column 'name' changed type from text to character varying (typmod 24)"
    rekeyed = rel(ID, Column("name", 25, -1, 1), BODY).diff(base)
    assert [c.kind for c in rekeyed] == ["key_changed"]
    assert rekeyed[0].describe() == "column 'name' joined the replica identity"


def test_diff_table_level_and_custom_type_names() -> None:
    base = rel(ID, NAME)
    changes = rel(ID, NAME, name="things", identity="f").diff(base)
    assert [c.kind for c in changes] == ["table_renamed", "replica_identity_changed"]
    assert changes[0].describe() == "table renamed: public.items → public.things"
    typed = rel(ID, Column("name", 70000)).diff(base)
    assert (
        typed[0].describe({70000: TypeMessage(70000, "app", "mood")})
        == "column 'name' changed type from text to app.mood"
    )
    assert "type oid 70000" in typed[0].describe()


def test_decoder_records_drift_only_when_definition_changes() -> None:
    d = decoder_with(ITEMS)
    d.decode(ITEMS)  # repeated at every call: not drift
    assert d.drift == []
    old = d.relations[16384]
    before = d.decode(insert(16384, "1", "a", "b"))
    d.decode(
        relation(
            16384,
            "public",
            "items",
            "d",
            [(1, "id", 23, -1), (0, "name", 25, -1), (0, "body", 25, -1), (0, "extra", 23, -1)],
        )
    )
    after = d.decode(insert(16384, "2", "a", "b", "7"))
    assert len(d.drift) == 1
    assert d.drift[0].before == old and d.drift[0].after == d.relations[16384]
    assert [c.kind for c in d.drift[0].changes] == ["column_added"]
    # each change keeps the definition it was made under
    assert isinstance(before, Insert) and before.relation is old
    assert isinstance(after, Insert) and after.new_row()["extra"] == "7"


# ------------------------------------------------------------------------------------ transactions


def rows(*messages: tuple[int, bytes]) -> list[tuple[int, int, bytes]]:
    return [(lsn, 0, data) for lsn, data in messages]


def test_assembler_groups_whole_transactions_and_standalone_messages() -> None:
    stream = rows(
        (0x100, message(False, 0x100, "bulkmig", b"hb")),
        (0x110, begin(0x200, 700)),
        (0x110, b"O" + struct.pack(">Q", 0x42) + cstr("upstream")),
        (0x110, ITEMS),
        (0x110, insert(16384, "1", "a", "b")),
        (0x110, insert(16384, "2", "a", "b")),  # a multi-insert: several changes share one LSN
        (0x150, message(True, 0x150, "app", b"note")),
        (0x180, delete(16384, b"K", "1", None, None)),
        (0x230, commit(0x200, 0x230)),
        (0x240, begin(0x260, 701)),
        (0x240, BAG),
        (0x240, truncate(0, 16390)),
        (0x290, commit(0x260, 0x290)),
    )
    units = decode_transactions(stream)
    assert [type(u).__name__ for u in units] == ["LogicalMessage", "Transaction", "Transaction"]
    hb, t1, t2 = units
    assert hb == LogicalMessage(False, 0x100, "bulkmig", b"hb")
    assert isinstance(t1, Transaction) and isinstance(t2, Transaction)
    assert (t1.xid, t1.commit_lsn, t1.end_lsn, t1.commit_ts) == (700, 0x200, 0x230, TS_DT)
    assert t1.origin == Origin(0x42, "upstream")
    assert [r.name for r in t1.relations] == ["items"]
    assert [(type(c).__name__, getattr(c, "lsn", None)) for c in t1.changes] == [
        ("Insert", 0x110),
        ("Insert", 0x110),
        ("LogicalMessage", 0x150),
        ("Delete", 0x180),
    ]
    assert (t2.xid, t2.end_lsn) == (701, 0x290)
    assert isinstance(t2.changes[0], Truncate)


def test_assembler_refuses_broken_streams() -> None:
    d = decoder_with(ITEMS)
    with pytest.raises(PgoutputError, match="middle of a transaction"):
        list(assemble([d.decode(begin(0x200, 1)), d.decode(insert(16384, "1", "a", "b"))]))
    with pytest.raises(PgoutputError, match="inside xid 1"):
        list(assemble([d.decode(begin(0x200, 1)), d.decode(begin(0x300, 2))]))
    with pytest.raises(PgoutputError, match="does not match Begin"):
        list(assemble([d.decode(begin(0x200, 1)), d.decode(commit(0x201, 0x230))]))
    with pytest.raises(PgoutputError, match="Insert outside a transaction"):
        list(assemble([d.decode(insert(16384, "1", "a", "b"))]))
    a = TransactionAssembler()
    assert a.feed(d.decode(begin(0x200, 1))) is None and a.in_transaction
    done = a.feed(d.decode(commit(0x200, 0x230)))
    assert isinstance(done, Transaction) and done.changes == () and not a.in_transaction
