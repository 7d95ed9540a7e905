"""Does a stored SQLite value fit the PostgreSQL type its column maps to, and what does it become?

SQLite lets any cell hold any storage class, so every value is checked against its column's target type.
One function decides (:func:`convert`): the catalog's value scan counts what it refuses and shows an
example, and the reader refuses the same values by name — so the report and the load always agree.

To keep reads fast, :func:`ok_sql` gives an SQL condition that is true for values that certainly fit
(an integer in an INTEGER column); only the rest reach Python.  It may be stricter than :func:`convert`,
never looser.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

# The kinds of conversion, one per logical type (plus the length / precision that constrains them).
FAST_KINDS = ("int", "float", "text", "binary")  # the driver's value is already the Arrow value


class Misfit(ValueError):
    """A stored value that does not fit its column's target type; ``reason`` says how, in a phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Kind:
    name: str  # int | float | text | binary | bool | decimal | numeric | date | timestamp | ...
    n: int | None = None  # varchar(n)
    p: int = 0  # numeric(p, s)
    s: int = 0
    target: str = ""  # the PostgreSQL type, for messages

    @property
    def fast(self) -> bool:
        return self.name in FAST_KINDS


_VARCHAR_RE = re.compile(r"^(?:varchar|character varying)\((\d+)\)$")
_DECIMAL_RE = re.compile(r"^decimal(?:128|256)\((\d+), (\d+)\)$")
_LOGICAL_KINDS = {
    "integer": "int",
    "float": "float",
    "text": "text",
    "binary": "binary",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time",
    "json": "json",
    "uuid": "uuid",
}


def kind_of(logical_type: str, arrow_type: str, target_type: str | None) -> Kind:
    """The conversion a column needs, from what the plan says about it (no settings needed at read time)."""
    target = target_type or ""
    if logical_type == "decimal":
        if m := _DECIMAL_RE.match(arrow_type):
            return Kind("decimal", p=int(m.group(1)), s=int(m.group(2)), target=target)
        return Kind("numeric", target=target)
    name = _LOGICAL_KINDS.get(logical_type)
    if name is None:
        raise ValueError(f"no SQLite value conversion for logical type {logical_type!r}")
    n = None
    if name == "text" and (m := _VARCHAR_RE.match(target.lower())):
        n = int(m.group(1))
    return Kind(name, n=n, target=target)


# ------------------------------------------------------------------------------------------ messages


def describe(value: Any) -> str:
    """A stored value as a report shows it: its storage class and a short form of it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return f"integer {int(value)}"
    if isinstance(value, float):
        return f"real {value!r}"
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        more = "…" if len(raw) > 16 else ""
        return f"blob x'{raw[:16].hex()}'{more} ({len(raw)} bytes)"
    text = str(value)
    return f"text {text[:60]!r}{'…' if len(text) > 60 else ''}"


# ----------------------------------------------------------------------------------------- conversion

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}:\d{2})?$"
)
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$")
_UUID_RE = re.compile(r"^\{?[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}\}?$")
_NUMERIC_DATE = "invalid date number "


def _to_text(value: Any, kind: Kind) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)  # the shortest text that reads back as the same double
    else:
        raise Misfit(f"{describe(value)} is not text")
    if "\x00" in text:
        raise Misfit(f"{describe(value)} holds a NUL character, which PostgreSQL text cannot")
    if kind.n is not None and len(text) > kind.n:
        raise Misfit(f"{describe(value)} has {len(text)} characters, more than {kind.target}")
    return text


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Misfit(f"{describe(value)} is not a finite number")
        return Decimal(repr(value))
    if isinstance(value, str) and _NUMBER_RE.match(value):
        return Decimal(value)
    raise Misfit(f"{describe(value)} is not a number")


def _fit_decimal(value: Any, kind: Kind) -> Decimal:
    if type(value) is float:  # the common case, decided on repr's text without Decimal arithmetic
        text = repr(value)
        dot = text.find(".")
        if dot > 0 and "e" not in text:
            whole, fraction = text[:dot].lstrip("-"), text[dot + 1 :].rstrip("0")
            if len(fraction) <= kind.s and (whole == "0" or len(whole) <= kind.p - kind.s):
                return Decimal(text)
    d = _to_decimal(value)
    if d.as_tuple().exponent < -kind.s:  # type: ignore[operator]
        stripped = d.normalize()
        if stripped.as_tuple().exponent < -kind.s:  # type: ignore[operator]
            raise Misfit(f"{describe(value)} has more than {kind.s} decimal places ({kind.target} would round it)")
        d = stripped
    if d != 0 and d.adjusted() + 1 > kind.p - kind.s:
        raise Misfit(f"{describe(value)} has more than {kind.p - kind.s} digits before the point ({kind.target})")
    return d


def _numeric_text(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, float):
        return repr(value)
    _to_decimal(value)  # refuses what is not a number
    return str(value)


def _parse_datetime(value: Any) -> tuple[datetime, timedelta | None]:
    """ISO 8601 text as SQLite's date functions read it (date, optional time, optional offset)."""
    if not isinstance(value, str):
        raise Misfit(f"{describe(value)} is a date stored as a number (numeric_dates: refuse)")
    if value.startswith(_NUMERIC_DATE):
        raise Misfit(
            f"number {value[len(_NUMERIC_DATE) :]} is outside the range of dates it is read as "
            "(settings.sqlite.numeric_dates chooses: auto, julianday, unixepoch, unixepoch_ms)"
        )
    m = _DATETIME_RE.match(value)
    if not m:
        raise Misfit(f"{describe(value)} is not an ISO 8601 date/time")
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    micro = 0
    if frac:
        if frac[6:].strip("0"):
            raise Misfit(f"{describe(value)} has more than microsecond precision")
        micro = int(frac[:6].ljust(6, "0"))
    try:
        dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), micro)
    except ValueError as exc:
        raise Misfit(f"{describe(value)} is not a valid date/time ({exc})") from None
    offset = None
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        h, m_ = int(tz[1:3]), int(tz[4:6])
        if h > 14 or m_ > 59:
            raise Misfit(f"{describe(value)} has an invalid UTC offset {tz}")
        offset = sign * timedelta(hours=h, minutes=m_)
    elif tz == "Z":
        offset = timedelta(0)
    return dt, offset


def _canonical(value: Any) -> datetime | None:
    """'YYYY-MM-DD HH:MM:SS', the form SQLite's date functions write, parsed in C (which checks every
    field's range); None for any other form, which :func:`_parse_datetime` then reads or refuses."""
    if (
        type(value) is str
        and len(value) == 19
        and value[10] == " "
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
        and value.isascii()
    ):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _to_date(value: Any) -> date:
    if type(value) is str and len(value) == 10 and value[4] == value[7] == "-" and value.isascii():
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    dt, offset = _parse_datetime(value)
    if dt.time() != datetime.min.time():
        raise Misfit(f"{describe(value)} has a time of day; a date column would drop it")
    if offset:
        raise Misfit(f"{describe(value)} has a UTC offset; a date column would drop it")
    return dt.date()


def _to_timestamp(value: Any) -> datetime:
    fast = _canonical(value)
    if fast is not None:
        return fast
    dt, offset = _parse_datetime(value)
    if offset:
        raise Misfit(f"{describe(value)} has a UTC offset; declare the column TIMESTAMPTZ to keep the instant")
    return dt


def _to_timestamptz(value: Any) -> datetime:
    fast = _canonical(value)
    if fast is not None:
        return fast.replace(tzinfo=UTC)
    dt, offset = _parse_datetime(value)
    try:
        return dt.replace(tzinfo=timezone(offset or timedelta(0))).astimezone(UTC)
    except OverflowError:
        raise Misfit(f"{describe(value)} is outside the timestamp range in UTC") from None


def _to_time(value: Any) -> str:
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise Misfit(f"{describe(value)} is not a time of day HH:MM[:SS[.ffffff]]")
    hh, mi, ss, frac = m.groups()
    if int(hh) > 23 or int(mi) > 59 or int(ss or 0) > 59:
        raise Misfit(f"{describe(value)} is not a valid time of day")
    if frac and frac[6:].strip("0"):
        raise Misfit(f"{describe(value)} has more than microsecond precision")
    text = f"{hh}:{mi}:{ss or '00'}"
    return f"{text}.{frac[:6]}" if frac and frac[:6].strip("0") else text


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _to_json(value: Any) -> str:
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Misfit(f"{describe(value)} is not a JSON number")
        return repr(value)
    if not isinstance(value, str):
        raise Misfit(f"{describe(value)} is not JSON text (SQLite's binary JSONB? store json(col) instead)")
    if "\\u0000" in value.lower():
        raise Misfit(f"{describe(value)} holds \\u0000, which PostgreSQL jsonb cannot")
    try:
        json.loads(value, parse_constant=_no_constants)
    except ValueError as exc:
        raise Misfit(f"{describe(value)} is not valid JSON ({str(exc).split(':')[0]})") from None
    return value


def _to_uuid(value: Any) -> str:
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise Misfit(f"{describe(value)} is not a UUID")
    return str(uuid.UUID(value.strip("{}")))


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    raise Misfit(f"{describe(value)} is not an integer")


def _to_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int and float(value) == value:
        return float(value)
    raise Misfit(f"{describe(value)} is not a real number")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    raise Misfit(f"{describe(value)} is not a blob")


def _to_bool(value: Any) -> bool:
    if type(value) is int and value in (0, 1):
        return value == 1
    raise Misfit(f"{describe(value)} is not a boolean (0 or 1)")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "binary": _to_bytes,
    "bool": _to_bool,
    "numeric": _numeric_text,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "timestamptz": _to_timestamptz,
    "time": _to_time,
    "json": _to_json,
    "uuid": _to_uuid,
}


def converter(kind: Kind) -> Callable[[Any], Any]:
    """The function turning a stored value (not None) into its Arrow-ready Python value, raising
    :class:`Misfit` when it cannot."""
    if kind.name == "text":
        return lambda v: _to_text(v, kind)
    if kind.name == "decimal":
        return lambda v: _fit_decimal(v, kind)
    return _CONVERTERS[kind.name]


def convert(kind: Kind, value: Any) -> Any:
    """The Arrow-ready Python value ``value`` (not None) becomes, or :class:`Misfit` saying why it cannot."""
    return converter(kind)(value)


def checker(kind: Kind) -> Callable[[Any], str | None]:
    """A function saying why a stored value does not fit ``kind`` (None: it fits)."""
    conv = converter(kind)

    def check(value: Any) -> str | None:
        if value is None:
            return None
        try:
            conv(value)
        except Misfit as exc:
            return exc.reason
        except (InvalidOperation, ValueError, OverflowError) as exc:  # a check missed above: still refuse
            return f"{describe(value)} cannot be read ({exc})"
        return None

    return check


def misfit(kind: Kind, value: Any) -> str | None:
    """Why ``value`` does not fit (None: it fits)."""
    return checker(kind)(value)


def as_text(kind: Kind, value: Any) -> str:
    """The text form of a converted value (for columns read as text, and for reports)."""
    v = convert(kind, value)
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --------------------------------------------------------------------------------------------- SQL


def ok_sql(kind: Kind, ref: str) -> str:
    """An SQL condition over the column reference ``ref``, true for values that certainly fit ``kind``."""
    no_nul = f"instr(CAST({ref} AS BLOB), x'00') = 0"
    name = kind.name
    if name == "int":
        return f"typeof({ref}) IN ('integer', 'null')"
    if name == "float":
        return f"typeof({ref}) IN ('real', 'null')"
    if name == "text":
        length = f" AND length({ref}) <= {kind.n}" if kind.n is not None else ""
        return f"({ref} IS NULL OR (typeof({ref}) = 'text' AND {no_nul}{length}))"
    if name == "binary":
        return f"typeof({ref}) IN ('blob', 'null')"
    if name == "bool":
        return f"({ref} IS NULL OR (typeof({ref}) = 'integer' AND {ref} IN (0, 1)))"
    if name == "decimal":
        digits = kind.p - kind.s
        if digits >= 19:
            return f"typeof({ref}) IN ('integer', 'null')"
        limit = 10**digits
        return f"({ref} IS NULL OR (typeof({ref}) = 'integer' AND {ref} > -{limit} AND {ref} < {limit}))"
    if name == "numeric":
        return f"typeof({ref}) IN ('integer', 'real', 'null')"
    return f"{ref} IS NULL"
