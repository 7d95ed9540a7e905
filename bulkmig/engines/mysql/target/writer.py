"""Parquet batches → the text ``LOAD DATA LOCAL INFILE`` reads, built column-wise in Arrow (no Python loop per row).

The file format is MySQL's own default (what ``SELECT … INTO OUTFILE`` writes): fields separated by TAB, rows by
LF, ``\\`` escapes TAB, LF, NUL and itself, ``\\N`` is NULL.  The file is read with ``CHARACTER SET binary``, so
bytes reach each column unconverted: utf8mb4 text (4-byte characters included) and binary values arrive exactly
as they were written, whatever the server's ``character_set_database`` says.

Every value is written in the text form MySQL parses back to the same value: decimals by their digits, datetimes
with all six fractional digits (the column's own precision holds them, they came from it), booleans as 0/1, and
floats as their shortest round-trip text.  A value that has no MySQL form (NaN, infinity) is refused here with its
column, never written.  Columns MySQL cannot read from plain text (spatial, BIT) are read into a user variable
and converted by the ``SET`` clause of :func:`load_sql`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.core.errors import TargetError
from bulkmig.core.model import Column

NULL = pa.scalar(b"\\N", pa.large_binary())
_TAB = pa.scalar(b"\t", pa.large_binary())
_LF = pa.scalar(b"\n", pa.large_binary())
_EMPTY = pa.scalar(b"", pa.large_binary())
# Escapes, backslash first so the others' backslashes are not doubled again.
_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\x00", b"\\0"))


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class LoadColumn:
    """One column of the file: its target name and, when MySQL cannot take the text as it is, the SQL
    expression over ``{v}`` (the user variable holding the text) that makes the value."""

    name: str
    convert: str | None = None


def load_column(column: Column) -> LoadColumn:
    """How one plan column lands: its type family decides the conversion (engine facts as data)."""
    source = (column.target_type or column.source_type or "").lower()
    if column.logical_type == "geometry":
        # Read as the server's internal form (4-byte little-endian SRID + WKB): SRID and shape kept exactly.
        return LoadColumn(
            column.target, "ST_GeomFromWKB(SUBSTRING({v}, 5), CONV(HEX(REVERSE(SUBSTRING({v}, 1, 4))), 16, 10))"
        )
    if column.logical_type == "bits" or source.startswith("bit"):
        return LoadColumn(column.target, "CAST(CONV({v}, 2, 10) AS UNSIGNED)")
    if column.logical_type == "uuid" and column.arrow_type == "uuid":  # 16 bytes → its 36-character text
        return LoadColumn(
            column.target,
            "LOWER(CONCAT_WS('-', HEX(SUBSTR({v}, 1, 4)), HEX(SUBSTR({v}, 5, 2)), HEX(SUBSTR({v}, 7, 2)), "
            "HEX(SUBSTR({v}, 9, 2)), HEX(SUBSTR({v}, 11, 6))))",
        )
    if source.split("(", 1)[0].strip() in ("uuid", "inet4", "inet6"):
        # MariaDB reads a binary string into these types as their raw bytes: the file's text must be text.
        return LoadColumn(column.target, "CONVERT({v} USING utf8mb4)")
    if source.startswith("year"):
        return LoadColumn(column.target, "{v} + 0")  # the text '0' would be the year 2000, the number 0 is 0000
    if " character set " in source:
        # The file's bytes are UTF-8; a column in another character set gets them converted, not reinterpreted.
        return LoadColumn(column.target, "CONVERT({v} USING utf8mb4)")
    return LoadColumn(column.target)


def load_sql(path: str, table: tuple[str, str], columns: list[LoadColumn]) -> str:
    """The LOAD DATA statement for one file into ``table`` (database, name)."""
    names, sets = [], []
    for n, col in enumerate(columns):
        if col.convert is None:
            names.append(quote_ident(col.name))
        else:
            var = f"@bulkmig_v{n}"
            names.append(var)
            sets.append(f"{quote_ident(col.name)} = {col.convert.format(v=var)}")
    literal = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
    sql = (
        f"LOAD DATA LOCAL INFILE {literal} INTO TABLE {quote_ident(table[0])}.{quote_ident(table[1])} "
        "CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({', '.join(names)})"
    )
    if sets:
        sql += " SET " + ", ".join(sets)
    return sql


def _needs_no_escapes(t: pa.DataType) -> bool:
    """Whether the text of every value of ``t`` is made of digits, signs, '.', ':', '-', 'e' and spaces only: then
    it never holds a character the file must escape, and the four escape passes are skipped (about half of
    encoding a numeric or date column)."""
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_time(t)
    )


def _as_text(array: pa.Array, name: str) -> pa.Array:
    """One column as binary text values (nulls kept as nulls)."""
    t = array.type
    if isinstance(t, pa.ExtensionType):
        array = array.storage
        t = array.type
    if pa.types.is_dictionary(t):
        array = array.dictionary_decode()
        t = array.type
    plain = _needs_no_escapes(t)
    if pa.types.is_boolean(t):
        array = pc.cast(array, pa.int8())
    elif pa.types.is_floating(t):
        bad = pc.sum(pc.cast(pc.invert(pc.is_finite(array)), pa.int64())).as_py() or 0
        if bad:
            raise TargetError(
                f"column {name}: {bad} value(s) are NaN or infinite, which MySQL cannot hold",
                "exclude or fix those rows at the source (bulkmig never rewrites them silently)",
            )
        if pa.types.is_float32(t):
            # A float32's shortest text (3.4028235e+38) may read back, as MySQL reads it (a double first), past
            # FLT_MAX; the widened double's text (3.4028234663852886e+38) narrows back to the same float exactly.
            array = pc.cast(array, pa.float64())
    elif pa.types.is_timestamp(t) and t.tz is not None:
        array = pc.cast(array, pa.timestamp(t.unit))  # the session's time_zone is +00:00: UTC wall-clock
    elif pa.types.is_fixed_size_binary(t):
        array = pc.cast(array, pa.binary())
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pc.cast(array, pa.string())
        array = array.view(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
    if pa.types.is_binary(array.type):
        array = pc.cast(array, pa.large_binary())
    for old, new in () if plain else _ESCAPES:
        array = pc.replace_substring(array, old, new)
    return array


def encode_batch(batch: pa.RecordBatch, names: list[str]) -> memoryview:
    """The rows of ``batch`` (its columns in file order) as LOAD DATA text, one LF-terminated line per row.

    Returned as a view of one Arrow buffer, ready for ``file.write`` without another copy."""
    if batch.num_rows == 0:
        return memoryview(b"")
    cols = [pc.fill_null(_as_text(batch.column(i), names[i]), NULL) for i in range(batch.num_columns)]
    lines = pc.binary_join_element_wise(*cols, _TAB)
    lines = pc.binary_join_element_wise(lines, _EMPTY, _LF)  # "a\tb" + "\n" + "" (the scalar is broadcast)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, stop = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:stop]
