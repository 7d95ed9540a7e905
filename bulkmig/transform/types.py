"""An added column's values converted from their SQLite class to its DMS ``data-type`` (read by
:mod:`bulkmig.config.data_types`); BLOB/BYTES and TIME are refused for an added column (an expression cannot
make them).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.config.data_types import DMS_TYPES, DataType, parse_data_type
from bulkmig.core.errors import SourceError
from bulkmig.transform.kernels import INTEGER, NULL, REAL, TEXT, Value

# Which SQLite classes an added column of each DMS type accepts.
_ACCEPTS: dict[str, frozenset[str]] = {
    "string": frozenset({TEXT, INTEGER, NULL}),
    "boolean": frozenset({INTEGER, NULL}),
    "date": frozenset({TEXT, NULL}),
    "datetime": frozenset({TEXT, NULL}),
    "integer": frozenset({INTEGER, NULL}),
    "numeric": frozenset({INTEGER, TEXT, NULL}),
    "real": frozenset({INTEGER, REAL, NULL}),
}


__all__ = ["DMS_TYPES", "DataType", "accepts", "convert", "family", "parse_data_type"]


def family(dt: DataType) -> str | None:
    t = dt.type
    if t in ("string", "wstring", "clob", "nclob"):
        return "string"
    if t.startswith(("int", "uint")) and t != "uint8":
        return "integer"
    if t in ("numeric", "uint8"):
        return "numeric"
    if t.startswith("real"):
        return "real"
    return t if t in ("boolean", "date", "datetime") else None


def accepts(dt: DataType, kind: str) -> bool:
    fam = family(dt)
    return fam is not None and kind in _ACCEPTS[fam]


def convert(value: Value, dt: DataType, rule: str) -> pa.Array:
    """The expression's values as ``dt``'s Arrow type.  A value the type cannot hold (a string longer than
    its length, text that is no date) stops the extract naming the rule — never the value, which may be
    sensitive — rather than land as something else."""
    fam, arr = family(dt), value.arr
    target = _arrow(dt.arrow())
    if value.kind == NULL:
        return pa.nulls(len(arr), target)

    def refuse(what: str) -> SourceError:
        return SourceError(
            f"transformation rule {rule!r}: {what} (data-type {dt.pg()})",
            "change the rule's expression or data-type so every value fits",
        )

    if fam in ("string", "numeric"):
        text = arr if value.kind == TEXT else pc.cast(arr, pa.string())
        longest = pc.max(pc.utf8_length(text)).as_py() if fam == "string" and dt.length else None
        if longest is not None and dt.length is not None and longest > dt.length:
            raise refuse(f"a value is longer than {dt.length} characters")
        return text
    if fam == "boolean":
        return pc.not_equal(arr, 0)
    if fam == "date":
        parsed = pc.strptime(arr, format="%Y-%m-%d", unit="s", error_is_null=True)
        if pc.sum(pc.and_(pc.is_valid(arr), pc.is_null(parsed))).as_py():
            raise refuse("a value is not a YYYY-MM-DD text")
        return pc.cast(parsed, target)
    if fam == "datetime":
        try:  # YYYY-MM-DD HH:MM:SS with or without a fraction, as SQLite's datetime functions write them
            return pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise refuse("a value is not a YYYY-MM-DD HH:MM:SS[.ffffff] text") from None
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise refuse("a value does not fit") from None


def _arrow(name: str) -> pa.DataType:
    from bulkmig.core.model import arrow_type

    return arrow_type(name)
