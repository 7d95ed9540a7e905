"""The target DDL the data-changing DMS rules ask for, on a PostgreSQL target, at three points of the load.

1. Before the parts (the tables are empty, so it costs nothing): ``add-column`` adds its column, a
   ``table-tablespace`` rename moves the table.  Tablespaces are checked to exist first, before any row.
2. After the parts, before the indexes: ``change-data-type`` — ``ALTER COLUMN … TYPE … USING col::type``,
   PostgreSQL's own cast decides each value (chosen where DMS is silent) and no index is rebuilt for it.
3. After the indexes and constraints: ``define-primary-key`` (replacing the source's primary key, or with
   origin ``unique-index`` a unique index beside it) and ``index-tablespace`` moves.

Steps 2 and 3 run once per volume (a marker row in the same transaction, as the schema sections), so a
rerun of ``load`` neither casts twice nor fails on a key it made.  They name the table under its source
names: a PostgreSQL -> PostgreSQL load renames objects last (:mod:`bulkmig.fullload.renames`).
"""

from __future__ import annotations

from typing import Any

from bulkmig.core.errors import TargetError
from bulkmig.core.model import Table
from bulkmig.engines.postgres.sql import ident, literal, qualified
from bulkmig.engines.postgres.target.ledger import once_per_volume


def tablespaces_needed(tables: list[Table]) -> dict[str, str]:
    """Tablespace -> the rule that names it."""
    out: dict[str, str] = {}
    for t in tables:
        for key in ("table_tablespace", "index_tablespace"):
            if key in t.transform:
                out.setdefault(t.transform[key]["tablespace"], t.transform[key]["rule"])
    return out


def refuse_missing_tablespaces(conn: Any, tables: list[Table]) -> None:
    """A tablespace rename onto a tablespace the target lacks, refused before a row is loaded."""
    for space, rule in sorted(tablespaces_needed(tables).items()):
        if conn.execute("SELECT 1 FROM pg_catalog.pg_tablespace WHERE spcname = %s", (space,)).fetchone() is None:
            raise TargetError(
                f"transformation rule {rule!r} moves objects into tablespace {space}, which the target does not have",
                f"create it on the target (CREATE TABLESPACE {ident(space)} LOCATION '...') or fix the rule's value",
            )


def before_parts(conn: Any, tables: list[Table]) -> None:
    """Step 1 (idempotent by itself: ADD COLUMN IF NOT EXISTS, SET TABLESPACE to where it already is)."""
    refuse_missing_tablespaces(conn, tables)
    for t in tables:
        rel = qualified(t.schema, t.name)
        for a in t.transform.get("added", []):
            _run(conn, f"ALTER TABLE {rel} ADD COLUMN IF NOT EXISTS {ident(a['name'])} {a['pg_type']}", a["rule"])
        if "table_tablespace" in t.transform:
            ts = t.transform["table_tablespace"]
            _run(conn, f"ALTER TABLE {rel} SET TABLESPACE {ident(ts['tablespace'])}", ts["rule"])


def after_parts(conn: Any, tables: list[Table], volume_id: str) -> bool:
    """Step 2, once per volume."""
    statements = []
    for t in tables:
        rel = qualified(t.schema, t.name)
        for c in t.transform.get("types", []):
            col = ident(c["column"])
            statements.append(
                (f"ALTER TABLE {rel} ALTER COLUMN {col} TYPE {c['pg_type']} USING {col}::{c['pg_type']}", c["rule"])
            )
    return _once(conn, "dms-types", volume_id, statements)


def after_post_data(conn: Any, tables: list[Table], volume_id: str) -> bool:
    """Step 3, once per volume."""
    statements: list[tuple[str, str]] = []
    for t in tables:
        rel = qualified(t.schema, t.name)
        pk = t.transform.get("primary_key")
        if pk:
            cols = ", ".join(ident(c) for c in pk["columns"])
            if pk["origin"] == "unique-index":
                statements.append((f"CREATE UNIQUE INDEX {ident(pk['name'])} ON {rel} ({cols})", pk["rule"]))
            else:
                statements.append((_drop_primary_key_sql(t), pk["rule"]))
                statements.append(
                    (f"ALTER TABLE {rel} ADD CONSTRAINT {ident(pk['name'])} PRIMARY KEY ({cols})", pk["rule"])
                )
        if "index_tablespace" in t.transform:
            its = t.transform["index_tablespace"]
            for index in its["indexes"]:
                statements.append(
                    (
                        f"ALTER INDEX IF EXISTS {qualified(t.schema, index)} SET TABLESPACE {ident(its['tablespace'])}",
                        its["rule"],
                    )
                )
    return _once(conn, "dms-keys", volume_id, statements)


def _drop_primary_key_sql(t: Table) -> str:
    """Drop the table's primary key whatever pg_dump named it (a DO block: the name is only known there)."""
    return (
        "DO $bm$ DECLARE k text; BEGIN SELECT conname INTO k FROM pg_catalog.pg_constraint "
        f"WHERE conrelid = {literal(qualified(t.schema, t.name))}::regclass AND contype = 'p'; "
        f"IF k IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', "
        f"{literal(qualified(t.schema, t.name))}, k); END IF; END $bm$"
    )


def _once(conn: Any, section: str, volume_id: str, statements: list[tuple[str, str]]) -> bool:
    if not statements:
        return False

    def run_all() -> None:
        for sql, rule in statements:
            _run(conn, sql, rule)

    return once_per_volume(conn, section, volume_id, run_all)


def _run(conn: Any, sql: str, rule: str) -> None:
    try:
        conn.execute(sql)
    except Exception as exc:
        if not hasattr(exc, "sqlstate"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TargetError(
            f"transformation rule {rule!r}: the target refused `{sql[:160]}`: {first}",
            "fix the rule (or the target object it names), then rerun `bulkmig load` (loaded parts are kept)",
        ) from None
