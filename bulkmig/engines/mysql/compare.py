"""MySQL/MariaDB's side of ``bulkmig validate``: what to SELECT per column, and the driver's answers turned
into the canonical forms of :mod:`bulkmig.core.canonical`.

Validation reads the source itself, not what extraction read, so it does not reuse every ``read_as``:

- dates, DATETIME and TIMESTAMP are read raw.  Extraction's ``read_as`` turns zero dates into NULL
  (``zero_dates: null``); here they must stay visible, so the driver's converters keep any date it cannot
  parse as its text (mysqlclient's own would give None, which would hide exactly what validate must count)
  and :func:`normaliser` marks '0000-00-00' and zero months/days as :class:`~bulkmig.core.canonical.Converted`.
- FLOAT is read as ``col + 0E0``: MySQL's text for a FLOAT keeps 6 significant digits (16777217 reads as
  ``16777200``), the widened double is the stored float32 exactly.
- everything else uses the column's ``read_as`` (``CAST(… AS CHAR)`` for TIME, JSON, SET; ``BIN`` for BIT;
  ``ST_AsBinary`` for geometry): those are lossless spellings, and the normaliser parses them.
- TIMESTAMP reads as UTC (the connection's ``time_zone '+00:00'``); CHAR loses its trailing blanks on read,
  as MySQL always does, and the comparison ignores them on both sides.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import MySQLdb.converters
from MySQLdb.constants import FIELD_TYPE

from bulkmig.core.canonical import Canon, Converted, RowNormaliser, canonical, per_column
from bulkmig.core.model import Column, Table
from bulkmig.engines.mysql.connect import connect as mysql_connect
from bulkmig.engines.mysql.reflect import quote_ident

_TEMPORAL = ("date", "timestamp", "timestamptz")
ZERO_DATE_WHY = "zero date loaded as NULL (zero_dates: null)"


def _keep_text(convert: Any) -> Any:
    """A date converter that returns the text when mysqlclient's own gives up (zero or invalid dates)."""

    def read(raw: bytes | str) -> Any:
        value = convert(raw)
        if value is None:
            return raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        return value

    return read


CONVERSIONS: dict[Any, Any] = dict(MySQLdb.converters.conversions)
for _field in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
    CONVERSIONS[_field] = _keep_text(CONVERSIONS[_field])


def connect(endpoint: Any) -> Any:
    """A streaming (server-side cursor) connection whose date converters keep zero dates as text."""
    return mysql_connect(endpoint, streaming=True, conv=CONVERSIONS)


def source_expression(column: Column) -> str:
    """The SELECT expression for one column (see the module docstring for why it differs from ``read_as``)."""
    col = quote_ident(column.name)
    if column.logical_type in _TEMPORAL:
        return col
    if column.logical_type == "float" and column.arrow_type == "float32":
        return f"({col} + 0E0)"
    return column.read_as.format(col=col) if column.read_as else col


def select_sql(table: Table, columns: list[Column], ordered: bool) -> str:
    sql = (
        f"SELECT {', '.join(source_expression(c) for c in columns)} "
        f"FROM {quote_ident(table.schema)}.{quote_ident(table.name)}"
    )
    if table.filter:
        sql += f" WHERE {table.filter}"
    if ordered and table.primary_key:
        sql += " ORDER BY " + ", ".join(quote_ident(k) for k in table.primary_key)
    return sql


_DATE_TEXT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def _zero_date(value: Any) -> Any:
    """A date the driver could not parse: a zero date becomes Converted (it loaded as NULL); other text
    stays text and will differ from whatever the target holds."""
    if isinstance(value, str):
        m = _DATE_TEXT.match(value)
        if m and (m.group(2) == "00" or m.group(3) == "00"):
            return Converted(None, value, ZERO_DATE_WHY)
    return value


def _keep(value: Any) -> Any:
    return value


def _set_members(value: Any) -> Any:
    """SET's text ``a,c`` as the tuple of members a text[] holds; the empty set is the empty array."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return tuple(value.split(",")) if value else ()
    return value


def _timestamp_utc(value: Any) -> Any:
    """TIMESTAMP read in the session's +00:00: the naive value is UTC."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return _zero_date(value)


def canon(column: Column) -> Canon:
    """The driver's value for ``column`` → the canonical value (:func:`bulkmig.core.canonical.canonical`).

    A zero date is a converted value only where the load can have made it NULL (a nullable column); in a
    NOT NULL column it stopped the load, so here it stays text and differs from anything the target holds."""
    logical = column.logical_type
    if logical in ("date", "timestamp"):
        return canonical(column).then(_zero_date if column.nullable else _keep)
    if logical == "timestamptz":
        return canonical(column).then(_timestamp_utc if column.nullable else _keep)
    if logical == "array":
        return canonical(column).then(_set_members)
    return canonical(column)


def row_normaliser(columns: list[Column]) -> RowNormaliser:
    return per_column([canon(c) for c in columns])
