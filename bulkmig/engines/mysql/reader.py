"""Reading a MySQL/MariaDB partition inside a snapshot: its SELECT, and the server's text → Arrow arrays.

Reading.  A server-side cursor (``SSCursor``) streams each partition; values arrive as the server's text
(no Python converters) and become Arrow arrays of the plan's types by Arrow casts, which are exact for every
type the map sends natively: DECIMAL text → decimal128/256 (never through float), DATETIME/TIMESTAMP text →
timestamp[us] (TIMESTAMP read with ``time_zone '+00:00'``: UTC), DATE → date32, integers, and FLOAT read as
``CAST(… AS DOUBLE)`` because MySQL prints FLOAT with 6 digits, which does not round-trip.  Columns that
travel as text are read with the ``Column.read_as`` template the type map built (TIME, JSON, SET, BIT, …).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.core.errors import SourceError
from bulkmig.core.model import Column, Partition, Table
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.reflect import quote_ident
from bulkmig.engines.postgres.reader import arrow_schema

ER_TABLE_DEF_CHANGED = 1412


# ----------------------------------------------------------------------------------------------- reading


class BadValue(Exception):
    """A value the plan's type cannot hold exactly; turned into a SourceError naming the row."""

    def __init__(self, index: int, value: Any, why: str, hint: str) -> None:
        super().__init__(why)
        self.index, self.value, self.why, self.hint = index, value, why, hint


def select_sql(table: Table, partition: Partition | None, as_text: frozenset[str], float_as_double: bool) -> str:
    """The partition's SELECT: each copied column through its ``read_as`` template, in plan order."""
    exprs = []
    for col in table.copied_columns:
        expr = (col.read_as or "{col}").replace("{col}", quote_ident(col.name))
        if col.name in as_text:
            expr = f"CAST({expr} AS CHAR)"
        elif col.arrow_type == "float32":
            # MySQL prints FLOAT with 6 significant digits; as DOUBLE the text round-trips the stored value.
            expr = f"CAST({expr} AS DOUBLE)" if float_as_double else f"({expr}) + 0E0"
        exprs.append(expr)
    sql = f"SELECT {', '.join(exprs)} FROM {quote_ident(table.schema)}.{quote_ident(table.name)}"
    if partition is not None and partition.bounds.get("partitions"):  # DMS parallel-load by partitions
        sql += f" PARTITION ({', '.join(quote_ident(p) for p in partition.bounds['partitions'])})"
    if partition is not None and partition.where:
        sql += f" WHERE {partition.where}"
    return sql


class Reader:
    """One worker's connection inside a :class:`Snapshot`: streams partitions as Arrow record batches."""

    def __init__(
        self, conn: Any, snapshot: str, position: dict[str, Any], batch_rows: int = 65536, float_as_double: bool = True
    ) -> None:
        self.conn = conn
        self.snapshot = snapshot
        self.snapshot_lsn: str | None = position.get("lsn")
        self.position = dict(position)
        self.batch_rows = batch_rows
        self.float_as_double = float_as_double
        self._closed = False

    def source_position(self) -> dict[str, Any]:
        """What a part's sidecar records about where its rows come from."""
        keys = ("binlog_file", "binlog_pos", "gtid_set", "server_id", "exported_by")
        return {k: self.position.get(k) for k in keys}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(my.DriverError):
            self.conn.close()

    def batches(
        self, table: Table, partition: Partition | None, as_text: frozenset[str] = frozenset()
    ) -> Iterator[pa.RecordBatch]:
        """The partition's rows in batches of up to ``batch_rows``, typed as ``arrow_schema(table)`` says."""
        schema = arrow_schema(table, as_text)
        columns = table.copied_columns
        names = [c.name for c in columns]
        key_at = [names.index(k) for k in table.primary_key if k in names]
        sql = select_sql(table, partition, as_text, self.float_as_double)
        where = f"{table.qualified}" + (f" part {partition.index}" if partition is not None else "")
        cur = self.conn.cursor()
        finished = False
        try:
            cur.execute(sql)
            while True:
                rows = cur.fetchmany(self.batch_rows)
                if not rows:
                    break
                arrays = []
                for col, fld, values in zip(columns, schema, zip(*rows, strict=True), strict=True):
                    try:
                        arrays.append(to_arrow(values, col, fld.type))
                    except BadValue as bad:
                        key = {names[k]: my.text_of(rows[bad.index][k]) for k in key_at} or "(no primary key)"
                        raise SourceError(
                            f"{where}: column {col.name!r} at key {key} holds {_show(bad.value)}: {bad.why}",
                            bad.hint,
                        ) from None
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            finished = True
        except my.DriverError as exc:
            if my.error_code(exc) == ER_TABLE_DEF_CHANGED:
                raise SourceError(
                    f"reading {where}: the table was altered after the snapshot was taken",
                    "re-plan with `bulkmig plan --force` once the schema change is done",
                ) from None
            raise SourceError(
                f"reading {where} failed: {my.error_text(exc)}",
                "check the source server's log; rerun extract to retry this part",
            ) from None
        finally:
            if finished:
                cur.close()
            else:
                # An unfinished streamed result would be drained row by row by cursor.close(); drop the
                # connection instead (its snapshot is lost with it: the worker is done anyway).
                self.close()


def _show(value: Any) -> str:
    text = repr(my.text_of(value))
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------- text → Arrow


def to_arrow(values: Sequence[Any], col: Column, typ: pa.DataType) -> pa.Array:
    """One column of a batch, from the server's text (bytes/str/None) to ``typ``, exactly or not at all."""
    if pa.types.is_binary(typ):
        return pa.array([v.encode() if isinstance(v, str) else v for v in values], pa.binary())
    if col.logical_type == "array" and types.parse_column_type(col.source_type).name == "set":
        values = [None if v is None else set_literal(my.text_of(v)) for v in values]
    text = _string_array(values)
    if pa.types.is_string(typ):
        if col.logical_type == "enum":
            _check_enum(text, values, col)
        return text
    if pa.types.is_boolean(typ):
        ok = pc.or_(pc.is_in(text, value_set=pa.array(["0", "1"])), pc.is_null(text))
        if not pc.all(ok).as_py():
            i = _first_false(ok)
            raise BadValue(
                i,
                values[i],
                "tinyint(1) maps to boolean, which holds only 0 and 1",
                "set tinyint1_as_boolean: false (keeps smallint), or fix the value on the source",
            )
        return pc.equal(text, "1")
    target = typ
    if pa.types.is_timestamp(typ) and typ.tz is not None:
        target = pa.timestamp(typ.unit)  # MySQL's text has no offset: it is UTC (session time_zone +00:00)
    try:
        out = text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _bad_cast(values, target, col) from None
    return out.cast(typ) if target is not typ else out


def _string_array(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for i, v in enumerate(values):
            if isinstance(v, bytes | bytearray):
                try:
                    v.decode()
                except UnicodeDecodeError:
                    raise BadValue(i, v, "not valid UTF-8", "read this column as binary (a bytea target)") from None
        raise


def _first_false(mask: pa.Array) -> int:
    for i, ok in enumerate(mask.to_pylist()):
        if ok is False:
            return i
    return 0


def _bad_cast(values: Sequence[Any], typ: pa.DataType, col: Column) -> BadValue:
    """Find the first value that does not parse as ``typ`` and say what to do about it."""
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            pa.array([my.text_of(v)], pa.string()).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = my.text_of(v)
            if (pa.types.is_date(typ) or pa.types.is_timestamp(typ)) and _is_zero_date(text):
                return BadValue(
                    i,
                    v,
                    "a zero date, which PostgreSQL cannot store",
                    "fix the row on the source, or with zero_dates: null on a nullable column it loads as NULL",
                )
            return BadValue(i, v, f"not a valid {col.source_type} value for {typ}", "fix the value on the source")
    return BadValue(0, values[0] if values else None, f"cannot be read as {typ}", "report this as a bulkmig bug")


def _is_zero_date(text: str) -> bool:
    date = text.split(" ", 1)[0]
    parts = date.split("-")
    return len(parts) == 3 and (parts[1] == "00" or parts[2] == "00")


def _check_enum(text: pa.Array, values: Sequence[Any], col: Column) -> None:
    """MySQL stores '' for an invalid ENUM value outside strict mode; PostgreSQL's enum cannot take it."""
    labels = types.parse_column_type(col.source_type).args
    if "" in labels:
        return
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():
        i = _first_false(pc.invert(empty))
        raise BadValue(
            i,
            values[i],
            "the empty string MySQL stores for an invalid ENUM value",
            "fix the row on the source (UPDATE it to a valid label or NULL)",
        )


def set_literal(text: str) -> str:
    """A SET value (``'a,b'``) as PostgreSQL's text[] input (``{"a","b"}``); ``''`` is the empty set."""
    if text == "":
        return "{}"
    members = ('"' + m.replace("\\", "\\\\").replace('"', '\\"') + '"' for m in text.split(","))
    return "{" + ",".join(members) + "}"
