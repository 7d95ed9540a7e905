"""Starting a change stream whose driver lets capture start it (``starts_lazily``: MySQL's binlog).

The stream's tables and start position come from the plan (full-load-and-cdc: the snapshot's binlog
position, read from the volume or, once imported, from the bucket) or from conversion and the server's
current position (``migration_type: cdc``).  This is the only place where capture reads the plan, so the
engine drivers never import the full-load stages.
"""

from __future__ import annotations

from typing import Any

from bulkmig.cdc.stream import bucket_store, read_stream
from bulkmig.config.task import Task
from bulkmig.core.errors import PlanError, StoreError
from bulkmig.core.store import open_store
from bulkmig.engines import cdc_driver


def start_from_plan(task: Task) -> dict[str, Any]:
    """``stream.json`` from the plan (full-load-and-cdc): its tables and its snapshot's position.  The
    plan is read from the volume, or from the bucket once the volume was imported (it may have shipped)."""
    from bulkmig.fullload.load import find_volume
    from bulkmig.fullload.plan import load_plan_for

    try:
        plan = load_plan_for(task, open_store(task.volume, task.volume_s3_options()))
    except (PlanError, StoreError):
        _, _, plan = find_volume(task)
    return cdc_driver(task.source.engine).start_from(task, plan.tables, plan.snapshot)


def start_now(task: Task, start_position: str | None = None) -> dict[str, Any]:
    """``stream.json`` for ``migration_type: cdc``: the selected tables as conversion names them, from
    ``start_position`` or the server's current position."""
    from bulkmig.convert import convert, reflect_source

    conversion = convert(reflect_source(task), task)
    return cdc_driver(task.source.engine).start_now(task, conversion.tables, start_position)


def start_missing_stream(task: Task) -> None:
    """Write the stream's ``stream.json`` when its driver starts lazily and the bucket has none yet."""
    driver = cdc_driver(task.source.engine)
    if not driver.starts_lazily or read_stream(bucket_store(task), driver.stream_id(task)) is not None:
        return
    if task.migration_type == "cdc":
        start_now(task, task.cdc_start_position)
    else:
        start_from_plan(task)


def start_cdc_stream(task: Task) -> bool:
    """For ``migration_type: cdc``: start the change stream (publication, slot) unless it exists.

    There is no full load to be consistent with, so the slot starts now, or at the task's
    ``cdc_start_position``.  Returns True when a stream was started.
    """
    from bulkmig.cdc.stream import stream_names
    from bulkmig.engines.postgres import reflect
    from bulkmig.engines.postgres.capture import start_stream_now, stream_id_for
    from bulkmig.engines.postgres.connect import connect, require_version
    from bulkmig.fullload.plan import _selected

    driver = cdc_driver(task.source.engine)
    if driver.starts_lazily:  # no slot: the start position is written to the stream's document
        if read_stream(bucket_store(task), driver.stream_id(task)) is not None:
            return False
        start_now(task, task.cdc_start_position)
        return True
    slot, _ = stream_names(task)
    if read_stream(bucket_store(task), stream_id_for(slot)) is not None:
        return False
    conn = connect(task.source, autocommit=True)
    try:
        require_version(conn, task.source)
        chosen = _selected(task, reflect.list_tables(conn))
        start_stream_now(
            task,
            conn,
            [(s.table.schema, s.table.name) for s in chosen],
            allow_replica_identity_full=task.settings.allow_replica_identity_full,
            start_position=task.cdc_start_position,
        )
    finally:
        conn.close()
    return True
