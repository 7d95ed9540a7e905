"""Compare one table across engines (a MySQL/MariaDB or SQLite source, the PostgreSQL target), value by value.

PostgreSQL → PostgreSQL validation lets both servers hash the same canonical row text; across engines there
is no common text (MySQL prints ``1.5``, ``0000-00-00``, ``a,c``; PostgreSQL ``1.50``, NULL, ``{a,c}``), so
both sides are streamed here, every value is turned into one canonical Python value by its logical type,
and rows are paired by primary key:

- integers → int, decimals → Decimal (equal by value: 1.50 is 1.5), floats → their exact ``repr`` (a float32 column
  is compared as float32: MySQL's text for FLOAT keeps 6 digits, so the source reads it widened to double),
  booleans → bool (MySQL's tinyint(1) 0/1), dates/timestamps → date/datetime (timestamptz in UTC),
  time/interval → timedelta, JSON → parsed (key order and spacing do not count), sets → tuples, CHAR →
  without trailing blanks (both engines ignore them), text → exactly as stored (no trimming, no Unicode
  normalisation: a changed code point is a changed value), bytes → bytes.
- A source value PostgreSQL cannot hold and that the load turned into something else on purpose (a MySQL
  zero date loaded as NULL under ``zero_dates: null``) arrives as :class:`Converted`: it is counted as a
  *converted value*, with its column and key, never as equal and never as a mismatch.
- Integer-like keys sort the same in every engine, so both sides are read ``ORDER BY`` the key and merged
  in one pass, ``CHUNK_ROWS`` at a time (memory stays flat whatever the table's size).  Text keys sort by
  each engine's collation ('_' before or after 'a'; 'B' before or after 'a'), so they are paired through a
  dict instead, split into buckets by key hash and spilled to temporary files when the table is larger than
  ``BUCKET_ROWS``, so memory stays bounded per bucket.  Tables without a primary key are compared as
  multisets of rows (a digest per canonical row, counted).

Each engine's quirks (what to SELECT, how its driver hands values over) live in
``bulkmig/engines/<engine>/compare.py``; this module holds what is common: the canonical forms, the pairing
and the tally.  :func:`compare_foreign` is what ``bulkmig validate`` calls for a foreign source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import ipaddress
import json
import math
import operator
import pickle
import re
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bulkmig.core.model import Column, Table
from bulkmig.engines.postgres.connect import connect as pg_connect
from bulkmig.engines.postgres.sql import ident, qualified

CHUNK_ROWS = 10_000  # rows fetched per round trip on each side
BUCKET_ROWS = 200_000  # rows held in memory at once when pairing through a dict
SPILL_BATCH = 2_000  # rows per pickle when a bucket spills to its temporary file
MAX_SHOWN = 10  # differences shown with their values
MAX_KEYS = 20  # keys listed per kind (differing, converted)
MAX_VALUE_CHARS = 60

# Logical types whose values sort the same in every engine: keys made of them are merged in order.
ORDERED_LOGICAL = frozenset({"integer", "decimal", "bool", "date", "timestamp", "timestamptz"})

# Source engine -> the module holding its side of the comparison (``connect``, ``select_sql``, ``row_normaliser``).
ENGINE_MODULES = {"mysql": "bulkmig.engines.mysql.compare", "sqlite": "bulkmig.engines.sqlite.compare"}

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


# ------------------------------------------------------------------------------------------ the target side


def target_expression(column: Column) -> str:
    """What to SELECT on PostgreSQL for the column: types psycopg does not hand over as plain values are
    read as text (then parsed like the source's text), time as interval (so 24:00:00 fits)."""
    col = ident(column.target)
    logical, ttype = column.logical_type, (column.target_type or "").lower()
    if logical in ("time", "interval"):
        return f"{col}::interval"
    if logical == "geometry" and ttype.startswith("geometry"):
        return f"ST_AsBinary({col})"
    if logical == "array":
        return f"{col}::text[]"
    if logical in ("json", "bits", "uuid", "network", "enum") or logical not in _PLAIN_LOGICAL:
        return f"{col}::text"
    return col


_PLAIN_LOGICAL = frozenset(
    {"integer", "bool", "decimal", "float", "text", "binary", "geometry", "date", "timestamp", "timestamptz"}
)


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


# ------------------------------------------------------------------------------------------ the tally


@dataclass
class Tally:
    """What one table's comparison found; becomes the foreign fields of ``validate.TableResult``.

    Keys are handed in as they come (a value for a one-column key, a tuple otherwise) and turned into text
    only when something is recorded, so equal rows cost no formatting."""

    columns: list[str]
    single_key: bool = True
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    converted: int = 0
    method: str = ""
    differences: list[dict[str, Any]] = field(default_factory=list)
    differing_keys: list[str] = field(default_factory=list)
    conversions: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differing) and self.source_rows == self.target_rows

    def key_text(self, key: Any) -> str | None:
        if key is None:
            return None
        return key_text((key,) if self.single_key else key)

    def _key(self, key: str | None) -> None:
        if key is not None and len(self.differing_keys) < MAX_KEYS:
            self.differing_keys.append(key)

    def missing_row(self, key: Any, row: tuple[Any, ...], count: int = 1) -> None:
        self.missing += count
        text = self.key_text(key)
        self._key(text)
        if len(self.differences) < MAX_SHOWN:
            self.differences.append({"key": text, "kind": "missing on target", "row": _show_row(self.columns, row)})

    def extra_row(self, key: Any, row: tuple[Any, ...], count: int = 1) -> None:
        self.extra += count
        text = self.key_text(key)
        self._key(text)
        if len(self.differences) < MAX_SHOWN:
            self.differences.append({"key": text, "kind": "extra on target", "row": _show_row(self.columns, row)})

    def convert(self, column: str, value: Converted, key: Any) -> None:
        self.converted += 1
        entry = self.conversions.setdefault(column, {"column": column, "why": value.why, "count": 0, "keys": []})
        entry["count"] += 1
        if len(entry["keys"]) < MAX_KEYS:
            entry["keys"].append(self.key_text(key) if key is not None else f"value {value.original}")

    def pair(self, key: Any, source: tuple[Any, ...], target: tuple[Any, ...]) -> None:
        """Compare two rows with the same key, column by column (equal rows: one tuple comparison)."""
        if source == target and list(map(type, source)) == list(map(type, target)):
            return
        bad = []
        for name, s, t in zip(self.columns, source, target, strict=True):
            if isinstance(s, Converted):
                if t == s.target and type(t) is type(s.target):
                    self.convert(name, s, key)
                    continue
                bad.append({"column": name, "source": show(s), "target": show(t)})
            elif s != t or type(s) is not type(t):
                bad.append({"column": name, "source": show(s), "target": show(t)})
        if bad:
            self.differing += 1
            text = self.key_text(key)
            self._key(text)
            if len(self.differences) < MAX_SHOWN:
                self.differences.append({"key": text, "kind": "differs", "columns": bad})


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


def _show_row(columns: list[str], row: tuple[Any, ...]) -> dict[str, str]:
    return {name: show(v) for name, v in zip(columns, row, strict=True)}


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


# ------------------------------------------------------------------------------------------ pairing


class _OutOfOrder(Exception):
    """A side's keys did not come in ascending order (a collation surprise): pair through a dict instead."""


def key_getter(key_idx: list[int]) -> Callable[[tuple[Any, ...]], Any]:
    """The key of a row: the value itself for a one-column key, else a tuple (``operator.itemgetter``)."""
    return operator.itemgetter(*key_idx)


def _ordered(rows: Iterable[tuple[Any, ...]], key_idx: list[int]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """(key, row) in the order given, checking that keys strictly ascend; NULLs and keys of kinds that do
    not compare (a Converted zero date, text in an integer key) have no order to trust."""
    get = key_getter(key_idx)
    last: Any = _START
    for row in rows:
        key = get(row)
        try:
            if key is None or (len(key_idx) > 1 and None in key) or not last < key:
                raise _OutOfOrder
        except TypeError:
            raise _OutOfOrder from None
        last = key
        yield key, row


class _Start:
    """Less than any key: the first key of a stream is in order."""

    def __lt__(self, other: Any) -> bool:
        return True


_START = _Start()


def merge(
    source: Iterable[tuple[Any, ...]], target: Iterable[tuple[Any, ...]], key_idx: list[int], tally: Tally
) -> None:
    """One pass over two key-ordered streams.  Raises :class:`_OutOfOrder` when the keys cannot be merged
    (not ascending on a side, or of kinds that do not compare): the caller pairs through a dict instead."""
    src, tgt = _ordered(source, key_idx), _ordered(target, key_idx)
    s, t = next(src, None), next(tgt, None)
    while s is not None and t is not None:
        try:
            if s[0] == t[0]:
                tally.pair(s[0], s[1], t[1])
                tally.source_rows += 1
                tally.target_rows += 1
                s, t = next(src, None), next(tgt, None)
            elif s[0] < t[0]:
                tally.source_rows += 1
                tally.missing_row(s[0], s[1])
                s = next(src, None)
            else:
                tally.target_rows += 1
                tally.extra_row(t[0], t[1])
                t = next(tgt, None)
        except TypeError:
            raise _OutOfOrder from None
    while s is not None:
        tally.source_rows += 1
        tally.missing_row(s[0], s[1])
        s = next(src, None)
    while t is not None:
        tally.target_rows += 1
        tally.extra_row(t[0], t[1])
        t = next(tgt, None)


def _as_target(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row the target should hold: converted values replaced by what they were converted to."""
    return tuple(v.target if isinstance(v, Converted) else v for v in row)


def _digest(row: tuple[Any, ...]) -> bytes:
    """A row's identity for multiset comparison: one spelling per value (decimals without trailing zeros)."""
    spelled = tuple(canonical_decimal(v) if type(v) is Decimal else v for v in row)
    return hashlib.blake2b(repr(spelled).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Buckets:
    """Rows spread over ``n`` buckets by key hash: a list in memory when n == 1, else temporary files
    (written in pickled batches of ``SPILL_BATCH`` rows: one pickle per row costs twice as much)."""

    def __init__(self, n: int, directory: Path) -> None:
        self.n = n
        self.pending: list[list[tuple[Any, Any]]] = [[] for _ in range(n)]
        self.files: list[Any] = []
        if n > 1:
            directory.mkdir()
            self.files = [open(directory / f"b{i}", "w+b") for i in range(n)]  # noqa: SIM115

    def add(self, key: Any, row: tuple[Any, ...]) -> None:
        if not self.files:
            self.pending[0].append((key, row))
            return
        i = hash(key) % self.n
        batch = self.pending[i]
        batch.append((key, row))
        if len(batch) >= SPILL_BATCH:
            pickle.dump(batch, self.files[i], pickle.HIGHEST_PROTOCOL)
            self.pending[i] = []

    def bucket(self, i: int) -> Iterator[tuple[Any, Any]]:
        if self.files:
            f = self.files[i]
            f.seek(0)
            while True:
                try:
                    yield from pickle.load(f)
                except EOFError:
                    break
            f.close()
        yield from self.pending[i]
        self.pending[i] = []

    def close(self) -> None:
        for f in self.files:
            f.close()


def hash_join(
    source: Iterable[tuple[Any, ...]],
    target: Iterable[tuple[Any, ...]],
    key_idx: list[int] | None,
    tally: Tally,
    expected_rows: int,
) -> None:
    """Pair rows through a dict, bucket by bucket.  ``key_idx`` None: no primary key, so the whole row is the
    key and rows are counted (a multiset).  Buckets spill to temporary files above ``BUCKET_ROWS`` rows."""
    n = max(1, math.ceil(expected_rows / BUCKET_ROWS))
    get = key_getter(key_idx) if key_idx else None
    with tempfile.TemporaryDirectory(prefix="bulkmig-validate-") as tmp:
        src, tgt = _Buckets(n, Path(tmp) / "s"), _Buckets(n, Path(tmp) / "t")
        try:
            for row in source:
                tally.source_rows += 1
                if get is None:
                    for name, v in zip(tally.columns, row, strict=True):
                        if isinstance(v, Converted):
                            tally.convert(name, v, None)
                    row = _as_target(row)
                    src.add(_digest(row), row)
                else:
                    src.add(_key_value(get(row)), row)
            for row in target:
                tally.target_rows += 1
                tgt.add(_digest(row) if get is None else get(row), row)
            for i in range(n):
                _join_bucket(src.bucket(i), tgt.bucket(i), get is None, tally)
        finally:
            src.close()
            tgt.close()


def _key_value(key: Any) -> Any:
    """A key with any Converted part replaced by its source text (a zero date in a key pairs with nothing)."""
    if isinstance(key, Converted):
        return key.original
    if isinstance(key, tuple) and any(isinstance(v, Converted) for v in key):
        return tuple(v.original if isinstance(v, Converted) else v for v in key)
    return key


def _join_bucket(
    source: Iterable[tuple[Any, Any]], target: Iterable[tuple[Any, Any]], multiset: bool, tally: Tally
) -> None:
    if multiset:
        counts: dict[Any, list[Any]] = {}
        for digest, row in source:
            entry = counts.setdefault(digest, [0, row])
            entry[0] += 1
        for digest, row in target:
            entry = counts.get(digest)
            if entry is None or entry[0] == 0:
                tally.extra_row(None, row)
            else:
                entry[0] -= 1
        for count, row in counts.values():
            if count:
                tally.missing_row(None, row, count)
        return
    rows: dict[Any, tuple[Any, ...]] = {}
    for key, row in source:
        if key in rows and len(tally.notes) < MAX_SHOWN:
            tally.notes.append(f"key {tally.key_text(key)} appears twice on the source (after normalisation)")
        rows[key] = row
    for key, row in target:
        s = rows.pop(key, None)
        if s is None:
            tally.extra_row(key, row)
        else:
            tally.pair(key, s, row)
    for key, row in rows.items():
        tally.missing_row(key, row)


# ------------------------------------------------------------------------------------------ one table


def engine_module(engine: str) -> Any:
    """The source engine's side of the comparison: ``connect(endpoint)`` (a DB-API connection whose
    cursors stream), ``select_sql(table, columns, ordered)`` and ``row_normaliser(columns)`` (the selected
    row → one canonical value per column)."""
    try:
        return importlib.import_module(ENGINE_MODULES[engine])
    except KeyError:
        raise ValueError(f"no cross-engine comparison for {engine!r} sources") from None


def _stream(cursor: Any, sql: str, normalise: RowNormaliser) -> Iterator[tuple[Any, ...]]:
    cursor.execute(sql)
    while chunk := cursor.fetchmany(CHUNK_ROWS):
        for row in chunk:
            yield normalise(row)


def target_select(table: Table, columns: list[Column], ordered: bool) -> str:
    schema, name = table.target_qualified
    sql = f"SELECT {', '.join(target_expression(c) for c in columns)} FROM {qualified(schema, name)}"
    if ordered and table.primary_key:
        by_name = {c.name: c for c in table.columns}
        sql += " ORDER BY " + ", ".join(ident(by_name[k].target) for k in table.primary_key)
    return sql


def compare_foreign(task: Any, table: Table) -> Tally:
    """Stream the table from the source and the target and pair the rows; see the module docstring.

    Raises :class:`LookupError` when the target has no such table (the caller reports it).
    """
    engine = engine_module(task.source.engine)
    columns = table.copied_columns
    tally = Tally([c.target for c in columns], single_key=len(table.primary_key) == 1)
    position = {c.name: i for i, c in enumerate(columns)}
    key_idx = [position[k] for k in table.primary_key] if table.primary_key else None
    source_norm = engine.row_normaliser(columns)
    target_norm = per_column([canonical(c) for c in columns])
    by_name = {c.name: c for c in table.columns}
    mergeable = key_idx is not None and all(by_name[k].logical_type in ORDERED_LOGICAL for k in table.primary_key)

    dst = pg_connect(task.target, autocommit=True)
    try:
        found = dst.execute("SELECT to_regclass(%s)", (qualified(*table.target_qualified),)).fetchone()[0]
        if found is None:
            raise LookupError(".".join(table.target_qualified))
        (estimate,) = dst.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
            (qualified(*table.target_qualified),),
        ).fetchone()
    finally:
        dst.close()
    expected = max(int(estimate or 0), table.estimated_rows)

    def run(ordered: bool) -> Tally:
        method = "merge" if ordered else ("multiset" if key_idx is None else "hash")
        result = Tally(tally.columns, single_key=tally.single_key, method=method)
        src = engine.connect(task.source)
        dst = pg_connect(task.target)
        try:
            s_cur = src.cursor()
            t_cur = dst.cursor(name="bulkmig_validate")
            s_rows = _stream(s_cur, engine.select_sql(table, columns, ordered), source_norm)
            t_rows = _stream(t_cur, target_select(table, columns, ordered), target_norm)
            if ordered:
                assert key_idx is not None
                merge(s_rows, t_rows, key_idx, result)
            else:
                hash_join(s_rows, t_rows, key_idx, result, expected)
            return result
        finally:
            dst.close()
            src.close()

    if mergeable:
        try:
            return run(True)
        except _OutOfOrder:
            pass  # rare (a key with NULLs or mixed kinds); fall through to the dict
    return run(False)
