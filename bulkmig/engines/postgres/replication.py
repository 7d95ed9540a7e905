"""The streaming replication protocol of a logical slot, over psycopg 3's libpq layer (``psycopg.pq``).

Why this and not ``pg_logical_slot_peek_binary_changes``: every peek is a fresh decoding context that
re-reads the WAL from the slot's restart point, and the restart point cannot pass the oldest transaction
still open on the source, so under a long open transaction each poll decodes everything again (quadratic).
A walsender decodes the WAL once and streams it, as pg_recvlogical, Debezium and pgcopydb read it.

psycopg 3 has no replication API, but a ``replication=database`` connection runs ``START_REPLICATION``
(psycopg 3.3 accepts its COPY BOTH result), and libpq's copy functions then carry the protocol in both
directions.  psycopg2's ``ReplicationCursor`` was not used: it moves the flush position it reports to the
server's keepalive position on its own, which would confirm positions that the bucket does not record
(bulkmig confirms nothing that ``progress.json`` does not cover), and it is a second driver with its own libpq.

The protocol (PostgreSQL docs, "Streaming Replication Protocol"), all integers big-endian:

* server → client, inside CopyData: ``w`` XLogData (dataStart, walEnd, sendTime, one pgoutput message;
  for a logical slot dataStart is the message's LSN, the commit's end LSN for a Commit) and ``k`` primary
  keepalive (walEnd: everything before it was decoded and sent; sendTime; reply requested);
* client → server: ``r`` standby status update (write, flush, apply, clock, reply requested).  For a
  logical slot only *flush* matters: the server records it as the slot's ``confirmed_flush_lsn``.

This module is transport only: which position may be confirmed, and when, is capture's business
(``capture.py``); it never sends anything on its own.
"""

from __future__ import annotations

import select
import struct
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq

from bulkmig.core.errors import ConnectError, SourceError
from bulkmig.engines.postgres.connect import APPLICATION_NAME, connection_error
from bulkmig.engines.postgres.slot import IN_USE_GRACE_SECONDS, PROTO_VERSION, replication_connect_error, slot_error
from bulkmig.engines.postgres.sql import CANONICAL_SETTINGS, ident, literal, options_string

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_XLOG_HEADER = struct.Struct(">Q")  # dataStart; walEnd and sendTime follow and are not needed
_KEEPALIVE = struct.Struct(">QqB")  # walEnd, sendTime, reply requested
_STATUS = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, clock, reply requested
_XLOG_DATA = 0x77  # 'w'
_PRIMARY_KEEPALIVE = 0x6B  # 'k'
# Messages taken off the connection per read before the caller gets to run its clock (status, stop).
READ_BATCH = 4096


class Keepalive(NamedTuple):
    """A primary keepalive: the server has decoded and sent everything before ``wal_end``."""

    wal_end: int
    reply: bool


class StreamEnded(ConnectError):
    """The server ended the replication stream without an error (it is shutting down): reconnect."""


def open_replication(endpoint: Any) -> psycopg.Connection:
    """A ``replication=database`` autocommit connection to ``endpoint`` with bulkmig's session settings
    (UTF8 above all: pgoutput converts text to the connection's encoding)."""
    try:
        return psycopg.connect(
            endpoint.libpq_conninfo(),
            autocommit=True,
            replication="database",
            application_name=f"{APPLICATION_NAME} capture",
            options=options_string(CANONICAL_SETTINGS),
        )
    except psycopg.OperationalError as exc:
        text = str(exc).lower()
        if "replication" in text or "wal sender" in text or "max_wal_senders" in text or "walsender" in text:
            raise replication_connect_error(exc) from exc
        raise connection_error(endpoint, exc) from None


def start_replication(conn: psycopg.Connection, slot: str, publication: str) -> ReplicationStream:
    """``START_REPLICATION`` of the pgoutput slot on ``conn`` (a ``replication=database`` autocommit
    connection whose client_encoding is UTF8: pgoutput sends text in the connection's encoding), from the
    slot's confirmed position.

    ``messages 'true'`` brings ``pg_logical_emit_message`` messages (capture's heartbeats); no
    ``streaming``/``two_phase``: every transaction arrives whole, after its commit.  A slot that is
    "in use" for a moment after its previous reader went (a capture killed a second ago) is waited for.
    """
    command = (
        f"START_REPLICATION SLOT {ident(slot)} LOGICAL 0/0 (proto_version {literal(PROTO_VERSION)}, "
        f"publication_names {literal(ident(publication))}, messages 'true')"
    )
    deadline = time.monotonic() + IN_USE_GRACE_SECONDS
    while True:
        try:
            conn.execute(command)
            break
        except pgerrors.ObjectInUse as exc:
            if time.monotonic() >= deadline:
                raise slot_error(slot, exc) from None
            time.sleep(0.1)
        except psycopg.OperationalError:
            raise  # a lost connection: the capture loop reconnects
        except psycopg.Error as exc:
            raise slot_error(slot, exc) from None
    if conn.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        raise SourceError(
            f"START_REPLICATION of slot {slot!r} did not enter streaming mode",
            "the source does not speak the replication protocol here (a pooler?); set settings.capture_read: peek",
        )
    return ReplicationStream(conn, slot)


class ReplicationStream:
    """One ``START_REPLICATION`` in progress: read messages, send status updates, end it."""

    def __init__(self, conn: psycopg.Connection, slot: str) -> None:
        self.conn = conn
        self.slot = slot
        self.pgconn = conn.pgconn
        self.last_heard = time.monotonic()  # the last message from the server, any kind

    @property
    def broken(self) -> bool:
        return self.conn.broken or self.pgconn.status == pq.ConnStatus.BAD

    def read(self, timeout: float) -> list[tuple[int, bytes] | Keepalive]:
        """The messages the server has sent, waiting up to ``timeout`` seconds for the first: XLogData as
        ``(lsn, pgoutput message)`` tuples, keepalives as :class:`Keepalive`.  At most ``READ_BATCH``."""
        out: list[tuple[int, bytes] | Keepalive] = []
        pgconn = self.pgconn
        waited = False
        while len(out) < READ_BATCH:
            nbytes, data = pgconn.get_copy_data(1)
            if nbytes > 0:
                kind = data[0]
                if kind == _XLOG_DATA:
                    out.append((_XLOG_HEADER.unpack_from(data, 1)[0], bytes(data[25:])))
                elif kind == _PRIMARY_KEEPALIVE:
                    wal_end, _, reply = _KEEPALIVE.unpack_from(data, 1)
                    out.append(Keepalive(wal_end, bool(reply)))
                else:
                    raise SourceError(
                        f"the replication stream of slot {self.slot!r} sent an unknown message {bytes(data[:1])!r}",
                        "check the source server version and log",
                    )
                continue
            if nbytes == -1:
                self._ended()
            if out or waited:
                break
            # Nothing buffered: wait for the socket once, then take whatever arrived.
            if timeout > 0:
                ready, _, _ = select.select([pgconn.socket], [], [], timeout)
                if not ready:
                    break
            pgconn.consume_input()
            waited = True
        if out:
            self.last_heard = time.monotonic()
        return out

    def _ended(self) -> None:
        """The server ended the copy: an error it sent (a psycopg error, so the retry table judges it), or
        a clean end (shutdown)."""
        error: psycopg.Error | None = None
        while (result := self.pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR and error is None:
                error = pgerrors.error_from_result(result, encoding=self.conn.info.encoding)
        if error is not None:
            if isinstance(error, psycopg.OperationalError):
                raise error
            raise slot_error(self.slot, error) from None
        raise StreamEnded(
            f"the source ended the replication stream of slot {self.slot!r}",
            "the source is shutting down or restarting; capture reconnects",
        )

    def send_status(self, write: int, flush: int, *, reply: bool = False) -> None:
        """A standby status update: the server may recycle the WAL of everything before ``flush``; ``write``
        (what was received) only feeds ``pg_stat_replication`` and tells the walsender it need not ping."""
        clock = int((time.time() - _PG_EPOCH) * 1_000_000)
        self.pgconn.put_copy_data(_STATUS.pack(b"r", write, flush, flush, clock, 1 if reply else 0))
        self.pgconn.flush()

    def finish(self, timeout: float = 10.0) -> None:
        """End streaming the way pg_recvlogical does (CopyDone, then wait for the server's), so that every
        status update sent before has been processed when this returns (``confirmed_flush_lsn`` shows it).
        Everything is durable by now: a server that does not answer only means it may send again what
        was confirmed last, which the next capture skips.  Closes the connection."""
        pgconn = self.pgconn
        try:
            pgconn.put_copy_end()
            pgconn.flush()
            deadline = time.monotonic() + timeout
            while (nbytes := pgconn.get_copy_data(1)[0]) != -1:  # what came before the server's CopyDone: dropped
                if nbytes == 0 and not self._wait(deadline):
                    return
            while True:
                while pgconn.is_busy():
                    if not self._wait(deadline):
                        return
                if pgconn.get_result() is None:
                    return
        except psycopg.Error:
            pass  # the server went away after the last commit: nothing is lost
        finally:
            self.conn.close()

    def _wait(self, deadline: float) -> bool:
        """Wait for input until ``deadline``; False when none came."""
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.pgconn.socket], [], [], left)[0]:
            return False
        self.pgconn.consume_input()
        return True
