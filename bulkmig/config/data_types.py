"""DMS ``data-type`` blocks (``{"type": "string", "length": 50}``) of transformation rules, and what a
rule's masking character may be: read with the table mappings, so every problem is named when the file is read.

The DMS type names are those of the DMS data-types reference (STRING, WSTRING, BOOLEAN, DATE, TIME, DATETIME,
INT1-8, UINT1-8, NUMERIC, REAL4, REAL8, BYTES, BLOB, CLOB, NCLOB), written lower case in rules.  Where DMS is
silent: STRING without a length is ``text``; UINT8 is ``numeric(20,0)``; DATETIME's precision (0-6, default 6)
is the timestamp's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DMS_TYPES = (
    "string",
    "wstring",
    "clob",
    "nclob",
    "boolean",
    "date",
    "time",
    "datetime",
    "int1",
    "int2",
    "int4",
    "int8",
    "uint1",
    "uint2",
    "uint4",
    "uint8",
    "numeric",
    "real4",
    "real8",
    "bytes",
    "blob",
)


@dataclass(frozen=True)
class DataType:
    """A parsed ``data-type`` block."""

    type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    def pg(self) -> str:
        """The PostgreSQL type it names."""
        t = self.type
        if t in ("string", "wstring"):
            return f"varchar({self.length})" if self.length else "text"
        if t in ("clob", "nclob"):
            return "text"
        if t in ("bytes", "blob"):
            return "bytea"
        if t == "datetime":
            return f"timestamp({self.precision if self.precision is not None else 6})"
        if t == "numeric":
            if self.precision is None:
                return "numeric"
            return f"numeric({self.precision},{self.scale or 0})"
        return {
            "boolean": "boolean",
            "date": "date",
            "time": "time",
            "int1": "smallint",
            "int2": "smallint",
            "int4": "integer",
            "int8": "bigint",
            "uint1": "smallint",
            "uint2": "integer",
            "uint4": "bigint",
            "uint8": "numeric(20,0)",
            "real4": "real",
            "real8": "double precision",
        }[t]

    def arrow(self) -> str:
        """The Arrow type (as the plan names them) an added column of this type travels as."""
        t = self.type
        if t in ("string", "wstring", "clob", "nclob", "uint8", "numeric"):
            return "string"
        return {
            "boolean": "bool",
            "date": "date32",
            "datetime": "timestamp[us]",
            "int1": "int16",
            "int2": "int16",
            "uint1": "int16",
            "int4": "int32",
            "uint2": "int32",
            "int8": "int64",
            "uint4": "int64",
            "real4": "float32",
            "real8": "float64",
        }.get(t, "")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def parse_data_type(raw: Any) -> tuple[DataType | None, str | None]:
    """(the data type, None) or (None, why it is wrong)."""
    if not isinstance(raw, dict):
        return None, 'data-type must be an object, e.g. {"type": "string", "length": 50}'
    t = raw.get("type")
    if not isinstance(t, str) or t.strip().lower() not in DMS_TYPES:
        return None, f"data-type type {t!r} is not a DMS type (one of: {', '.join(DMS_TYPES)})"
    unknown = sorted(set(raw) - {"type", "length", "precision", "scale"})
    if unknown:
        return None, f"data-type has unknown key {unknown[0]!r} (type, length, precision, scale)"
    nums: dict[str, int | None] = {}
    for key in ("length", "precision", "scale"):
        v = raw.get(key)
        if v in (None, ""):
            nums[key] = None
        elif isinstance(v, int | str) and not isinstance(v, bool) and str(v).strip().isdigit():
            nums[key] = int(v)
        else:
            return None, f"data-type {key} must be a whole number, not {v!r}"
    dt = DataType(t.strip().lower(), nums["length"], nums["precision"], nums["scale"])
    if dt.type == "numeric" and dt.precision is not None and not 1 <= dt.precision <= 1000:
        return None, "data-type precision must be 1 to 1000"
    if dt.type == "numeric" and dt.scale is not None and dt.precision is not None and dt.scale > dt.precision:
        return None, "data-type scale must not exceed its precision"
    if dt.type == "datetime" and dt.precision is not None and dt.precision > 6:
        return None, "datetime precision must be 0 to 6 (PostgreSQL keeps microseconds)"
    return dt, None


def mask_character_problem(value: str | None) -> str | None:
    """Why ``value`` cannot be a digits-mask character (DMS: one printable ASCII character, not a space)."""
    if value is None or len(value) != 1 or not (0x21 <= ord(value) <= 0x7E):
        return f"needs 'value': one printable ASCII character that is not a space (e.g. \"#\"), not {value!r}"
    return None
