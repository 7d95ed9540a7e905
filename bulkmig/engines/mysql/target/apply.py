"""CDC replay into a MySQL/MariaDB target (PostgreSQL change streams): one batch per target transaction, together
with its position in ``bulkmig.replay_position``, so a crash anywhere repeats no batch and skips none.

Changes arrive as PostgreSQL's text values (pgoutput); each becomes the form the full load gave the column
(booleans 1/0, bytea bytes, timestamptz as UTC wall-clock; arrays and other text-travelling types as the same
PostgreSQL text the parts carried).  A value MySQL cannot hold (an infinity, NaN) stops the batch with its column
and key.  Runs of consecutive upserts of one table go as one multi-row ``INSERT … ON DUPLICATE KEY UPDATE`` (set-
based); deletes and key changes as they come, in the batch's order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from bulkmig.core.errors import IntegrityError, TargetError
from bulkmig.core.log import say
from bulkmig.core.model import Column, Table

from .writer import quote_ident as q

POSITION_DDL = (
    "CREATE DATABASE IF NOT EXISTS bulkmig",
    # One server holds the position of every target database on it: the key is (database, stream).
    "CREATE TABLE IF NOT EXISTS bulkmig.replay_position (target_db varchar(64) NOT NULL,"
    " stream_id varchar(128) NOT NULL, seq bigint NOT NULL, pos varchar(64) NOT NULL,"
    " applied_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (target_db, stream_id)) ENGINE=InnoDB",
)
_UNHOLDABLE = ("infinity", "-infinity", "nan")


def mysql_value(text: str | None, column: Column, where: str) -> Any:
    """A pgoutput text value as the parameter MySQL stores for ``column`` (see the module doc)."""
    if text is None:
        return None
    logical = column.logical_type
    if logical in ("date", "timestamp", "timestamptz", "decimal", "float") and text.lower() in _UNHOLDABLE:
        raise TargetError(f"{where}: {text!r} cannot be held by MySQL", "fix the value at the source; replay stopped")
    if logical == "bool":
        return 1 if text == "t" else 0
    if logical == "binary" and text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    if logical == "timestamptz":
        value = dt.datetime.fromisoformat(text if len(text) < 3 or text[-3] not in "+-" else text + ":00")
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    return text


class _Table:
    """One target table of the plan, for applying its changes."""

    def __init__(self, table: Table, database: str) -> None:
        self.table = table
        self.name = f"{q(database)}.{q(table.target_name or table.name)}"
        self.columns = {c.name: c for c in table.columns}


def apply_batch(conn: Any, batch: Any, tables: dict[tuple[str, str], _Table], stream_id: str) -> int:
    """Apply one batch and its position in one transaction; returns the changes applied."""
    cur = conn.cursor()
    cur.execute(
        "SELECT seq FROM bulkmig.replay_position WHERE target_db = DATABASE() AND stream_id = %s FOR UPDATE",
        (stream_id,),
    )
    row = cur.fetchone()
    if row is not None and row[0] >= batch.seq:
        conn.rollback()
        return 0  # applied before (another replayer, or a rerun): exactly once
    if row is not None and row[0] + 1 != batch.seq:
        conn.rollback()
        raise IntegrityError(
            f"the target is at batch {row[0]} of stream {stream_id}, the next one to apply would be {batch.seq}",
            "something else changed bulkmig.replay_position; restore it or start over",
        )
    applied = 0
    for tc in batch.tables:
        target = tables.get((tc.schema, tc.table))
        if target is None:
            continue  # not selected by the task
        applied += _apply_table(cur, tc, target)
    cur.execute(
        "INSERT INTO bulkmig.replay_position (target_db, stream_id, seq, pos) VALUES (DATABASE(), %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE seq = VALUES(seq), pos = VALUES(pos), applied_at = CURRENT_TIMESTAMP(6)",
        (stream_id, batch.seq, batch.last_pos),
    )
    conn.commit()
    cur.close()
    return applied


def _apply_table(cur: Any, tc: Any, target: _Table) -> int:
    key = target.table.primary_key or list(tc.key)
    if not key:
        raise TargetError(
            f"{target.table.qualified} has no primary key: its changes cannot be applied to a MySQL target",
            "give the table a primary key on the source, or exclude it from CDC",
        )
    cols = [c for c in tc.columns if c in target.columns and not target.columns[c].generated]
    idx = {c: i for i, c in enumerate(tc.columns)}
    upsert = (
        f"INSERT INTO {target.name} ({', '.join(q(target.columns[c].target) for c in cols)}) VALUES "
        f"({', '.join(['%s'] * len(cols))}) ON DUPLICATE KEY UPDATE "
        + ", ".join(f"{q(target.columns[c].target)} = VALUES({q(target.columns[c].target)})" for c in cols)
    )
    where_key = " AND ".join(f"{q(target.columns[k].target)} = %s" for k in key)
    pending: list[list[Any]] = []

    def flush() -> None:
        if pending:
            cur.executemany(upsert, pending)
            pending.clear()

    def values(vals: Sequence[str | None], names: Sequence[str]) -> list[Any]:
        where = f"{target.table.qualified}"
        return [mysql_value(vals[idx[c]], target.columns[c], f"{where}.{c}") for c in names]

    for ch in tc.rows:
        if ch.op == "T":
            flush()
            cur.execute(f"DELETE FROM {target.name}")
            continue
        old = ch.before if ch.before is not None else ch.values
        if ch.op == "D":
            flush()
            cur.execute(f"DELETE FROM {target.name} WHERE {where_key}", values(old, key))
            continue
        if ch.op == "U" and ch.before is not None and values(ch.before, key) != values(ch.values, key):
            flush()  # the key changed: the old row goes first
            cur.execute(f"DELETE FROM {target.name} WHERE {where_key}", values(ch.before, key))
        if ch.unchanged:  # unchanged TOAST: keep the target's value, set only what was sent
            flush()
            sent = [c for c in cols if c not in ch.unchanged and c not in key]
            if sent:
                cur.execute(
                    f"UPDATE {target.name} SET {', '.join(f'{q(target.columns[c].target)} = %s' for c in sent)} "
                    f"WHERE {where_key}",
                    values(ch.values, sent) + values(ch.values, key),
                )
            continue
        pending.append(values(ch.values, cols))
    flush()
    return len(tc.rows)


def replay(target: Any, task: Any, **options: Any) -> Any:
    """``bulkmig replay`` into this target: apply every batch in the bucket now, in order, and return."""
    from bulkmig.core.errors import ConfigError
    from bulkmig.replay import ReplayReport
    from bulkmig.replay.stream import find_stream
    from bulkmig.validation.validate import plan_for_validation

    if options.get("follow") or options.get("until_caught_up") or options.get("until_pos") is not None:
        raise ConfigError(
            "replay --follow / --until-caught-up into a MySQL target is not supported yet",
            "run `bulkmig capture --once`, then `bulkmig replay`, repeatedly",
        )
    if task.source.engine != "postgresql":
        raise ConfigError("CDC into a MySQL target is supported from PostgreSQL sources only", "use full-load")
    plan = plan_for_validation(task)
    tables = {(t.schema, t.name): _Table(t, target.endpoint.database) for t in plan.tables}
    stream = find_stream(task)
    report = ReplayReport(stream.stream_id)
    conn = target.connect(loading=True)
    try:
        cur = conn.cursor()
        for sql in POSITION_DDL:
            cur.execute(sql)
        conn.commit()
        cur.execute(
            "SELECT seq FROM bulkmig.replay_position WHERE target_db = DATABASE() AND stream_id = %s",
            (stream.stream_id,),
        )
        row = cur.fetchone()
        conn.commit()
        applied = row[0] if row else None
        for seq in sorted(stream.batches()):
            if applied is not None and seq <= applied:
                continue
            if applied is not None and seq != applied + 1:
                raise IntegrityError(
                    f"batch {applied + 1} of stream {stream.stream_id} is missing while batch {seq} exists",
                    "restore the batch, or start over with a new full load",
                )
            batch = stream.read(seq)
            if batch is None:
                break
            changes = apply_batch(conn, batch, tables, stream.stream_id)
            report.batches += 1
            report.changes += changes
            report.applied_seq, report.applied_pos = batch.seq, batch.last_pos
            applied = seq
            say(f"replay: batch {seq} applied: {changes:,} changes; through {batch.last_pos}")
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    say(f"replay: {report.batches} batches, {report.changes:,} changes into {target.endpoint.redacted()}")
    return report
