"""The MySQL/MariaDB binlog as change data capture reads it: the server settings and privileges it needs,
binlog positions and the reader.

Positions.  A binlog position is a file and an offset (``binlog.000042:1234``); offsets are 32-bit in the
binlog's event headers, so ``file number << 32 | offset`` orders every position of a server and is written
like a PostgreSQL LSN (``2A/4D2``).  Change batches, ``progress.json`` and replay's applied position use that
form (replay compares positions as numbers); the stream's documents also carry the ``file:offset`` text.  As
with PostgreSQL's commit LSN, a batch row's ``pos`` is where its transaction's commit event STARTS, a batch's
``last_pos`` where its last one ENDS (a transaction boundary: where a restart resumes); a snapshot's position
(FLUSH TABLES WITH READ LOCK) is a boundary too, which makes :func:`in_snapshot` exact.

The reader is python-mysql-replication (``pymysqlreplication``).  What it does that shapes the capture,
from its source (1.0): with a binlog file and position it needs ``is_mariadb=False`` (with True it ignores
them and starts at the first binlog) and ``resume_stream=True``; it names columns only from
``binlog_row_metadata=FULL`` (else ``UNKNOWN_COL<n>``, or a lookup in information_schema at event time,
which sees today's columns, not the event's), so capture keeps its own definition of every table and
tells the decoder names, signedness and labels itself (:func:`.changes.prepare_binlog_columns`); it
reconnects by itself on a lost connection, from the last event it read; it drops event types it does
not know, so those are asked for and refused unless known to be harmless; it cannot read compressed
binlog events (MySQL's transaction payloads, MariaDB's ``log_bin_compress``) and would skip their rows,
so :func:`check_binlog_settings` refuses those settings.

What a statement in the binlog means for the captured tables is :mod:`.statements`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymysqlreplication import BinLogStreamReader

from bulkmig.cdc.position import format_lsn
from bulkmig.config.task import Task
from bulkmig.core.errors import BulkmigError, ConfigError, PrivilegeError, SourceError

# Seconds between the server's heartbeats on an idle binlog connection (and the longest a batch waits).
HEARTBEAT_SECONDS = 1.0

ER_PARSE_ERROR = 1064
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236

# Event types python-mysql-replication does not decode that carry no row changes: anonymous GTID,
# ignorable, transaction context, view change, heartbeat v2.  Any other unknown type stops capture.
HARMLESS_EVENT_TYPES = frozenset({0x1C, 0x22, 0x24, 0x25, 0x29})

logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)  # it warns on every connect otherwise


# =========================================================================================== positions


@dataclass(frozen=True)
class BinlogPos:
    """A binlog position: ``file`` (``binlog.000042``) and the byte ``pos`` in it."""

    file: str
    pos: int

    @property
    def basename(self) -> str:
        return self.file.rsplit(".", 1)[0]

    @property
    def number(self) -> int:
        suffix = self.file.rsplit(".", 1)[-1]
        if not suffix.isdigit():
            raise SourceError(f"binlog file name {self.file!r} has no number", "report this as a bulkmig bug")
        return int(suffix)

    @property
    def ordinal(self) -> int:
        """A number that orders every position of one server: file number << 32 | offset."""
        return self.number << 32 | self.pos

    @property
    def lsn(self) -> str:
        return format_lsn(self.ordinal)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    @classmethod
    def parse(cls, text: str) -> BinlogPos:
        """``binlog.000042:1234`` → BinlogPos."""
        file, sep, pos = text.rpartition(":")
        if not sep or not file or not pos.isdigit():
            raise ConfigError(f"{text!r} is not a binlog position like binlog.000042:1234", "fix the position")
        return cls(file, int(pos))

    @classmethod
    def from_ordinal(cls, basename: str, ordinal: int) -> BinlogPos:
        return cls(f"{basename}.{ordinal >> 32:06d}", ordinal & 0xFFFFFFFF)


def snapshot_position(source_position: Mapping[str, Any] | None) -> BinlogPos | None:
    """The binlog position a part's rows were read at (its sidecar's ``source_position``: ``binlog_file``
    and ``binlog_pos``, see ``source.Reader.source_position``), or None when extract recorded none.

    It is read under FLUSH TABLES WITH READ LOCK, which holds every commit, so it is the END of the commit
    event of the last transaction the snapshot holds, and nothing written after it is in the snapshot.
    """
    if not source_position or not source_position.get("binlog_file") or source_position.get("binlog_pos") is None:
        return None
    return BinlogPos(str(source_position["binlog_file"]), int(source_position["binlog_pos"]))


def in_snapshot(pos: int, snapshot: int) -> bool:
    """Whether a change whose batch ``pos`` is the ordinal ``pos`` is already in the rows of a snapshot read at
    the ordinal ``snapshot`` (:func:`snapshot_position`): exactly when ``pos < snapshot``.

    A batch row's ``pos`` is the START of its transaction's commit event (the XID event, the COMMIT query of
    a non-transactional table, a TRUNCATE's own query event: ``capture._Session.commit``), while the
    snapshot's position is the END of the last commit event in it.  The snapshot's position lies on a
    transaction boundary (commits were held while it was read), so no event straddles it: a transaction
    committed at or before it has its commit event start before it, and one committed after it starts at or
    after it.  Ordinals order positions across files, so rotation between the two changes nothing.
    """
    return pos < snapshot


# ====================================================================================== server facts


def query_rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return [tuple(v.decode() if isinstance(v, bytes | bytearray) else v for v in row) for row in cur.fetchall()]
    finally:
        cur.close()


def error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def server_variables(conn: Any, names: list[str]) -> dict[str, str]:
    """Global variables by lower-case name; a variable the server does not have is simply absent."""
    marks = ", ".join(["%s"] * len(names))
    rows = query_rows(conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})", names)
    return {str(k).lower(): str(v) for k, v in rows}


def binlog_status(conn: Any) -> BinlogPos | None:
    """The position the server writes at now, or None with the binlog off.

    ``SHOW BINARY LOG STATUS`` (MySQL 8.2+; 8.4 removed ``SHOW MASTER STATUS``), else ``SHOW MASTER
    STATUS`` (MariaDB, older MySQL) when the first is a syntax error."""
    try:
        rows = query_rows(conn, "SHOW BINARY LOG STATUS")
    except Exception as exc:
        if error_code(exc) != ER_PARSE_ERROR:
            raise
        rows = query_rows(conn, "SHOW MASTER STATUS")
    return BinlogPos(str(rows[0][0]), int(rows[0][1])) if rows and rows[0][0] else None


def binary_logs(conn: Any) -> list[tuple[str, int]]:
    """(file, size) of every binlog file the server still has, oldest first."""
    return [(str(r[0]), int(r[1])) for r in query_rows(conn, "SHOW BINARY LOGS")]


_GLOBAL_GRANT = re.compile(r"^GRANT\s+(.+?)\s+ON\s+\*\.\*\s+TO\s", re.I | re.S)


def global_privileges(conn: Any) -> set[str]:
    """The privileges ``SHOW GRANTS`` lists ON *.* for the current user, upper-case (``REPLICATION SLAVE``)."""
    held: set[str] = set()
    for (line,) in query_rows(conn, "SHOW GRANTS"):
        m = _GLOBAL_GRANT.match(str(line))
        if m:
            held.update(p.strip().upper() for p in m.group(1).split(",") if p.strip())
    return held


# Each privilege capture needs, and the names that grant it (MariaDB 10.5 renamed REPLICATION CLIENT to
# BINLOG MONITOR and keeps the old name as an alias; SHOW GRANTS prints the new one).
NEEDED_PRIVILEGES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("REPLICATION SLAVE", frozenset({"ALL PRIVILEGES", "ALL", "REPLICATION SLAVE", "REPLICATION REPLICA"}), "read"),
    (
        "REPLICATION CLIENT",
        frozenset({"ALL PRIVILEGES", "ALL", "REPLICATION CLIENT", "BINLOG MONITOR"}),
        "list",
    ),
)

# Setting → (what it must be, the fix).  Checked by check_binlog_settings; absent variables are skipped
# (a server without binlog_format logs rows only).
_SETTING_FIXES = {
    "binlog_format": ("ROW", "SET GLOBAL binlog_format = 'ROW'"),
    "binlog_row_image": ("FULL", "SET GLOBAL binlog_row_image = 'FULL'"),
    "binlog_row_value_options": ("", "SET GLOBAL binlog_row_value_options = ''"),
    "binlog_transaction_compression": ("OFF", "SET GLOBAL binlog_transaction_compression = OFF"),
    "log_bin_compress": ("OFF", "SET GLOBAL log_bin_compress = OFF"),
}


def check_binlog_settings(conn: Any, user: str | None = None) -> dict[str, Any]:
    """Refuse a source that cannot feed change data capture, naming every server setting to change and
    every privilege to grant; returns the facts capture records (server_id, server_uuid, binlog basename).

    Needs: ``log_bin`` on, ``binlog_format=ROW``, ``binlog_row_image=FULL``, no partial JSON and no
    compressed binlog events (python-mysql-replication cannot read them and would skip their rows), a
    non-zero ``server_id``, and REPLICATION SLAVE + REPLICATION CLIENT (MariaDB: BINLOG MONITOR).
    Uses no statement MySQL 8.4 removed.
    """
    names = ["log_bin", "log_bin_basename", "server_id", "server_uuid", "version", *_SETTING_FIXES]
    found = server_variables(conn, names)
    mariadb = "mariadb" in found.get("version", "").lower()
    problems: list[str] = []
    fixes: list[str] = []
    if found.get("log_bin", "OFF").upper() not in ("ON", "1"):
        problems.append("log_bin is OFF (the binary log is not written)")
        fixes.append("start the server with log_bin (log-bin=binlog in [mysqld]; it cannot be turned on while running)")
    for name, (wanted, fix) in _SETTING_FIXES.items():
        value = found.get(name)
        if value is not None and value.upper() != wanted:
            problems.append(f"{name} is {value or 'empty'} (needs {wanted or 'empty'})")
            fixes.append(fix)
    if found.get("server_id", "1") == "0":
        problems.append("server_id is 0 (the server refuses binlog readers)")
        fixes.append("set server_id to a unique non-zero number")
    settings_wrong = bool(problems)
    held = global_privileges(conn)
    missing = [name for name, grants, _ in NEEDED_PRIVILEGES if not held & grants]
    if missing:
        names_sql = ", ".join("BINLOG MONITOR" if m == "REPLICATION CLIENT" and mariadb else m for m in missing)
        who = f"'{user}'@'<host>'" if user else "the migration user"
        problems.append(f"the user lacks {' and '.join(missing)}")
        fixes.append(f"as an admin run: GRANT {names_sql} ON *.* TO {who}")
    if problems:
        message = "the source cannot feed change data capture: " + "; ".join(problems)
        hint = "; ".join(fixes)
        if settings_wrong:
            hint += (
                " — and the same under [mysqld] in the server's option file so a restart keeps it; sessions "
                "already connected keep their old binlog format, so reconnect the applications"
            )
            raise SourceError(message, hint)
        raise PrivilegeError(message, hint)
    return {
        "server_id": int(found.get("server_id") or 0),
        "server_uuid": found.get("server_uuid"),
        "basename": os.path.basename(found.get("log_bin_basename") or "") or None,
        "mariadb": mariadb,
        "version": found.get("version"),
    }


def check_not_purged(conn: Any, start: BinlogPos, what: str) -> None:
    """Refuse a start position whose binlog file the server no longer has (never skip past it)."""
    logs = binary_logs(conn)
    sizes = dict(logs)
    if start.file in sizes:
        if start.pos > sizes[start.file]:
            raise SourceError(
                f"{what} {start} lies past the end of {start.file} ({sizes[start.file]} bytes): the binlog was "
                "reset or replaced",
                "the changes since then cannot be read; a new full load is needed (bulkmig cleanup, then plan)",
            )
        return
    oldest = logs[0][0] if logs else None
    newer = oldest is not None and BinlogPos(oldest, 4).basename == start.basename
    lost = f"everything from {start} up to the start of {oldest}" if newer else f"everything from {start}"
    raise SourceError(
        f"{what} {start} is in binlog file {start.file}, which the source has purged "
        f"(oldest binlog now: {oldest or 'none'}): {lost} is lost to change data capture",
        "a new full load is needed (bulkmig cleanup, then bulkmig plan); keep binlogs longer on the source "
        "(binlog_expire_logs_seconds / expire_logs_days) while a migration runs",
    )


# ========================================================================================== connections


def control_connection(task: Task) -> Any:
    """A mysqlclient connection to the source (autocommit) for checks, positions and the stream's lock."""
    from bulkmig.engines.mysql.connect import connect

    conn = connect(task.source, database="")
    conn.autocommit(True)
    return conn


def stream_connection_settings(task: Task) -> dict[str, Any]:
    """PyMySQL keywords for python-mysql-replication's two connections (it always uses PyMySQL)."""
    ep = task.source
    params = dict(ep.params or {})
    password = ep.password if ep.password is not None else os.environ.get("MYSQL_PWD")
    settings: dict[str, Any] = {
        "host": ep.host or "localhost",
        "port": ep.port or 3306,
        "user": ep.user or "",
        "password": password or "",
        "connect_timeout": int(params.get("connect_timeout", 10)),
        "read_timeout": max(30, int(4 * HEARTBEAT_SECONDS)),
    }
    for key, arg in (("ssl_ca", "ssl_ca"), ("ssl_cert", "ssl_cert"), ("ssl_key", "ssl_key")):
        value = params.get(key) or params.get(key.replace("_", "-"))
        if value:
            settings[arg] = value
    mode = (params.get("ssl_mode") or params.get("ssl-mode") or params.get("sslmode") or "").upper()
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        settings["ssl_verify_cert"] = True
        settings["ssl_verify_identity"] = mode == "VERIFY_IDENTITY"
    elif mode == "DISABLED":
        settings["ssl_disabled"] = True
    return settings


def open_reader(task: Task, server_id: int, start: BinlogPos, schemas: list[str]) -> BinLogStreamReader:
    """A blocking binlog reader from ``start`` (a transaction boundary) that hands over every event of the
    given databases, heartbeats included, so the caller can follow the position through each one."""
    return BinLogStreamReader(
        connection_settings=stream_connection_settings(task),
        server_id=server_id,
        log_file=start.file,
        log_pos=start.pos,
        resume_stream=True,
        blocking=True,
        slave_heartbeat=HEARTBEAT_SECONDS,
        only_schemas=schemas,
        only_events=None,  # every event: the position is followed through each one (FDE, GTID lists, …)
        filter_non_implemented_events=False,  # unknown event types are refused by the caller, not skipped
        freeze_schema=True,  # a table map is read once per table id (ALTER TABLE gives the table a new one)
        is_mariadb=False,  # True would ignore log_file/log_pos and start at the first binlog
        enable_logging=False,
    )


def source_position(task: Task) -> int | None:
    """Where the source writes its binlog now, as an ordinal (what ``replay --until-caught-up`` waits for);
    None when it cannot be read."""
    try:
        conn = control_connection(task)
    except BulkmigError:
        return None
    try:
        now = binlog_status(conn)
    except Exception as exc:
        if error_code(exc) is None:
            raise
        return None
    finally:
        conn.close()
    return now.ordinal if now is not None else None


__all__ = [
    "HEARTBEAT_SECONDS",
    "BinlogPos",
    "binary_logs",
    "binlog_status",
    "check_binlog_settings",
    "check_not_purged",
    "control_connection",
    "error_code",
    "global_privileges",
    "in_snapshot",
    "open_reader",
    "query_rows",
    "snapshot_position",
    "source_position",
]
