"""Canonical values: every value of a logical type turned into one Python value, whatever engine or driver
handed it over, so two engines' rows compare equal exactly when their values are equal (see the forms listed in
:mod:`bulkmig.engines.pairing`).  The engines' compare modules build their row normalisers from these; the
pairing and the tally stay in validation.  ``show`` and ``key_text`` write a value and a key for a report.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bulkmig.core.model import Column

MAX_VALUE_CHARS = 60  # a value shown in a report is cut to this

Normaliser = Callable[[Any], Any]
RowNormaliser = Callable[[tuple[Any, ...]], tuple[Any, ...]]


# ------------------------------------------------------------------------------------------ canonical values


@dataclass(frozen=True)
class Converted:
    """A source value with no PostgreSQL form that the load changed on purpose, as a setting says.

    ``target`` is what the target must hold instead (NULL for a zero date), ``original`` the source value as
    text for the report, ``why`` the rule in a few words ("zero date → NULL (zero_dates: null)").
    """

    target: Any
    original: str
    why: str


class Exact(str):
    """A float's exact ``repr`` (or ``NaN``): equal only when the bits agree, and shown without quotes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def canonical_decimal(value: Decimal) -> Any:
    """The same number, written one way: no trailing fractional zeros, no exponent, no negative zero.
    (Not ``Decimal.normalize``: it rounds to the context's 28 digits; MySQL has 65, PostgreSQL more.)"""
    if not value.is_finite():
        return Exact("NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity"))
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    if not any(digits):
        return Decimal(0)
    while exp < 0 and digits[-1] == 0:
        digits, exp = digits[:-1], exp + 1
    if exp > 0:
        digits, exp = digits + (0,) * exp, 0
    return Decimal((sign, digits, exp))


def canonical_float(value: float, *, single: bool = False) -> Exact:
    """``repr`` of the float, after rounding to IEEE single precision for float32 columns (real)."""
    if single:
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    if math.isnan(value):
        return Exact("NaN")
    return Exact(repr(value))


_DURATION = re.compile(r"^\s*(-)?(\d+):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?\s*$")


def parse_duration(text: str) -> dt.timedelta | None:
    """``[-]H+:MM:SS[.ffffff]`` (MySQL TIME's text, beyond 24 h and negative included) as a timedelta."""
    m = _DURATION.match(text)
    if not m:
        return None
    sign, h, mi, s, frac = m.groups()
    delta = dt.timedelta(hours=int(h), minutes=int(mi), seconds=int(s), microseconds=int((frac or "0").ljust(6, "0")))
    return -delta if sign else delta


def canonical_json(text: str | bytes) -> Any:
    """A JSON document as a comparable value: objects as sorted (key, value) tuples, numbers as exact
    Decimals, so key order, spacing and ``1.0`` vs ``1.00`` do not count.  Duplicate keys: the last wins,
    as in PostgreSQL's jsonb.  Text that is not JSON stays text (and differs from any document)."""
    try:
        doc = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)
    except ValueError:
        return text
    return _freeze(doc)


def _freeze(doc: Any) -> Any:
    if isinstance(doc, dict):
        return ("{}", tuple(sorted((k, _freeze(v)) for k, v in doc.items())))
    if isinstance(doc, list):
        return ("[]", tuple(_freeze(v) for v in doc))
    if isinstance(doc, Decimal):
        return canonical_decimal(doc)
    return doc


_CHAR_TYPE = re.compile(r"^\s*(char|character|bpchar|nchar)\s*(\(|$)", re.I)


def is_char(column: Column) -> bool:
    """A blank-padded CHAR column (target ``char(n)``): trailing blanks are not part of the value."""
    return bool(_CHAR_TYPE.match(column.target_type or column.source_type or ""))


@dataclass(frozen=True)
class Canon:
    """How one column's values become canonical.  A value whose type is in ``ready`` already is one (and NULL
    always is), so the common case costs a type check and no call; any other value goes through ``convert``.
    (Decimals are ready as they come: equality and hashing are numeric, so ``1.50`` pairs with ``1.5``; only
    the multiset digest needs one spelling, see :func:`_digest`.)"""

    ready: tuple[type, ...]
    convert: Normaliser

    def then(self, quirk: Normaliser) -> Canon:
        """An engine's quirk first (values of a ``ready`` type skip it too), then this canonical form."""
        return Canon(self.ready, chain(quirk, self.convert))


def canonical(column: Column) -> Canon:
    """The engine-neutral canonical form for the column's logical type.  Input is what a driver hands over
    after the engine's own quirks are taken care of; a value of an unexpected kind is returned unchanged,
    so it shows up as different rather than being coerced into agreement."""
    logical = column.logical_type
    if logical == "integer":
        return Canon((int,), _integer)
    if logical == "bool":
        return Canon((bool,), _bool)
    if logical == "decimal":
        return Canon((Decimal,), _decimal)
    if logical == "float":
        single = column.arrow_type == "float32"
        return Canon((), lambda v: _float(v, single))
    if logical in ("text", "enum", "bits"):
        return Canon((), _char) if is_char(column) else Canon((str,), _text)
    if logical in ("binary", "geometry"):
        return Canon((bytes,), _bytes)
    if logical == "date":
        return Canon((dt.date,), _date)
    if logical == "timestamp":
        return Canon((dt.datetime,), _timestamp)
    if logical == "timestamptz":
        return Canon((), _timestamptz)
    if logical in ("time", "interval"):
        return Canon((dt.timedelta,), _duration)
    if logical == "json":
        return Canon((), lambda v: canonical_json(v) if isinstance(v, str | bytes) else v)
    if logical == "array":
        return Canon((), lambda v: tuple(v) if isinstance(v, list | tuple) else v)
    if logical == "uuid":
        return Canon((), lambda v: str(v).lower())
    if logical == "network":
        return Canon((), _network)
    return Canon((str,), _text)  # anything else travels as text


def _integer(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value():
        return int(v)
    return v


def _bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    return v


def _decimal(v: Any) -> Any:
    if isinstance(v, Decimal):
        return canonical_decimal(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return Decimal(v)
    if isinstance(v, float) and math.isfinite(v):
        return canonical_decimal(Decimal(repr(v)))  # the shortest decimal that is this float
    if isinstance(v, str):
        try:
            return canonical_decimal(Decimal(v))
        except InvalidOperation:
            return v
    return v


def _float(v: Any, single: bool) -> Any:
    if isinstance(v, float | int | Decimal) and not isinstance(v, bool):
        return canonical_float(float(v), single=single)
    return v


def _text(v: Any) -> Any:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v


def _char(v: Any) -> Any:
    v = _text(v)
    return v.rstrip(" ") if isinstance(v, str) else v


def _bytes(v: Any) -> Any:
    return bytes(v) if isinstance(v, memoryview | bytearray) else v


def _date(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.time() == dt.time(0) and v.tzinfo is None:
        return v.date()
    return v


def _timestamp(v: Any) -> Any:
    if type(v) is dt.date:
        return dt.datetime(v.year, v.month, v.day)
    return v


def _timestamptz(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC)
    return v


def _duration(v: Any) -> Any:
    if isinstance(v, dt.time):
        return dt.timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
    if isinstance(v, str):
        parsed = parse_duration(v)  # not `or v`: a zero duration is falsy
        return v if parsed is None else parsed
    return v


def _network(v: Any) -> Any:
    try:
        return str(ipaddress.ip_interface(str(v))).removesuffix("/32").removesuffix("/128")
    except ValueError:
        return str(v)


def chain(first: Normaliser, then: Normaliser) -> Normaliser:
    """``first`` (an engine's quirks), then ``then`` (the canonical form); NULL and Converted pass through."""

    def normalise(v: Any) -> Any:
        v = first(v)
        if v is None or isinstance(v, Converted):
            return v
        return then(v)

    return normalise


def per_column(canons: list[Canon]) -> RowNormaliser:
    """A row normaliser with one :class:`Canon` per selected value (one expression per column).

    This runs once per row on each side, so it is written for speed: only values of a type that is not
    ready already cost a call."""
    work = [(i, c.ready, c.convert) for i, c in enumerate(canons)]

    def normalise(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = None
        for i, ready, convert in work:
            v = row[i]
            if v is not None and type(v) not in ready:
                if out is None:
                    out = list(row)
                out[i] = convert(v)
        return row if out is None else tuple(out)

    return normalise


def show(value: Any) -> str:
    """A value for the report: SQL-ish, cut to ``MAX_VALUE_CHARS``."""
    if value is None:
        return "NULL"
    if isinstance(value, Converted):
        return f"{value.original} ({value.why})"
    if isinstance(value, bytes):
        return "\\x" + value[: MAX_VALUE_CHARS // 2].hex() + ("…" if len(value) > MAX_VALUE_CHARS // 2 else "")
    if isinstance(value, dt.timedelta):
        total = abs(value)
        hours, rest = divmod(total.days * 86400 + total.seconds, 3600)
        text = f"{'-' if value < dt.timedelta(0) else ''}{hours}:{rest // 60:02d}:{rest % 60:02d}"
        return text + (f".{total.microseconds:06d}" if total.microseconds else "")
    if isinstance(value, dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    text = str(value) if isinstance(value, Decimal | Exact | int) else repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


_NEEDS_QUOTES = re.compile(r'[\s,()"\\]')


def key_text(key: tuple[Any, ...]) -> str:
    """A key the way PostgreSQL prints ``ROW(...)::text`` (what PG → PG validation reports): ``(1,abc)``."""
    parts = []
    for v in key:
        text = "" if v is None else show(v) if not isinstance(v, str) else v
        if v is not None and (text == "" or _NEEDS_QUOTES.search(text)):
            text = '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
        parts.append(text)
    return "(" + ",".join(parts) + ")"
