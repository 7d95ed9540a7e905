"""A pure decoder of PostgreSQL's pgoutput logical replication protocol, version 1.

Capture reads the source's change stream through ``pg_logical_slot_peek_binary_changes`` on a plain
connection (see ``slot.py``): every row is ``(lsn, xid, data)`` and ``data`` is one pgoutput message.
This module turns those bytes into typed messages and groups them into whole committed transactions,
because bulkmig batches only whole transactions and acknowledges only up to a commit's end LSN
(DESIGN §5, §6).  It does no I/O, so every trap below is unit-tested on hand-built bytes.

Traps this decoder exists to get right (DESIGN §6, peers.md §5–6):

* TupleData kind ``'u'`` is an unchanged TOASTed value whose content is *not sent*.  It decodes to
  :data:`UNCHANGED_TOAST`, never to ``None``: writing NULL (or a placeholder) there destroys data.
* In an old-key tuple (``'K'``), kind ``'n'`` means "this column is not part of the key", not NULL;
  it decodes to :data:`NOT_IN_KEY`.  Only in a full old tuple (``'O'``, REPLICA IDENTITY FULL) and in
  new tuples does ``'n'`` mean NULL.
* Relation messages are sent again at the start of every SQL call (each call is a fresh decoding
  context) and again whenever the table's definition changed.  Each change therefore carries the exact
  :class:`Relation` that was in force for it, so a tuple is never read with a newer or older column
  list; :meth:`Relation.diff` names what changed between two definitions.
* Text values arrive in the *peeking session's* ``client_encoding`` (the server converts them), so the
  decoder must be told that encoding; bulkmig's connections always use UTF8.
"""

from __future__ import annotations

import codecs
import difflib
import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from bulkmig.cdc.position import format_lsn
from bulkmig.core.errors import SourceError

# --------------------------------------------------------------------------------------------- LSNs

INVALID_LSN = 0  # PostgreSQL's InvalidXLogRecPtr: "no position"

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from
_ROW_KINDS = (73, 85, 68)  # I U D


# PostgreSQL timestamps count microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


# ------------------------------------------------------------------------------------------ values


class Marker(enum.Enum):
    """A tuple slot that holds no value, for a reason that must never be confused with NULL."""

    UNCHANGED_TOAST = "u"  # kind 'u': the value did not change and was not sent — keep the target's
    NOT_IN_KEY = "-"  # kind 'n' inside a 'K' tuple: the column is not part of the replica identity

    def __repr__(self) -> str:
        return self.name


UNCHANGED_TOAST = Marker.UNCHANGED_TOAST
NOT_IN_KEY = Marker.NOT_IN_KEY

# One column of a tuple: None is SQL NULL, str a value in text format, bytes a value in binary format
# (only with the 'binary' option, which bulkmig does not request), or one of the markers above.
Value = str | bytes | None | Marker
Row = tuple[Value, ...]


class PgoutputError(SourceError):
    """The change stream holds something this decoder cannot read safely; capture must stop, not guess."""


# ---------------------------------------------------------------------------------------- messages

ReplicaIdentity = Literal["d", "n", "f", "i"]  # pg_class.relreplident: default, nothing, full, index

# A few built-in type OIDs by name, only to make drift messages readable; everything else shows its OID
# (or the name from a Type message, which pgoutput sends for every non-built-in type).
BUILTIN_TYPE_NAMES: dict[int, str] = {
    16: "boolean",
    17: "bytea",
    18: "char",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    26: "oid",
    114: "json",
    142: "xml",
    700: "real",
    701: "double precision",
    790: "money",
    1042: "character",
    1043: "character varying",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
    1266: "timetz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
}


@dataclass(frozen=True, slots=True)
class Begin:
    """``B``: a transaction starts.  ``final_lsn`` is the LSN of its commit record."""

    final_lsn: int
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """``C``: the transaction committed.  Acknowledge ``end_lsn`` (the end of the commit record), never
    ``commit_lsn``: the server skips a transaction on the next call only when its commit record starts
    before the slot's confirmed position."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """``O``: the transaction was replicated into the source from elsewhere (replication origin)."""

    origin_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a Relation message.  pgoutput leaves out dropped and generated columns."""

    name: str
    type_oid: int
    typmod: int = -1
    flags: int = 0  # 1: part of the replica identity (every column under REPLICA IDENTITY FULL)

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    """``R``: the definition of a published table as it was when the following changes were made."""

    rel_id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]
    # Derived once (capture asks for them per change); not part of equality.
    column_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    key_indexes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "key_indexes", tuple(i for i, c in enumerate(self.columns) if c.is_key))

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(self.column_names[i] for i in self.key_indexes)

    def row(self, values: Row) -> dict[str, Value]:
        """A tuple as ``{column: value}``; refuses a tuple whose width does not match this definition."""
        if len(values) != len(self.columns):
            raise PgoutputError(
                f"a tuple of {self.namespace}.{self.name} has {len(values)} columns, its Relation has "
                f"{len(self.columns)}",
                "the change stream and the table definition disagree; stop capture and report a bug",
            )
        return dict(zip(self.column_names, values, strict=True))

    def diff(self, previous: Relation) -> tuple[SchemaChange, ...]:
        """What changed from ``previous`` to this definition of the same table (empty if nothing did).

        pgoutput sends column names, not attribute numbers, so a rename is recognised by position: an old
        and a new name in the same place.  Dropping the *last* column and adding one is therefore
        indistinguishable from renaming it; both come back as ``column_renamed``, and both must stop replay.
        """
        changes: list[SchemaChange] = []
        if (previous.namespace, previous.name) != (self.namespace, self.name):
            changes.append(
                SchemaChange("table_renamed", None, detail=f"{previous.namespace}.{previous.name} → {self.qualname}")
            )
        if previous.replica_identity != self.replica_identity:
            detail = f"{previous.replica_identity!r} → {self.replica_identity!r}"
            changes.append(SchemaChange("replica_identity_changed", None, detail=detail))
        old, new = previous.columns, self.columns
        matcher = difflib.SequenceMatcher(a=previous.column_names, b=self.column_names, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal" or (op == "replace" and i2 - i1 == j2 - j1):
                for before, after in zip(old[i1:i2], new[j1:j2], strict=True):
                    if before.name != after.name:
                        changes.append(SchemaChange("column_renamed", after.name, before, after))
                    if (before.type_oid, before.typmod) != (after.type_oid, after.typmod):
                        changes.append(SchemaChange("type_changed", after.name, before, after))
                    if before.is_key != after.is_key:
                        changes.append(SchemaChange("key_changed", after.name, before, after))
                continue
            changes += [SchemaChange("column_dropped", c.name, before=c) for c in old[i1:i2]]
            changes += [SchemaChange("column_added", c.name, after=c) for c in new[j1:j2]]
        return tuple(changes)

    @property
    def qualname(self) -> str:
        return f"{self.namespace}.{self.name}"


SchemaChangeKind = Literal[
    "column_added",
    "column_dropped",
    "column_renamed",
    "type_changed",
    "key_changed",
    "table_renamed",
    "replica_identity_changed",
]


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One difference between two Relation messages for the same rel id (see :meth:`Relation.diff`)."""

    kind: SchemaChangeKind
    column: str | None
    before: Column | None = None
    after: Column | None = None
    detail: str = ""

    def describe(self, types: dict[int, TypeMessage] | None = None) -> str:
        """One line for an operator, e.g. ``column "note" added (text)``."""

        def t(c: Column | None) -> str:
            return type_name(c.type_oid, c.typmod, types) if c else "?"

        col = f"column {self.column!r}"
        match self.kind:
            case "column_added":
                return f"{col} added ({t(self.after)})"
            case "column_dropped":
                return f"{col} dropped (was {t(self.before)})"
            case "column_renamed":
                old = self.before.name if self.before else "?"
                return f"column {old!r} renamed to {self.column!r} (or dropped and another added in its place)"
            case "type_changed":
                return f"{col} changed type from {t(self.before)} to {t(self.after)}"
            case "key_changed":
                now = "joined" if self.after and self.after.is_key else "left"
                return f"{col} {now} the replica identity"
            case _:
                return f"{self.kind.replace('_', ' ')}: {self.detail}"


@dataclass(frozen=True, slots=True)
class TypeMessage:
    """``Y``: the name of a non-built-in type (enum, domain, composite…) used by a following Relation."""

    type_oid: int
    namespace: str
    name: str


def type_name(oid: int, typmod: int = -1, types: dict[int, TypeMessage] | None = None) -> str:
    if types and oid in types:
        base = f"{types[oid].namespace}.{types[oid].name}"
    else:
        base = BUILTIN_TYPE_NAMES.get(oid, f"type oid {oid}")
    return f"{base} (typmod {typmod})" if typmod != -1 else base


def _check_not_toast(relation: Relation, key: dict[str, Value], what: str) -> dict[str, Value]:
    missing = [name for name, v in key.items() if v is UNCHANGED_TOAST or v is NOT_IN_KEY]
    if missing:
        raise PgoutputError(
            f"{what} on {relation.qualname} does not identify its row: key column(s) {', '.join(missing)} "
            "were not sent (an unchanged out-of-line TOASTed key value)",
            f"set REPLICA IDENTITY FULL on {relation.qualname} so the whole old row is sent",
        )
    return key


@dataclass(slots=True)  # not frozen: one per change, and a frozen __init__ costs twice as much
class Insert:
    """``I``: a new row.  ``lsn`` is the WAL position of the change (several changes may share one)."""

    relation: Relation
    new: Row
    lsn: int = INVALID_LSN

    def new_row(self) -> dict[str, Value]:
        return self.relation.row(self.new)


@dataclass(slots=True)  # not frozen: one per change, and a frozen __init__ costs twice as much
class Update:
    """``U``: a changed row.

    ``old_kind`` says what came before the new tuple: ``'K'`` (the key columns, present only when the
    update changed the replica identity), ``'O'`` (the whole old row, REPLICA IDENTITY FULL) or None
    (the key did not change: read it from ``new``).
    """

    relation: Relation
    new: Row
    old: Row | None = None
    old_kind: Literal["K", "O"] | None = None
    lsn: int = INVALID_LSN

    def new_row(self) -> dict[str, Value]:
        return self.relation.row(self.new)

    def old_row(self) -> dict[str, Value] | None:
        return None if self.old is None else self.relation.row(self.old)

    def unchanged_toast(self) -> tuple[str, ...]:
        """Columns whose new value was not sent because it did not change — keep the target's value."""
        return tuple(n for n, v in zip(self.relation.column_names, self.new, strict=True) if v is UNCHANGED_TOAST)

    def key(self) -> dict[str, Value]:
        """The identity of the row *before* the update: the old key, the whole old row under REPLICA
        IDENTITY FULL, or the key columns of the new tuple when the key did not change."""
        if self.old_kind == "O":
            return _check_not_toast(self.relation, self.relation.row(self.old or ()), "an UPDATE")
        names = self.relation.key_columns
        if not names:
            raise PgoutputError(
                f"an UPDATE on {self.relation.qualname} came without any replica identity column",
                f"give {self.relation.qualname} a primary key or REPLICA IDENTITY FULL",
            )
        source = self.relation.row(self.old if self.old_kind == "K" and self.old is not None else self.new)
        return _check_not_toast(self.relation, {n: source[n] for n in names}, "an UPDATE")

    def check_key(self) -> None:
        """What :meth:`key` checks (the row can be identified), without building the key: capture's hot path."""
        rel = self.relation
        if self.old_kind == "O":
            source = self.old or ()
            if len(source) != len(rel.columns) or UNCHANGED_TOAST in source or NOT_IN_KEY in source:
                self.key()  # raises the precise error
            return
        source = self.old if self.old_kind == "K" and self.old is not None else self.new
        if not rel.key_indexes or len(source) != len(rel.columns):
            self.key()
            return
        for i in rel.key_indexes:
            v = source[i]
            if v is UNCHANGED_TOAST or v is NOT_IN_KEY:
                self.key()

    def resolved_new(self) -> Row:
        """The new tuple with unchanged TOAST values filled from the old row, when the old row was sent
        (REPLICA IDENTITY FULL); otherwise the new tuple as is, markers included."""
        if self.old_kind != "O" or self.old is None:
            return self.new
        return tuple(o if n is UNCHANGED_TOAST else n for n, o in zip(self.new, self.old, strict=True))


@dataclass(slots=True)  # not frozen: one per change, and a frozen __init__ costs twice as much
class Delete:
    """``D``: a removed row, identified by its key (``'K'``) or the whole old row (``'O'``)."""

    relation: Relation
    old: Row
    old_kind: Literal["K", "O"]
    lsn: int = INVALID_LSN

    def old_row(self) -> dict[str, Value]:
        return self.relation.row(self.old)

    def check_key(self) -> None:
        """What :meth:`key` checks, without building the key: capture's hot path."""
        rel, old = self.relation, self.old
        if len(old) != len(rel.columns):
            self.key()
            return
        for i in rel.key_indexes if self.old_kind == "K" else range(len(old)):
            v = old[i]
            if v is UNCHANGED_TOAST or v is NOT_IN_KEY:
                self.key()

    def key(self) -> dict[str, Value]:
        row = self.relation.row(self.old)
        if self.old_kind == "K":
            row = {n: row[n] for n in self.relation.key_columns}
        return _check_not_toast(self.relation, row, "a DELETE")


@dataclass(frozen=True, slots=True)
class Truncate:
    """``T``: one TRUNCATE statement over one or more published tables."""

    relations: tuple[Relation, ...]
    options: int = 0
    lsn: int = INVALID_LSN

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """``M``: a ``pg_logical_emit_message`` payload (bulkmig's heartbeats use prefix ``bulkmig``).

    A non-transactional message arrives on its own, outside any Begin/Commit, as soon as it is decoded;
    acknowledging its ``lsn`` (the end of its WAL record) is what lets an idle slot move.
    """

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Change = Insert | Update | Delete | Truncate | LogicalMessage
Message = Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete | Truncate | LogicalMessage


# ----------------------------------------------------------------------------------------- decoding


class _Reader:
    """Big-endian fields off one message; any overrun is a PgoutputError, never an IndexError."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.data = data
        self.pos = 0
        self.encoding = encoding

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PgoutputError(
                f"pgoutput message {self.data[:1]!r} is truncated (wanted {n} bytes at offset {self.pos} of "
                f"{len(self.data)})",
                "the slot is not read with proto_version 1, or the message is damaged",
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(">" + fmt, self.take(struct.calcsize(fmt)))
        return int(value)

    def byte(self) -> str:
        return chr(self.take(1)[0])

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise PgoutputError(
                f"pgoutput text is not valid {self.encoding}: {exc}",
                "peek with client_encoding UTF8 (bulkmig's connections set it)",
            ) from None

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgoutputError(f"pgoutput message {self.data[:1]!r} has an unterminated string", "")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        return self.text(raw)

    def done(self) -> None:
        if self.pos != len(self.data):
            raise PgoutputError(
                f"pgoutput message {self.data[:1]!r} has {len(self.data) - self.pos} unexpected trailing bytes",
                "the slot must be read with proto_version 1",
            )


class Decoder:
    """Decodes pgoutput messages, remembering each table's current Relation and non-built-in types.

    The relation cache is replaced by every Relation message.  When the new definition differs from the
    cached one, a :class:`Drift` is appended to :attr:`drift` (identical repeats, which pgoutput sends at
    the start of every call, record nothing).  Reuse one decoder only across *consecutive* reads of the
    stream: re-peeking a window that was already decoded replays older Relation messages, which would
    look like drift backwards.  A change always carries the Relation in force for it, so a fresh decoder
    per peek is always correct; compare ``change.relation`` with the schema you stored to detect drift
    across calls and restarts.
    """

    def __init__(self, encoding: str = "utf-8", *, binary: bool = True) -> None:
        """``binary=False`` refuses binary values (kind ``'b'``): capture never asks for them and stores text."""
        self.encoding = encoding
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        self.binary = binary
        self.relations: dict[int, Relation] = {}
        self.types: dict[int, TypeMessage] = {}
        self.drift: list[Drift] = []

    def decode_rows(self, rows: Iterable[tuple[int, int, bytes]]) -> Iterator[Message]:
        """Decode the ``(lsn, xid, data)`` rows of a peek, in order."""
        for lsn, _xid, data in rows:
            yield self.decode(data, lsn)

    def decode(self, data: bytes, lsn: int = INVALID_LSN) -> Message:
        """One message; ``lsn`` is the row's position, recorded on changes (the message does not carry it)."""
        if data.__class__ is not bytes:
            data = bytes(data)
        if data and data[0] in _ROW_KINDS:
            try:
                return self._row_change(data, lsn)
            except (struct.error, IndexError, UnicodeDecodeError):
                pass  # damaged (or binary): the general path below says precisely what
        r = _Reader(data, self.encoding)
        kind = r.byte()
        message: Message
        match kind:
            case "B":
                message = Begin(r.unpack("Q"), pg_timestamp(r.unpack("q")), r.unpack("I"))
            case "C":
                message = Commit(r.unpack("B"), r.unpack("Q"), r.unpack("Q"), pg_timestamp(r.unpack("q")))
            case "O":
                message = Origin(r.unpack("Q"), r.string())
            case "R":
                message = self._relation(r)
            case "Y":
                message = TypeMessage(r.unpack("I"), r.string(), r.string())
                self.types[message.type_oid] = message
            case "I":
                rel = self._rel(r.unpack("I"), kind)
                self._expect(r, "N", kind)
                message = Insert(rel, self._tuple(r, rel, key=False), lsn)
            case "U":
                rel = self._rel(r.unpack("I"), kind)
                marker = r.byte()
                old: Row | None = None
                old_kind: Literal["K", "O"] | None = None
                if marker in ("K", "O"):
                    old_kind = "K" if marker == "K" else "O"
                    old = self._tuple(r, rel, key=marker == "K")
                    marker = r.byte()
                if marker != "N":
                    raise PgoutputError(f"pgoutput Update has {marker!r} where 'N' (new tuple) belongs", "")
                message = Update(rel, self._tuple(r, rel, key=False), old, old_kind, lsn)
            case "D":
                rel = self._rel(r.unpack("I"), kind)
                marker = r.byte()
                if marker not in ("K", "O"):
                    raise PgoutputError(f"pgoutput Delete has {marker!r} where 'K' or 'O' belongs", "")
                message = Delete(rel, self._tuple(r, rel, key=marker == "K"), "K" if marker == "K" else "O", lsn)
            case "T":
                nrels = r.unpack("I")
                options = r.unpack("B")
                rels = tuple(self._rel(r.unpack("I"), kind) for _ in range(nrels))
                message = Truncate(rels, options, lsn)
            case "M":
                flags = r.unpack("B")
                msg_lsn = r.unpack("Q")
                prefix = r.string()
                content = r.take(r.unpack("I"))
                message = LogicalMessage(bool(flags & 1), msg_lsn, prefix, content)
            case "S" | "E" | "c" | "A" | "b" | "P" | "K" | "r" | "p":
                raise PgoutputError(
                    f"pgoutput message {kind!r} belongs to streaming or two-phase decoding",
                    "read the slot with proto_version 1 and without 'streaming' or 'two_phase'",
                )
            case _:
                raise PgoutputError(f"unknown pgoutput message type {kind!r}", "read the slot with proto_version 1")
        r.done()
        return message

    def _row_change(self, data: bytes, lsn: int) -> Insert | Update | Delete:
        """Insert, Update and Delete without a :class:`_Reader`: capture decodes one per change, and at
        100k changes/s the per-field method calls were most of the decoder's time.  Errors are the general
        path's; an overrun raises struct.error/IndexError, which :meth:`decode` hands to that path."""
        kind = data[0]
        rel = self.relations.get(_U32(data, 1)[0])
        if rel is None:
            raise struct.error  # the general path names the missing Relation
        marker = data[5]
        pos = 6
        # An all-ASCII message (the common case) is decoded once and sliced: byte offsets are character
        # offsets there, and UTF-8 decodes ASCII to itself.
        text = data.decode("ascii") if self._utf8 and data.isascii() else None
        message: Insert | Update | Delete
        if kind == 73:  # I
            if marker != 78:  # N
                raise struct.error
            new, pos = self._fast_tuple(data, text, pos, rel, False)
            message = Insert(rel, new, lsn)
        elif kind == 85:  # U
            old: Row | None = None
            old_kind: Literal["K", "O"] | None = None
            if marker == 75 or marker == 79:  # K, O
                old_kind = "K" if marker == 75 else "O"
                old, pos = self._fast_tuple(data, text, pos, rel, marker == 75)
                marker = data[pos]
                pos += 1
            if marker != 78:
                raise struct.error
            new, pos = self._fast_tuple(data, text, pos, rel, False)
            message = Update(rel, new, old, old_kind, lsn)
        else:  # D
            if marker != 75 and marker != 79:
                raise struct.error
            old, pos = self._fast_tuple(data, text, pos, rel, marker == 75)
            message = Delete(rel, old, "K" if marker == 75 else "O", lsn)
        if pos != len(data):
            raise struct.error  # trailing bytes, or a value cut short
        return message

    def _fast_tuple(self, data: bytes, text: str | None, pos: int, rel: Relation, key: bool) -> tuple[Row, int]:
        ncols = len(rel.columns)
        if _U16(data, pos)[0] != ncols:
            raise struct.error
        pos += 2
        encoding = self.encoding
        values: list[Value] = []
        append = values.append
        for _ in range(ncols):
            kind = data[pos]
            if kind == 116:  # t
                n = _I32(data, pos + 1)[0]
                if n < 0:
                    raise struct.error
                start = pos + 5
                pos = start + n
                # a short slice shows as pos > len(data) at the end
                append(text[start:pos] if text is not None else data[start:pos].decode(encoding))
            elif kind == 110:  # n
                append(NOT_IN_KEY if key else None)
                pos += 1
            elif kind == 117:  # u
                append(UNCHANGED_TOAST)
                pos += 1
            else:
                raise struct.error  # binary values and unknown kinds: the general path
        return tuple(values), pos

    def _relation(self, r: _Reader) -> Relation:
        rel_id, namespace, name = r.unpack("I"), r.string(), r.string()
        identity = r.byte()
        columns = []
        for _ in range(r.unpack("H")):
            flags = r.unpack("B")
            columns.append(Column(name=r.string(), type_oid=r.unpack("I"), typmod=r.unpack("i"), flags=flags))
        # pgoutput sends "" as the namespace of pg_catalog relations.
        rel = Relation(rel_id, namespace or "pg_catalog", name, identity, tuple(columns))
        previous = self.relations.get(rel_id)
        if previous is not None and previous != rel:
            self.drift.append(Drift(previous, rel, rel.diff(previous)))
        self.relations[rel_id] = rel
        return rel

    def _rel(self, rel_id: int, kind: str) -> Relation:
        try:
            return self.relations[rel_id]
        except KeyError:
            raise PgoutputError(
                f"pgoutput {kind!r} message for relation id {rel_id} arrived before its Relation message",
                "decode each peek from its first row; never start in the middle of a result",
            ) from None

    @staticmethod
    def _expect(r: _Reader, want: str, kind: str) -> None:
        got = r.byte()
        if got != want:
            raise PgoutputError(f"pgoutput {kind!r} message has {got!r} where {want!r} belongs", "")

    def _tuple(self, r: _Reader, rel: Relation, *, key: bool) -> Row:
        ncols = r.unpack("H")
        if ncols != len(rel.columns):
            raise PgoutputError(
                f"a tuple of {rel.qualname} has {ncols} columns but its Relation message has {len(rel.columns)}",
                "the change stream and its schema disagree; stop capture and report a bug",
            )
        values: list[Value] = []
        for _ in range(ncols):
            match r.byte():
                case "n":
                    values.append(NOT_IN_KEY if key else None)
                case "u":
                    values.append(UNCHANGED_TOAST)
                case "t":
                    values.append(r.text(r.take(r.unpack("i"))))
                case "b":
                    if not self.binary:
                        raise PgoutputError(
                            f"a binary value in a tuple of {rel.qualname}", "read the slot without the 'binary' option"
                        )
                    values.append(r.take(r.unpack("i")))
                case other:
                    raise PgoutputError(f"unknown TupleData kind {other!r} in a tuple of {rel.qualname}", "")
        return tuple(values)


@dataclass(frozen=True, slots=True)
class Drift:
    """A table's definition changed mid-stream (a Relation message differing from the cached one)."""

    before: Relation
    after: Relation
    changes: tuple[SchemaChange, ...]


# ------------------------------------------------------------------------------------- transactions


@dataclass(frozen=True, slots=True)
class Transaction:
    """One whole committed source transaction: the unit bulkmig batches, replays and acknowledges."""

    begin: Begin
    commit: Commit
    changes: tuple[Change, ...]
    relations: tuple[Relation, ...] = ()  # Relation messages sent inside it, in order
    origin: Origin | None = None

    @property
    def xid(self) -> int:
        return self.begin.xid

    @property
    def commit_lsn(self) -> int:
        return self.commit.commit_lsn

    @property
    def end_lsn(self) -> int:
        """The position to acknowledge once this transaction is durable (``advance`` to it)."""
        return self.commit.end_lsn

    @property
    def commit_ts(self) -> datetime:
        return self.commit.commit_ts


class TransactionAssembler:
    """Groups a message stream into :class:`Transaction` objects and stand-alone (non-transactional)
    :class:`LogicalMessage` objects.  Feed it messages in order; it returns each whole unit when complete,
    so a half transaction can never reach a batch."""

    def __init__(self) -> None:
        self._begin: Begin | None = None
        self._changes: list[Change] = []
        self._relations: list[Relation] = []
        self._origin: Origin | None = None

    @property
    def in_transaction(self) -> bool:
        return self._begin is not None

    def feed(self, message: Message) -> Transaction | LogicalMessage | None:
        cls = message.__class__
        if (cls is Insert or cls is Update or cls is Delete) and self._begin is not None:
            self._changes.append(message)  # the common case first
            return None
        if isinstance(message, Begin):
            if self._begin is not None:
                raise PgoutputError(f"pgoutput Begin of xid {message.xid} inside xid {self._begin.xid}", "")
            self._begin = message
            return None
        if self._begin is None:
            if isinstance(message, LogicalMessage) and not message.transactional:
                return message
            if isinstance(message, Relation | TypeMessage):
                return None  # schema messages may precede a Begin on other paths; the decoder keeps them
            raise PgoutputError(f"pgoutput {type(message).__name__} outside a transaction", "")
        match message:
            case Commit():
                if message.commit_lsn != self._begin.final_lsn:
                    raise PgoutputError(
                        f"Commit at {format_lsn(message.commit_lsn)} does not match Begin's final LSN "
                        f"{format_lsn(self._begin.final_lsn)}",
                        "",
                    )
                txn = Transaction(self._begin, message, tuple(self._changes), tuple(self._relations), self._origin)
                self._begin, self._changes, self._relations, self._origin = None, [], [], None
                return txn
            case Relation():
                self._relations.append(message)
            case TypeMessage():
                pass
            case Origin():
                self._origin = message
            case _:
                self._changes.append(message)
        return None


def assemble(messages: Iterable[Message]) -> Iterator[Transaction | LogicalMessage]:
    """Whole transactions and stand-alone messages from a complete message stream (one peek's result).

    Raises PgoutputError if the stream ends inside a transaction: through the SQL interface with protocol
    version 1 a transaction is always returned whole, so a cut one means something is wrong.
    """
    assembler = TransactionAssembler()
    for message in messages:
        unit = assembler.feed(message)
        if unit is not None:
            yield unit
    if assembler.in_transaction:
        raise PgoutputError("the change stream ended in the middle of a transaction", "peek again; never advance")


def decode_transactions(
    rows: Iterable[tuple[int, int, bytes]], decoder: Decoder | None = None
) -> list[Transaction | LogicalMessage]:
    """The rows of one peek as whole transactions and stand-alone messages, in stream order."""
    return list(assemble((decoder or Decoder()).decode_rows(rows)))
