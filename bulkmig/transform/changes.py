"""DMS masks and added columns applied to captured changes, before a change batch is written to the bucket.

Capture masks exactly what extract masks (the same rules, matched on the source's names, the same
:func:`bulkmig.transform.masking.mask`): new values and the before image (a replica identity FULL table
sends the old row whole), so a masked column stays masked in every batch and in the rows replay writes.
Values travel as the source's text form, the very text a full load masks (masks apply to text columns only).

An ``add-column`` rule's column is computed here for every captured change, as extract computes it for the
loaded rows, and travels in the batch as one more column, so replay writes it like any other.  The change
header is what ``$AR_H_*`` reads: ``$AR_H_OPERATION`` INSERT / UPDATE / DELETE, ``$AR_H_TIMESTAMP`` and
``$AR_H_COMMIT_TIMESTAMP`` the commit time (UTC), ``$AR_H_STREAM_POSITION`` the commit LSN,
``$AR_H_TRANSACTION_ID`` the xid, ``$AR_H_CHANGE_SEQ`` DMS's 35 digits (the commit time to hundredths of a
second, then the change's number in its batch on 19 digits), ``$AR_H_USER`` NULL (pgoutput does not send it).
A change that did not send a column the expression reads (unchanged TOAST) leaves the added column unchanged
too; a delete carries NULL.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.cdc.batch import META, Batch, TableChanges, TableColumns, _meta_names, as_arrow, meta_column
from bulkmig.config.mapping_rules import MASKING_ACTIONS
from bulkmig.config.mappings import Mappings
from bulkmig.transform.expressions import Compiled, column_value, compile_expression
from bulkmig.transform.masking import mask
from bulkmig.transform.types import DataType, accepts, convert

# The change header as expression columns (name -> Arrow type name as the plan writes them).
HEADERS = {
    "AR_H_OPERATION": "string",
    "AR_H_TIMESTAMP": "timestamp[us, tz=UTC]",
    "AR_H_COMMIT_TIMESTAMP": "timestamp[us, tz=UTC]",
    "AR_H_STREAM_POSITION": "string",
    "AR_H_TRANSACTION_ID": "int64",
    "AR_H_CHANGE_SEQ": "string",
    "AR_H_USER": "string",
}
_OPERATIONS = {"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}

Masks = list[tuple[int, str, str | None]]  # (column index, action, value) in rule order


def masks_for(mappings: Mappings, schema: str, table: str, columns: list[str]) -> Masks:
    out: Masks = []
    for rule in mappings.data_rules:
        if rule.action not in MASKING_ACTIONS or not rule.matches(schema, table):
            continue
        for i, name in enumerate(columns):
            if rule.column is not None and rule.column.matches(name):
                out.append((i, rule.action, rule.value))
    return out


def transform_batch(batch: Batch, mappings: Mappings, cache: dict[tuple[object, ...], object]) -> Batch:
    """``batch`` masked, then with the added columns (``cache``: the compiled rules per table, kept by the caller)."""
    return add_columns(mask_batch(batch, mappings), mappings, cache)


def mask_batch(batch: Batch, mappings: Mappings) -> Batch:
    """``batch`` with every masked column masked (the batch itself when no mask applies to it)."""
    if not any(r.action in MASKING_ACTIONS for r in mappings.data_rules):
        return batch
    tables: list[TableChanges | TableColumns] = []
    changed = False
    for t in batch.tables:
        masks = masks_for(mappings, t.schema, t.table, t.columns)
        if not masks:
            tables.append(t)
            continue
        frame = as_arrow(t)
        tables.append(
            TableChanges(t.schema, t.table, t.columns, t.types, t.key, t.identity, frame=mask_frame(frame, masks))
        )
        changed = True
    return dataclasses.replace(batch, tables=tables) if changed else batch  # type: ignore[arg-type]


def mask_frame(frame: pa.Table, masks: Masks) -> pa.Table:
    """A batch file's table with the user columns at ``masks``' indexes masked, in the values and in the
    ``before`` lists (old rows, column order)."""
    names = frame.column_names
    user = [i for i, f in enumerate(frame.schema) if not (f.metadata or {}).get(b"bulkmig")]
    columns = list(frame.columns)
    for index, action, value in masks:
        at = user[index]
        columns[at] = mask(frame.column(at).combine_chunks(), action, value)
    before_at = names.index(next(f.name for f in frame.schema if (f.metadata or {}).get(b"bulkmig") == b"before"))
    columns[before_at] = _mask_lists(meta_column(frame, "before").combine_chunks(), masks)
    return pa.Table.from_arrays(columns, schema=frame.schema)


def _mask_lists(lists: pa.ListArray, masks: Masks) -> pa.ListArray:
    """Each list's element ``index`` masked (the lists are rows of text in column order)."""
    if len(lists) == 0 or lists.null_count == len(lists):
        return lists
    values = lists.flatten()
    if len(values) == 0:
        return lists
    parents = pc.list_parent_indices(lists).to_numpy()
    starts = lists.offsets.to_numpy()[:-1] - lists.offsets[0].as_py()
    position = np.arange(len(values)) - starts[parents]
    out = values
    for index, action, value in masks:
        hit = pa.array(position == index)
        out = pc.if_else(hit, mask(out, action, value), out)
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    return pa.ListArray.from_arrays(offsets, out, mask=lists.is_null())


# ---------------------------------------------------------------------------------------- added columns


def pg_arrow_name(pg_type: str) -> str:
    """The Arrow type name (as the plan writes them) of a captured column's text, by its PostgreSQL type: the
    same class the full load gives the column in an expression."""
    t = pg_type.lower()
    if t in ("smallint", "integer", "bigint"):
        return "int64"
    if t == "boolean":
        return "bool"
    if t in ("real", "double precision"):
        return "float64"
    if t.startswith("numeric"):
        return "decimal"
    if t == "date":
        return "date32"
    if t.startswith("timestamp"):
        return "timestamp[us, tz=UTC]" if "with time zone" in t else "timestamp[us]"
    if t == "bytea":
        return "binary"
    return "string"


def cdc_columns(columns: list[str], types: list[str]) -> dict[str, str]:
    """What an expression reads in a captured change: the columns (by their type) and the header."""
    return {**dict(zip(columns, map(pg_arrow_name, types), strict=True)), **HEADERS}


Added = list[tuple[str, DataType, Compiled | None, str]]  # (name, data type, expression, rule)


def added_for(mappings: Mappings, schema: str, table: str, columns: list[str], types: list[str]) -> Added:
    """The add-column rules of a table, compiled over its captured columns (ConfigError when one cannot be)."""
    out: Added = []
    kinds = cdc_columns(columns, types)
    constants = {"AR_M_SOURCE_SCHEMA": schema, "AR_M_SOURCE_TABLE_NAME": table}
    for rule in mappings.data_rules:
        if rule.action != "add-column" or not rule.matches(schema, table):
            continue
        dt: DataType = rule.extra["data-type"]
        expression = rule.extra.get("expression")
        compiled = compile_expression(expression, rule.rule_name, kinds, constants) if expression else None
        if compiled is not None and not accepts(dt, compiled.kind):
            raise compile_error(rule.rule_name, compiled.kind, dt)
        out.append((str(rule.value), dt, compiled, rule.rule_name))
    return out


def compile_error(rule: str, kind: str, dt: DataType) -> Exception:
    from bulkmig.core.errors import ConfigError

    return ConfigError(
        f"transformation rule {rule!r}: the expression gives {kind} values, not {dt.type}",
        "CAST the expression, or change the rule's data-type",
    )


def add_columns(batch: Batch, mappings: Mappings, cache: dict[tuple[object, ...], object]) -> Batch:
    if not any(r.action == "add-column" for r in mappings.data_rules):
        return batch
    tables: list[TableChanges | TableColumns] = []
    for t in batch.tables:
        key = (t.schema, t.table, tuple(t.columns), tuple(t.types))
        if key not in cache:
            cache[key] = added_for(mappings, t.schema, t.table, t.columns, t.types)
        added: Added = cache[key]  # type: ignore[assignment]
        tables.append(_extended(t, added) if added and t.row_count else t)
    return dataclasses.replace(batch, tables=tables)  # type: ignore[arg-type]


def _header(frame: pa.Table, name: str) -> pa.Array:
    ops = meta_column(frame, "op").combine_chunks()
    commit = meta_column(frame, "commit_ts").combine_chunks()
    if name == "AR_H_OPERATION":
        out = pa.nulls(len(ops), pa.string())
        for letter, word in _OPERATIONS.items():
            out = pc.if_else(pc.equal(ops, letter), word, out)
        return out
    if name in ("AR_H_TIMESTAMP", "AR_H_COMMIT_TIMESTAMP"):
        return commit
    if name == "AR_H_STREAM_POSITION":
        return meta_column(frame, "pos").combine_chunks()
    if name == "AR_H_TRANSACTION_ID":
        return meta_column(frame, "xid").combine_chunks()
    if name == "AR_H_CHANGE_SEQ":
        utc = commit.cast(pa.int64()).cast(pa.timestamp("us"))
        stamp = pc.strftime(pc.cast(pc.floor_temporal(utc, unit="second"), pa.timestamp("s")), format="%Y%m%d%H%M%S")
        hundredths = pc.utf8_lpad(pc.cast(pc.divide(_micros_of_second(utc), 10_000), pa.string()), 2, "0")
        seq = pc.utf8_lpad(pc.cast(meta_column(frame, "seq").combine_chunks(), pa.string()), 19, "0")
        return pc.binary_join_element_wise(stamp, hundredths, seq, "")
    return pa.nulls(len(ops), pa.string())


def _micros_of_second(ts: pa.Array) -> pa.Array:
    micros = pc.cast(ts, pa.int64())
    return pc.subtract(micros, pc.multiply(pc.divide(micros, 1_000_000), 1_000_000))


def _typed(arr: pa.Array, arrow: str) -> pa.Array:
    """A captured column's text as the type the full load reads it as."""
    if arrow == "int64":
        return pc.cast(arr, pa.int64())
    if arrow == "bool":
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pc.equal(arr, "t"))
    if arrow == "float64":
        return pc.cast(arr, pa.float64())
    if arrow.startswith("timestamp"):
        from bulkmig.core.model import arrow_type

        return pc.cast(arr, arrow_type(arrow))
    if arrow == "date32":
        return pc.cast(pc.strptime(arr, format="%Y-%m-%d", unit="s", error_is_null=True), pa.date32())
    return arr


def _extended(t: TableChanges | TableColumns, added: Added) -> TableChanges:
    """One table's changes with the added columns computed and placed after the user columns."""
    frame = as_arrow(t)
    kinds = cdc_columns(t.columns, t.types)
    user = {
        f.name: frame.column(i).combine_chunks()
        for i, f in enumerate(frame.schema)
        if not (f.metadata or {}).get(b"bulkmig")
    }
    ops = meta_column(frame, "op").combine_chunks()
    unchanged = meta_column(frame, "unchanged").combine_chunks().to_pylist()
    new_names, new_types, new_arrays = [], [], []
    for name, dt, compiled, rule in added:
        n = frame.num_rows
        if compiled is None:
            text = pa.nulls(n, pa.string())
        else:
            cols = {}
            for ref in compiled.references:
                raw = user[ref] if ref in user else _header(frame, ref)
                arr = _typed(raw, kinds[ref]) if ref in user else raw
                cols[ref] = column_value(arr, kinds[ref])
            value = compiled.evaluate(cols, n)
            typed = convert(value, dt, rule)
            text = typed if typed.type == pa.string() else pc.cast(typed, pa.string())
            if pa.types.is_boolean(typed.type):
                text = pc.if_else(typed, "true", "false")
            for i, sent in enumerate(unchanged):
                if sent and compiled.references & set(sent):
                    unchanged[i] = [*sent, name]
        text = pc.if_else(pc.equal(ops, "D"), pa.scalar(None, pa.string()), text)
        new_names.append(name)
        new_types.append(dt.pg())
        new_arrays.append(text)
    columns = [*t.columns, *new_names]
    meta = _meta_names(columns)
    fields, arrays = [], []
    for i, f in enumerate(frame.schema):
        if not (f.metadata or {}).get(b"bulkmig"):
            fields.append(f)
            arrays.append(frame.column(i))
    for name, pg, arr in zip(new_names, new_types, new_arrays, strict=True):
        fields.append(pa.field(name, pa.string(), metadata={"source_type": pg}))
        arrays.append(arr)
    extra = len(new_names)
    for i, f in enumerate(frame.schema):
        role = (f.metadata or {}).get(b"bulkmig")
        if not role:
            continue
        column = frame.column(i)
        if role == b"unchanged":
            column = pa.array(unchanged, f.type)
        elif role == b"before":
            lists = column.to_pylist()
            column = pa.array([None if v is None else [*v, *([None] * extra)] for v in lists], f.type)
        fields.append(pa.field(meta[role.decode()], f.type, metadata=f.metadata))
        arrays.append(column)
    assert set(META) == {(f.metadata or {}).get(b"bulkmig", b"").decode() for f in fields} - {""}
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=frame.schema.metadata))
    return TableChanges(t.schema, t.table, columns, [*t.types, *new_types], t.key, t.identity, frame=table)
