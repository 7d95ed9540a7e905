"""Binlog row values → the text forms a MySQL/MariaDB target applies exactly (MySQL → MySQL change data capture).

:mod:`.changes` turns binlog values into PostgreSQL's text input forms and refuses what PostgreSQL cannot hold.
A stream whose target is MySQL/MariaDB (``stream.json``: ``"value_forms": "mysql"``) goes through this table
instead: one converter per rule of the type map (``types.RULES``, by its ``source``, so the two tables stay in
step), each giving the text MySQL itself reads back to the very value the source holds, and none refusing
anything MySQL can hold: tinyint(1) is a number, zero dates and zero months/days stay what they are, the ''
of an invalid ENUM value stays '', TIME is the whole signed duration, text may hold NUL.

Forms (all text; the MySQL target's replay, ``engines/mysql/target/apply.py``, turns the few that are not plain
column text into parameters):

- integers, DECIMAL: their digits; FLOAT/DOUBLE: the shortest text that reads back as the same double (for a
  FLOAT, the stored float32 widened, which MySQL narrows back exactly);
- BIT: ``'0101'`` (replay binds it as a number); YEAR: its number, ``0`` for 0000 (replay binds a number:
  the text '0' would be the year 2000);
- text: the characters (decoded by the column's charset; the target's connection converts them back into the
  target column's charset); binary strings and spatial values: hex of the bytes (spatial: MySQL's internal
  form, a 4-byte SRID then WKB, which a geometry column takes as it is);
- ENUM: the label (``''`` for index 0); SET: its members joined by ``,`` in definition order (``''`` empty);
- DATE, DATETIME: ``YYYY-MM-DD[ hh:mm:ss[.ffffff]]`` with zeros where the source has them; TIMESTAMP: its
  UTC wall-clock time (replay's session is ``time_zone '+00:00'``), ``0000-00-00 00:00:00`` for a zero one;
- TIME: ``[-]H:MM:SS[.ffffff]`` with as many hours as it takes; JSON, UUID, INET4/6: their text.

Dates the decoder cannot give.  python-mysql-replication returns None for any DATE or DATETIME with a zero
year, month or day (and says only "out of range"), so which zeros the value held is lost.  For this table the
stream reads those columns raw instead: :func:`raw_temporal` re-types the decoder's column objects (a DATE as
an unsigned 3-byte integer, a DATETIME2 as a BIT string of its bytes, an old DATETIME as an unsigned 8-byte
integer), and :func:`_date` / :func:`_datetime` take the fields apart as the binlog format defines them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from bulkmig.engines.mysql import common_forms


def _fsp_bytes(fsp: int) -> int:
    """Bytes a DATETIME2/TIME2/TIMESTAMP2 spends on its fractional seconds (MySQL's row format)."""
    return (fsp + 1) // 2


def raw_temporal(bc: Any) -> int | None:
    """Make the decoder hand over a DATE/DATETIME column's stored bits rather than a ``datetime`` (which cannot
    hold zero months or days); returns the column's original binlog type, or None when it is not one of
    those.  Call after the drift check, which compares the original types."""
    kind = bc.type
    if kind in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        bc.type, bc.unsigned = FIELD_TYPE.INT24, True
    elif kind == FIELD_TYPE.DATETIME2:
        n = 5 + _fsp_bytes(int(getattr(bc, "fsp", 0) or 0))
        bc.type, bc.bytes, bc.bits = FIELD_TYPE.BIT, n, n * 8
    elif kind == FIELD_TYPE.DATETIME:
        bc.type, bc.unsigned = FIELD_TYPE.LONGLONG, True
    else:
        return None
    return int(kind)


# ---------------------------------------------------------------------------------------- converters
#
# Each takes the decoder's value (never None) and the column (``changes.Col``), and returns the text.


def _text(v: bytes | str, c: Any) -> str:
    """The characters, NUL included: MySQL text holds it (the PostgreSQL form, ``changes._text``, refuses it)."""
    return c.decode(v) if isinstance(v, bytes | bytearray) else str(v)


def _hex(v: bytes | str, c: Any) -> str:
    return common_forms.raw(v).hex()


def _binary(v: bytes | str, c: Any) -> str:
    return common_forms.raw(v).ljust(c.length, b"\x00").hex()  # the binlog strips BINARY(n)'s zero padding


def _enum(v: str, c: Any) -> str:
    return v


def _set(v: set[str], c: Any) -> str:
    return ",".join(m for m in c.labels if m in v)


def _ymd(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _frac(us: int, fsp: int) -> str:
    return f".{us:06d}" if fsp else ""


def _date(v: Any, c: Any) -> str:
    if isinstance(v, dt.date):  # a column not read raw (a table map seen before raw_temporal)
        return v.isoformat()
    v = int(v)  # 3 bytes: year << 9 | month << 5 | day
    return _ymd(v >> 9, (v >> 5) & 0x0F, v & 0x1F)


def _datetime(v: Any, c: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="microseconds" if c.fsp else "seconds")
    if c.binlog_type == FIELD_TYPE.DATETIME:  # old format: the digits YYYYMMDDhhmmss as an 8-byte integer
        date, time = divmod(int(v), 1_000_000)
        year, md = divmod(date, 10_000)
        return f"{_ymd(year, md // 100, md % 100)} {time // 10_000:02d}:{time // 100 % 100:02d}:{time % 100:02d}"
    bits = int(v, 2)  # DATETIME2: 5 bytes of sign, year*13+month, day, hour, minute, second, then the fraction
    nfrac = _fsp_bytes(c.fsp)
    frac, whole = bits & ((1 << (8 * nfrac)) - 1), bits >> (8 * nfrac)
    year_month = (whole >> 22) & 0x1FFFF
    day, hour = (whole >> 17) & 0x1F, (whole >> 12) & 0x1F
    minute, second = (whole >> 6) & 0x3F, whole & 0x3F
    if c.fsp % 2:
        frac //= 10
    us = frac * 10 ** (6 - c.fsp) if c.fsp else 0
    return f"{_ymd(year_month // 13, year_month % 13, day)} {hour:02d}:{minute:02d}:{second:02d}" + _frac(us, c.fsp)


def _timestamp(v: dt.datetime, c: Any) -> str:
    if v == common_forms.EPOCH:  # TIMESTAMP '0000-00-00 00:00:00' is stored as second 0 (a real one starts at second 1)
        return "0000-00-00 00:00:00" + _frac(0, c.fsp)
    return v.strftime("%Y-%m-%d %H:%M:%S") + _frac(v.microsecond, c.fsp)


def _json(v: Any, c: Any) -> str:
    if isinstance(v, bytes | bytearray):  # MariaDB: JSON is a LONGTEXT holding the document's text
        return _text(v, c)
    return common_forms.json_document(v)  # MySQL: the binary JSON, decoded


def unmapped(v: Any, c: Any) -> str:
    return _text(v, c) if isinstance(v, bytes | bytearray) else str(v)


def zero_date(c: Any) -> str:
    """The text of an all-zero value of the column's type (the decoder's None for one it did not read raw)."""
    if c.parsed.name == "date":
        return "0000-00-00"
    return "0000-00-00 00:00:00" + _frac(0, c.fsp)


# One entry per rule of the type map (types.RULES, by its ``source``); a unit test holds them in step with it
# and with the PostgreSQL table.  Rules that differ only in PostgreSQL's target (tinyint(1) as boolean or not,
# TIME as time or interval, WKB or PostGIS) have one MySQL form.  The rules whose text both targets read alike
# come from common_forms; these are MySQL's own.
CONVERTERS: dict[str, Callable[[Any, Any], str]] = {
    **common_forms.CONVERTERS,
    "tinyint(1)": common_forms.integer,
    **dict.fromkeys(common_forms.TEXT_RULES, _text),
    "binary": _binary,
    **dict.fromkeys(common_forms.BLOB_RULES, _hex),
    "enum": _enum,
    "set": _set,
    "date": _date,
    "datetime": _datetime,
    "timestamp": _timestamp,
    "time": common_forms.duration,
    "json": _json,
    "geometry": _hex,
    "geometry/postgis": _hex,
}

__all__ = ["CONVERTERS", "raw_temporal", "unmapped", "zero_date"]
