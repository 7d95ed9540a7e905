"""A row's 64-bit hash that both PostgreSQL servers compute the same way, for PG → PG validation.

Printing every value (``ROW(...)::text``) and hashing the text is exact but costs an output function per
value: on a wide table it is two thirds of validation.  Here each column is hashed in its binary form by
its type's own extended hash function (``hash_record_extended`` over the row), which is three times
cheaper — but only for the built-in types where that hash tells apart every pair of values the text
would.  Where a type's hash is coarser than its text, the column goes through a form that is not:

- ``float4``/``float8``: their hash makes -0 equal 0 (and every NaN one NaN): hashed as ``float8send``
  bytes, so -0.0 and 0.0 differ as their text does (a NaN with another bit pattern differs too);
- ``numeric``: its hash ignores the display scale (1.5 = 1.50): hashed as ``numeric_send`` bytes;
- ``interval``: its hash makes 1 day = 24 hours: hashed as ``interval_send`` bytes;
- text-like columns are hashed under ``COLLATE "C"`` (bytes), so a case-insensitive collation cannot
  make 'a' equal 'A';
- every other type (jsonb, arrays, enums — whose hash is the label's OID, different on each server —,
  ranges, domains, composite and extension types, or a column whose type differs between the two
  sides) is hashed as its text, exactly as before.

NULL hashes as 0 and the empty string does not, so NULL and '' differ.  ``hash_record_extended`` combines
the columns linearly (31·h + …), so a sum of row hashes would not see two rows swap a value; the outer
``hashint8extended`` mixes each row's hash before validation sums them.  The two sessions use the same
canonical settings (``sql.CANONICAL_SETTINGS``), so the text forms agree too.  PostgreSQL's hash
functions are those of hash partitioning: the same on every server of one byte order (two servers of
different byte order, an s390x and an x86, would report every row as different — never a row as equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bulkmig.engines.postgres.sql import qualified

# Built-in type OIDs (fixed in every PostgreSQL release) whose extended hash is exact: equal hashes
# only for values with the same text.
NATIVE_HASH = frozenset(
    {
        16,  # bool
        17,  # bytea
        18,  # "char"
        19,  # name
        20,  # int8
        21,  # int2
        23,  # int4
        26,  # oid
        650,  # cidr (family, bits and address bytes)
        774,  # macaddr8
        829,  # macaddr
        869,  # inet
        1082,  # date
        1083,  # time
        1114,  # timestamp
        1184,  # timestamptz (the instant; the text would depend on TimeZone)
        1266,  # timetz (time and zone)
        2950,  # uuid
        3220,  # pg_lsn
    }
)
TEXT_LIKE = frozenset({25, 1042, 1043})  # text, bpchar, varchar: hashed under COLLATE "C"
SEND_FORM = {700: "float4send", 701: "float8send", 1700: "numeric_send", 1186: "interval_send"}
INTEGER_TYPES = frozenset({20, 21, 23})


@dataclass(frozen=True)
class ColumnType:
    name: str
    oid: int
    sql: str  # format_type(): what to cast a text literal to, e.g. "numeric(12,2)", "public.mood"


def column_types(conn: Any, schema: str, table: str) -> dict[str, ColumnType]:
    """The table's columns as this server knows them, by name."""
    rows = conn.execute(
        "SELECT a.attname, a.atttypid::int, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (qualified(schema, table),),
    ).fetchall()
    return {name: ColumnType(name, oid, sql) for name, oid, sql in rows}


def canonical(column_sql: str, source: ColumnType, target: ColumnType) -> str:
    """The expression hashed for one column; the same on both sides (chosen from both sides' types)."""
    if source.oid != target.oid or source.sql != target.sql:
        return f'({column_sql}::text COLLATE "C")'
    if source.oid in NATIVE_HASH:
        return column_sql
    if source.oid in TEXT_LIKE:
        return f'({column_sql} COLLATE "C")'
    if source.oid in SEND_FORM:
        return f"{SEND_FORM[source.oid]}({column_sql})"
    return f'({column_sql}::text COLLATE "C")'


RECORD_HASH_SINCE = 140000  # hash_record_extended arrived in PostgreSQL 14


def row_hash(columns: list[tuple[str, ColumnType, ColumnType]], server_version: int) -> str:
    """The row's hash, a signed 64-bit integer, over ``(column SQL, source type, target type)``; pass the
    older server's version: before PostgreSQL 14 the row's text is hashed (exact, slower)."""
    if server_version < RECORD_HASH_SINCE:
        return f"hashtextextended(ROW({', '.join(sql for sql, _, _ in columns)})::text, 0)"
    exprs = ", ".join(canonical(sql, s, t) for sql, s, t in columns)
    return f"hashint8extended(hash_record_extended(ROW({exprs}), 0), 0)"


def is_integer(column: ColumnType) -> bool:
    return column.oid in INTEGER_TYPES
