"""SQLite → PostgreSQL type mapping, as data: one :class:`TypeRule` per kind of declared type, each with the
PostgreSQL type it becomes, how it travels through Parquet, and a one-line reason.

SQLite has no column types, only *declared* types and the affinity SQLite derives from them (its five
rules, https://sqlite.org/datatype3.html §3.1): a name containing INT has INTEGER affinity; CHAR, CLOB or
TEXT: TEXT; BLOB or no name: BLOB; REAL, FLOA or DOUB: REAL; anything else: NUMERIC.  Any cell may still
hold any storage class (text in an INTEGER column, a real in a DATE column).  So the map works in two
steps: the common declared names are refined into their PostgreSQL equivalents (VARCHAR(n), NUMERIC(p,s),
BOOLEAN, DATE, DATETIME, JSON, …), every other name falls back to its affinity; and then ``reflect``
scans the values, so a value that does not fit the chosen type is reported with a count and an example
row, and the reader refuses it by name — never loaded as something else.

Dates: SQLite keeps them as text (ISO 8601) or as numbers (julian day or unix epoch).  Text is parsed
strictly; numbers are turned into text by SQLite's own date functions (``read_as``, to the millisecond)
following :attr:`TypeSettings.numeric_dates`, and every column where that happened says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The task's choices are task data, parsed with the task file (bulkmig.config.engine_settings).
from bulkmig.config.engine_settings import SqliteTypeSettings as TypeSettings
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, ColumnMapping, Note, TypeRule


def _r(
    source: str, target: str, logical: str, arrow: str, status: str, reason: str, example: str, transfer: str = "native"
) -> TypeRule:
    return TypeRule(source, target, logical, arrow, status, reason, example, transfer)


# Rule keys that are not a declared name: the affinity fallbacks and the untyped columns.
NUMERIC_AFFINITY = "numeric affinity"
UNTYPED = "(none)"
UNTYPED_BLOB = "(none)/blob"

# fmt: off
RULES: tuple[TypeRule, ...] = (
    # -- the five affinities (what every declared name not refined below falls back to).
    _r("integer", "bigint", "integer", "int64", CONVERTED,
       "INTEGER affinity (INT, SMALLINT, …): SQLite integers are 64-bit whatever the declared width", "INTEGER"),
    _r("text", "text", "text", "string", CONVERTED, "TEXT affinity without a length: the same unbounded text",
       "TEXT"),
    _r("blob", "bytea", "binary", "binary", CONVERTED, "bytes as they are", "BLOB"),
    _r("real", "double precision", "float", "float64", CONVERTED,
       "REAL affinity (REAL, FLOAT, DOUBLE): IEEE double precision in both", "DOUBLE"),
    _r(NUMERIC_AFFINITY, "numeric", "decimal", "string", CHANGED,
       "SQLite gives an unknown type name NUMERIC affinity: numeric holds its integers and reals exactly; "
       "text values are reported (declare the column TEXT to keep them)", "MONEY", "text"),
    # -- declared names refined into their PostgreSQL equivalents.
    _r("varchar", "varchar({n})", "text", "string", CONVERTED,
       "n counts characters in both; SQLite never enforced it, so longer values are reported", "NVARCHAR(160)"),
    _r("char", "varchar({n})", "text", "string", CHANGED,
       "SQLite never pads CHAR(n): varchar(n) keeps each value as stored (char(n) would pad it with blanks)",
       "NCHAR(3)"),
    _r("decimal", "numeric({p},{s})", "decimal", "decimal128({p}, {s})", CHANGED,
       "SQLite stores NUMERIC(p,s) as binary REAL or INTEGER: each value loads as its shortest exact decimal; "
       "one needing more digits than (p,s) is reported, never rounded", "NUMERIC(10,2)"),
    _r("numeric", "numeric", "decimal", "string", CONVERTED,
       "unconstrained numeric holds every SQLite integer and real exactly (as its shortest decimal)",
       "DECIMAL", "text"),
    _r("boolean", "boolean", "bool", "bool", CONVERTED, "SQLite stores booleans as 0/1; any other value is reported",
       "BOOLEAN"),
    _r("date", "date", "date", "date32", CONVERTED,
       "text YYYY-MM-DD (a midnight time allowed); numbers are read as julian day / unix epoch (numeric_dates) "
       "and counted", "DATE"),
    _r("datetime", "timestamp", "timestamp", "timestamp[us]", CONVERTED,
       "ISO 8601 text without a UTC offset (Z and +00:00 allowed); numbers are read as julian day / unix epoch "
       "(numeric_dates) and counted", "DATETIME"),
    _r("timestamptz", "timestamptz", "timestamptz", "timestamp[us, tz=UTC]", CONVERTED,
       "ISO 8601 text, its UTC offset applied; none means UTC, as in SQLite's date functions", "TIMESTAMPTZ"),
    _r("time", "time", "time", "string", CONVERTED, "HH:MM[:SS[.ffffff]] text; other values are reported", "TIME",
       "text"),
    _r("json", "jsonb", "json", "string", CHANGED,
       "jsonb normalises whitespace and key order and keeps the last of duplicate keys; invalid JSON, NaN and "
       "SQLite's binary JSONB blobs are reported", "JSON", "text"),
    _r("uuid", "uuid", "uuid", "string", CONVERTED, "text UUIDs in any form PostgreSQL reads; others are reported",
       "UUID", "text"),
    # -- no declared type (BLOB affinity: every value keeps the storage class it was given).
    _r(UNTYPED, "text", "text", "string", CHANGED,
       "no declared type: text and numbers travel as text (numbers in their shortest exact form); a blob is "
       "reported", ""),
    _r(UNTYPED_BLOB, "bytea", "binary", "binary", CONVERTED, "no declared type and only blobs stored: bytea", ""),
)
# fmt: on

BY_SOURCE: dict[str, TypeRule] = {r.source: r for r in RULES}

# Declared names (upper case, single-spaced, without their numbers) that get a PostgreSQL type of their own.
# Each keeps the affinity SQLite gives it, so the stored values are what the rule expects.
NAMED: dict[str, str] = {
    "VARCHAR": "varchar",
    "NVARCHAR": "varchar",
    "VARCHAR2": "varchar",
    "CHARACTER VARYING": "varchar",
    "VARYING CHARACTER": "varchar",
    "CHAR": "char",
    "NCHAR": "char",
    "CHARACTER": "char",
    "NATIVE CHARACTER": "char",
    "NUMERIC": "decimal",
    "DECIMAL": "decimal",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "DATE": "date",
    "DATETIME": "datetime",
    "TIMESTAMP": "datetime",
    "TIMESTAMP WITHOUT TIME ZONE": "datetime",
    "TIMESTAMPTZ": "timestamptz",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME": "time",
    "JSON": "json",
    "UUID": "uuid",
    "ANY": UNTYPED,  # STRICT tables' ANY: no affinity at all
}
# Text names with a length become varchar(n); without one they are plain text.
_LENGTHED = ("varchar", "char")
# Logical types whose numbers SQLite's date functions turn into text (see ``date_read_as``).
DATE_LOGICAL = ("date", "timestamp", "timestamptz")


@dataclass
class ParsedType:
    """A declared type taken apart: ``NUMERIC(10, 2)`` → NUMERIC, [10, 2]."""

    name: str  # upper case, single-spaced; "" when the column has no declared type
    args: list[int]


_TYPE_RE = re.compile(r"^\s*(.*?)\s*(?:\(\s*([+-]?\d+)\s*(?:,\s*([+-]?\d+)\s*)?\))?\s*$", re.S)


def parse_declared(declared: str) -> ParsedType:
    """Take a declared type apart.  Anything SQLite accepts comes back; odd names keep their text."""
    m = _TYPE_RE.match(declared or "")
    if not m:  # e.g. "DECIMAL(a,b)": SQLite takes it, so do we, as a name without numbers
        return ParsedType(" ".join(declared.upper().split()), [])
    args = [int(a) for a in m.group(2, 3) if a is not None]
    return ParsedType(" ".join(m.group(1).upper().split()), args)


def affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type, by its five rules in their order."""
    name = (declared or "").upper()
    if "INT" in name:
        return "INTEGER"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in name or not name.strip():
        return "BLOB"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


_AFFINITY_RULES = {"INTEGER": "integer", "TEXT": "text", "BLOB": "blob", "REAL": "real", "NUMERIC": NUMERIC_AFFINITY}


def rule_key(parsed: ParsedType, *, blobs_only: bool = False) -> str:
    """Which row of :data:`RULES` a declared type falls under.  ``blobs_only``: an untyped column that
    holds nothing but blobs (known from the value scan) becomes bytea instead of text."""
    if not parsed.name or NAMED.get(parsed.name) == UNTYPED:
        return UNTYPED_BLOB if blobs_only else UNTYPED
    key = NAMED.get(parsed.name)
    if key in _LENGTHED:
        return key if parsed.args and parsed.args[0] > 0 else "text"
    if key == "decimal":
        return "decimal" if parsed.args and 0 < parsed.args[0] <= 1000 else "numeric"
    if key is not None:
        return key
    return _AFFINITY_RULES[affinity(parsed.name)]


def date_read_as(numeric_dates: str) -> str | None:
    """The SELECT template that turns numbers in a date column into ISO text with SQLite's own date
    functions (to the millisecond, as ``strftime('%f')`` gives), leaving text as it is.

    A number outside the range the chosen reading allows becomes the text ``'invalid date number <n>'``,
    which the value check then refuses by name: never a silent NULL.  ``refuse`` reads numbers raw, and
    the value check refuses them.
    """
    if numeric_dates == "refuse":
        return None
    fmt = "'%Y-%m-%d %H:%M:%f'"
    julian = f"strftime({fmt}, {{col}})"
    unix = f"strftime({fmt}, {{col}}, 'unixepoch')"
    if numeric_dates == "julianday":
        conv = julian
    elif numeric_dates == "unixepoch":
        conv = unix
    elif numeric_dates == "unixepoch_ms":
        conv = f"strftime({fmt}, {{col}} / 1000.0, 'unixepoch')"
    else:  # auto: the rule of SQLite's 'auto' modifier (3.38), spelled out so older libraries read it too
        conv = f"CASE WHEN {{col}} >= 0 AND {{col}} <= 5373484.499999 THEN {julian} ELSE {unix} END"
    return (
        "CASE WHEN typeof({col}) IN ('integer', 'real') "
        f"THEN coalesce({conv}, 'invalid date number ' || {{col}}) ELSE {{col}} END"
    )


def map_declared(
    declared: str,
    *,
    blobs_only: bool = False,
    settings: TypeSettings | None = None,
) -> ColumnMapping:
    """Map one column from its declared type (``PRAGMA table_xinfo``'s ``type``, exactly as written).

    Every declared type maps to something (SQLite's affinity guarantees a fallback), so ``rule`` is never
    None here; what does not fit shows up per value in the scan instead.
    """
    settings = settings or TypeSettings()
    parsed = parse_declared(declared)
    rule = BY_SOURCE[rule_key(parsed, blobs_only=blobs_only)]
    p = parsed.args[0] if parsed.args else 0
    s = parsed.args[1] if len(parsed.args) > 1 else 0
    values = {"n": p, "p": p, "s": s}
    target = rule.target.format(**values)
    arrow = rule.arrow.format(**values)
    notes = [Note(rule.status, rule.reason)]
    if rule.source == "decimal":
        if not 0 <= s <= p:
            # NUMERIC(5,7) or NUMERIC(5,-1): PostgreSQL 15 takes these, Arrow's decimal does not.
            target, arrow = "numeric", "string"
            notes.append(Note(CHANGED, f"scale {s} outside 0..{p}: loaded as unconstrained numeric"))
            rule = BY_SOURCE["numeric"]
        elif p > 38:
            arrow = arrow.replace("decimal128", "decimal256")
    mapping = ColumnMapping(declared, target, rule.logical, arrow, rule.transfer, rule, notes, read_as=None)
    if rule.logical in DATE_LOGICAL:
        mapping.read_as = date_read_as(settings.numeric_dates)
        if settings.numeric_dates == "refuse":
            notes.append(Note(CONVERTED, "a date stored as a number stops the load (numeric_dates: refuse)"))
    return mapping


def override_note(table: str, column: str, declared: str, settings: TypeSettings) -> Note | None:
    """The report line for a column read under a task's ``column_types`` override."""
    key = f"{table}.{column}"
    if key not in settings.column_types:
        return None
    return Note(
        CHANGED,
        f"read as {settings.column_types[key]!r} instead of the declared {declared or 'no type'!r} "
        "(settings.sqlite.column_types)",
    )


__all__ = [
    "ACTION",
    "CHANGED",
    "CONVERTED",
    "RULES",
    "BY_SOURCE",
    "NAMED",
    "TypeSettings",
    "affinity",
    "date_read_as",
    "map_declared",
    "parse_declared",
    "rule_key",
]
