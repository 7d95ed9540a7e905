"""What a MySQL/MariaDB target records of a migration in its ``bulkmig`` database, and reading it back.

``bulkmig.loaded_parts`` is the load ledger: one row per part, in the transaction that loaded the part's rows, so
a part is loaded once whatever crashes (``MysqlTarget.load_part``).  ``bulkmig.schema_steps`` records each DDL
statement applied (MySQL DDL is not transactional, see ``ddl.apply``) and ``bulkmig.replay_position`` the last
batch replayed (``apply.py``).  ``bulkmig status`` reads all three here, read only: a target that has none of
them yet reports nothing loaded.
"""

from __future__ import annotations

from typing import Any

from bulkmig.engines.mysql.connect import connect as mysql_connect

LEDGER_DDL = (
    "CREATE DATABASE IF NOT EXISTS bulkmig",
    "CREATE TABLE IF NOT EXISTS bulkmig.loaded_parts (volume_id varchar(64) NOT NULL,"
    " part_key varchar(512) NOT NULL, schema_name varchar(64) NOT NULL, table_name varchar(64) NOT NULL,"
    " part_rows bigint NOT NULL, sha256 char(64) NOT NULL, copy_format varchar(16) NOT NULL,"
    " loaded_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (volume_id, part_key))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
)


def has_table(cur: Any, name: str) -> bool:
    """Whether the target's ``bulkmig`` database holds table ``name`` (it is created on first use)."""
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bulkmig' AND TABLE_NAME = %s",
        (name,),
    )
    return bool(cur.fetchone()[0])


def ensure_ledger(conn: Any) -> None:
    cur = conn.cursor()
    for sql in LEDGER_DDL:
        cur.execute(sql)
    conn.commit()
    cur.close()


def loaded(conn: Any, volume_id: str) -> set[str]:
    """The keys of the parts of ``volume_id`` the ledger holds."""
    cur = conn.cursor()
    cur.execute("SELECT part_key FROM bulkmig.loaded_parts WHERE volume_id = %s", (volume_id,))
    keys = {r[0] for r in cur.fetchall()}
    conn.commit()
    cur.close()
    return keys


def ledger_by_table(endpoint: Any, volume_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per target (schema, table): parts and rows in the load ledger and the last load time, as
    ``bulkmig status`` shows them for a PostgreSQL target."""
    conn = mysql_connect(endpoint)
    try:
        cur = conn.cursor()
        if not has_table(cur, "loaded_parts"):
            return {}
        cur.execute(
            "SELECT schema_name, table_name, COUNT(*), COALESCE(SUM(part_rows), 0), MAX(loaded_at)"
            " FROM bulkmig.loaded_parts WHERE volume_id = %s GROUP BY 1, 2",
            (volume_id,),
        )
        rows = cur.fetchall()
    finally:
        conn.close()
    return {
        (str(sc), str(t)): {"parts": int(n), "rows": int(r), "at": at.isoformat() if at else None}
        for sc, t, n, r, at in rows
    }


def status(endpoint: Any, volume_id: str | None) -> dict[str, Any]:
    """The target's part of ``bulkmig status``: the same keys as for PostgreSQL (``loaded``, ``rows``,
    ``schema_applied``, ``skipped_objects``) plus ``schema_steps``, the DDL statements finished per section
    (MySQL DDL is not transactional, so load records each statement; see ``ddl.apply``)."""
    by_table = ledger_by_table(endpoint, volume_id) if volume_id else {}
    steps: dict[str, int] = {}
    conn = mysql_connect(endpoint)
    try:
        cur = conn.cursor()
        if volume_id and has_table(cur, "schema_steps"):
            cur.execute(
                "SELECT section, COUNT(*) FROM bulkmig.schema_steps WHERE volume_id = %s GROUP BY 1 ORDER BY 1",
                (volume_id,),
            )
            steps = {str(sec): int(n) for sec, n in cur.fetchall()}
    finally:
        conn.close()
    return {
        "loaded": sum(t["parts"] for t in by_table.values()),
        "rows": sum(t["rows"] for t in by_table.values()),
        "schema_applied": sorted(steps),
        "schema_steps": steps,
        "skipped_objects": [],
    }


def replay_position(endpoint: Any, stream_id: str) -> tuple[int, str, Any, Any] | None:
    """(seq, position, applied_at, commit time) of the last batch of ``stream_id`` applied to this database, or
    None; the commit time is always None (a MySQL target does not keep it)."""
    conn = mysql_connect(endpoint)
    try:
        cur = conn.cursor()
        if not has_table(cur, "replay_position"):
            return None
        cur.execute(
            "SELECT seq, pos, applied_at FROM bulkmig.replay_position WHERE target_db = DATABASE() AND stream_id = %s",
            (stream_id,),
        )
        row = cur.fetchone()
    finally:
        conn.close()
    return (int(row[0]), str(row[1]), row[2], None) if row else None
