"""pgoutput messages → whole committed transactions, the unit bulkmig batches and acknowledges (DESIGN §5, §6).

A transaction reaches a batch only whole (its Commit matched to its Begin), and a stand-alone logical message
(a heartbeat) comes out on its own; the position acknowledged is a commit's end LSN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from bulkmig.cdc.position import format_lsn
from bulkmig.engines.postgres.pgoutput import (
    Begin,
    Change,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    PgoutputError,
    Relation,
    TypeMessage,
    Update,
)
from bulkmig.engines.postgres.pgoutput_decoder import Decoder

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
