"""Stream one partition of a PostgreSQL table as Arrow record batches, inside a shared snapshot.

ADBC reads with ``COPY (query) TO STDOUT (FORMAT binary)`` and converts in C++, the fastest exact read
path measured here.  Every worker opens its own connection, imports the coordinator's exported
snapshot once, and then reads any number of partitions in that one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.engines.postgres import types
from bulkmig.engines.postgres.connect import adbc_connect
from bulkmig.engines.postgres.reflect import select_expressions
from bulkmig.engines.postgres.sql import literal, qualified
from bulkmig.errors import SourceError
from bulkmig.model import Partition, Table


def arrow_schema(table: Table) -> pa.Schema:
    """The schema of the table's part files; each field remembers its source type."""
    return pa.schema(
        [
            pa.field(
                c.name,
                types.arrow_type(c.arrow_type),
                nullable=True,
                metadata={"source_type": c.source_type, "transfer": c.transfer},
            )
            for c in table.copied_columns
        ]
    )


class SnapshotReader:
    """One worker's read connection, inside the exported snapshot ``snapshot`` (or a fresh one)."""

    def __init__(self, endpoint: Any, snapshot: str | None) -> None:
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
        try:
            self.conn.rollback()
        finally:
            self.conn.close()

    def batches(self, table: Table, part: Partition) -> Iterator[pa.RecordBatch]:
        sql = f"SELECT {', '.join(select_expressions(table))} FROM {qualified(table.schema, table.name)}"
        if part.where:
            sql += f" WHERE {part.where}"
        schema = arrow_schema(table)
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            for batch in reader:
                yield conform(batch, table, schema)
        except SourceError:
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
        if types.is_temporal(col.arrow_type):
            arr = _restore_infinity(arr, batch.column(f"f{i}"), col.name, table)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _restore_infinity(arr: pa.Array, flag: pa.Array, name: str, table: Table) -> pa.Array:
    if flag.null_count == len(flag):
        return arr
    flag = pc.fill_null(flag, 0)
    if pc.any(pc.equal(flag, 2)).as_py():
        raise SourceError(
            f"{table.qualified}.{name} holds a date later than year 290000, beyond Parquet's timestamp range",
            "such values cannot be moved exactly yet; change them on the source or exclude the column",
        )
    if pa.types.is_date32(arr.type):
        pos, neg = types.DATE_POS_INF, types.DATE_NEG_INF
    else:
        pos, neg = types.TS_POS_INF, types.TS_NEG_INF
    arr = pc.if_else(pc.equal(flag, 1), pa.scalar(pos, arr.type), arr)
    return pc.if_else(pc.equal(flag, -1), pa.scalar(neg, arr.type), arr)
