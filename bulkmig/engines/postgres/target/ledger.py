"""What a PostgreSQL target records of a migration in its ``bulkmig`` schema, and reading it back.

``bulkmig.loaded_parts`` is the load ledger: one row per part, written in the transaction that loaded the part's
rows under an advisory lock on the part, so a crash or a second loader never loads a part twice.  Other sources
of parts (the ``dms-s3://`` reader) keep their files in this same ledger through :func:`claim_part` and
:func:`record_part`, so one table and one rule say what is loaded.  ``bulkmig.replay_position`` holds the last
change batch applied per stream (:mod:`.replay`); ``bulkmig.schema_applied`` the schema sections
(``engines/postgres/schema``).  The readers for ``bulkmig status`` are read only: a target that has none of
these tables yet reports nothing loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.schema.common import _SCHEMA_LOCK, BULKMIG_SCHEMA, MARKER_TABLE
from bulkmig.engines.postgres.sql import qualified


def bulkmig_table_ddl(table: str, body: str) -> str:
    """The DDL that creates ``bulkmig.<table>`` (and the schema) when missing, so every record table of the
    target is created by one idempotent statement pair, whichever stage reaches it first."""
    schema = BULKMIG_SCHEMA
    return f"CREATE SCHEMA IF NOT EXISTS {schema};\nCREATE TABLE IF NOT EXISTS {schema}.{table} ({body});\n"


LEDGER_DDL = bulkmig_table_ddl(
    "loaded_parts",
    """
    volume_id text NOT NULL,
    part_key text NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    rows bigint NOT NULL,
    sha256 text NOT NULL,
    copy_format text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (volume_id, part_key)
""",
)

POSITION_DDL = bulkmig_table_ddl(
    "replay_position",
    """
    stream_id text PRIMARY KEY,
    seq bigint NOT NULL,
    pos text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    commit_ts timestamptz
""",
)


def once_per_volume(
    conn: Any,
    section: str,
    volume_id: str,
    apply: Callable[[], None],
    on_other_volume: Callable[[str], None] | None = None,
) -> bool:
    """Run ``apply`` once for the target, in one transaction with the marker row of ``section`` (the schema
    sections' table, under the schema lock), so a rerun or a second loader finds it done.  A marker left by
    another volume is passed to ``on_other_volume`` (which may refuse); either way nothing runs again.
    Returns whether ``apply`` ran."""
    marker = qualified(BULKMIG_SCHEMA, MARKER_TABLE)
    with conn.transaction():
        conn.execute(f"SELECT pg_catalog.pg_advisory_xact_lock({_SCHEMA_LOCK})")
        row = conn.execute(f"SELECT volume_id FROM {marker} WHERE section = %s", (section,)).fetchone()
        if row is not None:
            if on_other_volume is not None and row[0] != volume_id:
                on_other_volume(row[0])
            return False
        apply()
        conn.execute(f"INSERT INTO {marker} (section, volume_id) VALUES (%s, %s)", (section, volume_id))
    return True


def loaded_keys(conn: Any, volume_id: str) -> set[str]:
    """The parts of ``volume_id`` the ledger holds."""
    return {r[0] for r in conn.execute("SELECT part_key FROM bulkmig.loaded_parts WHERE volume_id = %s", (volume_id,))}


def claim_part(conn: Any, volume_id: str, key: str) -> str | None:
    """Inside the caller's transaction: lock the part (until that transaction ends, so a second loader
    waits), then the sha256 its ledger row records, or None when it is not loaded yet."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{volume_id}/{key}",))
    row = conn.execute(
        "SELECT sha256 FROM bulkmig.loaded_parts WHERE volume_id = %s AND part_key = %s", (volume_id, key)
    ).fetchone()
    return str(row[0]) if row else None


def record_part(
    conn: Any, volume_id: str, key: str, schema_name: str, table_name: str, rows: int, sha256: str, copy_format: str
) -> None:
    """The ledger row of a part, in the transaction that loaded its rows."""
    conn.execute(
        "INSERT INTO bulkmig.loaded_parts (volume_id, part_key, schema_name, table_name, rows, sha256,"
        " copy_format) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (volume_id, key, schema_name, table_name, rows, sha256, copy_format),
    )


def ledger_by_table(endpoint: Any, volume_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per target (schema, table): parts and rows in the load ledger and the last load time (``status``)."""
    with connect(endpoint, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('bulkmig.loaded_parts')").fetchone()[0] is None:
            return {}
        rows = conn.execute(
            "SELECT schema_name, table_name, count(*), coalesce(sum(rows), 0), max(loaded_at) "
            "FROM bulkmig.loaded_parts WHERE volume_id = %s GROUP BY 1, 2",
            (volume_id,),
        ).fetchall()
    return {(s, t): {"parts": int(n), "rows": int(r), "at": at.isoformat() if at else None} for s, t, n, r, at in rows}


def status(endpoint: Any, volume_id: str | None) -> dict[str, Any]:
    """The target's part of ``status``: parts and rows loaded, schema sections applied, objects post-data skipped."""
    from bulkmig.engines.postgres.target.skipped import skipped_objects

    conn = connect(endpoint, autocommit=True)
    try:
        if conn.execute("SELECT to_regclass('bulkmig.loaded_parts')").fetchone()[0] is None:
            return {"loaded": 0}
        loaded, rows = conn.execute(
            "SELECT count(*), coalesce(sum(rows), 0) FROM bulkmig.loaded_parts WHERE volume_id = %s", (volume_id,)
        ).fetchone()
        sections = []
        if conn.execute("SELECT to_regclass('bulkmig.schema_applied')").fetchone()[0] is not None:
            # Whole sections; post-data's side-by-side builds mark themselves too (post-data/INDEX/…).
            done = "SELECT section FROM bulkmig.schema_applied WHERE section NOT LIKE '%/%' ORDER BY 1"
            sections = [r[0] for r in conn.execute(done)]
        skipped = [obj.to_dict() for obj in skipped_objects(conn)]
        return {"loaded": loaded, "rows": int(rows), "schema_applied": sections, "skipped_objects": skipped}
    finally:
        conn.close()


def replay_position(endpoint: Any, stream_id: str) -> tuple[int, str, Any, Any] | None:
    """The last batch applied of ``stream_id``: seq, position, when applied, the commit time of its last change."""
    with connect(endpoint, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('bulkmig.replay_position') IS NOT NULL").fetchone()[0]:
            return None
        row = conn.execute(
            "SELECT seq, pos, applied_at, commit_ts FROM bulkmig.replay_position WHERE stream_id = %s", (stream_id,)
        ).fetchone()
    return (int(row[0]), str(row[1]), row[2], row[3]) if row else None
