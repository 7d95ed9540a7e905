"""A PostgreSQL target's side of a replay session: the stream's lock, the ``bulkmig.replay_position`` row,
and each batch applied together with that row in one transaction (exactly once, DESIGN §5).

The loop around it (:mod:`bulkmig.replay.runner`) is the same for every target; each engine supplies an object
with these methods through its target's ``replay_target`` (MySQL/MariaDB: ``engines/mysql/target/apply.py``).
The set-based apply itself is :class:`.apply.Applier` (compaction, COPY into temp tables, the bulk statements).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from bulkmig.cdc.applying import ApplyStats, TableMark
from bulkmig.cdc.batch import Batch, check_next
from bulkmig.config.task import Task
from bulkmig.core.errors import TargetError
from bulkmig.core.log import say
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.target.apply import REORDER_ERRORS, Applier, _first_line
from bulkmig.engines.postgres.target.ledger import POSITION_DDL
from bulkmig.engines.postgres.target.tables import read_target_table

# How long a second replayer waits for the stream's lock before giving up (a killed one's session may
# take a moment to end on the server).
LOCK_WAIT_SECONDS = 15.0


def open_target(task: Task) -> psycopg.Connection:
    """A replay session on the target: no trigger fires, the position table exists."""
    conn = connect(task.target, autocommit=True)
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.Error as exc:
        conn.close()
        raise TargetError(
            f"target {task.target.redacted()}: cannot SET session_replication_role = replica ({_first_line(exc)})",
            "replay as a superuser (or a role allowed to set it) so target triggers do not fire",
        ) from None
    for attempt in range(2):  # a concurrent `load` may create the schema at the same moment
        try:
            conn.execute(POSITION_DDL)
            break
        except pgerrors.UniqueViolation:
            if attempt:
                raise
    return conn


def _position(conn: psycopg.Connection, stream_id: str, *, lock: bool = False) -> tuple[int, str, Any] | None:
    row = conn.execute(
        "SELECT seq, pos, commit_ts FROM bulkmig.replay_position WHERE stream_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (stream_id,),
    ).fetchone()
    return (int(row[0]), str(row[1]), row[2]) if row else None


class PgReplayTarget:
    """A PostgreSQL target's side of a replay session: the stream's lock, its position row, and each batch
    applied with that row in one transaction."""

    def __init__(
        self,
        task: Task,
        conn: psycopg.Connection,
        *,
        target_names: bool,
        marks: Mapping[tuple[str, str], TableMark],
        set_based: bool = True,
    ) -> None:
        self.conn = conn
        self.applier = Applier(conn, task, names_are_target=target_names, marks=marks, set_based=set_based)

    def close(self) -> None:
        self.conn.close()

    def lock(self, stream_id: str) -> None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        key = f"bulkmig.replay:{stream_id}"
        while not self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TargetError(
                    f"another `bulkmig replay` is applying stream {stream_id} to this target",
                    "let it run (or stop it) — two replayers of one stream are never needed",
                )
            time.sleep(0.5)

    def position(self, stream_id: str) -> tuple[int, str, Any] | None:
        return _position(self.conn, stream_id)

    def use_marks(self, marks: Mapping[tuple[str, str], TableMark]) -> None:
        self.applier.use_marks(marks)

    def has_key(self, target: tuple[str, str]) -> bool:
        table = read_target_table(self.conn, *target)
        return table is not None and bool(table.primary_key)

    def apply(self, batch: Batch, stream_id: str, *, accept_drift: bool) -> tuple[ApplyStats, bool]:
        """Apply one batch with its position row in one transaction; replay it change by change if the
        bulk path hits a conflict that only the reordering of compaction can cause."""
        for exact in (False, True):
            try:
                with self.conn.transaction():
                    pos = _position(self.conn, stream_id, lock=True)
                    check_next(pos[0] if pos is not None else None, batch.seq, stream_id)
                    stats = self.applier.apply(batch, exact=exact, accept_drift=accept_drift)
                    self.conn.execute(
                        "INSERT INTO bulkmig.replay_position (stream_id, seq, pos, applied_at, commit_ts) "
                        "VALUES (%s, %s, %s, clock_timestamp(), %s) ON CONFLICT (stream_id) DO UPDATE SET "
                        "seq = EXCLUDED.seq, pos = EXCLUDED.pos, applied_at = EXCLUDED.applied_at, "
                        "commit_ts = COALESCE(EXCLUDED.commit_ts, bulkmig.replay_position.commit_ts)",
                        (stream_id, batch.seq, batch.last_pos, batch.last_commit_ts()),
                    )
                return stats, exact
            except REORDER_ERRORS as exc:
                self.applier.forget()
                if exact:
                    raise TargetError(
                        f"replay of batch {batch.seq} failed: {_first_line(exc)}",
                        "the target refuses a row the source accepted; compare the constraints of the two "
                        "tables, fix the target, and rerun `bulkmig replay`",
                    ) from exc
                say(f"replay: batch {batch.seq}: {_first_line(exc)}; applying it again change by change")
            except psycopg.Error as exc:  # reading or writing the position
                self.applier.forget()
                raise TargetError(
                    f"replay of batch {batch.seq} failed: {_first_line(exc)}",
                    "fix the cause on the target and rerun `bulkmig replay` (this batch is retried whole)",
                ) from exc
            except BaseException:
                self.applier.forget()  # the transaction rolled back, so may have a column it added
                raise
        raise AssertionError("unreachable")
