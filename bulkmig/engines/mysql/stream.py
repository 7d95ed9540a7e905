"""A MySQL/MariaDB change stream's documents: its id, its table definitions, and starting it (``stream.json``).

The stream starts from the plan's snapshot position (:func:`start_stream`) or from now (:func:`start_stream_now`,
``migration_type: cdc``); :mod:`.session` reads it back and keeps reading the binlog from there.  See
:mod:`.capture` for how the whole capture works.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from bulkmig.cdc.stream import (
    STREAM_FORMAT,
    STREAM_VERSION,
    bucket_store,
    create_stream,
    read_stream,
    stream_names,
    stream_prefix,
)
from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.log import say
from bulkmig.core.manifest import utc_now
from bulkmig.core.store import Store
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.binlog import (
    BinlogPos,
    binlog_status,
    check_binlog_settings,
    check_not_purged,
    control_connection,
    query_rows,
    snapshot_position,
)
from bulkmig.engines.mysql.changes import ColumnSpec, TableConverter, value_forms_for

STREAM_PREFIX = "mysql-"


def lock_name(stream_id: str) -> str:
    return "bulkmig:" + hashlib.sha256(f"bulkmig capture {stream_id}".encode()).hexdigest()[:40]


def reader_server_id(stream_id: str) -> int:
    """A stable replica server_id for the stream (two readers with one id would cut each other off)."""
    return 0x40000000 + int.from_bytes(hashlib.sha256(stream_id.encode()).digest()[:4], "big") % 0x3FFFFFFF


def stream_id_for(task: Task) -> str:
    return STREAM_PREFIX + stream_names(task)[0]


@dataclass
class TableDef:
    """One captured table as the stream knows it: source and target names, key, columns in binlog order."""

    schema: str
    table: str
    target_schema: str
    target_table: str
    key: list[str]  # source names of the primary key columns ([] = none)
    columns: list[ColumnSpec]

    def to_doc(self) -> dict[str, Any]:
        """The table's entry in ``stream.json``: every field by its name (each column as :meth:`ColumnSpec.to_doc`)."""
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TableDef:
        cols = [ColumnSpec.from_doc(c) for c in doc["columns"]]
        return cls(doc["schema"], doc["table"], doc["target_schema"], doc["target_table"], list(doc["key"]), cols)

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.table}"


def _charsets(conn: Any, tables: list[Any]) -> dict[tuple[str, str, str], tuple[str | None, str]]:
    """(schema, table, column) → (CHARACTER_SET_NAME, DATA_TYPE) for the given model tables."""
    out: dict[tuple[str, str, str], tuple[str | None, str]] = {}
    for schema in sorted({t.schema for t in tables}):
        for table, column, charset, dtype in query_rows(
            conn,
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s",
            (schema,),
        ):
            out[(schema, str(table), str(column))] = (charset, str(dtype).lower())
    return out


def table_defs(conn: Any, tables: list[Any]) -> list[TableDef]:
    """The stream's table definitions from the plan's tables (``bulkmig.core.model.Table`` with target names and
    types set by conversion), with each text column's charset from the source catalog."""
    facts = _charsets(conn, tables)
    defs = []
    for t in tables:
        cols = []
        for c in t.columns:
            charset, dtype = facts.get((t.schema, t.name, c.name), (None, ""))
            cols.append(
                ColumnSpec(
                    name=c.name,
                    target=c.target,
                    column_type=c.source_type,
                    target_type=c.target_type or c.source_type,
                    charset=charset,
                    nullable=c.nullable,
                    is_json=c.logical_type == "json" or dtype == "json",
                    generated=c.generated,
                )
            )
        target_schema, target_table = t.target_qualified
        defs.append(TableDef(t.schema, t.name, target_schema, target_table, list(t.primary_key), cols))
    return defs


def _settings_doc(settings: types.TypeSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in types.TypeSettings.__dataclass_fields__}


def start_stream(
    task: Task,
    tables: list[Any],
    position: dict[str, Any],
    conn: Any | None = None,
    *,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``stream.json`` for a stream that starts at ``position`` (``plan.snapshot`` of a MySQL plan:
    ``binlog_file``, ``binlog_pos``, ``gtid_set``) and captures ``tables`` (the plan's tables).

    Call it from plan, inside the snapshot, or let the first ``capture`` call it from plan.json.  Checks the
    binlog settings unless the caller already did on ``conn`` and passes what the check returned as
    ``facts`` (the check reads server variables and grants: once per start is enough); refuses a bucket
    that already holds this stream.  Returns the document."""
    from bulkmig.engines.mysql.source import type_settings

    stream_id = stream_id_for(task)
    store = bucket_store(task)
    existing = read_stream(store, stream_id)
    if existing is not None:
        raise SourceError(
            f"change stream {stream_id} already exists in the bucket ({store.url}/{stream_prefix(stream_id)}, "
            f"started at {existing.get('start_binlog')} on {existing.get('created_at')})",
            "remove it (bulkmig cleanup) or set settings.slot_name to a new name",
        )
    start = snapshot_position(position)
    if start is None:
        raise SourceError(
            "the plan recorded no binlog position (the binlog was off when it was made)",
            "turn on log_bin with binlog_format=ROW on the source, then plan again",
        )
    own = conn is None
    conn = conn or control_connection(task)
    try:
        if facts is None:
            facts = check_binlog_settings(conn, task.source.user)
        check_not_purged(conn, start, "the stream's start position")
        defs = table_defs(conn, tables)
    finally:
        if own:
            conn.close()
    if not defs:
        raise ConfigError("the plan selects no table, so there is nothing to capture", "fix the table mappings")
    settings = type_settings(task)
    value_forms = value_forms_for(task.target.engine)
    for d in defs:
        TableConverter(d.schema, d.table, d.columns, settings, value_forms)  # refuses an undecodable charset now
    doc = {
        "format": STREAM_FORMAT,
        "version": STREAM_VERSION,
        "stream_id": stream_id,
        "engine": "mysql",
        "slot": stream_id[len(STREAM_PREFIX) :],
        "names": "target",
        "value_forms": value_forms,
        "start_pos": start.lsn,
        "start_binlog": str(start),
        "basename": start.basename,
        "gtid_set": position.get("gtid_set"),
        "server_id": facts["server_id"],
        "server_uuid": facts["server_uuid"],
        "reader_server_id": reader_server_id(stream_id),
        "type_settings": _settings_doc(settings),
        "tables": [d.to_doc() for d in defs],
        "source": task.source.redacted(),
        "task_name": task.name,
        "created_at": utc_now(),
    }
    create_stream(store, doc)
    say(f"capture: stream {stream_id} starts at {start} ({len(defs)} tables)")
    return doc


def start_stream_now(task: Task, tables: list[Any], start_position: str | None = None) -> dict[str, Any]:
    """``stream.json`` for ``migration_type: cdc``: ``tables`` (the selection as conversion names it), from
    ``start_position`` (``binlog.000042:1234``) or the server's current position."""
    conn = control_connection(task)
    try:
        # Checked before reading the position so a binlog that is off is reported with its fix.
        facts = check_binlog_settings(conn, task.source.user)
        now = binlog_status(conn)
        start = BinlogPos.parse(start_position) if start_position else now
        if start is None:
            raise SourceError("the source writes no binlog", "start the server with log_bin and binlog_format=ROW")
        position = {"binlog_file": start.file, "binlog_pos": start.pos, "gtid_set": None}
        return start_stream(task, tables, position, conn, facts=facts)
    finally:
        conn.close()


def read_own_stream(task: Task, store: Store) -> dict[str, Any] | None:
    """The stream's ``stream.json`` (None before it started); refuses a stream of another engine."""
    doc = read_stream(store, stream_id_for(task))
    if doc is not None and doc.get("engine") != "mysql":
        raise ConfigError(f"stream {doc.get('stream_id')} is not a MySQL stream", "check the task's source")
    return doc
