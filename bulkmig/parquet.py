"""Writing part files: one place that decides how bulkmig's Parquet looks.

zstd, page checksums on (a reader detects a damaged page, not only a damaged file), the Arrow schema
stored (field metadata carries each column's source type), row groups bounded by rows *and* bytes
so memory stays bounded however wide the rows are, and dictionary encoding only for the columns the
plan marked as having few distinct values (elsewhere it halves the write speed and grows the file).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# A row group is flushed at this many bytes of Arrow data even when it has fewer rows than the cap,
# so tables of multi-megabyte values keep memory bounded.
ROW_GROUP_BYTES = 64 * 1024 * 1024


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    path: Path,
    max_rows: int = 65536,
    compression: str = "zstd",
    dictionary: list[str] | None = None,
) -> tuple[int, int]:
    """Stream batches into one zstd Parquet file with page checksums; returns (rows, row groups)."""
    rows = groups = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0
    with pq.ParquetWriter(
        path,
        schema,
        compression=compression,
        use_dictionary=dictionary or False,
        write_page_checksum=True,
        store_schema=True,
    ) as writer:

        def flush() -> None:
            nonlocal pending, pending_rows, pending_bytes, groups
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=max(pending_rows, 1))
                groups += 1
            pending, pending_rows, pending_bytes = [], 0, 0

        for batch in batches:
            offset = 0
            while offset < batch.num_rows:
                take = min(batch.num_rows - offset, max_rows - pending_rows)
                piece = batch.slice(offset, take)
                pending.append(piece)
                pending_rows += take
                pending_bytes += piece.nbytes
                rows += take
                offset += take
                if pending_rows >= max_rows or pending_bytes >= ROW_GROUP_BYTES:
                    flush()
        flush()
    return rows, groups
