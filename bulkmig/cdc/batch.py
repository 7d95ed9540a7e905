"""Change batches: the unit that capture writes to S3 and replay applies in one target transaction.

A batch holds the changes of a run of whole committed source transactions, one Parquet file per table
touched, and ``batch.json`` written last (and only once: a conditional put), so a batch without its
``batch.json`` does not exist, and a batch that exists is never rewritten::

    <bucket prefix>/cdc/<stream-id>/batch-000000000042/public/film.parquet    (names percent-encoded)
    <bucket prefix>/cdc/<stream-id>/batch-000000000042/batch.json

Values travel as the source's text output (what pgoutput sends, what the target's text input reads),
so every file is plain strings plus bulkmig's metadata columns.  Metadata columns are found by their
Parquet field metadata (``{"bulkmig": "op"}``), not by name: a user column may be called ``__op``,
``Op`` or anything else, and then ours gets a trailing underscore instead of shadowing it.

Per row: ``op`` (I insert, U update, D delete, T truncate), ``pos`` (its transaction's commit LSN),
``seq`` (order within the batch), ``xid``, ``commit_ts``, ``unchanged`` (names of columns whose value
was not sent — unchanged TOAST — and must be kept as the target has them, never written as NULL), and
``before`` (the old key, or the old row under REPLICA IDENTITY FULL, when the source sent one).
"""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError, StoreError, TargetError
from bulkmig.core.manifest import check_format, validate_document
from bulkmig.core.store import AlreadyExists, Store

BATCH_FORMAT = "bulkmig-batch"
BATCH_VERSION = 1
BATCH_MANIFEST = "batch.json"
OPS = ("I", "U", "D", "T")
UPLOADS = 4  # table files of one batch uploaded at once
# Metadata role -> preferred column name (a clash with a user column appends "_" until free).
META = {
    "op": "__op",
    "pos": "__pos",
    "seq": "__seq",
    "xid": "__xid",
    "commit_ts": "__commit_ts",
    "unchanged": "__unchanged",
    "before": "__before",
}


# Capture builds these by the hundred thousand: slots and, on the write side, tuples where nothing needs
# to change them (a tuple of strings is no work for the garbage collector once it has seen it once).
Values = list[str | None] | tuple[str | None, ...]


@dataclass(slots=True)
class ChangeRow:
    op: str  # I U D T
    pos: str  # commit LSN of the row's transaction, "X/Y"
    seq: int  # order within the batch, over all tables
    xid: int
    commit_ts: datetime
    values: Values  # in TableChanges.columns order; for D: key (or whole old row) values, rest None
    unchanged: list[str] | tuple[str, ...] = field(default_factory=list)  # columns not sent: keep the target's
    before: Values | None = None  # old key / old row when sent, in column order, None elsewhere


class TableChanges:
    """One table's changes in a batch.

    Built in memory (capture appends to ``rows``), or read from a batch file: then the changes are held
    as the Arrow table read (:meth:`arrow`) and turned into :class:`ChangeRow` objects only when ``rows``
    is asked for.  Replay's set-based path works on the Arrow columns and never builds them: a Python
    object per change would cost more than applying it.  A table read from a file is read-only (assign
    ``rows`` a new list rather than changing the one it has).
    """

    def __init__(
        self,
        schema: str,
        table: str,
        columns: list[str],  # user columns in the source's order at the time of these changes
        types: list[str],  # their types as the source prints them (format_type), for drift and DDL
        key: list[str],  # replica identity key columns ([] when the table has none)
        identity: str,  # replica identity: d default, f full, i index, n nothing
        rows: list[ChangeRow] | None = None,
        *,
        frame: pa.Table | None = None,
    ) -> None:
        self.schema = schema
        self.table = table
        self.columns = columns
        self.types = types
        self.key = key
        self.identity = identity
        self._rows: list[ChangeRow] | None = rows if rows is not None or frame is not None else []
        self._frame = frame

    @property
    def rows(self) -> list[ChangeRow]:
        if self._rows is None:
            self._rows = _rows_of(self._frame) if self._frame is not None else []
        return self._rows

    @rows.setter
    def rows(self, rows: list[ChangeRow]) -> None:
        self._rows, self._frame = rows, None

    @property
    def count(self) -> int:
        """How many changes, without building them."""
        return self._frame.num_rows if self._frame is not None else len(self.rows)

    def arrow(self) -> pa.Table:
        """The changes as a batch file holds them: the user columns (text) in ``columns`` order, then the
        metadata columns (found by :func:`meta_column`, never by name)."""
        return self._frame if self._frame is not None else _to_arrow(self)

    def ops(self) -> set[str]:
        """The operations present (I U D T), without building the rows."""
        if self._frame is not None:
            return {str(v) for v in meta_column(self._frame, "op").unique().to_pylist()}
        return {r.op for r in self.rows}

    def last_commit_ts(self) -> datetime | None:
        if self._frame is not None:
            if not self._frame.num_rows:
                return None
            value = pc.max(meta_column(self._frame, "commit_ts")).as_py()
            return value if isinstance(value, datetime) else None
        return max((r.commit_ts for r in self.rows if r.commit_ts is not None), default=None)

    def with_rows(self, rows: list[ChangeRow]) -> TableChanges:
        return TableChanges(self.schema, self.table, self.columns, self.types, self.key, self.identity, rows)

    def __repr__(self) -> str:
        return f"TableChanges({self.schema!r}, {self.table!r}, {self.count} changes)"

    @property
    def row_count(self) -> int:
        """:attr:`count` under the name :class:`TableColumns` shares, so a batch counts either kind."""
        return self.count


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(ts: datetime) -> int:
    """A commit time as :class:`TableColumns` keeps it."""
    return (ts - _EPOCH) // timedelta(microseconds=1)


@dataclass(slots=True)
class TableColumns:
    """One table's changes as capture builds a batch: :class:`TableChanges`'s header, and the rows kept
    column by column (each row's values a tuple, transposed in C when written), so that neither building
    nor writing makes an object per row: at 100k changes/s that was a third of capture's time.  Written
    exactly as the same :class:`TableChanges` would be; a batch read back holds TableChanges."""

    schema: str
    table: str
    columns: list[str]
    types: list[str]
    key: list[str]
    identity: str
    ops: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    xid: list[int] = field(default_factory=list)
    commit_us: list[int] = field(default_factory=list)  # microseconds since the Unix epoch (epoch_micros)
    values: list[Values] = field(default_factory=list)
    unchanged: list[list[str] | tuple[str, ...]] = field(default_factory=list)
    before: list[Values | None] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.ops)

    @property
    def rows(self) -> list[ChangeRow]:
        """The rows as :class:`ChangeRow` objects (for a look at a batch in memory; writing never needs them)."""
        return [
            ChangeRow(op, pos, seq, xid, _EPOCH + timedelta(microseconds=us), list(v), list(u), b and list(b))
            for op, pos, seq, xid, us, v, u, b in zip(
                self.ops,
                self.pos,
                self.seq,
                self.xid,
                self.commit_us,
                self.values,
                self.unchanged,
                self.before,
                strict=True,
            )
        ]


@dataclass
class Batch:
    stream_id: str
    seq: int
    first_pos: str  # commit LSN of the first transaction
    last_pos: str  # commit END LSN of the last transaction: where the source may be acknowledged to
    transactions: int
    tables: list[TableChanges] | list[TableColumns]
    schema_changes: list[dict[str, object]] = field(default_factory=list)  # from pgoutput Relation diffs
    created_at: str = ""

    @property
    def rows(self) -> int:
        return sum(t.row_count for t in self.tables)

    def last_commit_ts(self) -> datetime | None:
        """The commit time of the batch's last change (for replay's lag), None when no change carries one."""
        return max((ts for t in self.tables if (ts := t.last_commit_ts()) is not None), default=None)  # type: ignore[union-attr]


def batch_prefix(stream_prefix: str, seq: int) -> str:
    return layout.join(stream_prefix, layout.batch_dir(seq))


def table_file(schema: str, table: str) -> str:
    return f"{layout.encode_name(schema)}/{layout.encode_name(table)}.parquet"


def _meta_names(columns: list[str]) -> dict[str, str]:
    taken = set(columns)
    names = {}
    for role, name in META.items():
        while name in taken:
            name += "_"
        taken.add(name)
        names[role] = name
    return names


def meta_column(table: pa.Table, role: str) -> pa.ChunkedArray:
    """A metadata column of a batch file's table by its role (``op``, ``seq``, ``unchanged``…)."""
    for i, f in enumerate(table.schema):
        if (f.metadata or {}).get(b"bulkmig") == role.encode():
            return table.column(i)
    raise IntegrityError(f"a change batch file has no {role!r} column", "the batch was not written by bulkmig")


def user_columns(table: pa.Table) -> list[pa.ChunkedArray]:
    """The user columns of a batch file's table, in the table's column order."""
    return [table.column(i) for i, f in enumerate(table.schema) if not (f.metadata or {}).get(b"bulkmig")]


def _to_arrow(t: TableChanges | TableColumns) -> pa.Table:
    meta = _meta_names(t.columns)
    n = len(t.columns)
    fields = [pa.field(c, pa.string(), metadata={"source_type": ty}) for c, ty in zip(t.columns, t.types, strict=True)]
    extra: list[tuple[str, pa.DataType, list[object]]]
    if isinstance(t, TableColumns):
        by_column = list(zip(*t.values, strict=True)) if t.values else [() for _ in range(n)]
        arrays = [pa.array(column, pa.string()) for column in by_column]
        extra = [
            ("op", pa.string(), t.ops),
            ("pos", pa.string(), t.pos),
            ("seq", pa.int64(), t.seq),
            ("xid", pa.int64(), t.xid),
            ("commit_ts", pa.timestamp("us", tz="UTC"), t.commit_us),  # type: ignore[list-item]
            ("unchanged", pa.list_(pa.string()), t.unchanged),  # type: ignore[list-item]
            ("before", pa.list_(pa.string()), t.before),  # type: ignore[list-item]
        ]
    else:
        arrays = [pa.array([r.values[i] for r in t.rows], pa.string()) for i in range(n)]
        extra = [
            ("op", pa.string(), [r.op for r in t.rows]),
            ("pos", pa.string(), [r.pos for r in t.rows]),
            ("seq", pa.int64(), [r.seq for r in t.rows]),
            ("xid", pa.int64(), [r.xid for r in t.rows]),
            ("commit_ts", pa.timestamp("us", tz="UTC"), [r.commit_ts for r in t.rows]),
            ("unchanged", pa.list_(pa.string()), [r.unchanged for r in t.rows]),
            ("before", pa.list_(pa.string()), [r.before for r in t.rows]),
        ]
    for role, typ, values in extra:
        fields.append(pa.field(meta[role], typ, metadata={"bulkmig": role}))
        arrays.append(pa.array(values, typ))
    schema = pa.schema(
        fields,
        metadata={
            "bulkmig.table": json.dumps(
                {"schema": t.schema, "table": t.table, "key": t.key, "identity": t.identity}, ensure_ascii=False
            )
        },
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def as_arrow(t: TableChanges | TableColumns) -> pa.Table:
    """The Arrow table a batch file holds for ``t``, either kind."""
    return t.arrow() if isinstance(t, TableChanges) else _to_arrow(t)


def _to_parquet(t: TableChanges | TableColumns) -> bytes:
    sink = io.BytesIO()
    table = as_arrow(t)
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    return sink.getvalue()


def _from_parquet(data: bytes) -> TableChanges:
    table = pq.read_table(io.BytesIO(data))
    info = json.loads(table.schema.metadata[b"bulkmig.table"])
    columns, types = [], []
    for f in table.schema:
        if not (f.metadata or {}).get(b"bulkmig"):
            columns.append(f.name)
            types.append((f.metadata or {}).get(b"source_type", b"").decode())
    return TableChanges(info["schema"], info["table"], columns, types, info["key"], info["identity"], frame=table)


def _rows_of(table: pa.Table) -> list[ChangeRow]:
    """The ChangeRow objects of a batch file's table (the user columns come first, in order)."""
    user = [c.to_pylist() for c in user_columns(table)]
    meta = {role: meta_column(table, role).to_pylist() for role in META}
    return [
        ChangeRow(
            op=meta["op"][i],
            pos=meta["pos"][i],
            seq=meta["seq"][i],
            xid=meta["xid"][i],
            commit_ts=meta["commit_ts"][i],
            values=[col[i] for col in user],
            unchanged=list(meta["unchanged"][i] or []),
            before=meta["before"][i],
        )
        for i in range(table.num_rows)
    ]


def write_captured_batch(store: Store, stream_prefix: str, batch: Batch) -> None:
    """What a capture writes: :func:`write_batch`, where a ``batch.json`` already there means another
    capture is writing the same stream — said as the one line the operator needs."""
    try:
        write_batch(store, stream_prefix, batch)
    except AlreadyExists:
        raise StoreError(
            f"change batch {batch.seq} of stream {batch.stream_id} appeared while capture was writing it",
            "another capture wrote to this stream; run only one per stream",
        ) from None


def write_batch(store: Store, stream_prefix: str, batch: Batch) -> dict[str, object]:
    """Write every table file, then ``batch.json`` once.  Returns the manifest document.

    Table files are uploaded side by side (each file is serialized while the ones before it upload): a
    batch is on the capture's critical path, and its files do not depend on each other.  Rewriting the
    files of a batch whose ``batch.json`` is absent is safe (a crash left them half-done); a batch whose
    ``batch.json`` exists is final and raises ``AlreadyExists``.
    """
    prefix = batch_prefix(stream_prefix, batch.seq)
    entries = []
    with ThreadPoolExecutor(max_workers=max(1, min(UPLOADS, len(batch.tables))), thread_name_prefix="batch") as pool:
        uploads = []
        for t in batch.tables:
            data = _to_parquet(t)
            key = table_file(t.schema, t.table)
            uploads.append(pool.submit(store.put_bytes, layout.join(prefix, key), data))
            entries.append(
                {
                    "schema": t.schema,
                    "table": t.table,
                    "file": key,
                    "rows": t.row_count,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        for upload in uploads:
            upload.result()  # the first failure is raised; batch.json is never written after one
    doc = {
        "format": BATCH_FORMAT,
        "version": BATCH_VERSION,
        "stream_id": batch.stream_id,
        "seq": batch.seq,
        "first_pos": batch.first_pos,
        "last_pos": batch.last_pos,
        "transactions": batch.transactions,
        "rows": batch.rows,
        "tables": entries,
        "schema_changes": batch.schema_changes,
        "created_at": batch.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
    }
    validate_document(doc, "batch", f"batch.json of batch {batch.seq}")
    body = (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    store.put_bytes(layout.join(prefix, BATCH_MANIFEST), body, if_absent=True)
    return doc


def read_manifest(store: Store, stream_prefix: str, seq: int) -> dict[str, object]:
    key = layout.join(batch_prefix(stream_prefix, seq), BATCH_MANIFEST)
    doc = json.loads(store.get_bytes(key))
    check_format(doc, BATCH_FORMAT, BATCH_VERSION, f"{store.url}/{key}")
    validate_document(doc, "batch", f"{store.url}/{key}")
    return doc


def read_batch(store: Store, stream_prefix: str, seq: int) -> Batch:
    """The batch, every file checked against the sha256 in ``batch.json``."""
    doc = read_manifest(store, stream_prefix, seq)
    prefix = batch_prefix(stream_prefix, seq)
    tables = []
    for entry in doc["tables"]:  # type: ignore[union-attr]
        key = layout.join(prefix, entry["file"])
        data = store.get_bytes(key)
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["bytes"]:
            raise IntegrityError(
                f"change batch file {store.url}/{key} does not match its batch.json",
                "the bucket copy is damaged; restore it from a backup or re-run capture from an earlier position",
            )
        tables.append(_from_parquet(data))
    return Batch(
        stream_id=str(doc["stream_id"]),
        seq=int(doc["seq"]),  # type: ignore[arg-type]
        first_pos=str(doc["first_pos"]),
        last_pos=str(doc["last_pos"]),
        transactions=int(doc["transactions"]),  # type: ignore[arg-type]
        tables=tables,
        schema_changes=list(doc.get("schema_changes", [])),  # type: ignore[arg-type]
        created_at=str(doc.get("created_at", "")),
    )


def list_batches(store: Store, stream_prefix: str) -> list[int]:
    """Sequence numbers of the complete batches (those with a batch.json), ascending."""
    seqs = []
    base = stream_prefix.strip("/") + "/" if stream_prefix.strip("/") else ""
    for info in store.list(base):
        rest = info.key[len(base) :]
        parts = rest.split("/")
        if len(parts) == 2 and parts[1] == BATCH_MANIFEST and parts[0].startswith("batch-"):
            seqs.append(int(parts[0][len("batch-") :]))
    return sorted(seqs)


def check_next(applied: int | None, seq: int, stream_id: str) -> None:
    """Refuse to apply batch ``seq`` unless it is the next one after ``applied``, the last batch of ``stream_id``
    the target's replay position records (None: none yet): read under the position row's lock, in the
    transaction that applies the batch, so two replayers never both apply it and no batch is skipped."""
    if applied is not None and applied >= seq:
        raise TargetError(
            f"batch {seq} of stream {stream_id} is already applied (the target is at batch {applied})",
            "another replayer ran at the same time; rerun `bulkmig replay`",
        )
    if applied is not None and applied + 1 != seq:
        raise IntegrityError(
            f"the target is at batch {applied} of stream {stream_id}, the next one to apply would be {seq}",
            "something else changed bulkmig.replay_position; restore it or start over",
        )


def batch_summary(batch: Batch) -> dict[str, object]:
    """A small dict for logs and status: no values, only counts and positions."""
    d = {f.name: getattr(batch, f.name) for f in fields(batch) if f.name != "tables"}
    d["rows"] = batch.rows
    return d


__all__ = [
    "AlreadyExists",
    "Batch",
    "ChangeRow",
    "TableChanges",
    "TableColumns",
    "epoch_micros",
    "batch_prefix",
    "list_batches",
    "meta_column",
    "user_columns",
    "read_batch",
    "read_manifest",
    "write_batch",
    "write_captured_batch",
]
