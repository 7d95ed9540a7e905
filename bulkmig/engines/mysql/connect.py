"""Opening MySQL/MariaDB connections (mysqlclient) with fixed session settings and errors an operator can act on.

mysqlclient (``MySQLdb``, the C client) is the driver.  ``python -m bench.mysql_drivers`` (500k mixed rows
→ Arrow batches of the plan's types, MariaDB 10.11, 2 busy cores) measured: PyMySQL 38–115k rows/s (119–156k
reading the server's text and casting in Arrow), mysqlclient 146–267k (208–494k as text), the bulkmig reader
(mysqlclient text + Arrow casts) 330–575k, ConnectorX 930–960k.  ConnectorX is ~2× faster still but opens its
own connections, so its readers cannot join the ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` each worker
opens under one ``FLUSH TABLES WITH READ LOCK`` (DESIGN §5): the parts would not be one moment of the source.

Every connection gets the same session: utf8mb4 (the driver hands over UTF-8 whatever a column's charset),
``time_zone '+00:00'`` so TIMESTAMP values read as UTC, a fixed ``sql_mode`` (no ANSI_QUOTES, no
NO_BACKSLASH_ESCAPES: identifiers are quoted with backticks and the driver escapes with backslashes), and
autocommit off.  The password comes from the task (``BULKMIG_<ROLE>_PASSWORD`` or a password file) or else
``MYSQL_PWD``; every message is built from the redacted URL, so a password never reaches a log line.

TLS and timeouts pass through from the URL's query parameters: ``ssl_mode`` (also ``ssl-mode`` /
``sslmode``: DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY), ``ssl_ca``, ``ssl_capath``,
``ssl_cert``, ``ssl_key``, ``ssl_cipher``, ``connect_timeout``, ``read_timeout``, ``write_timeout`` (seconds).
"""

from __future__ import annotations

import os
from typing import Any

import MySQLdb
import MySQLdb.cursors

from bulkmig.core.errors import ConfigError, ConnectError, SourceError

# The driver's exception root, for callers that catch query errors without importing the driver.
DriverError = MySQLdb.Error
OperationalError = MySQLdb.OperationalError

SQL_MODE = "NO_ENGINE_SUBSTITUTION"
TIME_ZONE = "+00:00"
CONNECT_TIMEOUT = 10  # seconds to reach the server and log in
READ_TIMEOUT = 3600  # seconds one read may wait for the server (a big sort before the first row)
WRITE_TIMEOUT = 600
# Server side: how long the server waits for a slow client reading a streamed result (default 60 s), so a
# worker busy writing Parquet does not get "Lost connection" mid-table.
NET_TIMEOUT = 3600

SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
_SSL_FILES = {"ssl_ca": "ca", "ssl_capath": "capath", "ssl_cert": "cert", "ssl_key": "key", "ssl_cipher": "cipher"}
_SSL_MODE_KEYS = ("ssl_mode", "ssl-mode", "sslmode")
_TIMEOUTS = ("connect_timeout", "read_timeout", "write_timeout")
KNOWN_PARAMS = (*_SSL_FILES, *(k.replace("_", "-") for k in _SSL_FILES), *_SSL_MODE_KEYS, *_TIMEOUTS)

# Server/client error numbers (mysqld_error.h, errmsg.h) that decide the message.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_SPECIFIC_ACCESS_DENIED = 1227
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_SSL_CONNECTION_ERROR = 2026
ER_ACCESS_DENIED_NO_PASSWORD = 1698
ER_HOST_NOT_PRIVILEGED = 1130


def _where(endpoint: Any) -> str:
    return f"{endpoint.role} {endpoint.redacted()}"


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver exception, or None."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def error_text(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    text = str(args[1]) if len(args) > 1 else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def connection_error(endpoint: Any, exc: BaseException, database: str | None = None) -> ConnectError:
    """Turn a driver's connection failure into one line naming the endpoint and the fix."""
    code, text = error_code(exc), error_text(exc)
    role = endpoint.role
    env = f"BULKMIG_{role.upper()}_PASSWORD"
    who = f"{endpoint.user or ''}@{endpoint.host or 'localhost'}"
    if code in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        using = "no password was given" if "using password: no" in text.lower() else "the password was refused"
        return ConnectError(
            f"{_where(endpoint)}: access denied for {who} ({using})",
            f"set {env} (or {role}_password_file) to the password of {endpoint.user!r}, or check that the user "
            f"may log in from this machine's address",
        )
    if code == ER_HOST_NOT_PRIVILEGED:
        return ConnectError(
            f"{_where(endpoint)}: the server does not let {endpoint.user!r} connect from this machine ({text})",
            f"CREATE USER / GRANT for {endpoint.user!r} at this machine's address on the server",
        )
    if code == ER_BAD_DB:
        name = database or endpoint.database
        return ConnectError(
            f"{_where(endpoint)}: database {name!r} does not exist", f"create it or fix the database in `{role}:`"
        )
    if code == ER_DBACCESS_DENIED:
        name = database or endpoint.database
        return ConnectError(
            f"{_where(endpoint)}: {who} may not use database {name!r}",
            f"GRANT SELECT ON `{name}`.* TO the user, or fix `{role}:`",
        )
    if code == CR_UNKNOWN_HOST:
        return ConnectError(f"{_where(endpoint)}: unknown host {endpoint.host!r}", f"fix the host in `{role}:`")
    if code == CR_SSL_CONNECTION_ERROR or "ssl" in text.lower() or "tls" in text.lower():
        return ConnectError(
            f"{_where(endpoint)}: the TLS handshake failed ({text})",
            f"check ssl_mode / ssl_ca / ssl_cert / ssl_key in the `{role}:` URL against the server's certificate",
        )
    if code in (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST) or "timed out" in text:
        return ConnectError(
            f"{_where(endpoint)}: cannot reach the server ({text})",
            f"check that MySQL/MariaDB is running and that host/port in `{role}:` are right",
        )
    return ConnectError(f"{_where(endpoint)}: cannot connect ({text})", f"check `{role}:` in the task file")


def _seconds(endpoint: Any, key: str, default: int) -> int:
    raw = (endpoint.params or {}).get(key)
    if raw is None:
        return default
    if not str(raw).isdigit() or int(raw) <= 0:
        raise ConfigError(f"{_where(endpoint)}: {key}={raw!r} is not a number of seconds", f"fix ?{key}= in the URL")
    return int(raw)


def driver_arguments(endpoint: Any) -> dict[str, Any]:
    """TLS and timeout keywords for ``MySQLdb.connect`` from the URL's query parameters (no secrets here)."""
    params: dict[str, str] = dict(endpoint.params or {})
    unknown = [k for k in params if k not in KNOWN_PARAMS]
    if unknown:
        raise ConfigError(
            f"{_where(endpoint)}: unknown MySQL URL parameter {', '.join(repr(k) for k in unknown)}",
            f"use {', '.join(sorted(set(k.replace('-', '_') for k in KNOWN_PARAMS)))}",
        )
    args: dict[str, Any] = {
        "connect_timeout": _seconds(endpoint, "connect_timeout", CONNECT_TIMEOUT),
        "read_timeout": _seconds(endpoint, "read_timeout", READ_TIMEOUT),
        "write_timeout": _seconds(endpoint, "write_timeout", WRITE_TIMEOUT),
    }
    ssl: dict[str, str] = {}
    for key, value in params.items():
        name = _SSL_FILES.get(key.replace("-", "_"))
        if name:
            ssl[name] = value
    modes = [params[k] for k in _SSL_MODE_KEYS if k in params]
    if len(modes) > 1:
        raise ConfigError(f"{_where(endpoint)}: ssl_mode is given twice", "keep one of ssl_mode / ssl-mode / sslmode")
    if modes:
        mode = modes[0].upper().replace("-", "_")
        if mode not in SSL_MODES:
            raise ConfigError(f"{_where(endpoint)}: ssl_mode={modes[0]!r} is unknown", f"use one of {SSL_MODES}")
        args["ssl_mode"] = mode
    if ssl:
        args["ssl"] = ssl
    return args


def connect(
    endpoint: Any, *, database: str | None = None, streaming: bool = False, **driver: Any
) -> MySQLdb.connections.Connection:
    """A mysqlclient connection with the canonical session (see the module docstring); autocommit off.

    ``database`` overrides the endpoint's database (``""`` connects to none); ``streaming`` makes cursors
    server-side (``SSCursor``: rows arrive as they are read, memory stays flat; the connection is busy until
    the result is read to the end).  ``driver`` passes extra keywords to ``MySQLdb.connect`` (e.g. ``conv``).
    """
    if endpoint.engine != "mysql":
        raise ConfigError(f"{_where(endpoint)} is not MySQL/MariaDB", "this connection is for MySQL sources only")
    db = endpoint.database if database is None else database
    password = endpoint.password if endpoint.password is not None else os.environ.get("MYSQL_PWD")
    args: dict[str, Any] = {
        "host": endpoint.host or "localhost",
        "port": endpoint.port or 3306,
        "user": endpoint.user or "",
        "charset": "utf8mb4",
        "autocommit": False,
        "sql_mode": SQL_MODE,
        "init_command": f"SET time_zone = '{TIME_ZONE}', net_write_timeout = {NET_TIMEOUT}, "
        f"net_read_timeout = {NET_TIMEOUT}",
        "multi_statements": False,
        **driver_arguments(endpoint),
    }
    if password is not None:
        args["password"] = password
    if db:
        args["database"] = db
    if streaming:
        args["cursorclass"] = MySQLdb.cursors.SSCursor
    args.update(driver)
    try:
        conn = MySQLdb.connect(**args)
    except MySQLdb.Error as exc:
        raise connection_error(endpoint, exc, db) from None
    if args.get("ssl_mode") not in (None, "DISABLED", "PREFERRED"):
        _require_tls(endpoint, conn)
    return conn


def _require_tls(endpoint: Any, conn: Any) -> None:
    """Refuse a plain-text session when the URL asked for TLS.

    With MariaDB's Connector/C, mysqlclient accepts ``ssl_mode=REQUIRED`` and then quietly connects without
    TLS to a server that has none; the session's cipher says what really happened.
    """
    cur = conn.cursor()
    try:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
    finally:
        cur.close()
    if not row or not row[1]:
        conn.close()
        raise ConnectError(
            f"{_where(endpoint)}: the URL asks for TLS (ssl_mode) but the server accepted a plain-text session",
            "enable TLS on the server (ssl_cert/ssl_key in its configuration) or drop ssl_mode from the URL",
        )


def server_info(conn: Any) -> tuple[str, bool]:
    """``(version, is_mariadb)`` from ``SELECT VERSION()`` (MariaDB says so in the version text)."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT VERSION()")
        version = str(cur.fetchone()[0])
    finally:
        cur.close()
    return version, "mariadb" in version.lower()


def version_tuple(version: str) -> tuple[int, int, int]:
    """``(8, 0, 36)`` from ``8.0.36-log`` or ``10.11.6-MariaDB-0+deb12u1``."""
    head = version.split("-", 1)[0]
    parts = [int(p) for p in head.split(".")[:3] if p.isdigit()]
    return tuple((parts + [0, 0, 0])[:3])  # type: ignore[return-value]


def privilege_error(endpoint: Any, exc: BaseException, what: str, grant: str) -> SourceError:
    """A refused statement that needs a privilege, as one line with the GRANT to run."""
    return SourceError(
        f"{_where(endpoint)}: {endpoint.user!r} may not {what} ({error_text(exc)})",
        f"as an admin run: {grant} TO '{endpoint.user}'@'<host>'",
    )


def one_row(conn: Any, sql: str) -> tuple[Any, ...] | None:
    """The first row of a statement's result (None: no row), on a cursor closed again at once."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone()
    finally:
        cur.close()


def execute(conn: Any, sql: str) -> None:
    """Run a statement whose result is not read (SET, FLUSH, START TRANSACTION)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
    finally:
        cur.close()


def text_of(value: Any) -> Any:
    """A raw connection's bytes as text (a raw connection has no decoders); anything else as it is."""
    return value.decode() if isinstance(value, bytes | bytearray) else value
