"""The engine-specific choices a task file can make (``settings.mysql``, ``settings.sqlite``), as data.

They belong to the task (the task reader validates them, the fingerprint hashes them), so they live with the
configuration; the engines read them (``bulkmig.engines.mysql.types`` and ``bulkmig.engines.sqlite.types``
re-export them under the name ``TypeSettings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# TypeSettings fields that change only what the assessment report says, never the data moved: the task
# fingerprint leaves them out, so switching one does not orphan a volume.
REPORT_ONLY_SETTINGS = ("scan_values",)


@dataclass(frozen=True)
class MysqlTypeSettings:
    """The conversion choices a task can make (``settings.mysql`` in the task file, issue 5)."""

    tinyint1_as_boolean: bool = True
    zero_dates: str = "null"  # null: load '0000-00-00' (and zero month/day) as NULL, counted; refuse: stop
    time_as: str = "time"  # time | interval
    postgis: bool = False
    # A full scan of each table with such columns (dates, tinyint(1) as boolean, ENUM) at plan/convert time,
    # counting the zero dates and refused values per column; switch off for very large sources.  It changes
    # only the report, never what is moved, so it stays out of the task fingerprint.
    scan_values: bool = True

    def __post_init__(self) -> None:
        if self.zero_dates not in ("null", "refuse"):
            raise ValueError(f"zero_dates must be 'null' or 'refuse', not {self.zero_dates!r}")
        if self.time_as not in ("time", "interval"):
            raise ValueError(f"time_as must be 'time' or 'interval', not {self.time_as!r}")


NUMERIC_DATES = ("auto", "julianday", "unixepoch", "unixepoch_ms", "refuse")


@dataclass(frozen=True)
class SqliteTypeSettings:
    """The choices a task can make (``settings.sqlite`` in the task file).

    ``numeric_dates``: how a number in a DATE/DATETIME column is read — ``auto`` as SQLite's 'auto'
    modifier does (0..5373484.5 is a julian day, anything else unix epoch seconds), ``julianday``,
    ``unixepoch``, ``unixepoch_ms`` (milliseconds, as Prisma and JavaScript's Date.now() store them), or
    ``refuse`` (report and stop, like any other misfit).
    ``column_types``: ``{"table.column": "TEXT"}`` reads a column as if it had been declared so — the fix
    for a column whose values do not fit its declared type.
    """

    numeric_dates: str = "auto"
    column_types: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.numeric_dates not in NUMERIC_DATES:
            raise ValueError(f"numeric_dates must be one of {', '.join(NUMERIC_DATES)}, not {self.numeric_dates!r}")

    def declared(self, table: str, column: str, declared: str) -> str:
        """The declared type to map: the task's override for ``table.column``, else the file's own."""
        return self.column_types.get(f"{table}.{column}", declared)


def settings_of(task: Any, key: str, cls: type[T]) -> T:
    """The task's ``settings.<key>`` as ``cls`` (defaults when the task, or a test's stand-in, has none)."""
    raw = getattr(task.settings, key, None)
    if raw is None:
        return cls()
    if isinstance(raw, cls):
        return raw
    if isinstance(raw, dict):
        return cls(**raw)
    return cls(**{k: getattr(raw, k) for k in cls.__dataclass_fields__})  # type: ignore[attr-defined]
