"""The Arrow kernels of SQLite's rules that the expression compiler (:mod:`bulkmig.transform.expressions`)
strings together: truth, text, division, modulo, ``CAST(text AS INTEGER)``, ``substr`` bounds, SHA-256, and
the value forms of dates and timestamps.  Each takes and gives whole arrays, so an added column costs about
what copying a column costs."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

INTEGER, REAL, TEXT, NULL = "INTEGER", "REAL", "TEXT", "NULL"
ARROW = {INTEGER: pa.int64(), REAL: pa.float64(), TEXT: pa.string(), NULL: pa.null()}
END = sys.maxsize  # utf8_slice_codeunits' "to the end"
JULIAN_EPOCH_US = 210_866_760_000_000_000  # 1970-01-01 in microseconds since -4713-11-24 12:00 (Julian day 0)


@dataclass(frozen=True)
class Value:
    """An evaluated node: ``arr`` (length of the batch) in the Arrow form of ``kind``; ``ts``: for a date or
    timestamp column (and what date functions made of it) the typed values, so date functions need no parsing."""

    arr: pa.Array
    kind: str
    ts: pa.Array | None = None


def uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp_text(ts: pa.Array) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS``, with ``.ffffff`` only when the value has a fraction (Python's and sqlite3's form)."""
    text = pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")
    return pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")


def to_millis(ts: pa.Array) -> pa.Array:
    """Timestamps rounded to the nearest millisecond, as SQLite's date functions hold them (shifted to the
    Julian epoch first, so the integer division floors for dates before 1970 too)."""
    shifted = pc.add(pc.cast(ts, pa.int64()), JULIAN_EPOCH_US + 500)
    ms = pc.multiply(pc.divide(shifted, 1000), 1000)
    return pc.cast(pc.subtract(ms, JULIAN_EPOCH_US), pa.timestamp("us"))


def repeat(scalar: pa.Scalar, n: int) -> pa.Array:
    return pa.nulls(n, scalar.type) if not scalar.is_valid else pa.repeat(scalar, n)


def as_int(arr: pa.Array) -> pa.Array:
    return pc.cast(arr, pa.int64())


def truth(v: Value) -> pa.Array:
    """SQLite's truth of a number: non-zero (NULL stays NULL)."""
    if v.kind == NULL:
        return pa.nulls(len(v.arr), pa.bool_())
    return pc.not_equal(v.arr, 0)


def text(v: Value) -> pa.Array:
    """A value as TEXT (INTEGER prints as digits; NULL stays NULL)."""
    if v.kind == TEXT:
        return v.arr
    return pc.cast(v.arr, pa.string())


def typed(v: Value, kind: str) -> pa.Array:
    return v.arr if v.kind == kind else pc.cast(v.arr, ARROW[kind])


def nan_null(arr: pa.Array) -> pa.Array:
    """SQLite has no NaN: an operation that makes one (inf - inf) gives NULL."""
    if pa.types.is_floating(arr.type):
        return pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return arr


def nonzero(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, 0), pa.scalar(None, arr.type), arr)


def div(a: Value, b: Value, kind: str) -> Value:
    x, y = (pc.cast(a.arr, pa.float64()), pc.cast(b.arr, pa.float64())) if kind == REAL else (a.arr, b.arr)
    return Value(nan_null(pc.divide(x, nonzero(y))), kind)


def mod(a: Value, b: Value, kind: str) -> Value:
    """SQLite's %: both operands as integers (REAL ones truncated), the dividend's sign, REAL when one was REAL."""
    x = a.arr if a.kind == INTEGER else pc.cast(pc.trunc(a.arr), pa.int64())
    y = nonzero(b.arr if b.kind == INTEGER else pc.cast(pc.trunc(b.arr), pa.int64()))
    rem = pc.subtract(x, pc.multiply(pc.divide(x, y), y))
    return Value(pc.cast(rem, pa.float64()) if kind == REAL else rem, kind)


def text_to_int(arr: pa.Array) -> pa.Array:
    """CAST(text AS INTEGER): the longest integer prefix after leading spaces, 0 when there is none."""
    found = pc.struct_field(pc.extract_regex(arr, pattern=r"^[ \t\n\f\r]*(?P<v>[+-]?[0-9]+)"), [0])
    as_int = pc.cast(pc.replace_substring_regex(found, pattern=r"^\+", replacement=""), pa.int64())
    return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.int64()), pc.fill_null(as_int, 0))


def substr_bounds(start: int, length: int | None) -> tuple[int, int]:
    """SQLite's substr(X, start, length) as a Python slice of X's characters (derived from its func.c)."""
    if length is None:
        return (start - 1 if start > 0 else start if start < 0 else 0), END
    if length >= 0:
        if start > 0:
            return start - 1, start - 1 + length
        if start == 0:
            return 0, max(0, length - 1)
        return start, (start + length if start + length < 0 else END)
    n = -length
    if start > 0:
        return max(0, start - 1 - n), start - 1
    if start == 0:
        return 0, 0
    return start - n, start


def sha256_hex(arr: pa.Array) -> pa.Array:
    """Upper-case hex SHA-256 of each value's UTF-8 text (NULL stays NULL).  hashlib per value, the one
    per-value Python step here: Arrow has no SHA-256 kernel (about 2 µs a value on this project's machine)."""
    return pa.array(
        [None if v is None else hashlib.sha256(v.encode()).hexdigest().upper() for v in arr.to_pylist()],
        pa.string(),
    )
