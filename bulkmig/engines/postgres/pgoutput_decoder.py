"""pgoutput bytes → typed messages (:mod:`.pgoutput`): the protocol's version 1, decoded without I/O.

The traps the decoding gets right (an unchanged TOASTed value, an old key's "not in key", the Relation in force
for each change, the session's encoding) are listed in :mod:`.pgoutput`; every one is unit-tested on hand-built
bytes.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable, Iterator
from typing import Literal

from bulkmig.engines.postgres.pgoutput import (
    INVALID_LSN,
    NOT_IN_KEY,
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    Delete,
    Drift,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    PgoutputError,
    Relation,
    Row,
    Truncate,
    TypeMessage,
    Update,
    Value,
    pg_timestamp,
)

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from
_ROW_KINDS = (73, 85, 68)  # I U D


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
