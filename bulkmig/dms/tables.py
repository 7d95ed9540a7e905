"""Which tables a DMS S3 folder holds and what their columns are: the DMS external table definition, or
the Parquet files' own schema; and the PostgreSQL DDL for a table the target does not have yet.

The table definition is the JSON the DMS S3 *source* takes (``ExternalTableDefinition``), documented at
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.S3.html#CHAP_Source.S3.ExternalTableDef::

    {"TableCount": "1", "Tables": [{"TableName": "employee", "TablePath": "hr/employee/", "TableOwner": "hr",
      "TableColumns": [{"ColumnName": "Id", "ColumnType": "INT8", "ColumnNullable": "false",
                        "ColumnIsPk": "true"}, ...], "TableColumnsTotal": "1"}]}

Numbers and booleans are often strings there ("1", "true"); both spellings are read.  A Parquet file
carries names and types but no key: the key then comes from the definition or the target's primary key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from bulkmig.core.errors import ConfigError

# DMS data types (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Reference.DataTypes.html, and the
# S3 source's list) -> PostgreSQL.  Unsigned types get the next wider signed type, so no value overflows.
DMS_TYPES = {
    "BYTE": "bytea",
    "BYTES": "bytea",
    "BLOB": "bytea",
    "DATE": "date",
    "TIME": "time",
    "DATETIME": "timestamp",
    "INT1": "smallint",
    "INT2": "smallint",
    "INT4": "integer",
    "INT8": "bigint",
    "UINT1": "smallint",
    "UINT2": "integer",
    "UINT4": "bigint",
    "UINT8": "numeric(20,0)",
    "NUMERIC": "numeric",
    "REAL4": "real",
    "REAL8": "double precision",
    "STRING": "text",
    "WSTRING": "text",
    "CLOB": "text",
    "NCLOB": "text",
    "BOOLEAN": "boolean",
}


@dataclass(frozen=True)
class DmsColumn:
    name: str
    pg_type: str
    nullable: bool = True


@dataclass
class DmsTable:
    """One table of the folder, under its source (DMS) names."""

    schema: str
    name: str
    columns: list[DmsColumn] = field(default_factory=list)  # [] until known (definition, Parquet or target)
    primary_key: list[str] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _flag(value: Any, where: str, problems: list[str]) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{where}: {value!r} is not true or false")
    return False


def _number(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: {value!r} is not a number")
        return None


def parse_table_definition(text: str, origin: str, bucket_folder: str = "") -> list[DmsTable]:
    """The tables of an external table definition; every problem in one error.  ``TablePath`` is relative
    to the bucket folder, as in DMS ("bucketFolder is prepended"); it must be ``<schema>/<table>/``, the
    folder DMS's S3 target writes that table to."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{origin} is not JSON ({exc})", "fix the table definition") from None
    problems: list[str] = []
    tables: list[DmsTable] = []
    raw_tables = doc.get("Tables") if isinstance(doc, dict) else None
    if not isinstance(raw_tables, list):
        raise ConfigError(f'{origin}: no "Tables" list', "write it as the DMS S3 external table definition")
    count = _number(doc.get("TableCount"), "TableCount", problems)
    if count is not None and count != len(raw_tables):
        problems.append(f"TableCount is {count} but {len(raw_tables)} tables are listed")
    for i, t in enumerate(raw_tables):
        where = f"Tables[{i}]"
        if not isinstance(t, dict) or not t.get("TableName") or not t.get("TableOwner"):
            problems.append(f"{where}: needs TableName and TableOwner")
            continue
        schema, name = str(t["TableOwner"]), str(t["TableName"])
        path = str(t.get("TablePath") or f"{schema}/{name}/").strip("/")
        if path != f"{schema}/{name}":
            problems.append(
                f"{where}: TablePath {t.get('TablePath')!r} is not {schema}/{name}/, where DMS writes {schema}.{name}"
            )
        cols = t.get("TableColumns")
        if not isinstance(cols, list) or not cols:
            problems.append(f"{where} ({schema}.{name}): no TableColumns")
            continue
        total = _number(t.get("TableColumnsTotal"), f"{where}.TableColumnsTotal", problems)
        if total is not None and total != len(cols):
            problems.append(
                f"{where} ({schema}.{name}): TableColumnsTotal is {total} but {len(cols)} columns are listed"
            )
        table = DmsTable(schema, name)
        for j, c in enumerate(cols):
            cw = f"{where}.TableColumns[{j}]"
            if not isinstance(c, dict) or not c.get("ColumnName"):
                problems.append(f"{cw}: needs ColumnName")
                continue
            pg = _column_type(c, cw, problems)
            nullable = _flag(c.get("ColumnNullable", "true"), f"{cw}.ColumnNullable", problems)
            pk = _flag(c.get("ColumnIsPk"), f"{cw}.ColumnIsPk", problems)
            table.columns.append(DmsColumn(str(c["ColumnName"]), pg, nullable and not pk))
            if pk:
                table.primary_key.append(str(c["ColumnName"]))
        tables.append(table)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems), "fix the table definition (DMS CHAP_Source.S3 format)")
    return tables


def _column_type(c: dict[str, Any], where: str, problems: list[str]) -> str:
    kind = str(c.get("ColumnType") or "").upper()
    if kind not in DMS_TYPES:
        problems.append(f"{where}: ColumnType {c.get('ColumnType')!r} is not one of {', '.join(sorted(DMS_TYPES))}")
        return "text"
    if kind == "NUMERIC":
        precision = _number(c.get("ColumnPrecision"), f"{where}.ColumnPrecision", problems)
        scale = _number(c.get("ColumnScale"), f"{where}.ColumnScale", problems) or 0
        return f"numeric({precision},{scale})" if precision else "numeric"
    if kind == "DATETIME":
        scale = _number(c.get("ColumnScale"), f"{where}.ColumnScale", problems)
        return f"timestamp({min(scale, 6)})" if scale is not None else "timestamp(6)"
    if kind in ("STRING", "WSTRING"):
        length = _number(c.get("ColumnLength"), f"{where}.ColumnLength", problems)
        return f"varchar({length})" if length else "text"
    return DMS_TYPES[kind]


def pg_type_of_arrow(t: pa.DataType) -> str:
    """The PostgreSQL type for a column of a DMS Parquet file (DMS's "Target data types for S3 Parquet" in
    reverse): the closest type that holds every value of the Arrow type."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    return "text"
