"""Open a SQLite source file read-only, and tell one state of the file from another.

``mode=ro`` (a URI filename) guarantees bulkmig never writes the source, not even a journal.  A read
transaction (``BEGIN`` plus a first read) pins what the connection sees: in rollback-journal mode its
SHARED lock keeps writers from committing until it ends; in WAL mode it reads one snapshot while writers
go on.  :func:`file_version` names a committed state of the file, so readers opened one after the other
can be checked to have started on the same one.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from urllib.parse import quote

from bulkmig.core.errors import ConnectError

# How long a read waits for a writer's lock before giving up (seconds).
BUSY_TIMEOUT = 30.0


def database_path(endpoint: Any) -> str:
    path = endpoint.database
    if not path:
        raise ConnectError(
            f"{endpoint.role}: {endpoint.redacted()} names no database file",
            "write sqlite:///relative/to/task.db or sqlite:////absolute/path.db",
        )
    return str(path)


def connect(endpoint: Any) -> sqlite3.Connection:
    """A read-only connection to the endpoint's file, usable from any one thread at a time (extraction
    reads on a prefetch thread), in autocommit mode so transactions are exactly the ones we begin."""
    path = database_path(endpoint)
    if not os.path.isfile(path):
        raise ConnectError(
            f"{endpoint.role}: SQLite database {endpoint.redacted()} does not exist",
            "check the path in the task (sqlite:///relative/to/task.db or sqlite:////absolute/path.db)",
        )
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConnectError(
            f"{endpoint.role}: cannot open SQLite database {endpoint.redacted()}: {exc}",
            "check that the file is a SQLite 3 database this user can read (in WAL mode its directory must "
            "allow the -shm file, or copy the file elsewhere)",
        ) from None
    return conn


def begin(conn: sqlite3.Connection) -> None:
    """Start the read transaction and take its snapshot now (SQLite defers it to the first read)."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()


def end(conn: sqlite3.Connection) -> None:
    """End the read transaction (if any) and close."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.DatabaseError:
        pass
    finally:
        conn.close()


def file_version(path: str) -> str:
    """A name for the file's committed state: the header's change counter (bumped by every commit in
    rollback-journal mode), page count and schema cookie, plus the WAL file's size and modification
    time (every commit in WAL mode appends to it).  Equal names: no commit in between."""
    with open(path, "rb") as f:
        header = f.read(100)
    counter = int.from_bytes(header[24:28], "big")
    pages = int.from_bytes(header[28:32], "big")
    cookie = int.from_bytes(header[40:44], "big")
    version = f"{counter}.{pages}.{cookie}"
    wal = path + "-wal"
    if os.path.exists(wal):
        st = os.stat(wal)
        version += f".wal{st.st_size}.{st.st_mtime_ns}"
    return version
