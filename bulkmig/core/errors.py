"""One exception root for everything bulkmig reports to a user.

Every error carries two things an operator needs at 3 a.m.: what was wrong (``message``) and what to
do about it (``hint``).  The CLI prints ``error: <message> — <hint>`` on one line and exits with the
class's ``exit_code``; a traceback only appears with ``--debug``.  Messages must never contain a
secret: build them from redacted URLs (``task.redact_url``), never from raw connection strings.

The classes are split by what the runtime (and the operator) should do next, as in singer-sdk:
configuration problems are fixed by editing the task, connection problems by fixing the network or
credentials, integrity problems by re-extracting or re-importing the named part.
"""

from __future__ import annotations

from typing import Any

# Documented exit codes (README "Exit codes").  Keep in sync with the README table.
EXIT_OK = 0
EXIT_FAILED = 1  # a stage failed for a reason not covered below
EXIT_CONFIG = 2  # bad task file, bad arguments, bad table mappings
EXIT_CONNECT = 3  # cannot reach or log into a database or the bucket
EXIT_INTEGRITY = 4  # a part or manifest is missing, altered or from another migration
EXIT_NOT_EQUAL = 5  # validate ran and found differences
EXIT_WAITING = 6  # load did all it could; devices of the plan are not imported yet (rerun when they are)
EXIT_INTERRUPTED = 130


class BulkmigError(Exception):
    """Root of every error bulkmig raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross processes (a Dask worker's unit fails on another host): keep the hint and every
        # subclass's own fields, which Exception's default pickling (args only) would drop.
        return _rebuild_error, (type(self), self.message, dict(self.__dict__))


def _rebuild_error(cls: type[BulkmigError], message: str, fields: dict[str, Any]) -> BulkmigError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(fields)
    return error


class ConfigError(BulkmigError):
    """The task file, the table mappings or a command-line argument is wrong."""

    exit_code = EXIT_CONFIG


class ConnectError(BulkmigError):
    """A database or the bucket cannot be reached or refuses our credentials."""

    exit_code = EXIT_CONNECT


class PrivilegeError(ConnectError):
    """The login works but lacks a privilege the stage needs (SELECT on a table, REPLICATION, …);
    the message names every missing one and the GRANT / ALTER ROLE that gives it."""


class SourceError(BulkmigError):
    """The source database answered, but not in a way we can migrate from."""


class TargetError(BulkmigError):
    """The target database rejected schema or rows."""


class StoreError(BulkmigError):
    """A volume directory or the bucket could not be read or written."""


class IntegrityError(BulkmigError):
    """What is on the volume or in the bucket does not match its manifest; never trust it."""

    exit_code = EXIT_INTEGRITY


class PlanError(BulkmigError):
    """The plan on the volume does not fit the task (another migration, changed inputs, newer format)."""

    exit_code = EXIT_INTEGRITY


class NotEqual(BulkmigError):
    """validate found tables that differ between source and target."""

    exit_code = EXIT_NOT_EQUAL


class DevicesMissing(BulkmigError):
    """load loaded every table whose parts have arrived; others wait for devices not imported yet.
    Nothing is wrong: import the named devices as they arrive and rerun ``load``."""

    exit_code = EXIT_WAITING
