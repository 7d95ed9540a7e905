"""Stream one partition of a PostgreSQL table as Arrow record batches, inside a shared snapshot.

ADBC reads with ``COPY (query) TO STDOUT (FORMAT binary)`` and converts in C++, the fastest exact read
path measured here.  Every worker opens its own connection, imports the coordinator's exported
snapshot once, and then reads any number of partitions in that one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.core.errors import SourceError
from bulkmig.core.model import Partition, Table, arrow_type
from bulkmig.engines.postgres import types
from bulkmig.engines.postgres.connect import adbc_connect
from bulkmig.engines.postgres.reflect import select_expressions
from bulkmig.engines.postgres.sql import literal, qualified


class FarValue(Exception):
    """A temporal column holds a value beyond Arrow's range; the part is read again with it as text."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


def arrow_schema(table: Table, as_text: frozenset[str] = frozenset()) -> pa.Schema:
    """The schema of the table's part files; each field remembers its source type and how it travels."""
    fields = []
    for c in table.copied_columns:
        text = c.name in as_text
        fields.append(
            pa.field(
                c.name,
                pa.string() if text else arrow_type(c.arrow_type),
                nullable=True,
                metadata={"source_type": c.source_type, "transfer": "text" if text else c.transfer},
            )
        )
    return pa.schema(fields)


class SnapshotReader:
    """One worker's read connection, inside the exported snapshot ``snapshot`` (or a fresh one)."""

    def __init__(self, endpoint: Any, snapshot: str | None, lsn: str | None = None) -> None:
        self.snapshot = snapshot
        self.snapshot_lsn = lsn
        self.conn = adbc_connect(endpoint)
        cur = self.conn.cursor()
        try:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if snapshot:
                cur.execute(f"SET TRANSACTION SNAPSHOT {literal(snapshot)}")
        except Exception as exc:
            self.conn.close()
            raise SourceError(
                f"cannot import snapshot {snapshot}: {str(exc).splitlines()[0]}",
                "the snapshot is gone (its exporting session ended); rerun extract to take a new one",
            ) from None
        finally:
            cur.close()

    def close(self) -> None:
        # After a source restart the session is already gone: nothing to roll back, and nothing to report
        # here (the read that failed has said why).
        with contextlib.suppress(Exception):
            self.conn.rollback()
        with contextlib.suppress(Exception):
            self.conn.close()

    def batches(self, table: Table, part: Partition, as_text: frozenset[str] = frozenset()) -> Iterator[pa.RecordBatch]:
        """The partition's rows; raises :class:`FarValue` when a column must be read as text."""
        exprs = select_expressions(table, as_text)
        sql = f"SELECT {', '.join(exprs)} FROM {qualified(table.schema, table.name)}"
        if part.where:
            sql += f" WHERE {part.where}"
        schema = arrow_schema(table, as_text)
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            for batch in reader:
                yield conform(batch, table, schema)
        except (SourceError, FarValue):
            raise
        except Exception as exc:
            raise SourceError(
                f"reading {table.qualified} part {part.index} failed: {str(exc).splitlines()[0]}",
                "check the source server's log; rerun extract to retry this part",
            ) from None
        finally:
            cur.close()


def conform(batch: pa.RecordBatch, table: Table, schema: pa.Schema) -> pa.RecordBatch:
    """Give the driver's batch the plan's names and types, and restore infinities (see types.py)."""
    arrays = []
    for i, (col, field) in enumerate(zip(table.copied_columns, schema, strict=True)):
        arr = batch.column(f"v{i}")
        if isinstance(arr.type, pa.ExtensionType) and not isinstance(arr.type, pa.UuidType):
            arr = arr.storage
        if not arr.type.equals(field.type):
            arr = arr.cast(field.type)
        if types.is_temporal(col.arrow_type) and f"f{i}" in batch.schema.names:
            arr = _restore_infinity(arr, batch.column(f"f{i}"), col.name)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _restore_infinity(arr: pa.Array, flag: pa.Array, name: str) -> pa.Array:
    if flag.null_count == len(flag):
        return arr
    flag = pc.fill_null(flag, 0)
    if pc.any(pc.equal(flag, 2)).as_py():
        raise FarValue(name)
    if pa.types.is_date32(arr.type):
        pos, neg = types.DATE_POS_INF, types.DATE_NEG_INF
    else:
        pos, neg = types.TS_POS_INF, types.TS_NEG_INF
    arr = pc.if_else(pc.equal(flag, 1), pa.scalar(pos, arr.type), arr)
    return pc.if_else(pc.equal(flag, -1), pa.scalar(neg, arr.type), arr)
