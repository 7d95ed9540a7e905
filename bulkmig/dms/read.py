"""A ``dms-s3://bucket/folder`` source: what an AWS DMS S3 target wrote, loaded into PostgreSQL, exactly once.

A user leaving DMS keeps the bucket DMS filled and does not re-extract anything.  The task says::

    source: dms-s3://dms-bucket/dms-folder          # BucketName / BucketFolder of the DMS S3 target
    target: postgresql://admin@new-host/app
    migration_type: full-load-and-cdc               # the LOAD files, then the CDC files
    settings:
      dms: {endpoint_settings: s3-target.json, table_definition: tables.json}   # both optional for Parquet

``bulkmig load`` loads every full-load file (``<schema>/<table>/LOAD00000001.parquet``, ``.csv``,
``.csv.gz``, also in parallel-load sub-folders), each in one target transaction together with its row in
the load ledger ``bulkmig.loaded_parts`` (``engines/postgres/target/ledger.claim_part`` / ``record_part``, the same
table and rule as a volume's parts), so a rerun or a kill -9 never loads a file twice.  ``bulkmig
replay`` then applies the CDC files in order: each file is one batch for replay's own runner (the
``bulkmig.replay_position`` ledger, compaction, the bulk and exact paths, gap checks), so a change is
applied exactly once.  Order: by file name (DMS names CDC files by time, ``20221023-013830913``, and
the S3 *source* documents the same rule: files are read in lexical order), across tables too; within a
file, row order.  A file that appears *before* the applied position later stops replay (DMS would skip it
silently).

What a row means (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html, "Indicating source
DB operations"): ``I`` insert, ``U`` the row after the update, ``D`` the row as it was before the delete;
without an ``Op`` field (``CdcInsertsOnly`` without ``IncludeOpForFullLoad``) every row is an insert.
DMS's files do not say which key an update came from: a primary-key update is visible only with the
``add-before-image-columns`` rule (``BI_<column>``, https://repost.aws/questions/QUfXtCkhI9SGepdNLbsqTzjQ);
with those columns it moves the row, without them the update lands as a new row and the old one stays.
A column a change did not carry (``UseCsvNoSupValue``, ``CsvNoSupValue``) keeps the target's value.

Columns come from the table definition (``settings.dms.table_definition`` or ``ExternalTableDefinition``
in the endpoint settings), else from each Parquet file's schema, else (CSV) from the target table, which
then must exist.  Keys come from ``ColumnIsPk``, else the target's primary key; CDC needs one.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, IntegrityError, TargetError
from bulkmig.core.log import Clock, Progress, say
from bulkmig.core.store import Store, open_store, sha256_file
from bulkmig.dms.settings import DmsFormat, load_settings
from bulkmig.dms.tables import DmsColumn, DmsTable, parse_table_definition, pg_type_of_arrow
from bulkmig.dms.values import decode_csv
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.engines.postgres.target.ledger import LEDGER_DDL, POSITION_DDL, claim_part, loaded_keys, record_part
from bulkmig.engines.postgres.target.tables import read_target_table
from bulkmig.engines.postgres.writer import to_copy_csv

OP_COLUMN = "Op"  # the name in DMS's Parquet files (and in a CSV header with AddColumnName)
OPS = {"I": "I", "U": "U", "D": "D", "INSERT": "I", "UPDATE": "U", "DELETE": "D"}


def is_dms_source(task: Task) -> bool:
    return task.source.engine == "dms-s3"


# ============================================================================================ the folder


@dataclass(frozen=True)
class DmsFile:
    key: str  # relative to the folder
    schema: str
    table: str
    kind: str  # load | cdc
    order: str  # sorts the files of its kind: LOAD counter (under its sub-folder) or the CDC time
    size: int

    @property
    def parquet(self) -> bool:
        return ".parquet" in self.key.rsplit("/", 1)[-1]

    @property
    def gzip(self) -> bool:
        return self.key.endswith(".gz")


@dataclass
class Folder:
    """A DMS S3 target folder: its files by table, the tables selected, how the files look."""

    task: Task
    store: Store
    fmt: DmsFormat
    tables: dict[tuple[str, str], DmsTable]
    loads: dict[tuple[str, str], list[DmsFile]] = field(default_factory=dict)
    cdc: list[DmsFile] = field(default_factory=list)  # every selected table's, in apply order

    @property
    def source_id(self) -> str:
        """The ledger's volume_id and replay's stream_id for this folder."""
        return self.task.source.redacted()

    def target_name(self, table: DmsTable) -> tuple[str, str]:
        return self.task.mappings.target_table_name(table.schema, table.name)

    def target_columns(self, table: DmsTable) -> dict[str, str]:
        return self.task.mappings.target_columns(table.schema, table.name, table.column_names)

    def refresh(self) -> bool:
        """List the CDC files again (DMS may still be writing: ``replay --follow``); True when there are new
        ones.  The files known so far must still come first, else counting on would skip or repeat."""
        found = []
        for info in self.store.list(""):
            parsed = layout.parse_dms_key(info.key)
            if parsed and parsed[2] == "cdc" and (parsed[0], parsed[1]) in self.tables:
                found.append(DmsFile(info.key, parsed[0], parsed[1], "cdc", parsed[3], info.size))
        found.sort(key=lambda f: (f.order, f.schema, f.table))
        known = [f.key for f in self.cdc]
        if [f.key for f in found[: len(known)]] != known:
            first = next((f.key for f, k in zip(found, known, strict=False) if f.key != k), "a file")
            raise IntegrityError(
                f"{self.store.url}: CDC file {first} appeared before files already applied, or files were removed",
                "restore the folder as it was; a file DMS wrote late belongs in a new full load",
            )
        for f in found[len(known) :]:
            if not self.tables[(f.schema, f.table)].primary_key:
                raise ConfigError(
                    f"{f.schema}.{f.table} has new CDC files but no primary key",
                    "mark the key with ColumnIsPk in the table definition, or add a primary key on the target",
                )
        new = len(found) > len(known)
        self.cdc = found
        return new


def open_folder(task: Task) -> Folder:
    """List the folder once: every full-load and CDC file of the tables the table mappings select."""
    if not is_dms_source(task):
        raise ConfigError(f"source {task.source.redacted()} is not a dms-s3:// folder", "this is for DMS sources")
    if task.target.engine != "postgresql":
        raise ConfigError(
            f"a dms-s3:// source loads into PostgreSQL; the target is {task.target.redacted()}",
            "point target: at a PostgreSQL database",
        )
    fmt = load_settings(Path(task.settings.dms.endpoint_settings) if task.settings.dms.endpoint_settings else None)
    for warning in fmt.warnings:
        say(f"dms: endpoint settings {warning}")
    url = f"s3://{task.source.host}" + (f"/{task.source.database}" if task.source.database else "")
    if fmt.bucket_name and fmt.bucket_name != task.source.host:
        raise ConfigError(
            f"the endpoint settings say BucketName {fmt.bucket_name!r}, the source is {task.source.redacted()}",
            "make source: dms-s3://<BucketName>/<BucketFolder> match the endpoint settings",
        )
    if fmt.bucket_folder is not None and fmt.bucket_folder.strip("/") != (task.source.database or ""):
        raise ConfigError(
            f"the endpoint settings say BucketFolder {fmt.bucket_folder!r}, the source is {task.source.redacted()}",
            "make source: dms-s3://<BucketName>/<BucketFolder> match the endpoint settings",
        )
    store = open_store(url, task.s3_options())
    defined = _definitions(task, fmt)
    files: dict[tuple[str, str], list[DmsFile]] = {}
    ignored = 0
    for info in store.list(""):
        parsed = layout.parse_dms_key(info.key)
        if parsed is None:
            ignored += 1
            continue
        schema, table, kind, order = parsed
        files.setdefault((schema, table), []).append(DmsFile(info.key, schema, table, kind, order, info.size))
    if ignored:
        say(f"dms: {ignored} objects in {url} are neither full-load nor CDC files; ignored")
    names = set(defined) if defined is not None else set(files)
    if defined is not None and (extra := sorted(set(files) - set(defined))):
        say(f"dms: {len(extra)} table folders are not in the table definition, skipped: {_names(extra)}")
    chosen = task.mappings.select(sorted(names))
    if not chosen:
        raise ConfigError(f"{task.source.redacted()}: the table mappings select none of its tables", "check them")
    filtered = [f"{s.schema}.{s.table}" for s in chosen if s.filters]
    if filtered:
        raise ConfigError(
            f"selection rules with filters on {', '.join(filtered)}: a DMS folder's rows cannot be filtered on load",
            "remove the filters (DMS applied its own when it wrote the files)",
        )
    tables = {
        (s.schema, s.table): (defined or {}).get((s.schema, s.table)) or DmsTable(s.schema, s.table) for s in chosen
    }
    folder = Folder(task, store, fmt, tables)
    for name in tables:
        mine = files.get(name, [])
        folder.loads[name] = sorted((f for f in mine if f.kind == "load"), key=lambda f: f.order)
        folder.cdc.extend(f for f in mine if f.kind == "cdc")
    folder.cdc.sort(key=lambda f: (f.order, f.schema, f.table))
    task.mappings.check_target_tables(tables)
    return folder


def _definitions(task: Task, fmt: DmsFormat) -> dict[tuple[str, str], DmsTable] | None:
    path = task.settings.dms.table_definition
    if path:
        text, origin = Path(path).read_text(encoding="utf-8"), path
    elif fmt.table_definition:
        text, origin = fmt.table_definition, "ExternalTableDefinition in the endpoint settings"
    else:
        return None
    return {(t.schema, t.name): t for t in parse_table_definition(text, origin)}


def _names(tables: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{s}.{t}" for s, t in tables[:5])
    return shown + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")


# ============================================================================================ one file


@dataclass
class Frame:
    """One DMS file's rows: the table's columns (strings from CSV, typed from Parquet), and the DMS fields."""

    data: pa.Table  # columns named as the table's (source) columns, in its order
    op: Any  # the Op field (an Arrow column), None: the file has none
    stamps: Any  # the TimestampColumnName field (an Arrow column), when there is one
    before: pa.Table | None  # before-image key columns (add-before-image-columns), named as the key
    where: str = ""

    def ops(self) -> list[str] | None:
        """I/U/D per row (``INSERT``… too, any case), None without an Op field; anything else is named."""
        return None if self.op is None else _ops(self.op.to_pylist(), self.where)

    def inserts_only(self) -> bool:
        """Every row an ``I`` (a full-load file), checked without a Python loop."""
        if self.op is None:
            return True
        return bool(pc.all(pc.fill_null(pc.equal(pc.utf8_upper(self.op.cast(pa.string())), "I"), False)).as_py())


def read_frame(folder: Folder, f: DmsFile, table: DmsTable, raw: bytes) -> Frame:
    """Parse one file, finding its DMS fields (Op, the timestamp column, before-image columns) around the
    table's columns; learns the table's columns from the first Parquet file when nothing else gave them."""
    where = f"{folder.store.url}/{f.key}"
    data = gzip.decompress(raw) if f.gzip and not f.parquet else raw
    bi_name = _before_names(folder, table)
    if f.parquet:
        try:
            tbl = pq.read_table(io.BytesIO(data))
        except pa.ArrowException as exc:
            raise IntegrityError(f"{where} is not a readable Parquet file ({exc})", "restore the file") from None
        return _parquet_frame(folder, table, tbl, where, bi_name)
    return _csv_frame(folder, f, table, data, where, bi_name)


def _before_names(folder: Folder, table: DmsTable) -> dict[str, str]:
    """Key column -> its before-image column (add-before-image-columns: ``BI_<column>`` by default)."""
    dms = folder.task.settings.dms
    return {k: f"{dms.before_image_prefix}{k}{dms.before_image_suffix}" for k in table.primary_key}


def frames(folder: Folder, f: DmsFile, table: DmsTable, path: Path) -> Iterator[Frame]:
    """A downloaded file's rows a row group at a time (Parquet; DMS writes files up to 1 GB), or whole (CSV)."""
    where = f"{folder.store.url}/{f.key}"
    if not f.parquet:
        yield read_frame(folder, f, table, path.read_bytes())
        return
    try:
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):
            yield _parquet_frame(folder, table, parquet.read_row_group(group), where, _before_names(folder, table))
    except pa.ArrowException as exc:
        raise IntegrityError(f"{where} is not a readable Parquet file ({exc})", "restore the file") from None


def _parquet_frame(folder: Folder, table: DmsTable, tbl: pa.Table, where: str, bi_name: dict[str, str]) -> Frame:
    """A Parquet table's DMS fields (by name) and the table's columns; learns them when nothing else did."""
    fmt = folder.fmt
    names = tbl.column_names
    known = set(table.column_names)
    op = OP_COLUMN if OP_COLUMN in names and OP_COLUMN not in known else None
    ts = fmt.timestamp_column if fmt.timestamp_column in names and fmt.timestamp_column not in known else None
    if not table.columns:
        extra = {op, ts, *bi_name.values()}
        table.columns = [
            DmsColumn(fld.name, pg_type_of_arrow(fld.type), fld.nullable) for fld in tbl.schema if fld.name not in extra
        ]
    missing = [c for c in table.column_names if c not in names]
    if missing:
        raise IntegrityError(
            f"{where} has no column {', '.join(map(repr, missing))} of {table.qualified}",
            "the table definition and the files disagree; fix the definition (or the table on the target)",
        )
    cols = {c: tbl.column(c) for c in table.column_names}
    bis = {k: tbl.column(n) for k, n in bi_name.items() if n in names and n not in known}
    return Frame(
        pa.table(cols),
        tbl.column(op) if op else None,
        tbl.column(ts) if ts else None,
        pa.table(bis) if len(bis) == len(bi_name) and bis else None,
        where,
    )


def _csv_frame(folder: Folder, f: DmsFile, table: DmsTable, data: bytes, where: str, bi_name: dict[str, str]) -> Frame:
    fmt = folder.fmt
    header: list[str] | None = None
    if fmt.add_column_name:
        line = data.split(fmt.csv_row_delimiter.encode(), 1)[0].decode("utf-8")
        header = next(csv.reader([line], delimiter=fmt.csv_delimiter))
    skip = 1 if header is not None else fmt.ignore_header_rows
    tbl = decode_csv(data, fmt, where, skip_rows=skip)
    if not table.columns:
        raise ConfigError(
            f"{table.qualified}: the CSV files do not say which columns they hold",
            "give settings.dms.table_definition (the DMS external table definition), or create the table on the "
            "target first (its columns in the source's order)",
        )
    m = len(table.columns)
    if tbl.num_columns == 0:
        return Frame(pa.table({c: pa.array([], pa.string()) for c in table.column_names}), None, None, None, where)
    if header is not None:
        if len(header) != tbl.num_columns:
            raise IntegrityError(f"{where}: its header has {len(header)} names, its rows {tbl.num_columns}", "")
        tbl = tbl.rename_columns(header)
        names = header
        op = OP_COLUMN if OP_COLUMN in names and OP_COLUMN not in table.column_names else None
        ts = fmt.timestamp_column if fmt.timestamp_column in names else None
        bis = {k: n for k, n in bi_name.items() if n in names}
        cols = list(table.column_names)
    else:
        n = tbl.num_columns
        stamp = 1 if fmt.timestamp_column else 0
        layouts = [(o, b) for o in (1, 0) for b in ((0, len(bi_name)) if bi_name else (0,)) if o + stamp + m + b == n]
        if len(layouts) > 1:  # one Op field or one before-image column: the first field says which
            first = set(tbl.column(0).to_pylist())
            layouts = [lay for lay in layouts if (lay[0] == 1) == (first <= set(OPS))]
        if len(layouts) != 1:
            raise IntegrityError(
                f"{where} has {n} fields per row; {table.qualified} has {m} columns"
                + (f", plus the timestamp column {fmt.timestamp_column!r}" if stamp else ""),
                "give the endpoint settings the files were written with (TimestampColumnName, IncludeOpForFullLoad) "
                "and a table definition listing every column",
            )
        o, b = layouts[0]
        names = (["__op"] if o else []) + (["__ts"] if stamp else []) + table.column_names
        names += [f"__bi{i}" for i in range(b)]
        tbl = tbl.rename_columns(names)
        op = "__op" if o else None
        ts = "__ts" if stamp else None
        bis = {k: f"__bi{i}" for i, k in enumerate(bi_name)} if b else {}
        cols = list(table.column_names)
    return Frame(
        tbl.select(cols),
        tbl.column(op) if op else None,
        tbl.column(ts) if ts else None,
        tbl.select(list(bis.values())).rename_columns(list(bis)) if bis and len(bis) == len(bi_name) else None,
        where,
    )


def _ops(values: list[Any], where: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        op = OPS.get(str(v).upper()) if v is not None else None
        if op is None:
            raise IntegrityError(f"{where}: row {i + 1} has operation {v!r}", "expected I, U or D (DMS's Op field)")
        out.append(op)
    return out


# ============================================================================================ the target


def prepare_table(conn: psycopg.Connection, folder: Folder, table: DmsTable) -> None:
    """Know the table's columns and key, and make sure the target has it (created when absent)."""
    tschema, tname = folder.target_name(table)
    existing = read_target_table(conn, tschema, tname)
    if not table.columns and existing is not None:  # CSV without a definition: the target's own columns
        table.columns = [DmsColumn(c, t) for c, t in existing.types.items() if c not in existing.generated]
    if not table.primary_key and existing is not None and existing.primary_key:
        inverse = {dst: src for src, dst in folder.target_columns(table).items()} if table.columns else {}
        table.primary_key = [inverse.get(c, c) for c in existing.primary_key]
    if existing is not None or not table.columns:
        return
    mapped = folder.target_columns(table)
    defs = [
        f"{ident(mapped[c.name])} {c.pg_type}{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
        if c.name in mapped
    ]
    if table.primary_key:
        defs.append(f"PRIMARY KEY ({', '.join(ident(mapped[k]) for k in table.primary_key)})")
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(tschema)}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified(tschema, tname)} ({', '.join(defs)})")
    say(f"load: created {tschema}.{tname} ({len(defs) - bool(table.primary_key)} columns) from the DMS files")


def _open_target(task: Task) -> psycopg.Connection:
    conn = connect(task.target, autocommit=True)
    conn.execute("SET session_replication_role = replica")
    for ddl in (LEDGER_DDL, POSITION_DDL):
        try:
            conn.execute(ddl)
        except psycopg.errors.UniqueViolation:  # a concurrent loader created the schema at the same moment
            conn.execute(ddl)
    return conn


# ============================================================================================ full load


@dataclass
class DmsLoadReport:
    files_total: int
    files_loaded: int
    files_skipped: int
    rows: int


def load_dms(task: Task, *, progress: bool = True) -> DmsLoadReport:
    """Every full-load file of the folder into the target, each once (the load ledger)."""
    clock = Clock()
    folder = open_folder(task)
    todo = [(name, f) for name, files in folder.loads.items() for f in files]
    report = DmsLoadReport(len(todo), 0, 0, 0)
    conn = _open_target(task)
    try:
        for table in folder.tables.values():
            prepare_table(conn, folder, table)
        done = loaded_keys(conn, folder.source_id)
        pending = [(n, f) for n, f in todo if f.key not in done]
        report.files_skipped = len(todo) - len(pending)
        if report.files_skipped:
            say(f"load: {report.files_skipped} of {len(todo)} DMS full-load files already loaded (ledger); skipping")
        bar = Progress("load", len(pending), sum(f.size for _, f in pending)) if progress and pending else None
        tmpdir = tempfile.TemporaryDirectory(prefix="bulkmig-dms-")
        for name, f in pending:
            rows = _load_file(conn, folder, folder.tables[name], f, Path(tmpdir.name))
            report.files_loaded += rows is not None
            report.rows += rows or 0
            if bar:
                bar.advance(parts=1, rows=rows or 0, nbytes=f.size)
        tmpdir.cleanup()
        if bar:
            bar.finish()
        for table in folder.tables.values():
            if folder.loads.get((table.schema, table.name)):
                conn.execute(f"ANALYZE {qualified(*folder.target_name(table))}")
    finally:
        conn.close()
    clock.lap("files")
    say(
        f"load: {report.files_loaded} DMS full-load files, {report.rows:,} rows from {task.source.redacted()} "
        f"into {task.target.redacted()} ({clock.render()})"
    )
    return report


def _load_file(conn: psycopg.Connection, folder: Folder, table: DmsTable, f: DmsFile, tmp: Path) -> int | None:
    """One full-load file in one transaction with its ledger row; None when the ledger already had it."""
    where = f"{folder.store.url}/{f.key}"
    local = tmp / "file"
    folder.store.download(f.key, local)
    digest, _ = sha256_file(local)
    parts = frames(folder, f, table, local)
    first = next(parts, None)  # a Parquet file's schema may be what says which columns the table has
    if not table.columns:
        raise ConfigError(f"{table.qualified}: no columns known", "give settings.dms.table_definition")
    prepare_table(conn, folder, table)
    mapped = folder.target_columns(table)
    keep = [c for c in table.column_names if c in mapped]
    target = qualified(*folder.target_name(table))
    columns = ", ".join(ident(mapped[c]) for c in keep)
    rows = 0
    try:
        with conn.transaction():
            recorded = claim_part(conn, folder.source_id, f.key)
            if recorded is not None:
                if recorded != digest:
                    raise IntegrityError(
                        f"{where} changed since it was loaded (its sha256 differs from the load ledger's)",
                        "DMS reloaded the table: truncate it on the target, delete its rows from bulkmig.loaded_parts, "
                        "and load again",
                    )
                return None
            with conn.cursor().copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                for frame in itertools.chain([first] if first is not None else [], parts):
                    if not frame.inserts_only():
                        raise IntegrityError(f"{where}: a full-load file holds rows that are not inserts", "")
                    for batch in _copyable(frame.data.select(keep)).to_batches(max_chunksize=65536):
                        copy.write(to_copy_csv(batch))
                    rows += frame.data.num_rows
            record_part(conn, folder.source_id, f.key, table.schema, table.name, rows, digest, "dms-csv")
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetError(
            f"loading {where} into {target} failed: {text}",
            "fix the cause and rerun `bulkmig load` (loaded files are kept)",
        ) from None
    finally:
        local.unlink(missing_ok=True)
    return rows


def _copyable(tbl: pa.Table) -> pa.Table:
    """Columns COPY's CSV writer reads exactly: timestamps in µs (DMS may write ms), date64 as date32."""
    cols = []
    for col in tbl.columns:
        t = col.type
        if pa.types.is_timestamp(t) and t.unit != "us":
            col = col.cast(pa.timestamp("us", t.tz))
        elif pa.types.is_date64(t):
            col = col.cast(pa.date32())
        elif pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
        cols.append(col)
    return pa.table(cols, names=tbl.column_names)


__all__ = ["DmsLoadReport", "Folder", "is_dms_source", "load_dms", "open_folder"]
