"""Writing part files: one place that decides how bulkmig's Parquet looks.

zstd, page checksums on (a reader detects a damaged page, not only a damaged file), the Arrow schema
stored (field metadata carries each column's source type), row groups bounded by rows *and* bytes
so memory stays bounded however wide the rows are, and dictionary encoding only for the columns the
plan marked as having few distinct values (elsewhere it halves the write speed and grows the file).

With a key (``settings.encryption``) the file is encrypted as it is written (:mod:`bulkmig.core.crypto`), so
no plaintext byte reaches the volume; :func:`open_part` reads either kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bulkmig.core.crypto import EncryptingWriter, Key, open_encrypted

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
    key: Key | None = None,
) -> tuple[int, int]:
    """Stream batches into one zstd Parquet file with page checksums; returns (rows, row groups).

    With ``key`` the file at ``path`` holds the Parquet bytes encrypted (whole-part AES-256-GCM)."""
    if key is None:
        return _write(batches, schema, path, max_rows, compression, dictionary)
    sink = EncryptingWriter(open(path, "wb"), key)  # noqa: SIM115 - closed (sealed) or aborted below
    try:
        result = _write(batches, schema, sink, max_rows, compression, dictionary)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return result


def open_part(path: Path, key: Key | None = None, name: str | None = None) -> pq.ParquetFile:
    """A part file for reading.  With ``key`` it is decrypted chunk by chunk in memory, never on disk;
    the decrypting reader is closed when the returned file is dropped."""
    if key is None:
        return pq.ParquetFile(path)
    return pq.ParquetFile(open_encrypted(path, key, name))


def _write(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    where: Path | EncryptingWriter,
    max_rows: int,
    compression: str,
    dictionary: list[str] | None,
) -> tuple[int, int]:
    rows = groups = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0
    with pq.ParquetWriter(
        where,
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
