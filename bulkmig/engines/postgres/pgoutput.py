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

This module holds the messages and their values; :mod:`.pgoutput_decoder` turns bytes into them, and
:mod:`.pgoutput_transactions` groups them into whole transactions.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from bulkmig.core.errors import SourceError

# --------------------------------------------------------------------------------------------- LSNs

INVALID_LSN = 0  # PostgreSQL's InvalidXLogRecPtr: "no position"


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


@dataclass(frozen=True, slots=True)
class Drift:
    """A table's definition changed mid-stream (a Relation message differing from the cached one)."""

    before: Relation
    after: Relation
    changes: tuple[SchemaChange, ...]
