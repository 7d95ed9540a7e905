"""Whole MySQL/MariaDB transactions into one change batch: per table one column list (target names), one
``seq`` over all rows, the schema changes the batch carries (what :mod:`.session` reads goes through here)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges
from bulkmig.core.manifest import utc_now
from bulkmig.engines.mysql.binlog import BinlogPos
from bulkmig.engines.mysql.stream import TableDef


@dataclass
class Txn:
    """A group of binlog events being read: its changes, in binlog order."""

    rows: list[tuple[tuple[str, str], str, list[str | None], list[str | None] | None]] = field(default_factory=list)


class BatchBuilder:
    """Whole transactions of one batch: per table one column list (target names), one ``seq`` over all."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], TableChanges] = {}
        self.schema_changes: list[dict[str, Any]] = []
        self.transactions = 0
        self.rows = 0
        self.first: BinlogPos | None = None
        self.last: BinlogPos | None = None
        self.last_commit: datetime | None = None
        self.started = 0.0

    def __bool__(self) -> bool:
        return self.transactions > 0

    def _unit(self, commit: BinlogPos, end: BinlogPos) -> None:
        if not self.transactions:
            self.first, self.started = commit, time.monotonic()
        self.transactions += 1
        self.last = end

    def add(
        self,
        txn: Txn,
        defs: dict[tuple[str, str], TableDef],
        commit: BinlogPos,
        end: BinlogPos,
        xid: int,
        ts: datetime,
    ) -> None:
        self._unit(commit, end)
        self.last_commit = ts
        # Every row carries where its transaction's commit event STARTS (like PostgreSQL's commit LSN); the
        # batch's last_pos is where the last one ENDS.  Replay's snapshot check relies on it (binlog.in_snapshot).
        pos = commit.lsn
        for key, op, values, before in txn.rows:
            table = self.tables.get(key)
            if table is None:
                d = defs[key]
                table = self.tables[key] = TableChanges(
                    schema=d.target_schema,
                    table=d.target_table,
                    columns=[c.target for c in d.columns],
                    types=[c.target_type for c in d.columns],
                    key=[c.target for k in d.key for c in d.columns if c.name == k],
                    identity="d" if d.key else "f",
                )
            self.rows += 1
            table.rows.append(ChangeRow(op, pos, self.rows, xid, ts, values, [], before))

    def add_schema_change(self, change: dict[str, Any], commit: BinlogPos, end: BinlogPos) -> None:
        self._unit(commit, end)
        self.schema_changes.append(change)

    def batch(self, stream_id: str, seq: int) -> Batch:
        assert self.first is not None and self.last is not None
        return Batch(
            stream_id=stream_id,
            seq=seq,
            first_pos=self.first.lsn,
            last_pos=self.last.lsn,
            transactions=self.transactions,
            tables=list(self.tables.values()),
            schema_changes=self.schema_changes,
            created_at=utc_now(),
        )


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
