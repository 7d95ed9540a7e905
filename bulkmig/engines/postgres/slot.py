"""Capture-side operations on a PostgreSQL logical replication slot, over plain psycopg connections.

psycopg 3 has no streaming replication, so capture polls with ``pg_logical_slot_peek_binary_changes``,
which returns the same pgoutput bytes a walsender would stream (decode them with ``pgoutput.py``).
The order of operations is the whole correctness story (DESIGN §5, §6):

1. :func:`create_publication` first — pgoutput looks the publication up in the catalog *as of each
   change*, so changes made before it existed cannot be decoded.  It refuses tables whose UPDATE and
   DELETE would start failing on the source once published.
2. :func:`create_slot_with_snapshot` — the slot and a snapshot of exactly its start position, which the
   extraction workers import so the volume and the change stream meet without gap or overlap.
3. Loop: :func:`peek`, make the batch durable, then :func:`advance` to the last whole transaction's
   commit end LSN.  Never ``pg_logical_slot_get_*``: it consumes before you have stored.
4. :func:`emit_heartbeat` when idle, so the slot keeps moving and stops pinning WAL; :func:`slot_lag`
   for ``status``.
5. :func:`drop_slot` and :func:`drop_publication` at cleanup — a forgotten slot fills the source's disk.

Every function that runs SQL wants an autocommit connection: a poll loop on a non-autocommit
connection would sit "idle in transaction" between polls, holding back vacuum on the source.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from typing import NamedTuple, NoReturn, TypedDict

import psycopg
from psycopg import errors as pgerrors

from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.core import log
from bulkmig.core.errors import ConnectError, SourceError
from bulkmig.engines.postgres.privileges import require_cdc
from bulkmig.engines.postgres.sql import ident, qualified

PUBLISH_ALL: tuple[str, ...] = ("insert", "update", "delete", "truncate")
HEARTBEAT_PREFIX = "bulkmig"
PROTO_VERSION = "1"
# Slot names are limited by the server to lower-case letters, digits and underscores, 63 bytes at most.
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")

# A row of a peek: (lsn, xid, one pgoutput message).  xid is 0 for a non-transactional message.
PeekRow = tuple[int, int, bytes]


def _require_autocommit(conn: psycopg.Connection, what: str) -> None:
    if not conn.autocommit:
        raise ValueError(f"{what} needs an autocommit connection (an open transaction would hold back vacuum)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _show(conn: psycopg.Connection, setting: str) -> str:
    row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def check_wal_level(conn: psycopg.Connection) -> None:
    """Refuse, with the exact setting to change, a server that cannot do logical decoding.

    Works on a normal and on a ``replication=database`` connection (both accept ``SHOW``).
    """
    wal_level = _show(conn, "wal_level")
    if wal_level != "logical":
        raise SourceError(
            f"the source has wal_level = {wal_level}; change data capture needs logical decoding",
            "set wal_level = logical (ALTER SYSTEM SET wal_level = 'logical', or in postgresql.conf) and "
            "restart PostgreSQL",
        )
    slots = int(_show(conn, "max_replication_slots"))
    if slots < 1:
        raise SourceError(
            "the source has max_replication_slots = 0; change data capture needs one slot",
            "set max_replication_slots = 10 (ALTER SYSTEM or postgresql.conf) and restart PostgreSQL",
        )


# --------------------------------------------------------------------------------------- publication


def _resolve_tables(conn: psycopg.Connection, tables: Sequence[tuple[str, str]]) -> list[tuple[str, str, int, str]]:
    """(schema, name, oid, relkind) per table, in order; refuses missing tables and non-tables all at once."""
    rows = conn.execute(
        """
        SELECT t.nsp, t.rel, c.oid::bigint, c.relkind::text
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(nsp, rel, ord)
        LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp
        LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
        ORDER BY t.ord
        """,
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    missing = [qualified(s, t) for s, t, oid, _ in rows if oid is None]
    if missing:
        raise SourceError(f"table(s) not found on the source: {', '.join(missing)}", "fix the table mappings")
    wrong = [f"{qualified(s, t)} (relkind {k})" for s, t, _, k in rows if k not in ("r", "p")]
    if wrong:
        raise SourceError(
            f"only tables can be published, not: {', '.join(wrong)}", "leave views and foreign tables out of CDC"
        )
    return [(s, t, int(oid), k) for s, t, oid, k in rows]


def refuse_missing_identity(missing: Sequence[tuple[str, str]]) -> NoReturn:
    """Refuse the tables :func:`find_tables_without_identity` found.  One wording for ``plan`` (which
    refuses here before publishing anything) and ``bulkmig check`` (which refuses without publishing),
    so the check predicts plan's refusal word for word."""
    listed = ", ".join(qualified(s, t) for s, t in missing)
    raise SourceError(
        f"{len(missing)} table(s) have no primary key and no replica identity: {listed}; once published, "
        "UPDATE and DELETE on them would fail on the source",
        "add a primary key or REPLICA IDENTITY USING INDEX <unique index>, or let bulkmig set REPLICA "
        "IDENTITY FULL on them with `settings: {allow_replica_identity_full: true}` in the task",
    )


def find_tables_without_identity(conn: psycopg.Connection, tables: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The tables (for a partitioned table: its leaf partitions) whose UPDATE and DELETE would fail on the
    source once they are in a publication that publishes them: no primary key and no usable replica
    identity (DEFAULT without a primary key, NOTHING, or USING INDEX on an index that is gone).

    ``bulkmig check`` and ``plan`` call this before touching anything (DESIGN §6).
    """
    resolved = _resolve_tables(conn, tables)
    # pg_partition_tree() returns no row at all for a table that is not partitioned, hence the UNION.
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname
        FROM unnest(%s::oid[]) WITH ORDINALITY AS t(oid, ord)
        CROSS JOIN LATERAL (
            SELECT p.relid FROM pg_catalog.pg_partition_tree(t.oid) p WHERE p.isleaf
            UNION ALL SELECT t.oid WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_partition_tree(t.oid))
        ) leaf
        JOIN pg_catalog.pg_class c ON c.oid = leaf.relid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND CASE c.relreplident
            WHEN 'f' THEN false
            WHEN 'n' THEN true
            WHEN 'i' THEN NOT EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
            ELSE NOT EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
        END
        ORDER BY t.ord, n.nspname, c.relname
        """,
        ([oid for _, _, oid, _ in resolved],),
    ).fetchall()
    return [(s, t) for s, t in rows]


def _existing_publication(conn: psycopg.Connection, name: str) -> tuple[set[tuple[str, str]], set[str]] | None:
    row = conn.execute(
        "SELECT oid, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_catalog.pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    actions = {a for a, on in zip(PUBLISH_ALL, row[1:], strict=True) if on}
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_catalog.pg_publication_rel pr
        JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE pr.prpubid = %s
        """,
        (row[0],),
    ).fetchall()
    return {(s, t) for s, t in tables}, actions


def create_publication(
    conn: psycopg.Connection,
    name: str,
    tables: Sequence[tuple[str, str]],
    *,
    publish: Sequence[str] = PUBLISH_ALL,
    allow_replica_identity_full: bool = False,
    via_partition_root: bool = True,
) -> list[tuple[str, str]]:
    """Create publication ``name`` for ``tables`` ((schema, table) pairs); returns the tables it switched
    to REPLICA IDENTITY FULL (empty unless ``allow_replica_identity_full``).

    Checks first and changes nothing when a check fails: a table without a primary key or replica
    identity, once in a publication that publishes UPDATE or DELETE, makes the *application's* UPDATE
    and DELETE on it fail — so such tables are refused, listed all at once, unless the task allows
    REPLICA IDENTITY FULL for them (replay then matches whole rows; the source writes whole old rows to
    WAL for them, and the ALTER takes a brief ACCESS EXCLUSIVE lock).  The ALTERs and the CREATE run in
    one transaction.  An existing publication with the same tables and actions is accepted as is, so a
    rerun of ``plan`` is harmless; one that differs is refused.  ``via_partition_root`` publishes
    changes of partitions under their partitioned table's name, the name the plan knows.
    """
    _require_autocommit(conn, "create_publication")
    if not tables:
        raise ValueError("create_publication needs at least one table")
    actions = [a.strip().lower() for a in publish]
    unknown = [a for a in actions if a not in PUBLISH_ALL]
    if unknown or not actions:
        raise ValueError(f"publish must be a non-empty subset of {PUBLISH_ALL}, not {list(publish)}")
    check_wal_level(conn)
    require_cdc(conn, tables)
    altered: list[tuple[str, str]] = []
    if {"update", "delete"} & set(actions):
        altered = find_tables_without_identity(conn, tables)
        if altered and not allow_replica_identity_full:
            refuse_missing_identity(altered)
    existing = _existing_publication(conn, name)
    if existing is not None:
        want = {(s, t) for s, t in tables}
        if existing != (want, set(actions)):
            raise SourceError(
                f"publication {ident(name)} already exists on the source with other tables or actions",
                "drop it (bulkmig cleanup) or choose another publication name",
            )
        if altered:  # published already, and its tables still lack an identity: fix them now anyway
            with conn.transaction():
                for s, t in altered:
                    conn.execute(f"ALTER TABLE {qualified(s, t)} REPLICA IDENTITY FULL")
        return altered
    table_list = ", ".join(qualified(s, t) for s, t in tables)
    options = f"publish = '{', '.join(actions)}', publish_via_partition_root = {str(via_partition_root).lower()}"
    with conn.transaction():
        for s, t in altered:
            conn.execute(f"ALTER TABLE {qualified(s, t)} REPLICA IDENTITY FULL")
        conn.execute(f"CREATE PUBLICATION {ident(name)} FOR TABLE {table_list} WITH ({options})")
    if altered:
        log.say(
            f"set REPLICA IDENTITY FULL on {len(altered)} table(s) without a primary key, as the task allows: "
            + ", ".join(qualified(s, t) for s, t in altered)
        )
    return altered


def drop_publication(conn: psycopg.Connection, name: str) -> bool:
    """Drop the publication if it exists; True if it did.  The tables' replica identity is left as is."""
    _require_autocommit(conn, "drop_publication")
    exists = conn.execute("SELECT FROM pg_catalog.pg_publication WHERE pubname = %s", (name,)).fetchone()
    conn.execute(f"DROP PUBLICATION IF EXISTS {ident(name)}")
    return exists is not None


# ---------------------------------------------------------------------------------------------- slot


class SlotSnapshot(NamedTuple):
    """What :func:`create_slot_with_snapshot` hands back; unpacks as a 4-tuple.

    ``holder`` MUST STAY OPEN AND SILENT until every extraction worker has run ``SET TRANSACTION SNAPSHOT
    '<snapshot_name>'``: the exported snapshot dies with the next command on that connection or when it
    closes (the slot itself survives).  Close it right after the last worker imported the snapshot.
    """

    holder: psycopg.Connection
    slot_name: str
    consistent_point: int
    snapshot_name: str


def new_slot_name(prefix: str = "bulkmig") -> str:
    """A fresh slot name that a human can still attribute to bulkmig in ``pg_replication_slots``."""
    return f"{prefix}_{secrets.token_hex(6)}"


def replication_connect_error(exc: psycopg.Error) -> ConnectError:
    """One line for a refused replication connection, naming the setting or privilege to change."""
    text = _first_line(exc)
    lowered = text.lower()
    if "pg_hba.conf" in lowered and "replication" in lowered:
        return ConnectError(
            f"the source refuses replication connections ({text})",
            "add a `host replication <user> <client address> scram-sha-256` line to pg_hba.conf and reload",
        )
    if "replication role" in lowered or "permission denied to start walsender" in lowered:
        return ConnectError(
            f"the source user may not open a replication connection ({text})",
            "ALTER ROLE <user> REPLICATION (or use a superuser) on the source",
        )
    if "max_wal_senders" in lowered or "too many" in lowered:
        return ConnectError(
            f"the source has no free WAL sender for the slot connection ({text})",
            "raise max_wal_senders on the source (needs a restart) or stop other replication clients; capture "
            "can also read without a WAL sender (settings.capture_read: peek, slower)",
        )
    return ConnectError(f"cannot open a replication connection to the source ({text})", "check the source endpoint")


def create_slot_with_snapshot(conninfo: str, slot_name: str | None = None) -> SlotSnapshot:
    """Create a permanent pgoutput slot and export a snapshot of exactly its start position.

    Returns ``(holder, slot_name, consistent_point, snapshot_name)``.  !!! ``holder`` is the replication
    connection that exported the snapshot: keep it OPEN and send NOTHING on it until every reader has
    imported the snapshot, then close it.  Any command on it, or closing it, ends the snapshot. !!!

    ``CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT`` must run on a ``replication=database`` connection in
    autocommit mode, through the simple query protocol (psycopg uses it for a statement without
    parameters).  It waits for every transaction running on the source to finish before it returns, so a
    long-running transaction there delays it.  Create the publication before the slot.
    """
    name = slot_name or new_slot_name()
    if not _SLOT_NAME.match(name):
        raise ValueError(f"slot names are 1-63 lower-case letters, digits or underscores, not {name!r}")
    try:
        holder = psycopg.connect(
            conninfo, replication="database", autocommit=True, application_name="bulkmig snapshot holder"
        )
    except psycopg.OperationalError as exc:
        raise replication_connect_error(exc) from None
    try:
        check_wal_level(holder)
        row = holder.execute(f"CREATE_REPLICATION_SLOT {ident(name)} LOGICAL pgoutput EXPORT_SNAPSHOT").fetchone()
    except psycopg.errors.DuplicateObject:
        holder.close()
        raise SourceError(
            f"replication slot {name!r} already exists on the source",
            "drop it (bulkmig cleanup) or choose another slot name",
        ) from None
    except psycopg.Error as exc:
        holder.close()
        text = _first_line(exc)
        hint = "check the source's replication settings"
        if "all replication slots are in use" in text:
            hint = "drop unused slots (SELECT * FROM pg_replication_slots) or raise max_replication_slots"
        raise SourceError(f"cannot create replication slot {name!r} on the source: {text}", hint) from None
    except BaseException:
        holder.close()
        raise
    assert row is not None
    return SlotSnapshot(holder, str(row[0]), parse_lsn(str(row[1])), str(row[2]))


IN_USE_GRACE_SECONDS = 15.0


def slot_error(slot: str, exc: psycopg.Error) -> SourceError:
    """One line for a server error about the slot, with what to do (in use, missing, anything else)."""
    text = _first_line(exc)
    if isinstance(exc, pgerrors.ObjectInUse):
        return SourceError(
            f"replication slot {slot!r} is in use: {text}",
            "another bulkmig capture (or a snapshot holder) is using it; stop that one first",
        )
    if isinstance(exc, pgerrors.UndefinedObject):
        return SourceError(f"{text} on the source", "run `bulkmig plan` (it creates the publication and the slot)")
    return SourceError(f"replication slot {slot!r}: {text}", "check the source server log")


def peek(
    conn: psycopg.Connection, slot: str, publication: str | Sequence[str], upto_changes: int | None = None
) -> list[PeekRow]:
    """The slot's pending changes as ``(lsn, xid, pgoutput message)`` rows, without consuming them.

    Peeking again returns the same rows until :func:`advance` moves the slot.  ``upto_changes`` is only
    checked after each commit, so whole transactions come back even past it (a huge transaction comes
    back entire — bound memory by transactions, not rows).  Only WAL the server has *flushed* is
    decoded: with ``synchronous_commit = off`` a commit shows up a few hundred milliseconds later.
    The bytes are in this session's client_encoding, which must therefore be UTF8.
    """
    _require_autocommit(conn, "peek")
    if conn.info.encoding.replace("-", "").lower() != "utf8":
        raise ValueError(f"peek needs client_encoding UTF8, not {conn.info.encoding}: pgoutput text is converted")
    names = [publication] if isinstance(publication, str) else list(publication)
    # pgoutput splits publication_names like an identifier list: unquoted names would be folded to lower case.
    publication_names = ",".join(ident(n) for n in names)
    # A slot is "in use" for a moment after its previous user (the walsender that exported the snapshot,
    # a capture killed a second ago) went away: wait that moment out before calling it an error.
    deadline = time.monotonic() + IN_USE_GRACE_SECONDS
    while True:
        try:
            rows = conn.execute(
                "SELECT lsn::text, xid::text, data FROM pg_catalog.pg_logical_slot_peek_binary_changes("
                "%s::name, NULL, %s::int, 'proto_version', %s, 'publication_names', %s, 'messages', 'true')",
                (slot, upto_changes, PROTO_VERSION, publication_names),
            ).fetchall()
            break
        except pgerrors.ObjectInUse as exc:
            if time.monotonic() >= deadline:
                raise slot_error(slot, exc) from None
            time.sleep(0.1)
        except psycopg.Error as exc:
            raise slot_error(slot, exc) from None
    return [(parse_lsn(lsn), int(xid), bytes(data)) for lsn, xid, data in rows]


def advance(conn: psycopg.Connection, slot: str, lsn: int) -> int:
    """Confirm everything before ``lsn`` (a transaction's commit end LSN, or a heartbeat's LSN) as durably
    stored, so the source may recycle that WAL; returns the slot's confirmed position afterwards.

    Idempotent: a position at or before the slot's is a no-op (the server itself refuses to move a slot
    backwards).  The server persists the new position only at its next checkpoint, so after a source crash
    the slot may replay changes already stored — replay's applied position makes that harmless.
    """
    _require_autocommit(conn, "advance")
    try:
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            raise SourceError(f"replication slot {slot!r} does not exist on the source", "run `bulkmig plan`")
        if row[0] is not None and lsn <= parse_lsn(row[0]):
            return parse_lsn(row[0])
        moved = conn.execute(
            "SELECT end_lsn::text FROM pg_catalog.pg_replication_slot_advance(%s::name, %s::pg_lsn)",
            (slot, format_lsn(lsn)),
        ).fetchone()
    except psycopg.Error as exc:
        raise slot_error(slot, exc) from None
    assert moved is not None
    return parse_lsn(moved[0])


def emit_heartbeat(conn: psycopg.Connection, content: str = "heartbeat") -> int:
    """Write a non-transactional ``bulkmig`` logical message into the WAL; returns its LSN.

    An idle slot pins WAL forever if nothing in its database is decoded: capture emits this when it has
    seen nothing for a while, peeks it back, and advances to its LSN.  A non-transactional message has no
    commit record, so the server would flush it only when the WAL writer gets to it; assigning a
    transaction id and committing with ``synchronous_commit = on`` flushes it at once, so the very next
    peek sees it (costs one xid per heartbeat).  The message reaches every logical slot of the database.
    """
    _require_autocommit(conn, "emit_heartbeat")
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        row = conn.execute(
            "SELECT pg_catalog.pg_logical_emit_message(false, %s::text, %s::text)::text", (HEARTBEAT_PREFIX, content)
        ).fetchone()
        conn.execute("SELECT pg_catalog.txid_current()")
    assert row is not None
    return parse_lsn(row[0])


class SlotLag(TypedDict):
    """How far behind a slot is; LSNs as ints (``pgoutput.format_lsn`` prints them)."""

    slot_name: str
    active: bool
    active_pid: int | None
    current_lsn: int
    restart_lsn: int | None
    confirmed_flush_lsn: int | None
    retained_bytes: int | None  # WAL the source keeps for this slot: current - restart_lsn
    unconfirmed_bytes: int | None  # WAL written since the last advance: current - confirmed_flush_lsn
    wal_status: str | None  # 'reserved', 'extended', 'unreserved' or 'lost' (lost: the slot is unusable)


def slot_lag(conn: psycopg.Connection, slot: str) -> SlotLag:
    """The slot's position and the WAL it holds back, for ``status`` and the retained-WAL warning."""
    _require_autocommit(conn, "slot_lag")
    row = conn.execute(
        """
        SELECT slot_name::text, active, active_pid, pg_catalog.pg_current_wal_lsn()::text,
               restart_lsn::text, confirmed_flush_lsn::text,
               (pg_catalog.pg_current_wal_lsn() - restart_lsn)::bigint,
               (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, wal_status
        FROM pg_catalog.pg_replication_slots WHERE slot_name = %s
        """,
        (slot,),
    ).fetchone()
    if row is None:
        raise SourceError(f"replication slot {slot!r} does not exist on the source", "run `bulkmig plan`")
    name, active, pid, current, restart, confirmed, retained, unconfirmed, status = row
    return SlotLag(
        slot_name=name,
        active=bool(active),
        active_pid=pid,
        current_lsn=parse_lsn(current),
        restart_lsn=parse_lsn(restart) if restart else None,
        confirmed_flush_lsn=parse_lsn(confirmed) if confirmed else None,
        retained_bytes=retained,
        unconfirmed_bytes=unconfirmed,
        wal_status=status,
    )


def drop_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Drop the slot if it exists; True if it did.  Refuses a slot in use rather than killing its user."""
    _require_autocommit(conn, "drop_slot")
    row = conn.execute(
        "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row is None:
        return False
    if row[0] is not None:
        raise SourceError(
            f"replication slot {slot!r} is in use by server process {row[0]}",
            "stop bulkmig capture (or close the snapshot holder) first",
        )
    try:
        conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s::name)", (slot,))
    except pgerrors.UndefinedObject:
        return False  # dropped meanwhile by someone else
    except psycopg.Error as exc:
        raise slot_error(slot, exc) from None
    return True
