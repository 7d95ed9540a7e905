"""``bulkmig.validation_failures`` on the target: one row per differing row, as DMS keeps them.

The columns are those of DMS's ``awsdms_control.awsdms_validation_failures_v1`` (task name, table owner
— the schema —, table name, failure time, key type, key, failure type, details), in lower case, so a
query written for DMS's table reads this one after a change of table name; bulkmig adds where the table
landed on the target (``target_schema``, ``target_table``) and ``repaired_at``, set by
``validate --repair`` once the repaired row was compared again and found equal.

- ``key``: ``{"key": ["3451491"]}`` — each primary-key column's text, as DMS writes it; for a table
  without a primary key ``{"row_hash": "…", "copies": n}`` with key type ``RowHash`` (DMS cannot
  validate such tables at all).
- ``details``: ``[[{column: source value}, {column: target value}]]`` — the columns that differ
  (RECORD_DIFF), or the whole row of the side that has it (MISSING_TARGET: source; MISSING_SOURCE:
  target) — JSON, where DMS writes Python's repr.

Each validation of a table replaces that task's records for the table in one transaction, so the
table holds what the latest run found, never a mix of two runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bulkmig.engines.postgres.target.ledger import bulkmig_table_ddl
from bulkmig.validation.pgdiff import Failure

TABLE = "bulkmig.validation_failures"
DDL = (
    bulkmig_table_ddl(
        "validation_failures",
        """
    task_name text NOT NULL,
    table_owner text NOT NULL,
    table_name text NOT NULL,
    failure_time timestamptz NOT NULL,
    key_type text NOT NULL,
    key text NOT NULL,
    failure_type text NOT NULL,
    details text NOT NULL,
    target_schema text NOT NULL,
    target_table text NOT NULL,
    repaired_at timestamptz
""",
    )
    + "CREATE INDEX IF NOT EXISTS validation_failures_table"
    + " ON bulkmig.validation_failures (task_name, table_owner, table_name);\n"
)
COLUMNS = (
    "task_name",
    "table_owner",
    "table_name",
    "failure_time",
    "key_type",
    "key",
    "failure_type",
    "details",
    "target_schema",
    "target_table",
)


def ensure(conn: Any) -> None:
    """Create the table once, before tables are validated in parallel (two CREATEs could race)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('bulkmig.validation_failures'))")
        conn.execute(DDL)


def record(task: str, table: Any, at: datetime) -> Any:
    """A function turning a :class:`Failure` of ``table`` into its record (a dict of :data:`COLUMNS`)."""
    tschema, tname = table.target_qualified

    def one(f: Failure) -> dict[str, Any]:
        return {
            "task_name": task,
            "table_owner": table.schema,
            "table_name": table.name,
            "failure_time": at.isoformat(timespec="milliseconds"),
            "key_type": f.key_type,
            "key": f.key_json(),
            "failure_type": f.kind,
            "details": f.details_json(),
            "target_schema": tschema,
            "target_table": tname,
        }

    return one


def replace(conn: Any, task: str, table: Any, records: Iterable[dict[str, Any]]) -> None:
    """This task's records for ``table`` become ``records`` (in one transaction)."""
    with conn.transaction():
        conn.execute(
            f"DELETE FROM {TABLE} WHERE task_name = %s AND table_owner = %s AND table_name = %s",
            (task, table.schema, table.name),
        )
        with conn.cursor().copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for r in records:
                copy.write_row([r[c] for c in COLUMNS])


def mark_repaired(conn: Any, task: str, table: Any, keys: list[str]) -> None:
    """Stamp ``repaired_at`` on the records of these keys (their ``key`` column's text)."""
    conn.execute(
        f"UPDATE {TABLE} SET repaired_at = now() WHERE task_name = %s AND table_owner = %s AND table_name = %s"
        " AND key = ANY(%s) AND repaired_at IS NULL",
        (task, table.schema, table.name, keys),
    )
