"""bulkmig.core.retry: which errors are retried (by SQLSTATE, MySQL error number, errno, libpq text) and the loop."""

from __future__ import annotations

import errno
import random
import time

import psycopg
import pymysql
import pytest

from bulkmig.core.errors import ConnectError, SourceError, TargetError
from bulkmig.core.retry import Reconnecting, Retry, RetryExhausted, retryable


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), "lost", "57P01"),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), "connect", "57P03"),
        (psycopg.errors.SerializationFailure("could not serialize access"), "conflict", "40001"),
        (psycopg.errors.DeadlockDetected("deadlock detected"), "conflict", "40P01"),
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), "lost", ""),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1" failed: Connection refused'
            ),
            "connect",
            "",
        ),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), "lost", "2013"),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), "connect", "2003"),
        (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), "conflict", "1213"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "lost", "ECONNRESET"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connect", "ECONNREFUSED"),
    ],
)
def test_the_table_says_what_is_retryable(exc: BaseException, kind: str, code: str) -> None:
    reason = retryable(exc)
    assert reason is not None and reason.kind == kind and code in reason.code


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
        psycopg.errors.UndefinedTable("relation does not exist"),
        # A real answer from the server is judged by its code, whatever its text says.
        psycopg.errors.RaiseException("connection refused by the application's trigger"),
        psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "x"'),
        pymysql.err.OperationalError(1045, "Access denied for user"),
        pymysql.err.ProgrammingError(1146, "Table doesn't exist"),
        FileNotFoundError(errno.ENOENT, "No such file"),
        ValueError("connection refused"),  # not an error of the database, its driver or the network
    ],
)
def test_real_errors_are_not_retried(exc: BaseException) -> None:
    assert retryable(exc) is None


def test_bulkmig_errors_are_judged_by_what_they_wrap() -> None:
    """ConnectError is raised ``from None`` (the cause hidden from users), which keeps ``__context__``."""
    try:
        try:
            raise psycopg.errors.AdminShutdown("terminating connection due to administrator command")
        except psycopg.Error:
            raise ConnectError("target: lost the connection", "rerun") from None
    except ConnectError as exc:
        wrapped = exc
    reason = retryable(wrapped)
    assert reason is not None and reason.code == "SQLSTATE 57P01 admin_shutdown"
    try:
        try:
            raise psycopg.errors.UniqueViolation("duplicate key")
        except psycopg.Error as inner:
            raise TargetError("replay of batch 7 failed: duplicate key", "fix it") from inner
    except TargetError as exc:
        assert retryable(exc) is None


class Clock:
    """A fake sleep that records the pauses (the loop's own time check uses the real clock)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def test_call_retries_with_growing_jittered_pauses_then_succeeds() -> None:
    clock = Clock()
    retry = Retry("load", 60, sleep=clock, rng=random.Random(1))
    attempts = iter([psycopg.errors.AdminShutdown("x"), psycopg.errors.DeadlockDetected("y"), None, None])

    def flaky() -> str:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return "done"

    assert retry.call(flaky) == "done"
    assert len(clock.pauses) == 2
    assert 0.25 <= clock.pauses[0] <= 0.5 and 0.5 <= clock.pauses[1] <= 1.0  # half fixed, half random


def test_a_real_error_is_raised_at_once() -> None:
    clock = Clock()

    def missing() -> None:
        raise SourceError("table public.t no longer exists on the source", "re-plan")

    with pytest.raises(SourceError):
        Retry("extract", 60, sleep=clock).call(missing)
    assert clock.pauses == []


def test_cannot_connect_is_retried_only_once_connected_before() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    clock = Clock()

    def down() -> None:
        raise refused

    with pytest.raises(psycopg.OperationalError):  # a wrong port fails at once ...
        Retry("load", 60, sleep=clock).call(down)
    assert clock.pauses == []
    with pytest.raises(RetryExhausted) as info:  # ... a server that was there is waited for, for a while
        Retry("load", 0.05, established=True, sleep=lambda s: time.sleep(min(s, 0.01))).call(down)
    assert "load: gave up after" in info.value.message and "cannot connect" in info.value.message
    assert "rerun `bulkmig load`" in info.value.hint and "settings.retry_timeout" in info.value.hint
    assert info.value.exit_code == 3
    assert retryable(info.value) is None  # final: an outer loop does not start the wait over


class FakeConn:
    opened = 0

    def __init__(self) -> None:
        FakeConn.opened += 1
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_reconnecting_opens_a_new_connection_after_a_lost_one_only() -> None:
    FakeConn.opened = 0
    session = Reconnecting(Retry("replay", 60, sleep=Clock()), FakeConn, FakeConn.close)
    first = session.open()
    failures = [psycopg.errors.DeadlockDetected("d"), psycopg.errors.AdminShutdown("a")]
    used: list[FakeConn] = []

    def work(conn: FakeConn) -> int:
        used.append(conn)
        if failures:
            raise failures.pop(0)
        return 42

    assert session.call(work) == 42
    assert used[0] is first and used[1] is first  # a deadlock keeps the session
    assert used[2] is not first and first.closed  # a lost session is replaced
    assert FakeConn.opened == 2
    session.close()
    assert used[2].closed
