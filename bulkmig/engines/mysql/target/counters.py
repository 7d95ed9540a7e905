"""Cutover's "sequences" step for a MySQL/MariaDB target: every AUTO_INCREMENT counter set from a fresh read of
the source, as a PostgreSQL target's sequences are (sequences are not in the change stream, and neither are a
MySQL source's counters: a row inserted and deleted, or an insert rolled back, moves the source's counter past
anything the target's rows show).

- a MySQL/MariaDB source: the table's own ``AUTO_INCREMENT`` (information_schema, read without MySQL 8's cached
  statistics);
- a PostgreSQL source: the sequence behind the column that became AUTO_INCREMENT (serial, identity, or a
  ``nextval('…')`` default): its next value.

A counter is only ever raised (``ALTER TABLE … AUTO_INCREMENT = n`` leaves it at max(key) + 1 when n is lower), so
running cutover again is harmless.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bulkmig.core.model import Table
from bulkmig.engines.mysql.connect import connect as mysql_connect

from .writer import quote_ident as q

_NEXTVAL = r"nextval\('([^']+)'::regclass\)"


def _auto_columns(conn: Any, database: str) -> dict[str, str]:
    """Target table → its AUTO_INCREMENT column."""
    cur = conn.cursor()
    cur.execute(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
        " AND EXTRA LIKE '%%auto_increment%%'",
        (database,),
    )
    rows = {str(t): str(c) for t, c in cur.fetchall()}
    cur.close()
    return rows


def _mysql_source_counters(task: Any, tables: list[Table]) -> dict[tuple[str, str], int]:
    conn = mysql_connect(task.source)
    try:
        cur = conn.cursor()
        with contextlib.suppress(Exception):  # MySQL 8 caches these columns for a day by default; MariaDB has no such
            cur.execute("SET SESSION information_schema_stats_expiry = 0")
        out: dict[tuple[str, str], int] = {}
        for schema in sorted({t.schema for t in tables}):
            cur.execute(
                "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                " AND AUTO_INCREMENT IS NOT NULL",
                (schema,),
            )
            out.update({(schema, str(t)): int(n) for t, n in cur.fetchall()})
        return out
    finally:
        conn.close()


def _postgres_source_counters(task: Any, tables: list[Table], auto: dict[str, str]) -> dict[tuple[str, str], int]:
    from psycopg import sql

    from bulkmig.engines.postgres.connect import connect as pg_connect

    out: dict[tuple[str, str], int] = {}
    with pg_connect(task.source, autocommit=True) as conn:
        for t in tables:
            column = auto.get(t.target_name or t.name)
            source = next((c.name for c in t.columns if c.target == column), None)
            if source is None:
                continue
            found = conn.execute(
                "SELECT COALESCE(pg_get_serial_sequence(%(rel)s, %(col)s), substring(pg_get_expr(d.adbin, d.adrelid)"
                " from %(nextval)s)) FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid"
                " AND d.adnum = a.attnum WHERE a.attrelid = %(rel)s::regclass AND a.attname = %(col)s",
                {"rel": sql.Identifier(t.schema, t.name).as_string(conn), "col": source, "nextval": _NEXTVAL},
            ).fetchone()
            if not found or not found[0]:
                continue
            last, called = conn.execute(
                sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(found[0]))
            ).fetchone()
            out[(t.schema, t.name)] = int(last) + 1 if called else int(last)
    return out


def sync_counters(task: Any, tables: list[Table], database: str) -> int:
    """Raise each target table's AUTO_INCREMENT to the source's next value; returns how many were set."""
    target = mysql_connect(task.target)
    try:
        auto = _auto_columns(target, database)
        if task.source.engine == "mysql":
            counters = _mysql_source_counters(task, tables)
        elif task.source.engine == "postgresql":
            counters = _postgres_source_counters(task, tables, auto)
        else:
            return 0
        cur = target.cursor()
        n = 0
        for t in tables:
            name = t.target_name or t.name
            value = counters.get((t.schema, t.name))
            if value is None or name not in auto:
                continue
            cur.execute(f"ALTER TABLE {q(database)}.{q(name)} AUTO_INCREMENT = {int(value)}")
            n += 1
        cur.close()
        return n
    finally:
        target.close()


__all__ = ["sync_counters"]
