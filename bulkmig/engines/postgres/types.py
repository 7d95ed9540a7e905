"""How each PostgreSQL type travels through Parquet, as data.

The rule is exactness first.  A type is read natively (the ADBC driver's Arrow value) only when the
driver is exact for *every* value the type can hold, which was checked value by value
(tests/integration/test_pg_types.py).  Everything else travels as PostgreSQL's own text output
(``col::text``), which the target's text input restores exactly.  What was found when checking:

- ``numeric`` comes back as a string (exact; NaN as ``nan``): kept as a string, never a float.
- ``timestamp``/``timestamptz``/``date``: exact, except ``±infinity`` and values past year 290000
  (dates: 5874000), which the driver silently wraps into garbage.  Extraction selects a small flag per
  such column and rewrites infinities to the Arrow range's extremes (:data:`TS_POS_INF` …), the same
  trick PostgreSQL uses internally; a part holding a value past the range is extracted again with that
  column as text, so even those values travel exactly.
- ``time`` ``24:00:00`` comes back as ``00:00``, multi-dimensional arrays come back flattened,
  ``money`` as raw cents, ``interval`` can overflow nanoseconds: all of them go as text.
"""

from __future__ import annotations

from dataclasses import dataclass

# Arrow-range sentinels for PostgreSQL's infinities (PostgreSQL stores them as the int extremes too).
TS_POS_INF = 2**63 - 1
TS_NEG_INF = -(2**63)
DATE_POS_INF = 2**31 - 1
DATE_NEG_INF = -(2**31)
# Values later than these cannot be represented by the driver's conversion; see module docstring.
TIMESTAMP_SAFE_MAX = "290000-01-01"
DATE_SAFE_MAX = "5874000-01-01"


@dataclass(frozen=True)
class NativeType:
    logical: str  # engine-neutral family
    arrow: str  # name understood by :func:`arrow_type`
    temporal: bool = False  # needs the infinity flag column when read


# Base type name (pg_type.typname of the column's base type) -> how it travels natively.
# Anything not listed travels as text.
NATIVE: dict[str, NativeType] = {
    "int2": NativeType("integer", "int16"),
    "int4": NativeType("integer", "int32"),
    "int8": NativeType("integer", "int64"),
    "float4": NativeType("float", "float32"),
    "float8": NativeType("float", "float64"),
    "bool": NativeType("bool", "bool"),
    "text": NativeType("text", "string"),
    "varchar": NativeType("text", "string"),
    "bpchar": NativeType("text", "string"),  # padding is part of the value and comes back as sent
    "name": NativeType("text", "string"),
    "bytea": NativeType("binary", "binary"),
    "uuid": NativeType("uuid", "uuid"),
    "json": NativeType("json", "string"),  # byte for byte: json keeps its text as written
    "jsonb": NativeType("json", "string"),
    "numeric": NativeType("decimal", "string"),  # exact digits; NaN included
    "date": NativeType("date", "date32", temporal=True),
    "timestamp": NativeType("timestamp", "timestamp[us]", temporal=True),
    "timestamptz": NativeType("timestamptz", "timestamp[us, tz=UTC]", temporal=True),
}

# Logical family of the types that travel as text, for reports and heterogeneous targets.
TEXT_LOGICAL: dict[str, str] = {
    "interval": "interval",
    "time": "time",
    "timetz": "time",
    "money": "decimal",
    "xml": "text",
    "inet": "network",
    "cidr": "network",
    "macaddr": "network",
    "macaddr8": "network",
    "bit": "bits",
    "varbit": "bits",
    "tsvector": "text",
    "tsquery": "text",
    "oid": "integer",
}


def classify(base_type: str, typtype: str, is_array: bool) -> tuple[str, str, str]:
    """(logical type, arrow type name, transfer) for a column whose base type is ``base_type``.

    ``typtype`` is pg_type.typtype of the base type (b base, e enum, r range, c composite, m multirange).
    """
    if not is_array and typtype == "b" and base_type in NATIVE:
        native = NATIVE[base_type]
        return native.logical, native.arrow, "native"
    if is_array:
        logical = "array"
    elif typtype == "e":
        logical = "enum"
    elif typtype in ("r", "m"):
        logical = "range"
    elif typtype == "c":
        logical = "composite"
    else:
        logical = TEXT_LOGICAL.get(base_type, "text")
    return logical, "string", "text"


def is_temporal(arrow_name: str) -> bool:
    return arrow_name in ("date32", "timestamp[us]", "timestamp[us, tz=UTC]")
