"""SQLite's side of ``bulkmig validate``: what to SELECT per column, and the stored values turned into the
canonical forms of :mod:`bulkmig.core.canonical`.

A SQLite cell holds whatever storage class it was given, so the question "is the target's value the same
value?" is answered the way the load answers it: each stored value goes through the same conversion the
reader applies (:func:`bulkmig.engines.sqlite.values.convert`: a real 0.99 in a NUMERIC(10,2) column is the
decimal 0.99, an integer 1 in a BOOLEAN column is true), then through the engine-neutral canonical form.  A
value that conversion refuses (a misfit the load would have stopped on) stays as stored, so it differs from
whatever the target holds instead of being coerced into agreement.

Dates stored as numbers are read through the column's ``read_as`` (SQLite's own date functions, as the
extraction reads them) *and* raw: such a value is a :class:`~bulkmig.core.canonical.Converted` — the number is
reported with its column and key as a converted value, as the assessment report announced it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from bulkmig.core.canonical import Canon, Converted, RowNormaliser, canonical
from bulkmig.core.model import Column, Table
from bulkmig.engines.postgres.sql import ident, select
from bulkmig.engines.sqlite import values
from bulkmig.engines.sqlite.connect import connect as sqlite_connect

DATE_LOGICAL = ("date", "timestamp", "timestamptz")
NUMERIC_DATE_WHY = "a number read as a date by SQLite's date functions (numeric_dates)"


def connect(endpoint: Any) -> sqlite3.Connection:
    """The database file, read-only (validation never writes, nor creates, a source)."""
    return sqlite_connect(endpoint)


def _dated(column: Column) -> bool:
    """A date column read through SQLite's date functions: selected twice (converted, and raw)."""
    return column.logical_type in DATE_LOGICAL and column.read_as is not None


def select_sql(table: Table, columns: list[Column], ordered: bool) -> str:
    exprs = []
    for c in columns:
        col = ident(c.name)
        if _dated(c):
            exprs += [c.read_as.format(col=col), col]  # type: ignore[union-attr]
        else:
            exprs.append(c.read_as.format(col=col) if c.read_as else col)
    return select(table.schema, table.name, exprs, table.filter, table.primary_key if ordered else ())


# The conversion kinds whose driver value, when of this type, is already the value the reader loads.
_READY = {"int": (int,), "text": (str,), "binary": (bytes,)}


def canon(column: Column) -> Canon:
    """A stored value → what the reader turns it into (``values.convert``) → the canonical value."""
    finish = canonical(column)
    try:
        kind = values.kind_of(column.logical_type, column.arrow_type, column.target_type)
    except ValueError:
        return finish

    def convert(v: Any) -> Any:
        try:
            v = values.convert(kind, v)
        except (values.Misfit, ArithmeticError, ValueError, OverflowError):
            return v  # refused by the load: stays as stored, and so differs
        return v if v is None or type(v) in finish.ready else finish.convert(v)

    ready = _READY.get(kind.name, ()) if finish.ready else ()
    return Canon(ready, convert)


def row_normaliser(columns: list[Column]) -> RowNormaliser:
    """One canonical value per column; a dated column consumes two selected values (converted, raw)."""
    plan = [(_dated(c), canon(c)) for c in columns]

    def normalise(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        i = 0
        for dated, c in plan:
            v = row[i]
            if v is not None and type(v) not in c.ready:
                v = c.convert(v)
            if dated:
                raw = row[i + 1]
                i += 2
                if isinstance(raw, int | float) and isinstance(v, dt.date):
                    v = Converted(v, f"{type(raw).__name__} {raw!r}", NUMERIC_DATE_WHY)
            else:
                i += 1
            out.append(v)
        return tuple(out)

    return normalise
