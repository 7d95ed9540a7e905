"""Opening PostgreSQL connections (psycopg and ADBC) with errors an operator can act on.

Both drivers speak libpq, so a password comes from the task's environment variable, ``PGPASSWORD`` or
``.pgpass`` alike.  Every message is built from the redacted URL: a password never reaches a log line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from bulkmig.core.errors import ConnectError, SourceError
from bulkmig.engines.postgres.sql import CANONICAL_SETTINGS, literal, options_string

APPLICATION_NAME = "bulkmig"


def _where(endpoint: Any) -> str:
    return f"{endpoint.role} {endpoint.redacted()}"


def connection_error(endpoint: Any, exc: Exception) -> ConnectError:
    """Turn a driver's connection failure into one line naming the endpoint and the fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    role = endpoint.role
    env = f"BULKMIG_{role.upper()}_PASSWORD"

    def failed(problem: str, fix: str) -> ConnectError:
        return ConnectError(f"{_where(endpoint)}: {problem}", fix)

    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return failed(
            f"the server refused the password for user {endpoint.user!r}",
            f"set {env} (or PGPASSWORD / ~/.pgpass) to the right password",
        )
    if "does not support ssl" in lowered:
        mode = (endpoint.params or {}).get("sslmode", "require")
        return failed(
            f"the server does not support SSL, but sslmode={mode} requires it",
            f"enable ssl on the server, or (on a trusted network only) lower sslmode in `{role}:`",
        )
    if "pg_hba.conf" in lowered and "no encryption" in lowered:
        return failed(
            f"the server accepts only encrypted connections from this host ({text})",
            f"set sslmode=verify-full and sslrootcert=<the server's CA file> (or at least sslmode=require) in the "
            f"`{role}:` URL",
        )
    if any(token in lowered for token in ("certificate", "ssl error", "ssl syscall")):
        return failed(
            f"the TLS handshake failed ({text})",
            f"check sslmode / sslrootcert / sslcert / sslkey in the `{role}:` URL against the server's certificate",
        )
    if "does not exist" in lowered and "database" in lowered:
        return failed(f"database {endpoint.database!r} does not exist", f"create it or fix `{role}:` in the task file")
    if "connection refused" in lowered or "could not connect" in lowered or "timeout" in lowered:
        return failed(
            f"cannot reach the server ({text})",
            f"check that PostgreSQL is running and that host/port in `{role}:` are right",
        )
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return failed(f"unknown host {endpoint.host!r}", f"fix the host in `{role}:`")
    return failed(f"cannot connect ({text})", f"check `{role}:` in the task file")


def connect(endpoint: Any, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
    """A psycopg connection with the canonical session settings (see ``sql.CANONICAL_SETTINGS``)."""
    try:
        return psycopg.connect(
            endpoint.libpq_conninfo(),
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            options=options_string(CANONICAL_SETTINGS),
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        raise connection_error(endpoint, exc) from None


def adbc_uri(endpoint: Any) -> str:
    """The libpq URI ADBC wants; it carries the password, so it is never printed or stored."""
    user = quote(endpoint.user or "", safe="")
    password = endpoint.password
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = endpoint.host or ""
    if host and ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = f":{endpoint.port}" if endpoint.port else ""
    params = dict(endpoint.params or {})
    params["options"] = options_string(CANONICAL_SETTINGS)
    params["application_name"] = APPLICATION_NAME
    db = quote(endpoint.database or "", safe="")
    return f"postgresql://{auth}{host}{port}/{db}?{urlencode(params, quote_via=quote)}"


def adbc_connect(endpoint: Any) -> Any:
    """An ADBC dbapi connection (autocommit off), the fast Arrow read path."""
    import adbc_driver_postgresql.dbapi as adbc

    try:
        return adbc.connect(adbc_uri(endpoint))
    except Exception as exc:  # ADBC raises its own hierarchy; classify by text like psycopg's
        raise connection_error(endpoint, exc) from None


def snapshot_importable(endpoint: Any, name: str) -> bool:
    """Whether the exported snapshot ``name`` can still be imported, i.e. the process that exported it
    (a running `bulkmig plan` holding a slot's snapshot) still keeps its transaction open.

    Importing it is the only reliable test: PostgreSQL offers no catalog view of exported snapshots.
    A source that cannot be reached raises :class:`ConnectError` rather than answering False.
    """
    conn = connect(endpoint, autocommit=True)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT {literal(name)}")
        return True
    except psycopg.Error:
        return False
    finally:
        conn.close()


def server_version_num(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0])


def require_version(conn: psycopg.Connection, endpoint: Any, minimum: int = 120000) -> None:
    version = server_version_num(conn)
    if version < minimum:
        raise SourceError(
            f"{_where(endpoint)} runs PostgreSQL {version // 10000}; bulkmig needs {minimum // 10000} or later",
            "upgrade the server or use pg_dump for this one",
        )
