"""Which database errors are worth retrying, and the one retry loop every stage uses.

A migration runs for hours; databases restart, fail over and kill sessions in that time.  An error is
retried when it says the *session* failed, not the work: the connection was lost or refused while the
server restarts, or the server chose this transaction as a deadlock / serialization victim.  Anything
else (a wrong password, a missing table, a constraint violation) is a real answer and stops at once.

The decision is made in ONE place, from the codes the drivers give:

- PostgreSQL: the SQLSTATE (``RETRYABLE_SQLSTATES``).  libpq reports a connection that broke or was
  refused without any SQLSTATE, so for those its message text is matched (``LOST_CONNECTION_TEXT``,
  ``CANNOT_CONNECT_TEXT``); ADBC puts the server's message in its text as well.
- MySQL / MariaDB: the error number in ``exc.args[0]`` (``RETRYABLE_MYSQL_ERRORS``; client 2xxx
  numbers for a lost or refused connection, server numbers for deadlocks and shutdowns).
- The operating system: ``errno`` of an ``OSError`` (``RETRYABLE_ERRNOS``).

bulkmig's own errors wrap the driver's (``raise ... from exc`` or ``from None``, which still keeps
``__context__``); :func:`retryable` follows that chain.

Each failure has a kind, because what is safe to retry depends on it:

``connect``  the server could not be reached or is not accepting connections yet.  Retried only once
             the stage has connected before (a wrong port must fail fast, not after minutes).
``lost``     an established session died: its transaction is rolled back, and a snapshot it held or
             exported is gone.  Work done in one transaction can be redone; work bound to a snapshot
             cannot (extraction stops and says so).
``conflict`` the server aborted the transaction (deadlock, serialization failure); the session is fine.

:class:`Retry` is the loop: back-off with jitter, a bounded time per streak of failures
(``settings.retry_timeout``, counted from the first failure; a success starts over), one status line
per retry, and a clear :class:`RetryExhausted` at the end naming the stage, the last error and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from bulkmig.core.errors import BulkmigError, ConnectError
from bulkmig.core.log import say

T = TypeVar("T")
C = TypeVar("C")
Kind = Literal["connect", "lost", "conflict"]

# Back-off: the n-th retry of a streak sleeps between half and all of min(MAX_DELAY, FIRST_DELAY * 2**n).
FIRST_DELAY = 0.5
MAX_DELAY = 10.0

# ------------------------------------------------------------------------------------ the one table

# SQLSTATE -> (kind, name).  Class 08 is the client's view of a broken connection; 57P01-57P03 are a
# server stopping or starting; 40001/40P01 the server aborting one transaction to let others proceed.
RETRYABLE_SQLSTATES: dict[str, tuple[Kind, str]] = {
    "08000": ("lost", "connection_exception"),
    "08003": ("lost", "connection_does_not_exist"),
    "08006": ("lost", "connection_failure"),
    "08001": ("connect", "sqlclient_unable_to_establish_sqlconnection"),
    "08004": ("connect", "sqlserver_rejected_establishment_of_sqlconnection"),
    "57P01": ("lost", "admin_shutdown"),
    "57P02": ("lost", "crash_shutdown"),
    "57P03": ("connect", "cannot_connect_now"),
    "53300": ("connect", "too_many_connections"),
    "40001": ("conflict", "serialization_failure"),
    "40P01": ("conflict", "deadlock_detected"),
}

# MySQL / MariaDB error number -> (kind, name).  2xxx come from the client library (PyMySQL and
# mysqlclient use the same numbers), the others from the server.
RETRYABLE_MYSQL_ERRORS: dict[int, tuple[Kind, str]] = {
    2002: ("connect", "CR_CONNECTION_ERROR"),
    2003: ("connect", "CR_CONN_HOST_ERROR"),
    2006: ("lost", "CR_SERVER_GONE_ERROR"),
    2013: ("lost", "CR_SERVER_LOST"),
    2055: ("lost", "CR_SERVER_LOST_EXTENDED"),
    1040: ("connect", "ER_CON_COUNT_ERROR"),
    1053: ("lost", "ER_SERVER_SHUTDOWN"),
    1927: ("lost", "ER_CONNECTION_KILLED"),
    4031: ("lost", "ER_CLIENT_INTERACTION_TIMEOUT"),
    1205: ("conflict", "ER_LOCK_WAIT_TIMEOUT"),
    1213: ("conflict", "ER_LOCK_DEADLOCK"),
}

# errno -> (kind, name), for socket errors that reach us undressed.
RETRYABLE_ERRNOS: dict[int, tuple[Kind, str]] = {
    errno.ECONNREFUSED: ("connect", "ECONNREFUSED"),
    errno.EHOSTUNREACH: ("connect", "EHOSTUNREACH"),
    errno.ENETUNREACH: ("connect", "ENETUNREACH"),
    errno.ECONNRESET: ("lost", "ECONNRESET"),
    errno.ECONNABORTED: ("lost", "ECONNABORTED"),
    errno.EPIPE: ("lost", "EPIPE"),
    errno.ETIMEDOUT: ("lost", "ETIMEDOUT"),
}

# libpq's messages for failures it reports without a SQLSTATE (lower case, matched as substrings).
LOST_CONNECTION_TEXT: tuple[str, ...] = (
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
    "connection is lost",
    "the connection is closed",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "ssl connection has been closed unexpectedly",
    "ssl syscall error",
    "connection reset by peer",
    "broken pipe",
)
CANNOT_CONNECT_TEXT: tuple[str, ...] = (
    "connection refused",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is in recovery mode",
    "cannot reach the server",  # bulkmig's own ConnectError for a refused connection
)


# Drivers whose messages are matched against the texts above (by the exception's module).
DRIVER_MODULES: tuple[str, ...] = ("psycopg", "adbc_driver", "pymysql", "MySQLdb")


@dataclass(frozen=True)
class Reason:
    """Why an error is worth retrying: its kind and the code that said so (for the status line)."""

    kind: Kind
    code: str

    def __str__(self) -> str:
        return self.code


def _own(exc: BaseException) -> Reason | None:
    """The reason this one exception (not its chain) gives, if any."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in RETRYABLE_SQLSTATES:
        kind, name = RETRYABLE_SQLSTATES[sqlstate]
        return Reason(kind, f"SQLSTATE {sqlstate} {name}")
    module = type(exc).__module__ or ""
    if module.startswith(("pymysql", "MySQLdb")) and exc.args and isinstance(exc.args[0], int):
        if exc.args[0] in RETRYABLE_MYSQL_ERRORS:
            kind, name = RETRYABLE_MYSQL_ERRORS[exc.args[0]]
            return Reason(kind, f"MySQL error {exc.args[0]} {name}")
        return None
    if isinstance(exc, OSError) and exc.errno in RETRYABLE_ERRNOS:
        kind, name = RETRYABLE_ERRNOS[exc.errno]
        return Reason(kind, name)
    if isinstance(sqlstate, str) and sqlstate:
        return None  # the server answered with a code of its own: a real error, whatever its text says
    if not (isinstance(exc, BulkmigError) or module.startswith(DRIVER_MODULES)):
        return None  # only a driver's (or our own) message is read, never arbitrary text
    text = str(exc).lower()
    if any(s in text for s in LOST_CONNECTION_TEXT):
        return Reason("lost", "connection lost")
    if any(s in text for s in CANNOT_CONNECT_TEXT):
        return Reason("connect", "cannot connect")
    return None


def retryable(exc: BaseException) -> Reason | None:
    """Why ``exc`` is worth retrying, or None when it is a real error.

    Follows ``__cause__`` and ``__context__`` (bulkmig's errors wrap the driver's), nearest first.  A
    :class:`RetryExhausted` is final: an outer loop must not start the same wait over.
    """
    if isinstance(exc, RetryExhausted):
        return None
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen or len(seen) > 16:
            continue
        seen.add(id(current))
        reason = _own(current)
        if reason is not None:
            return reason
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def first_line(exc: BaseException) -> str:
    """The error's first line (for a bulkmig error its problem, without the hint)."""
    text = (exc.message if isinstance(exc, BulkmigError) else str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RetryExhausted(ConnectError):
    """A retryable error kept coming back for longer than ``settings.retry_timeout``."""


@dataclass
class Retry:
    """One stage's retry policy: ``retry.call(fn)`` runs ``fn`` until it succeeds, fails for real, or a
    streak of retryable failures outlasts ``timeout`` seconds.

    ``established`` turns on the retrying of "cannot connect" failures: set it once the stage has
    connected (a :class:`Reconnecting` does), so a wrong host or port still fails at once.  ``stage``
    names the command in messages (``load``, ``replay``); ``hint`` is what a rerun does.
    """

    stage: str
    timeout: float  # settings.retry_timeout
    established: bool = False
    hint: str = "it resumes where it stopped"
    sleep: Callable[[float], object] = time.sleep
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self._rng = self.rng or random.Random()

    def should_retry(self, exc: BaseException) -> Reason | None:
        reason = retryable(exc)
        if reason is None or (reason.kind == "connect" and not self.established):
            return None
        return reason

    def delay(self, attempt: int, base: float | None = None) -> float:
        """The pause before the ``attempt``-th retry of a streak (0-based): exponential (or ``base``), with
        "equal jitter" (half fixed, half random) so many workers that lost one server come back spread out."""
        step = base if base is not None else min(MAX_DELAY, FIRST_DELAY * 2**attempt)
        return step / 2 + self._rng.uniform(0.0, step / 2)

    def exhausted(self, exc: BaseException, reason: Reason, seconds: float) -> RetryExhausted:
        return RetryExhausted(
            f"{self.stage}: gave up after {seconds:.0f}s of retries ({reason}: {first_line(exc)})",
            f"bring the database back and rerun `bulkmig {self.stage}`: {self.hint} "
            "(settings.retry_timeout sets how long to retry)",
        )

    def wait(
        self, exc: BaseException, reason: Reason, attempt: int, since: float, what: str = "", base: float | None = None
    ) -> None:
        """Sleep before the next attempt of a streak that began at ``since``, or raise when it has lasted
        too long.  For loops that cannot be written as one ``call`` (capture's and replay's sessions, which
        keep their own back-off steps as ``base``)."""
        elapsed = time.monotonic() - since
        if elapsed >= self.timeout:
            raise self.exhausted(exc, reason, elapsed) from exc
        pause = min(self.delay(attempt, base), max(0.0, self.timeout - elapsed))
        where = f" {what}" if what else ""
        say(f"{self.stage}:{where} {reason} ({first_line(exc)}); retrying in {pause:.1f}s")
        self.sleep(pause)

    def call(
        self, fn: Callable[[], T], *, what: str = "", on_retry: Callable[[BaseException], None] | None = None
    ) -> T:
        """``fn()``, retried while it fails with a retryable error; ``on_retry`` runs before each retry."""
        since: float | None = None
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                reason = self.should_retry(exc)
                if reason is None:
                    raise
                since = since if since is not None else time.monotonic()
                if on_retry is not None:
                    on_retry(exc)
                self.wait(exc, reason, attempt, since, what)
                attempt += 1


class Reconnecting(Generic[C]):
    """A connection that is opened (again) when needed: ``session.call(lambda conn: ...)`` runs the
    function on a live connection and, after a retryable failure, on a fresh one.

    The function must be safe to run again: one transaction that either committed or rolled back
    (a lost connection rolls it back on the server).  A "conflict" keeps the connection; "lost" and
    "connect" failures drop it.
    """

    def __init__(self, retry: Retry, open_: Callable[[], C], close: Callable[[C], None]) -> None:
        self.retry = retry
        self._open = open_
        self._close = close
        self._conn: C | None = None

    @property
    def conn(self) -> C:
        if self._conn is None:
            self._conn = self._open()
            self.retry.established = True
        return self._conn

    def open(self) -> C:
        """Connect now (if not connected): a stage's first connection fails at once when it cannot."""
        return self.conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                self._close(conn)

    def _after_failure(self, exc: BaseException) -> None:
        reason = retryable(exc)
        if reason is None or reason.kind != "conflict":
            self.drop()

    def call(self, fn: Callable[[C], T], *, what: str = "") -> T:
        return self.retry.call(lambda: fn(self.conn), what=what, on_retry=self._after_failure)

    def close(self) -> None:
        self.drop()


__all__ = [
    "CANNOT_CONNECT_TEXT",
    "LOST_CONNECTION_TEXT",
    "RETRYABLE_ERRNOS",
    "RETRYABLE_MYSQL_ERRORS",
    "RETRYABLE_SQLSTATES",
    "Reason",
    "Reconnecting",
    "Retry",
    "RetryExhausted",
    "first_line",
    "retryable",
]
