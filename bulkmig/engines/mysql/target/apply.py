"""CDC replay into a MySQL/MariaDB target: the target's side of a replay session (``bulkmig.replay.runner`` runs
the loop — follow, until caught up, gaps, reconnects, snapshot marks — the same for every target).

Exactly once: each batch is applied in ONE InnoDB transaction together with its row in
``bulkmig.replay_position`` (keyed by target database and stream), read ``FOR UPDATE`` first, so a crash or
``kill -9`` at any moment repeats no batch and skips none.  ``GET_LOCK`` (released by the server when the session
dies, even after kill -9) keeps a second replayer of the stream out.  The session is the loading one: strict, no
foreign key checks (the source was consistent; the batch holds whole transactions), ``time_zone '+00:00'``.

Both kinds of stream are applied here (:mod:`.rows`): a PostgreSQL stream (source names, pgoutput's text) and a
MySQL/MariaDB stream written in MySQL's own value forms (``stream.json`` ``"value_forms": "mysql"``, target names).
A MySQL stream written for a PostgreSQL target is refused by name: its values are in PostgreSQL's forms.

Schema drift.  MySQL DDL commits by itself, so it cannot share the batch's transaction: a column a MySQL stream
says was added (``column_added``, with the source's own type and literal default) is added before the batch's
transaction, only if the target table does not have it yet — a crash in between finds it there and the batch is
applied again whole.  Any other change, and a column added to a PostgreSQL source (whose type would need a
conversion), stops replay naming it, with nothing of the batch applied, until the operator changed the target by
hand and reran with ``--skip-drift-check``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from bulkmig.cdc.batch import check_next
from bulkmig.core.errors import BulkmigError, ConfigError, TargetError
from bulkmig.core.log import say
from bulkmig.core.model import Table
from bulkmig.engines.mysql.binlog import in_snapshot
from bulkmig.engines.mysql.changes import MYSQL_FORMS, POSTGRESQL_FORMS
from bulkmig.engines.mysql.connect import error_code, error_text

from .rows import Shape, apply_table, shape_from_forms, shape_from_plan
from .writer import quote_ident as q

POSITION_DDL = (
    "CREATE DATABASE IF NOT EXISTS bulkmig",
    # One server holds the position of every target database on it: the key is (database, stream).
    "CREATE TABLE IF NOT EXISTS bulkmig.replay_position (target_db varchar(64) NOT NULL,"
    " stream_id varchar(128) NOT NULL, seq bigint NOT NULL, pos varchar(64) NOT NULL,"
    " applied_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (target_db, stream_id)) ENGINE=InnoDB",
)
# How long a second replayer waits for the stream's lock (a killed one's session may take a moment to end).
LOCK_WAIT_SECONDS = 15
ER_DUP_FIELDNAME = 1060
ER_DUP_ENTRY = 1062


def _lock_name(database: str, stream_id: str) -> str:
    return "bulkmig:replay:" + hashlib.sha256(f"{database}\0{stream_id}".encode()).hexdigest()[:40]


class ReplayTarget:
    """One replay session's connection to a MySQL/MariaDB target (the methods ``bulkmig.replay.runner`` calls)."""

    def __init__(
        self,
        target: Any,
        find_plan: Callable[[Any], Any],
        *,
        target_names: bool,
        marks: Mapping[tuple[str, str], Any],
        stream_doc: Mapping[str, Any],
    ) -> None:
        """``find_plan(task)``: the task's plan, which names the tables replayed into (``fullload.load.find_plan``;
        the stages pass it in, engines sit below them)."""
        self.task = target.task
        self.database: str = target.endpoint.database
        self.where = target.endpoint.redacted()
        mysql_stream = str(stream_doc.get("engine") or self.task.source.engine) == "mysql"
        self.forms = str(stream_doc.get("value_forms") or POSTGRESQL_FORMS) if mysql_stream else POSTGRESQL_FORMS
        if mysql_stream and self.forms != MYSQL_FORMS:
            raise ConfigError(
                f"change stream {stream_doc.get('stream_id')} was written for a PostgreSQL target (its values are in "
                "PostgreSQL's forms), the task's target is MySQL/MariaDB",
                "start a new stream for this target: bulkmig cleanup --delete-from-bucket, then plan again",
            )
        self.target_names = target_names
        plan = find_plan(self.task)
        self.tables: dict[tuple[str, str], Table] = {
            (t.target_qualified if target_names else (t.schema, t.name)): t for t in plan.tables
        }
        self.marks: dict[tuple[str, str], Any] = dict(marks)
        self.conn = target.connect(loading=True)
        try:
            cur = self.conn.cursor()
            for sql in POSITION_DDL:
                cur.execute(sql)
            self.conn.commit()
            cur.close()
        except BaseException as exc:
            self.conn.close()
            self._raise("preparing bulkmig.replay_position", exc)

    def _raise(self, what: str, exc: BaseException) -> None:
        """A driver error as a TargetError naming what failed (the retry table still finds its code in the
        chain); bulkmig's own errors and anything else as they are."""
        if isinstance(exc, BulkmigError) or error_code(exc) is None:
            raise exc
        raise TargetError(
            f"target {self.where}: {what} failed: {error_text(exc)}",
            "fix the cause on the target and rerun `bulkmig replay` (each batch is retried whole)",
        ) from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a lost connection
            self.conn.close()

    def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    # ------------------------------------------------------------------------------- the session

    def lock(self, stream_id: str) -> None:
        try:
            got = self._query("SELECT GET_LOCK(%s, %s)", (_lock_name(self.database, stream_id), LOCK_WAIT_SECONDS))
        except Exception as exc:
            self._raise("taking the replay lock", exc)
            raise
        if not got or got[0][0] != 1:
            raise TargetError(
                f"another `bulkmig replay` is applying stream {stream_id} to {self.where}",
                "let it run (or stop it) — two replayers of one stream are never needed",
            )

    def position(self, stream_id: str) -> tuple[int, str, Any] | None:
        """(seq, position, commit time) of the last batch applied; a MySQL target keeps no commit time."""
        try:
            rows = self._query(
                "SELECT seq, pos FROM bulkmig.replay_position WHERE target_db = DATABASE() AND stream_id = %s",
                (stream_id,),
            )
            self.conn.commit()
        except Exception as exc:
            self._raise("reading bulkmig.replay_position", exc)
            raise
        return (int(rows[0][0]), str(rows[0][1]), None) if rows else None

    def use_marks(self, marks: Mapping[tuple[str, str], Any]) -> None:
        self.marks = dict(marks)

    def has_key(self, target: tuple[str, str]) -> bool:
        rows = self._query(
            "SELECT COUNT(*) FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            " AND CONSTRAINT_TYPE = 'PRIMARY KEY'",
            (self.database, target[1]),
        )
        self.conn.commit()
        return bool(rows and rows[0][0])

    def apply(self, batch: Any, stream_id: str, *, accept_drift: bool) -> tuple[Any, bool]:
        """Apply one batch and its position in one transaction (drift first: see the module doc); when the
        compacted path hits a duplicate key, which only its reordering can cause (the source had no such clash),
        the batch is rolled back and applied again change by change, in the source's order."""
        for exact in (False, True):
            try:
                return self._apply(batch, stream_id, accept_drift=accept_drift, exact=exact), exact
            except Exception as exc:
                if exact or error_code(exc) != ER_DUP_ENTRY:
                    raise
                say(f"replay: batch {batch.seq}: {error_text(exc)}; applying it again change by change")
        raise AssertionError("unreachable")

    def _apply(self, batch: Any, stream_id: str, *, accept_drift: bool, exact: bool) -> Any:
        from bulkmig.cdc.applying import ApplyStats

        stats = ApplyStats(changes=batch.rows)
        where = ""
        try:
            self._drift(batch, accept_drift)
            cur = self.conn.cursor()
            cur.execute(
                "SELECT seq FROM bulkmig.replay_position WHERE target_db = DATABASE() AND stream_id = %s FOR UPDATE",
                (stream_id,),
            )
            row = cur.fetchone()
            check_next(row[0] if row is not None else None, batch.seq, stream_id)
            for tc in batch.tables:
                table = self.tables.get((tc.schema, tc.table))
                if table is None or not tc.rows:
                    continue  # not selected by the task
                where = f" into {table.qualified}"
                tc = self._unseen(tc, table, stats)
                if tc.rows:
                    apply_table(cur, tc, self._shape(tc, table), exact=exact)
                    stats.statements += 1
            cur.execute(
                "INSERT INTO bulkmig.replay_position (target_db, stream_id, seq, pos) VALUES (DATABASE(), %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE seq = VALUES(seq), pos = VALUES(pos), applied_at = CURRENT_TIMESTAMP(6)",
                (stream_id, batch.seq, batch.last_pos),
            )
            self.conn.commit()
            cur.close()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a lost connection: the server rolls back itself
                self.conn.rollback()
            if not exact and error_code(exc) == ER_DUP_ENTRY:
                raise  # the caller applies the batch again in order
            self._raise(f"replay of batch {batch.seq}{where}", exc)
            raise
        return stats

    def _shape(self, tc: Any, table: Table) -> Shape:
        if self.forms == MYSQL_FORMS:
            return shape_from_forms(table, self.database, tc.columns, tc.types, tc.key)
        return shape_from_plan(table, self.database, tc.columns, tc.key)

    def _unseen(self, tc: Any, table: Table, stats: Any) -> Any:
        """The table's changes its rows loaded from the volume do not hold yet (``replay.marks.TableMark``): a
        MySQL stream starts at the plan's position, the parts were read in later snapshots.  Changes that carry
        a column the parts lack (added before their snapshot) are all applied again (keyed: idempotent)."""
        from bulkmig.cdc.position import parse_lsn

        mark = self.marks.get((tc.schema, tc.table))
        if mark is None:
            return tc
        kept = [r for r in tc.rows if not in_snapshot(parse_lsn(r.pos), mark.below)]
        if len(kept) == len(tc.rows):
            return tc
        if any(c not in mark.columns for c in tc.columns) and (table.primary_key or tc.key):
            return tc
        stats.skipped += len(tc.rows) - len(kept)
        return tc.with_rows(kept)

    # ------------------------------------------------------------------------------- drift

    def _drift(self, batch: Any, accept: bool) -> None:
        refused: list[tuple[dict[str, Any], str]] = []
        for change in batch.schema_changes:
            key = (str(change.get("schema", "")), str(change.get("table", "")))
            table = self.tables.get(key)
            if table is None:
                continue
            kind, column = str(change.get("kind", "")), change.get("column")
            if kind == "column_added" and isinstance(column, str) and self.forms == MYSQL_FORMS:
                problem = self._add_column(batch, table, column, change)
                if problem and not accept:
                    refused.append((change, problem))
            elif not accept:
                refused.append((change, str(change.get("detail") or kind)))
        if refused:
            first = refused[0][0]
            raise TargetError(
                f"schema drift in batch {batch.seq} on table {first.get('schema')}.{first.get('table')}: "
                f"{'; '.join(text for _, text in refused)}. Replay cannot apply this safely and applied nothing of "
                "this batch",
                "apply the same change to the target by hand (ALTER TABLE …), then rerun "
                "`bulkmig replay --skip-drift-check` (it accepts the drift of this batch only); "
                "or start again with a new full load",
            )

    def _add_column(self, batch: Any, table: Table, column: str, change: dict[str, Any]) -> str | None:
        """ADD COLUMN with the source's own type and literal default, unless the target table has it already."""
        typ = str(change.get("type") or "")
        if not typ:
            return f"column {column!r} was added without a type"
        name = table.target_name or table.name
        there = self._query(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            " AND COLUMN_NAME = %s",
            (self.database, name, column),
        )
        self.conn.commit()
        if there and there[0][0]:
            return None
        default = change.get("default")
        extra = f" DEFAULT {default}" if isinstance(default, str) and default else ""
        cur = self.conn.cursor()
        try:
            cur.execute(f"ALTER TABLE {q(self.database)}.{q(name)} ADD COLUMN {q(column)} {typ} NULL{extra}")
        except Exception as exc:
            if error_code(exc) != ER_DUP_FIELDNAME:  # added meanwhile by the operator: fine
                raise
        finally:
            cur.close()
        say(f"replay: batch {batch.seq}: added column {column!r} ({typ}{extra}) to {self.database}.{name}")
        return None


__all__ = ["POSITION_DDL", "ReplayTarget"]
