"""``bulkmig export --format dms``: the migration's data written as AWS DMS's S3 target would have written it.

Why a separate export rather than a bucket format: bulkmig's own bucket is what load, replay, verify and
status trust (sealed manifests, ``batch.json`` written last, sha256 everywhere); the DMS layout has none
of that.  So the export is a *view* written from the verified bucket into any folder (the one the
Athena tables, Glue crawlers and Spark jobs built on DMS already read), and bulkmig keeps its own.

What it writes, under ``s3://bucket/folder`` (paths: :mod:`bulkmig.core.layout`, DMS section), following
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html and the endpoint settings given
(``--settings``, the S3Settings JSON the DMS endpoint had; DMS's defaults otherwise):

- full load: ``<schema>/<table>/LOAD00000001.parquet`` … one file per volume part holding rows, numbered in
  hexadecimal from 1, under the *target* names the table mappings give (DMS writes the transformed names).
  ``Op`` = ``I`` first when ``IncludeOpForFullLoad``; the ``TimestampColumnName`` column (the export's time,
  or its start with ``UseTaskStartTimeForFullLoadTimestamp``) before the table's columns;
- CDC: per change batch and table, ``<schema>/<table>/[date folder/]20221023-013830913.parquet`` named by
  the last commit time of its rows (to the ms; a name is never reused or lower than the table's previous
  one), rows in commit order, ``Op`` I/U/D (only I with ``CdcInsertsOnly``, I/U with
  ``CdcInsertsAndUpdates``), the timestamp column holding each row's commit time; a ``D`` row carries what
  the stream sent (the key, or the whole old row under REPLICA IDENTITY FULL), a column an update did not
  carry (unchanged TOAST) is NULL (or ``CsvNoSupValue``), as in DMS; a TRUNCATE removes the table's files
  ("A truncate removes all files and corresponding table folders" — the page's limitations);
- ``--before-image-prefix BI_`` adds the key's old values after the columns, as DMS's
  ``add-before-image-columns`` rule (``pk-only``) does, so a key update can be followed downstream.

Parquet types are DMS's (uuid as STRING, timestamps µs or ms with ``ParquetTimestampInMillisecond``),
Parquet 1.0 unless ``ParquetVersion``, uncompressed unless ``CompressionType`` GZIP, no Arrow schema
stored.  CSV follows :mod:`bulkmig.dms.values`.  Resumable: full-load files already present are skipped,
and ``exports/dms-<id>.json`` in bulkmig's bucket records the last batch exported and each table's last
CDC file name, written after each batch's files (a batch exported again gets the same names).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bulkmig.cdc.batch import ChangeRow, TableChanges
from bulkmig.cdc.compact import after_last_truncate
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.crypto import key_for_plan
from bulkmig.core.errors import ConfigError, IntegrityError
from bulkmig.core.log import Clock, Progress, say
from bulkmig.core.manifest import sha256_file
from bulkmig.core.model import Column, arrow_type
from bulkmig.core.parquet import open_part
from bulkmig.core.store import NotFound, Store, open_store
from bulkmig.dms.settings import DmsFormat, load_settings
from bulkmig.dms.values import as_type, column_type, dms_column, dms_type, encode_csv, typed_column
from bulkmig.fullload.load import find_volume
from bulkmig.fullload.plan import Plan
from bulkmig.replay.marks import names_are_target
from bulkmig.replay.stream import STREAM_MANIFEST, find_stream

STATE_FORMAT = "bulkmig-dms-export"
STATE_VERSION = 1
OP_COLUMN = "Op"


@dataclass
class ExportReport:
    load_files: int = 0
    load_rows: int = 0
    load_skipped: int = 0
    batches: int = 0
    cdc_files: int = 0
    cdc_rows: int = 0


@dataclass
class _State:
    destination: str
    started: str
    load_done: bool = False
    last_seq: int = 0
    last_ms: dict[str, int] = field(default_factory=dict)  # "schema/table" -> its last CDC file's time (ms)

    def to_bytes(self) -> bytes:
        doc = {"format": STATE_FORMAT, "version": STATE_VERSION, **asdict(self)}
        return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def export_dms(
    task: Task,
    to: str,
    settings: Path | None = None,
    *,
    before_image_prefix: str | None = None,
    before_image_suffix: str = "",
    progress: bool = True,
) -> ExportReport:
    """Write this task's full load (the imported volume) and change batches to ``to`` in DMS's layout."""
    fmt = load_settings(settings)
    for warning in fmt.warnings:
        say(f"export: endpoint settings {warning}")
    if fmt.table_definition:
        say("export: ExternalTableDefinition is an S3 source setting; not used by an export")
    if not to.startswith("s3://") and "://" in to:
        raise ConfigError(f"--to {to!r} is not an s3:// URL or a directory", "write --to s3://bucket/folder")
    dest = open_store(to, task.s3_options())
    bucket = open_store(task.bucket, task.s3_options())
    state_key = layout.dms_export_state(hashlib.sha256(dest.url.encode()).hexdigest()[:16])
    state = _read_state(bucket, state_key, dest.url)
    report = ExportReport()
    clock = Clock()
    plan: Plan | None = None
    if task.full_load:
        volume, manifest, plan = find_volume(task)
        if not state.load_done:
            _export_load(
                task,
                fmt,
                dest,
                volume,
                manifest,
                plan,
                state,
                report,
                progress,
                before_image_prefix,
                before_image_suffix,
            )
            state.load_done = True
            bucket.put_bytes(state_key, state.to_bytes())
        clock.lap("full load")
    if task.cdc:
        _export_cdc(task, fmt, dest, bucket, plan, state, state_key, report, before_image_prefix, before_image_suffix)
        clock.lap("cdc")
    say(
        f"export: {report.load_files} full-load files ({report.load_rows:,} rows), {report.cdc_files} CDC files "
        f"({report.cdc_rows:,} changes from {report.batches} batches) written to {dest.url} in the DMS layout "
        f"({clock.render()})"
    )
    return report


def _read_state(bucket: Store, key: str, destination: str) -> _State:
    try:
        doc = json.loads(bucket.get_bytes(key))
    except NotFound:
        return _State(destination, datetime.now(UTC).isoformat())
    if (
        doc.get("format") != STATE_FORMAT
        or doc.get("version") != STATE_VERSION
        or doc.get("destination") != destination
    ):
        raise IntegrityError(f"{bucket.url}/{key} is not this export's state", "delete it to export from scratch")
    return _State(doc["destination"], doc["started"], doc["load_done"], doc["last_seq"], dict(doc["last_ms"]))


def _stamp(when: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss.SSSSSS`` (TimestampColumnName's format), UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# ============================================================================================ writing files


class _DmsFile:
    """One DMS file, written in pieces (a part's row groups), then put whole: S3 shows an object only when
    it is complete, so a reader never sees half a file."""

    def __init__(self, path: Path, fmt: DmsFormat) -> None:
        self.path = path
        self.fmt = fmt
        self.parquet: pq.ParquetWriter | None = None
        self.csv: Any = None
        self.raw: Any = None

    def write(self, columns: list[tuple[str, pa.Array | pa.ChunkedArray]]) -> None:
        fmt = self.fmt
        if fmt.data_format == "parquet":
            table = pa.table({name: col for name, col in columns})
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(
                    self.path,
                    table.schema,
                    version=fmt.parquet_version,
                    compression="GZIP" if fmt.gzip else "NONE",
                    use_dictionary=fmt.encoding != "plain",
                    dictionary_pagesize_limit=fmt.dict_page_size,
                    data_page_size=fmt.data_page_size,
                    write_statistics=fmt.statistics,
                    store_schema=False,
                    data_page_version="1.0",
                )
            self.parquet.write_table(table, row_group_size=fmt.row_group_length)
            return
        first = self.csv is None
        if first:
            raw = open(self.path, "wb")  # noqa: SIM115 - closed by put()
            self.csv = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if fmt.gzip else raw
            self.raw = raw
        arrays = [col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col for _, col in columns]
        header = [name for name, _ in columns] if fmt.add_column_name and first else None
        self.csv.write(encode_csv(arrays, fmt, header))

    def put(self, dest: Store, key: str) -> None:
        for handle in (self.parquet, self.csv, self.raw):
            if handle is not None:
                handle.close()
        dest.put_file(key, self.path)
        self.path.unlink(missing_ok=True)


def _write(
    dest: Store, key: str, columns: list[tuple[str, pa.Array | pa.ChunkedArray]], fmt: DmsFormat, tmp: Path
) -> None:
    out = _DmsFile(tmp / "file", fmt)
    out.write(columns)
    out.put(dest, key)


def _file_ext(fmt: DmsFormat) -> str:
    return fmt.ext + (".gz" if fmt.gzip and fmt.data_format == "csv" else "")


# ============================================================================================ full load


def _export_load(
    task: Task,
    fmt: DmsFormat,
    dest: Store,
    volume: Store,
    manifest: Any,
    plan: Plan,
    state: _State,
    report: ExportReport,
    progress: bool,
    bi_prefix: str | None,
    bi_suffix: str,
) -> None:
    decrypt_with = key_for_plan(task.settings.encryption.key_file, plan.settings, plan.volume_id)
    todo = []
    for table, index in plan.parts():
        entry = manifest.entry(layout.part_key(table.schema, table.name, index))
        if entry is None:
            raise IntegrityError(
                f"part {index} of {table.qualified} is not in the sealed manifest", "re-seal the volume"
            )
        if entry.rows:  # DMS writes no file (and no folder) for an empty table
            todo.append((table, index))
    bar = Progress("export", len(todo), 0, unit="files") if progress and todo else None
    counters: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="bulkmig-export-") as tmpname:
        tmp = Path(tmpname)
        for table, index in todo:
            tschema, tname = table.target_qualified
            counter = counters[(tschema, tname)] = counters.get((tschema, tname), 0) + 1
            key = layout.join(layout.dms_table_dir(tschema, tname), layout.dms_load_name(counter, _file_ext(fmt)))
            if dest.exists(key):
                report.load_skipped += 1
                if bar:
                    bar.advance(parts=1)
                continue
            part = layout.part_key(table.schema, table.name, index)
            entry = manifest.entry(part)
            local = tmp / "part.parquet"
            volume.download(part, local)
            digest, size = sha256_file(local)
            if digest != entry.sha256 or size != entry.bytes:
                raise IntegrityError(f"part {part} in {volume.url} does not match the sealed manifest", "re-import it")
            parquet = open_part(local, decrypt_with, f"{volume.url}/{part}")
            out = _DmsFile(tmp / "file", fmt)
            rows = 0
            for group in range(parquet.num_row_groups):  # a part a row group at a time: memory stays bounded
                columns = _load_columns(
                    task, table, parquet.read_row_group(group), index, fmt, state, bi_prefix, bi_suffix
                )
                out.write(columns)
                rows += len(columns[0][1])
            out.put(dest, key)
            local.unlink(missing_ok=True)
            report.load_files += 1
            report.load_rows += rows
            if bar:
                bar.advance(parts=1, rows=rows)
    if bar:
        bar.finish()


def _load_columns(
    task: Task,
    table: Any,
    data: pa.Table,
    index: int,
    fmt: DmsFormat,
    state: _State,
    bi_prefix: str | None,
    bi_suffix: str,
) -> list[tuple[str, Any]]:
    """A row group of a part as the columns of a DMS full-load file: [Op][timestamp] columns [before-image]."""
    rows = data.num_rows
    names = [c.target for c in table.copied_columns]
    data = data.rename_columns(names)
    for i, c in enumerate(table.copied_columns):
        want = column_type(c, data.schema.field(i).type)
        if want != data.schema.field(i).type:
            data = data.set_column(
                i, c.target, as_type(data.column(i), want, f"{table.qualified}.{c.name} (part {index})")
            )
    started = datetime.fromisoformat(state.started)
    stamp = _stamp(started if fmt.task_start_time_for_full_load else datetime.now(UTC))
    columns: list[tuple[str, Any]] = []
    if fmt.include_op_for_full_load:
        columns.append((OP_COLUMN, pa.array(["I"] * rows, pa.string())))
    if fmt.timestamp_column:
        columns.append((fmt.timestamp_column, pa.array([stamp] * rows, pa.string())))
    columns += [(n, dms_column(data.column(n), fmt)) for n in names]
    if bi_prefix is not None:  # add-before-image-columns: a full-load row has no before image
        for k in _target_key(task, table):
            columns.append((f"{bi_prefix}{k}{bi_suffix}", pa.nulls(rows, dms_type(data.schema.field(k).type, fmt))))
    return columns


def _target_key(task: Task, table: Any) -> list[str]:
    names = {c.name: c.target for c in table.columns}
    return [names[k] for k in table.primary_key if k in names]


# ============================================================================================ CDC


_PG_ARROW = [
    (re.compile(r"^(smallint|int2)$"), pa.int16()),
    (re.compile(r"^(integer|int|int4)$"), pa.int32()),
    (re.compile(r"^(bigint|int8)$"), pa.int64()),
    (re.compile(r"^(real|float4)$"), pa.float32()),
    (re.compile(r"^(double precision|float8)$"), pa.float64()),
    (re.compile(r"^(boolean|bool)$"), pa.bool_()),
    (re.compile(r"^date$"), pa.date32()),
    (re.compile(r"^timestamp(\(\d\))?( without time zone)?$"), pa.timestamp("us")),
    (re.compile(r"^(timestamp(\(\d\))? with time zone|timestamptz)$"), pa.timestamp("us", tz="UTC")),
    (re.compile(r"^bytea$"), pa.binary()),
]
_NUMERIC = re.compile(r"^(?:numeric|decimal)\((\d+),(\d+)\)$")


def _arrow_of(pg_type: str) -> pa.DataType:
    """The Parquet type of a column known only by its PostgreSQL type (a stream without a volume)."""
    text = pg_type.strip().lower()
    if (m := _NUMERIC.match(text.replace(" ", ""))) and int(m.group(1)) <= 38:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    for pattern, t in _PG_ARROW:
        if pattern.match(text):
            return t
    return pa.string()


def _type(column: Column | None, pg_type: str) -> pa.DataType:
    if column is None:
        return _arrow_of(pg_type)
    return column_type(column, arrow_type(column.arrow_type))


def _export_cdc(
    task: Task,
    fmt: DmsFormat,
    dest: Store,
    bucket: Store,
    plan: Plan | None,
    state: _State,
    state_key: str,
    report: ExportReport,
    bi_prefix: str | None,
    bi_suffix: str,
) -> None:
    stream = find_stream(task, bucket)
    target_names = names_are_target(task, stream.document(STREAM_MANIFEST))
    planned: dict[tuple[str, str], dict[str, Column]] = {}
    for table in plan.tables if plan else []:
        planned[table.target_qualified] = {c.target: c for c in table.copied_columns}
    keys = {t.target_qualified: _target_key(task, t) for t in plan.tables} if plan else {}
    with tempfile.TemporaryDirectory(prefix="bulkmig-export-") as tmpname:
        tmp = Path(tmpname)
        for seq in stream.batches():
            if seq <= state.last_seq:
                continue
            batch = stream.read(seq)
            if batch is None:
                break
            for changes in batch.tables:
                if not target_names and not task.mappings.select([(changes.schema, changes.table)]):
                    continue
                _export_changes(
                    task, fmt, dest, changes, target_names, planned, keys, state, report, tmp, bi_prefix, bi_suffix
                )
            state.last_seq = seq
            bucket.put_bytes(state_key, state.to_bytes())
            report.batches += 1


def _export_changes(
    task: Task,
    fmt: DmsFormat,
    dest: Store,
    changes: TableChanges,
    target_names: bool,
    planned: dict[tuple[str, str], dict[str, Column]],
    keys: dict[tuple[str, str], list[str]],
    state: _State,
    report: ExportReport,
    tmp: Path,
    bi_prefix: str | None,
    bi_suffix: str,
) -> None:
    if target_names:
        tschema, tname = changes.schema, changes.table
        mapped = {c: c for c in changes.columns}
    else:
        tschema, tname = task.mappings.target_table_name(changes.schema, changes.table)
        mapped = task.mappings.target_columns(changes.schema, changes.table, changes.columns)
    truncated, rows = after_last_truncate(changes.rows)
    tdir = layout.dms_table_dir(tschema, tname)
    if truncated:  # as DMS does: the table's files go
        for info in list(dest.list(tdir + "/")):
            dest.delete(info.key)
        say(f"export: TRUNCATE of {tschema}.{tname}: its files in {dest.url}/{tdir} removed, as DMS does")
    ops = fmt.cdc_ops()
    rows = [r for r in rows if r.op in ops]
    if not rows:
        return
    cols = [c for c in changes.columns if c in mapped]
    idx = {c: changes.columns.index(c) for c in cols}
    plan_cols = planned.get((tschema, tname), {})
    types = {c: _type(plan_cols.get(mapped[c]), changes.types[idx[c]]) for c in cols}
    where = f"{tschema}.{tname}"
    columns: list[tuple[str, Any]] = []
    if fmt.cdc_has_op():
        columns.append((OP_COLUMN, pa.array([r.op for r in rows], pa.string())))
    if fmt.timestamp_column:
        columns.append((fmt.timestamp_column, pa.array([_stamp(r.commit_ts) for r in rows], pa.string())))
    nosup: dict[str, list[bool]] = {}
    for c in cols:
        values = [r.values[idx[c]] for r in rows]
        typed = typed_column(values, types[c], f"{where}.{mapped[c]}")
        if fmt.data_format == "csv" and fmt.csv_no_sup_value is not None:
            mask = [c in r.unchanged for r in rows]
            if any(mask):
                nosup[mapped[c]] = mask
        columns.append((mapped[c], dms_column(typed, fmt)))
    if bi_prefix is not None:
        key = keys.get((tschema, tname)) or [mapped[k] for k in changes.key if k in mapped]
        inverse = {dst: src for src, dst in mapped.items()}
        for k in key:
            i = idx[inverse[k]]
            old = [_old_value(r, i) for r in rows]
            columns.append((f"{bi_prefix}{k}{bi_suffix}", dms_column(typed_column(old, types[inverse[k]], where), fmt)))
    if nosup:
        columns = _with_nosup(columns, nosup, fmt)
    ms = max(_ms(r) for r in rows)
    if tdir in state.last_ms:  # names only ever grow: readers apply the files in name order
        ms = max(ms, state.last_ms[tdir] + 1)
    name = layout.dms_cdc_name(ms, _file_ext(fmt), fmt.tz)
    key = layout.dms_cdc_key(tschema, tname, name, fmt.date_folder(ms))
    _write(dest, key, columns, fmt, tmp)
    state.last_ms[tdir] = ms
    report.cdc_files += 1
    report.cdc_rows += len(rows)


def _old_value(row: ChangeRow, i: int) -> str | None:
    """A before-image key value: the old key of an update (the new one when the key did not change), the
    deleted row's key, nothing for an insert."""
    if row.op == "I":
        return None
    if row.before is not None and row.before[i] is not None:
        return row.before[i]
    return row.values[i]


def _ms(row: ChangeRow) -> int:
    return int(row.commit_ts.timestamp() * 1000)


def _with_nosup(columns: list[tuple[str, Any]], masks: dict[str, list[bool]], fmt: DmsFormat) -> list[tuple[str, Any]]:
    """CSV only (UseCsvNoSupValue): a column an update did not carry is written as CsvNoSupValue."""
    from bulkmig.dms.values import csv_text

    out = []
    for name, col in columns:
        if name in masks:
            text = csv_text(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
            values = text.to_pylist()
            col = pa.array([fmt.csv_no_sup_value if m else v for v, m in zip(values, masks[name], strict=True)])
        out.append((name, col))
    return out


__all__ = ["ExportReport", "export_dms"]
