"""A consistent snapshot of a MySQL/MariaDB source for N readers, and the binlog position it stands at.

Consistency (DESIGN §5).  MySQL cannot export a snapshot to other sessions the way PostgreSQL does, so the
readers are lined up on one moment instead: a holder connection takes ``FLUSH TABLES WITH READ LOCK`` (every
write waits), each reader opens ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (REPEATABLE READ), the holder
reads the binlog position and GTID set, and ``UNLOCK TABLES`` lets writes go on.  Every reader then sees the
database exactly as of that binlog position, for as long as it keeps its transaction open.  The lock lasts
milliseconds, but FTWRL first waits for running statements to finish, holding up writes meanwhile: it gives
up after :data:`LOCK_WAIT_SECONDS` rather than stall the source.  Tables of non-transactional engines
(MyISAM, Aria, MEMORY) are read after the lock is released and are not part of the snapshot.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import UTC, datetime
from typing import Any

import MySQLdb.converters

from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.model import Table
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql.reader import Reader
from bulkmig.engines.protocols import ClosingSnapshot

# How long FLUSH TABLES WITH READ LOCK may wait for running statements (writes are held up meanwhile).
LOCK_WAIT_SECONDS = 60
EXPORTED_BY = "flush-tables-read-lock"
ER_LOCK_WAIT_TIMEOUT = 1205

# Encoders only (for query parameters): with no decoders mysqlclient returns numbers and dates as the
# server's text (bytes), strings as str (bytes for binary ones), which the reader's Arrow casts parse in C++.
_RAW_CONV = {k: v for k, v in MySQLdb.converters.conversions.items() if not isinstance(k, int)}


def binlog_position(conn: Any, mariadb: bool, version: tuple[int, int, int]) -> dict[str, Any]:
    """The binlog coordinates and GTID set now (call it under FTWRL), with ``lsn`` = ``<file>:<pos>``.

    Binlog off: file, position and lsn are None — fine for a full load, not for CDC.  A user without
    REPLICATION CLIENT (MySQL) / BINLOG MONITOR (MariaDB 10.5+) cannot read it: :class:`SourceError`.
    """
    status_sql = "SHOW BINARY LOG STATUS" if not mariadb and version >= (8, 4, 0) else "SHOW MASTER STATUS"
    try:
        row = my.one_row(conn, status_sql)
    except my.DriverError as exc:
        grant = "GRANT BINLOG MONITOR ON *.*" if mariadb else "GRANT REPLICATION CLIENT ON *.*"
        raise SourceError(
            f"cannot read the binlog position ({status_sql}: {my.error_text(exc)})",
            f"as an admin run: {grant} TO the migration user",
        ) from None
    file, pos = (my.text_of(row[0]), int(row[1])) if row else (None, None)
    gtid_sql = "SELECT @@GLOBAL.gtid_binlog_pos" if mariadb else "SELECT @@GLOBAL.gtid_executed"
    gtid_row = my.one_row(conn, gtid_sql)
    gtid = my.text_of(gtid_row[0]) if gtid_row and gtid_row[0] else None
    server_row = my.one_row(conn, "SELECT @@GLOBAL.server_id")
    return {
        "name": None,
        "lsn": f"{file}:{pos}" if file else None,
        "binlog_file": file,
        "binlog_pos": pos,
        "gtid_set": gtid.strip() if gtid else None,
        "server_id": int(server_row[0]) if server_row else None,
        "exported_by": EXPORTED_BY,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class Snapshot(ClosingSnapshot):
    """``workers`` connections reading one moment of the source, and that moment's binlog position.

    ``raw`` connections return values as the server's text (for :class:`Reader`); ``raw=False`` gives the
    driver's Python values (for reflection).  Use as a context manager, or ``close()``: a reader's
    transaction holds InnoDB undo history on the source until it ends.
    """

    def __init__(self, endpoint: Any, workers: int = 1, *, raw: bool = True, batch_rows: int = 65536) -> None:
        if not endpoint.database:
            raise ConfigError(
                f"{endpoint.role} {endpoint.redacted()} names no database",
                f"write the database to migrate in the URL: mysql://user@host/dbname in `{endpoint.role}:`",
            )
        self.endpoint = endpoint
        self.snapshot_id = f"mysql-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        self.connections: list[Any] = []
        self.position: dict[str, Any] = {}
        holder = my.connect(endpoint)
        try:
            self.version, self.mariadb = my.server_info(holder)
            numbers = my.version_tuple(self.version)
            kwargs: dict[str, Any] = {"conv": _RAW_CONV} if raw else {}
            # Connect every reader before taking the lock: writes wait only for the few statements below.
            for _ in range(max(1, workers)):
                self.connections.append(my.connect(endpoint, streaming=raw, **kwargs))
            my.execute(holder, f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}")
            self._lock(holder)
            try:
                for conn in self.connections:
                    my.execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    my.execute(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                self.position = binlog_position(holder, self.mariadb, numbers)
            finally:
                my.execute(holder, "UNLOCK TABLES")
        except BaseException:
            self.close()
            raise
        finally:
            holder.close()
        self.readers = [
            Reader(c, self.snapshot_id, self.position, batch_rows, float_as_double=_has_cast_double(self))
            for c in self.connections
        ]

    def _lock(self, holder: Any) -> None:
        try:
            my.execute(holder, "FLUSH TABLES WITH READ LOCK")
        except my.DriverError as exc:
            code = my.error_code(exc)
            if code in (my.ER_SPECIFIC_ACCESS_DENIED, my.ER_DBACCESS_DENIED, 1045):
                raise my.privilege_error(
                    self.endpoint,
                    exc,
                    "run FLUSH TABLES WITH READ LOCK, which lines every reader up on one consistent snapshot",
                    "GRANT RELOAD ON *.*",
                ) from None
            if code == ER_LOCK_WAIT_TIMEOUT:
                raise SourceError(
                    f"FLUSH TABLES WITH READ LOCK waited {LOCK_WAIT_SECONDS} s for running statements on "
                    f"{self.endpoint.redacted()} and gave up (writes were held up meanwhile)",
                    "let the long-running query or transaction finish (SHOW PROCESSLIST), then rerun",
                ) from None
            raise SourceError(
                f"FLUSH TABLES WITH READ LOCK failed on {self.endpoint.redacted()}: {my.error_text(exc)}",
                "check the source server's error log",
            ) from None

    @property
    def lsn(self) -> str | None:
        return self.position.get("lsn")

    def check_columns(self, tables: list[Table]) -> None:
        """:func:`check_columns` on a fresh connection, after the snapshot was taken: a schema change after
        that point makes the readers fail with "table definition has changed" rather than read it."""
        conn = my.connect(self.endpoint)
        try:
            check_columns(conn, tables)
        finally:
            conn.close()

    def close(self) -> None:
        for conn in self.connections:
            with contextlib.suppress(my.DriverError):
                conn.close()
        self.connections = []


def open_snapshot(endpoint: Any, workers: int, *, batch_rows: int = 65536) -> Snapshot:
    """``workers`` readers in one consistent snapshot (the engine contract, see ``bulkmig.engines``)."""
    return Snapshot(endpoint, workers, raw=True, batch_rows=batch_rows)


def _has_cast_double(snap: Snapshot) -> bool:
    """CAST(x AS DOUBLE) exists from MariaDB 10.4.? / MySQL 8.0.17; before, ``x + 0E0`` does the same but
    turns -0 into 0."""
    v = my.version_tuple(snap.version)
    return v >= (10, 4, 0) if snap.mariadb else v >= (8, 0, 17)


def check_columns(conn: Any, tables: list[Table]) -> None:
    """Refuse to extract a table whose planned columns changed since the plan (data would land in the wrong
    target columns).  Columns added since are not read, and columns the mappings left out are not checked."""
    for table in tables:
        cur = conn.cursor()
        try:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (table.schema, table.name),
            )
            now = {my.text_of(r[0]): my.text_of(r[1]) for r in cur.fetchall()}
        finally:
            cur.close()
        table.refuse_changed_columns(now, "on the source")
