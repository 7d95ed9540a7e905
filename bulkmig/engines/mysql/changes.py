"""Binlog row values → PostgreSQL text input forms, by each column's type mapping (:mod:`.types`).

Change batches carry every value as the text PostgreSQL's input function reads (``bulkmig.cdc.batch``),
so replay applies a MySQL stream exactly like a PostgreSQL one.  The values come from
python-mysql-replication's row decoder, told by :func:`prepare_binlog_columns` what the binlog itself
does not say without ``binlog_row_metadata=FULL`` (signedness, ENUM/SET labels) and to hand every
string over as raw bytes, so the charset decoding is ours (:data:`CHARSETS`).  What each rule of the type
map needs is one entry of :data:`CONVERTERS`; the forms are the ones the full load writes, so a row
loaded and the same row replayed are equal value by value.

What the decoder does that matters here (python-mysql-replication 1.0, read in its source and checked on
MariaDB 10.11):

- CHAR/BINARY values arrive with the trailing pad stripped (the binlog stores them so): BINARY(n), UUID,
  INET4/INET6 are padded back to their width with zero bytes.
- zero dates: DATE and DATETIME come back as None with a "none source" saying why; a zero TIMESTAMP comes
  back as 1970-01-01 00:00:00 (the epoch's second 0, which no real TIMESTAMP can hold); YEAR 0000 comes back
  as 1900.  All three are turned back into zero dates and follow ``zero_dates``.
- the empty SET comes back as None with the "empty set" source: it is ``{}``, not NULL.
- TIMESTAMP is decoded as UTC (``utcfromtimestamp``), TIME as a signed timedelta (beyond 24 h too),
  DECIMAL as an exact ``Decimal``, FLOAT as the stored float32 widened to a double, BIT as ``'0101'`` text.

A value PostgreSQL cannot take is refused here exactly as the load refuses it (tinyint(1) other than 0/1,
'' in an ENUM, TIME outside 0..24 h as ``time``, a zero date in a NOT NULL column or with
``zero_dates: refuse``, NUL in text): :class:`ValueRefused` names the table, column and value.

Value forms.  All of the above is the ``postgresql`` form, for a PostgreSQL target.  A stream into a MySQL/MariaDB
target is written in the ``mysql`` form (:mod:`.forms`: the text MySQL reads back to the same value, nothing
refused); :data:`FORMS` holds both tables, and ``stream.json``'s ``value_forms`` says which one a stream uses.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE, NONE_SOURCE

from bulkmig.core.errors import SourceError
from bulkmig.engines.mysql import common_forms, forms, types

# How many bits each integer type holds: a signed value read for an UNSIGNED column is wrapped back.
INTEGER_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64, "year": 8}

# The binlog column types a MySQL type may be written as (old and new temporal formats; MariaDB's JSON is a
# LONGTEXT).  A table map that disagrees with the stream's definition means the table was altered.
BINLOG_TYPES: dict[str, frozenset[int]] = {
    "tinyint": frozenset({FIELD_TYPE.TINY}),
    "smallint": frozenset({FIELD_TYPE.SHORT}),
    "mediumint": frozenset({FIELD_TYPE.INT24}),
    "int": frozenset({FIELD_TYPE.LONG}),
    "bigint": frozenset({FIELD_TYPE.LONGLONG}),
    "decimal": frozenset({FIELD_TYPE.NEWDECIMAL}),
    "float": frozenset({FIELD_TYPE.FLOAT}),
    "double": frozenset({FIELD_TYPE.DOUBLE}),
    "bit": frozenset({FIELD_TYPE.BIT}),
    "char": frozenset({FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING}),
    "varchar": frozenset({FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING}),
    "binary": frozenset({FIELD_TYPE.STRING}),
    "varbinary": frozenset({FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING}),
    "tinytext": frozenset({FIELD_TYPE.BLOB}),
    "text": frozenset({FIELD_TYPE.BLOB}),
    "mediumtext": frozenset({FIELD_TYPE.BLOB}),
    "longtext": frozenset({FIELD_TYPE.BLOB}),
    "tinyblob": frozenset({FIELD_TYPE.BLOB}),
    "blob": frozenset({FIELD_TYPE.BLOB}),
    "mediumblob": frozenset({FIELD_TYPE.BLOB}),
    "longblob": frozenset({FIELD_TYPE.BLOB}),
    "json": frozenset({FIELD_TYPE.JSON, FIELD_TYPE.BLOB}),
    "enum": frozenset({FIELD_TYPE.ENUM}),
    "set": frozenset({FIELD_TYPE.SET}),
    "year": frozenset({FIELD_TYPE.YEAR}),
    "date": frozenset({FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE}),
    "datetime": frozenset({FIELD_TYPE.DATETIME, FIELD_TYPE.DATETIME2}),
    "timestamp": frozenset({FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2}),
    "time": frozenset({FIELD_TYPE.TIME, FIELD_TYPE.TIME2}),
    "uuid": frozenset({FIELD_TYPE.STRING}),
    "inet4": frozenset({FIELD_TYPE.STRING}),
    "inet6": frozenset({FIELD_TYPE.STRING}),
    **{shape: frozenset({FIELD_TYPE.GEOMETRY}) for shape in types.SPATIAL_SHAPES},
}
# Binlog types whose values the decoder reads as strings: they are handed over as bytes (see module doc).
STRING_FIELDS = frozenset(
    {FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING, FIELD_TYPE.VARCHAR, FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY}
)


def _mysql_latin1() -> str:
    """MySQL's latin1 is Windows-1252 with the five bytes cp1252 leaves undefined mapped to C1 controls."""
    out = []
    for b in range(256):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)


_LATIN1_TABLE = str.maketrans({chr(b): c for b, c in enumerate(_mysql_latin1()) if chr(b) != c})

# MySQL character set → how its bytes become text.  A charset missing here is refused when the stream
# starts (naming the column), never guessed.
CHARSETS: dict[str, Callable[[bytes], str]] = {
    "utf8mb4": lambda b: b.decode("utf-8"),
    "utf8mb3": lambda b: b.decode("utf-8"),
    "utf8": lambda b: b.decode("utf-8"),
    "ascii": lambda b: b.decode("ascii"),
    "latin1": lambda b: b.decode("latin-1").translate(_LATIN1_TABLE),
    "latin2": lambda b: b.decode("iso8859_2"),
    "latin5": lambda b: b.decode("iso8859_9"),
    "latin7": lambda b: b.decode("iso8859_13"),
    "greek": lambda b: b.decode("iso8859_7"),
    "hebrew": lambda b: b.decode("iso8859_8"),
    "cp1250": lambda b: b.decode("cp1250"),
    "cp1251": lambda b: b.decode("cp1251"),
    "cp1256": lambda b: b.decode("cp1256"),
    "cp1257": lambda b: b.decode("cp1257"),
    "cp850": lambda b: b.decode("cp850"),
    "cp852": lambda b: b.decode("cp852"),
    "cp866": lambda b: b.decode("cp866"),
    "koi8r": lambda b: b.decode("koi8_r"),
    "koi8u": lambda b: b.decode("koi8_u"),
    "macroman": lambda b: b.decode("mac_roman"),
    "macce": lambda b: b.decode("mac_latin2"),
    "tis620": lambda b: b.decode("tis_620"),
    "sjis": lambda b: b.decode("shift_jis"),
    "cp932": lambda b: b.decode("cp932"),
    "ujis": lambda b: b.decode("euc_jp"),
    "eucjpms": lambda b: b.decode("euc_jp"),
    "euckr": lambda b: b.decode("euc_kr"),
    "gb2312": lambda b: b.decode("gb2312"),
    "gbk": lambda b: b.decode("gbk"),
    "gb18030": lambda b: b.decode("gb18030"),
    "big5": lambda b: b.decode("big5"),
    "ucs2": lambda b: b.decode("utf-16-be"),
    "utf16": lambda b: b.decode("utf-16-be"),
    "utf16le": lambda b: b.decode("utf-16-le"),
    "utf32": lambda b: b.decode("utf-32-be"),
}

ZERO_DATE_SOURCES = frozenset(
    {NONE_SOURCE.OUT_OF_DATE_RANGE, NONE_SOURCE.OUT_OF_DATETIME_RANGE, NONE_SOURCE.OUT_OF_DATETIME2_RANGE}
)
_DAY_US = 86_400_000_000


class ValueRefused(SourceError):
    """A source value the target type cannot hold; the load refuses the same value."""


class ZeroDate:
    """Marker a converter returns for a zero date; :class:`Col` turns it into NULL or a refusal."""


ZERO = ZeroDate()


@dataclass(frozen=True)
class ColumnSpec:
    """What capture needs to know about one source column; stored in ``stream.json`` per table."""

    name: str  # source column name
    target: str  # target column name
    column_type: str  # COLUMN_TYPE exactly, e.g. "tinyint(3) unsigned", "enum('G','PG')"
    target_type: str  # the PostgreSQL type it was created as
    charset: str | None = None  # CHARACTER_SET_NAME (text columns only)
    nullable: bool = True
    is_json: bool = False
    generated: bool = False

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ColumnSpec:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


# ---------------------------------------------------------------------------------------- converters
#
# Each takes the decoder's value (never None) and the column, and returns the PostgreSQL text, or ZERO.


def _bool(v: Any, c: Col) -> str:
    if v == 0 or v == 1:
        return "t" if v else "f"
    raise c.refuse(v, "tinyint(1) maps to boolean, which holds only 0 and 1", "set tinyint1_as_boolean: false")


def _text(v: bytes | str, c: Col) -> str:
    text = c.decode(v) if isinstance(v, bytes | bytearray) else str(v)
    if "\x00" in text:
        raise c.refuse(v, "PostgreSQL text cannot hold the NUL character", "fix the value on the source")
    return text


def _bytea(v: bytes, c: Col) -> str:
    return "\\x" + common_forms.raw(v).hex()


def _binary(v: bytes, c: Col) -> str:
    return "\\x" + common_forms.raw(v).ljust(c.length, b"\x00").hex()


def _enum(v: str, c: Col) -> str:
    if v == "" and "" not in c.labels:
        raise c.refuse(
            v,
            "the empty string MySQL stores for an invalid ENUM value",
            "PostgreSQL's enum cannot take it; fix the row on the source",
        )
    return v


def _set(v: set[str], c: Col) -> str:
    members = ('"' + m.replace("\\", "\\\\").replace('"', '\\"') + '"' for m in c.labels if m in v)
    return "{" + ",".join(members) + "}"


def _date(v: dt.date, c: Col) -> str:
    return v.isoformat()


def _datetime(v: dt.datetime, c: Col) -> str:
    return v.isoformat(sep=" ")


def _timestamp(v: dt.datetime, c: Col) -> str | ZeroDate:
    if v == common_forms.EPOCH:  # TIMESTAMP '0000-00-00 00:00:00' is stored as second 0 (a real one starts at second 1)
        return ZERO
    return v.isoformat(sep=" ") + "+00"


def _time(v: dt.timedelta, c: Col) -> str:
    us = (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
    if us < 0 or us > _DAY_US:
        raise c.refuse(
            common_forms.duration(v, c),
            "MySQL TIME is a duration; PostgreSQL time holds only 00:00:00..24:00:00",
            "set time_as: interval (and start again with a new full load), or fix the value on the source",
        )
    return common_forms.duration(v, c)


def _json(v: Any, c: Col) -> str:
    if isinstance(v, bytes | bytearray):  # MariaDB: JSON is a LONGTEXT holding the document's text
        return _text(v, c)
    return common_forms.json_document(v)  # MySQL: the binary JSON, decoded


def _geometry(v: bytes, c: Col) -> str:
    # MySQL's internal form is a 4-byte SRID, then WKB (what ST_AsBinary gives)
    return "\\x" + common_forms.raw(v)[4:].hex()


def _postgis(v: bytes, c: Col) -> str:
    """Hex EWKB: the WKB with the SRID folded in (PostGIS' text input takes it as it is)."""
    raw = common_forms.raw(v)
    srid, wkb = struct.unpack("<I", raw[:4])[0], raw[4:]
    if not srid:
        return wkb.hex()
    order = "<" if wkb[0] == 1 else ">"
    kind = struct.unpack(order + "I", wkb[1:5])[0] | 0x20000000
    return (wkb[:1] + struct.pack(order + "I", kind) + struct.pack(order + "I", srid) + wkb[5:]).hex()


def _unmapped(v: Any, c: Col) -> str:
    return _text(v, c) if isinstance(v, bytes | bytearray) else str(v)


# One entry per rule of the type map (types.RULES, by its ``source``); a unit test holds them in step.  The rules
# whose text both targets read alike come from common_forms; these are PostgreSQL's own.
CONVERTERS: dict[str, Callable[[Any, Col], Any]] = {
    **common_forms.CONVERTERS,
    "tinyint(1)": _bool,
    **dict.fromkeys(common_forms.TEXT_RULES, _text),
    "binary": _binary,
    **dict.fromkeys(common_forms.BLOB_RULES, _bytea),
    "enum": _enum,
    "set": _set,
    "date": _date,
    "datetime": _datetime,
    "timestamp": _timestamp,
    "time": _time,
    "json": _json,
    "geometry": _geometry,
    "geometry/postgis": _postgis,
}


# The value forms a stream may be written in (``stream.json`` ``value_forms``), by the target engine that reads them.
POSTGRESQL_FORMS = "postgresql"
MYSQL_FORMS = "mysql"
FORMS: dict[str, dict[str, Callable[[Any, Col], Any]]] = {POSTGRESQL_FORMS: CONVERTERS, MYSQL_FORMS: forms.CONVERTERS}


def value_forms_for(target_engine: str) -> str:
    """The value forms a stream into ``target_engine`` is written in: a MySQL target reads MySQL's own forms."""
    return MYSQL_FORMS if target_engine == "mysql" else POSTGRESQL_FORMS


# -------------------------------------------------------------------------------------------- columns


class Col:
    """One column ready to convert: its spec, the rule it falls under, and what the converter needs."""

    def __init__(
        self, table: str, spec: ColumnSpec, settings: types.TypeSettings, value_forms: str = POSTGRESQL_FORMS
    ) -> None:
        self.table = table  # "schema.table" of the source, for messages
        self.spec = spec
        self.settings = settings
        self.forms = value_forms
        self.parsed = types.parse_column_type(spec.column_type)
        key = types.rule_key(self.parsed, settings, is_json=spec.is_json)
        self.rule: str | None = key if key in types.BY_SOURCE else None
        mysql = value_forms == MYSQL_FORMS
        self.convert = FORMS[value_forms][self.rule] if self.rule else (forms.unmapped if mysql else _unmapped)
        name = self.parsed.name
        self.unsigned = self.parsed.unsigned
        self.bits = INTEGER_BITS.get(name, 0)
        nums = [a for a in self.parsed.args if a.isdigit()]
        self.length = int(nums[0]) if nums else 1
        self.fsp = int(nums[0]) if nums and name in ("datetime", "timestamp", "time") else 0
        self.binlog_type: int | None = None  # the original binlog type of a column read raw (forms.raw_temporal)
        self.labels: tuple[str, ...] = tuple(self.parsed.args) if name in ("enum", "set") else ()
        self.binlog_types = BINLOG_TYPES.get("json" if spec.is_json else name)
        self.binary = self.rule is not None and types.BY_SOURCE[self.rule].logical == "binary"
        charset = (spec.charset or "utf8mb4").lower()
        decode = CHARSETS.get(charset)
        if decode is None and spec.charset and not self.binary:
            raise SourceError(
                f"column {self.where} uses character set {spec.charset}, which capture cannot decode",
                "convert the column to utf8mb4 on the source (ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4), "
                "then start again with a new full load",
            )
        self.decode: Callable[[bytes], str] = decode or CHARSETS["utf8mb4"]

    @property
    def where(self) -> str:
        return f"{self.table}.{self.spec.name}"

    def refuse(self, value: Any, why: str, hint: str) -> ValueRefused:
        shown = repr(value if not isinstance(value, bytes | bytearray) else bytes(value)[:60])
        return ValueRefused(
            f"change data capture cannot pass the value {shown[:80]} of column {self.where} "
            f"({self.spec.column_type} → {self.spec.target_type}): {why}",
            f"{hint}; the stream stops at this change (the full load refuses such values too)",
        )

    def text(self, value: Any, none_source: str | None) -> str | None:
        """The PostgreSQL text form of one decoded value (``none_source``: why the decoder gave None)."""
        if value is None:
            if none_source == NONE_SOURCE.EMPTY_SET and self.rule == "set":
                return "" if self.forms == MYSQL_FORMS else "{}"
            if none_source in ZERO_DATE_SOURCES:
                return forms.zero_date(self) if self.forms == MYSQL_FORMS else self.zero_date()
            return None
        out = self.convert(value, self)
        return self.zero_date() if out is ZERO else out

    def zero_date(self) -> None:
        if self.settings.zero_dates == "null" and self.spec.nullable:
            return None
        why = "a zero date, which PostgreSQL cannot store"
        if not self.spec.nullable:
            raise self.refuse("0000-00-00", why, "the column is NOT NULL, so it cannot become NULL")
        raise self.refuse("0000-00-00", why, "set zero_dates: null to load zero dates as NULL")


class TableConverter:
    """A table's columns in binlog order: decoded row dict → PostgreSQL text values, by position."""

    def __init__(
        self,
        schema: str,
        table: str,
        specs: list[ColumnSpec],
        settings: types.TypeSettings,
        value_forms: str = POSTGRESQL_FORMS,
    ) -> None:
        # schema and table only name the columns in refusals: capture keys converters by them already.
        self.cols = [Col(f"{schema}.{table}", s, settings, value_forms) for s in specs]

    def row(self, values: dict[str, Any], none_sources: dict[str, str]) -> list[str | None]:
        """One row image.  The decoder keys values by the names :func:`prepare_binlog_columns` gave, which
        are the source column names, in table order."""
        out: list[str | None] = []
        for col, (name, value) in zip(self.cols, values.items(), strict=True):
            out.append(col.text(value, none_sources.get(name) if value is None else None))
        return out


def drift(cols: list[Col], binlog_columns: list[Any]) -> str | None:
    """Why the binlog's table map does not fit the stream's definition of the table, or None."""
    if len(binlog_columns) != len(cols):
        return f"the binlog has {len(binlog_columns)} columns, the stream's definition {len(cols)}"
    for i, (col, bc) in enumerate(zip(cols, binlog_columns, strict=True)):
        if col.binlog_types is not None and bc.type not in col.binlog_types:
            return (
                f"column {i + 1} ({col.spec.name!r}, {col.spec.column_type}) is binlog type {bc.type} "
                f"(expected {sorted(col.binlog_types)})"
            )
    return None


def prepare_binlog_columns(cols: list[Col], binlog_columns: list[Any]) -> None:
    """Tell the decoder's column objects (from a table map event) what the stream's definition knows: the
    name, UNSIGNED, ENUM/SET labels, and ``binary`` as the charset of every string, so strings come as bytes
    and :data:`CHARSETS` decodes them; in the MySQL forms, DATE and DATETIME columns are read raw
    (:func:`.forms.raw_temporal`).  Call only after :func:`drift` found nothing."""
    for col, bc in zip(cols, binlog_columns, strict=True):
        bc.name = col.spec.name
        bc.unsigned = col.unsigned
        if bc.type in STRING_FIELDS:
            bc.character_set_name = "binary"
        if bc.type == FIELD_TYPE.ENUM:
            bc.enum_values = ["", *col.labels]
        elif bc.type == FIELD_TYPE.SET:
            bc.set_values = list(col.labels)
        elif col.forms == MYSQL_FORMS and col.rule in ("date", "datetime"):
            col.binlog_type = forms.raw_temporal(bc)


__all__ = [
    "CHARSETS",
    "CONVERTERS",
    "FORMS",
    "MYSQL_FORMS",
    "POSTGRESQL_FORMS",
    "Col",
    "ColumnSpec",
    "TableConverter",
    "ValueRefused",
    "drift",
    "prepare_binlog_columns",
    "value_forms_for",
]
