"""A ``dms-s3://`` source's CDC files applied through replay's runner, each file one batch, each once.

Why a module of its own: the full load (:mod:`bulkmig.dms.read`) and the changes share only the folder
and the target table; the changes are replay's concern (its position ledger, compaction, gap checks),
so this is where a DMS file becomes a :class:`~bulkmig.cdc.batch.Batch`.  The order and the meaning of
``Op``, before-image columns and ``CsvNoSupValue`` are described in :mod:`bulkmig.dms.read`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges
from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, IntegrityError, PlanError
from bulkmig.dms.read import DmsFile, Folder, Frame, _copyable, _open_target, open_folder, prepare_table, read_frame
from bulkmig.dms.tables import DmsTable
from bulkmig.dms.values import text_columns
from bulkmig.engines.postgres.target.ledger import loaded_keys
from bulkmig.replay.runner import ReplayReport, replay
from bulkmig.replay.stream import Stream


@dataclass
class DmsStream(Stream):
    """The folder's CDC files as replay's change stream: file k (in apply order) is batch k."""

    folder: Folder | None = None

    @property
    def prefix(self) -> str:
        return ""

    def files(self) -> list[DmsFile]:
        assert self.folder is not None
        return self.folder.cdc

    def batches(self) -> list[int]:
        return list(range(1, len(self.files()) + 1))

    def document(self, name: str) -> dict[str, Any] | None:
        return None  # no stream.json: a DMS folder is not a bulkmig stream

    def captured_through(self) -> int | None:
        return None

    def read(self, seq: int) -> Batch | None:
        assert self.folder is not None
        files = self.files()
        if seq > len(files) and self.folder.refresh():  # follow mode: the files DMS wrote since
            files = self.files()
        if not 1 <= seq <= len(files):
            return None
        f = files[seq - 1]
        table = self.folder.tables[(f.schema, f.table)]
        frame = read_frame(self.folder, f, table, self.folder.store.get_bytes(f.key))
        return Batch(self.stream_id, seq, f.key, f.key, 1, [_changes(self.folder, f, table, frame)])


def _changes(folder: Folder, f: DmsFile, table: DmsTable, frame: Frame) -> TableChanges:
    cols = table.column_names
    texts = _texts(frame.data)
    n = frame.data.num_rows
    before = _texts(frame.before) if frame.before is not None else None
    key_pos = {k: cols.index(k) for k in table.primary_key}
    nosup = folder.fmt.csv_no_sup_value if not f.parquet else None
    file_time = _file_time(f.order)
    ops = frame.ops()
    stamps = frame.stamps.cast(pa.string()).to_pylist() if frame.stamps is not None else None
    rows = []
    for i in range(n):
        op = ops[i] if ops is not None else "I"
        values = [col[i] for col in texts]
        unchanged: list[str] = []
        if nosup is not None and op == "U":
            unchanged = [c for c, v in zip(cols, values, strict=True) if v == nosup]
            values = [None if v == nosup else v for v in values]
        old: list[str | None] | None = None
        if before is not None and op in ("U", "D") and any(b[i] is not None for b in before):
            old = [None] * len(cols)
            for j, k in enumerate(table.primary_key):
                old[key_pos[k]] = before[j][i]
        stamp = stamps[i] if stamps is not None else None
        rows.append(ChangeRow(op, f.key, i, 0, _stamp(stamp) or file_time, values, unchanged, old))
    types = [c.pg_type for c in table.columns]
    return TableChanges(table.schema, table.name, cols, types, list(table.primary_key), "d", rows)


def _texts(tbl: pa.Table) -> list[list[str | None]]:
    if tbl.num_rows == 0:
        return [[] for _ in tbl.columns]
    if all(pa.types.is_string(c.type) for c in tbl.columns):
        return [c.to_pylist() for c in tbl.columns]
    out: list[list[str | None]] = [[] for _ in tbl.columns]
    for batch in _copyable(tbl).to_batches():
        for j, col in enumerate(text_columns(batch)):
            out[j].extend(col)
    return out


def _stamp(text: str | None) -> datetime | None:
    """``yyyy-MM-dd HH:mm:ss.SSSSSS`` (TimestampColumnName), the source commit time, as UTC."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _file_time(order: str) -> datetime:
    day, clock = order.split("-")
    return datetime.strptime(day + clock[:6], "%Y%m%d%H%M%S").replace(
        microsecond=int(clock[6:9] or "0") * 1000, tzinfo=UTC
    )


def replay_dms(task: Task, *, follow: bool = False, stop: Any = None) -> ReplayReport:
    """Apply the folder's CDC files after its full load, each once (replay's runner and position ledger)."""
    folder = open_folder(task)
    conn = _open_target(task)
    try:
        if task.full_load:
            done = loaded_keys(conn, folder.source_id)
            missing = [f.key for files in folder.loads.values() for f in files if f.key not in done]
            if missing:
                raise PlanError(
                    f"{len(missing)} DMS full-load files are not loaded yet (first: {missing[0]})",
                    f"run `bulkmig load --task {task.path or 'task.yaml'}` first",
                )
        with_cdc = {(f.schema, f.table) for f in folder.cdc}
        for name in sorted(folder.tables):
            table = folder.tables[name]
            prepare_table(conn, folder, table)  # the target's columns and key, when it has the table
            if name not in with_cdc:
                continue
            if not table.columns:
                first = next(f for f in folder.cdc if (f.schema, f.table) == name)
                if first.parquet:  # learns the columns from the file's schema
                    read_frame(folder, first, table, folder.store.get_bytes(first.key))
                prepare_table(conn, folder, table)
            if not table.primary_key:
                raise ConfigError(
                    f"{table.qualified} has CDC files but no primary key: DMS's updates and deletes cannot be "
                    "matched to rows exactly",
                    "mark the key with ColumnIsPk in the table definition, or add a primary key on the target",
                )
        _check_position(conn, folder)
    finally:
        conn.close()
    stream = DmsStream(folder.store, folder.source_id, folder)
    return replay(task, follow=follow, stop=stop, stream=stream)


def _check_position(conn: psycopg.Connection, folder: Folder) -> None:
    """The applied position names the file it stopped at: it must still be that file, or the listing
    changed under it (a file added before it, or files removed) and counting on would skip or repeat."""
    row = conn.execute(
        "SELECT seq, pos FROM bulkmig.replay_position WHERE stream_id = %s", (folder.source_id,)
    ).fetchone()
    if row is None:
        return
    seq, pos = int(row[0]), str(row[1])
    files = folder.cdc
    if seq > len(files) or files[seq - 1].key != pos:
        now = files[seq - 1].key if seq <= len(files) else "nothing"
        raise IntegrityError(
            f"the target applied {seq} CDC files of {folder.source_id}, the last {pos}, but file {seq} is now {now}: "
            "a file was added before it or files were removed",
            "restore the folder as it was; a file DMS wrote late belongs in a new full load",
        )


__all__ = ["DmsStream", "replay_dms"]
