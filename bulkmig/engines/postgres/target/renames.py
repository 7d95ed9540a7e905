"""DMS rename rules on a PostgreSQL -> PostgreSQL migration: the schema is recreated under the source's names
(pg_dump's DDL), loaded, and only then renamed, in one transaction recorded like a schema section.

Why last: ``ALTER SCHEMA/TABLE … RENAME`` and ``RENAME COLUMN`` act on the object's OID, so every view,
foreign key, index, sequence ownership, trigger, policy and grant that pg_dump created follows the new name by
itself — rewriting pg_dump's text instead would miss some.  Function and procedure bodies are text, never
rewritten by PostgreSQL: :func:`function_notes` lists those that name a renamed object, for the operator.
"""

from __future__ import annotations

from typing import Any

from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, TargetError
from bulkmig.core.model import Table
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.engines.postgres.target.ledger import once_per_volume

SECTION = "renames"


def record_target_names(task: Task, table: Table) -> None:
    """Set ``table``'s target names from the transformation rules (left None where a name is kept), refusing
    the rules a PostgreSQL -> PostgreSQL load cannot honour yet."""
    columns = [c.name for c in table.columns]
    removed = task.mappings.removed_columns(table.schema, table.name, columns)
    if removed:
        raise ConfigError(
            f"transformation rules remove columns of {table.qualified} ({', '.join(sorted(removed))}); "
            "remove-column and include-column are not supported for PostgreSQL -> PostgreSQL yet",
            "drop those rules for this task (drop the columns on the target after the migration)",
        )
    tschema, tname = task.mappings.target_table_name(table.schema, table.name)
    table.target_schema = tschema if tschema != table.schema else None
    table.target_name = tname if tname != table.name else None
    renamed = []
    for c in table.columns:
        target = task.mappings.target_column_name(table.schema, table.name, c.name)
        c.target_name = target if target != c.name else None
        if c.target_name:
            renamed.append(c.name)
    if renamed and table.kind == "partition":
        raise ConfigError(
            f"transformation rules rename columns of partition {table.qualified} ({', '.join(renamed)}); "
            "a partition's columns are its parent's",
            f"rename them on the partitioned table {table.parent} (and every partition) with one rule",
        )


def refuse_unsupported(task: Task, tables: list[Table]) -> None:
    """What the rename step cannot do, refused at plan time: several source schemas merged into one target
    schema (pg_dump recreates each; they would have to be moved object by object), or renames onto a target
    whose existing tables are kept or dropped by ``settings.existing_tables`` (those hold the source's names)."""
    if not any(_renamed(t) for t in tables):
        return
    schemas: dict[str, set[str]] = {}
    for t in tables:
        schemas.setdefault(t.target_qualified[0], set()).add(t.schema)
    merged = {dst: srcs for dst, srcs in schemas.items() if len(srcs) > 1}
    if merged:
        dst, srcs = next(iter(merged.items()))
        raise ConfigError(
            f"transformation rules send schemas {', '.join(sorted(srcs))} into one target schema {dst}; "
            "merging schemas is not supported for PostgreSQL -> PostgreSQL",
            "give every source schema its own target schema",
        )
    if task.settings.existing_tables != "refuse":
        raise ConfigError(
            f"settings.existing_tables {task.settings.existing_tables} with rename rules is not supported for "
            "PostgreSQL -> PostgreSQL (the target tables are recreated under the source names, then renamed)",
            "use existing_tables refuse on a target without those tables",
        )


def _renamed(table: Table) -> bool:
    return bool(table.target_schema or table.target_name or any(c.target_name for c in table.columns))


def has_renames(tables: list[Table]) -> bool:
    return any(_renamed(t) for t in tables)


def parent_names(task: Task, tables: list[Table]) -> dict[tuple[str, str], str]:
    """(schema, partitioned table) -> its new name, for the parents of planned partitions (the plan holds
    only the leaves, which carry the rows): a table rule matching the parent renames it too."""
    out = {}
    for t in tables:
        if t.parent:
            schema, _, root = t.parent.partition(".")
            new = task.mappings.target_table_name(schema, root)[1]
            if new != root:
                out[(schema, root)] = new
    return out


def rename_statements(tables: list[Table], parents: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Columns first (under the source names), then tables (partitioned parents too), then schemas: each
    step names what the one before left."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for t in tables:
        for c in t.columns:
            if c.target_name and (t.schema, t.name) not in seen:
                out.append(
                    f"ALTER TABLE {qualified(t.schema, t.name)} RENAME COLUMN {ident(c.name)} TO {ident(c.target_name)}"
                )
        seen.add((t.schema, t.name))
    for t in tables:
        if t.target_name:
            out.append(f"ALTER TABLE {qualified(t.schema, t.name)} RENAME TO {ident(t.target_name)}")
    for (schema, root), new in sorted((parents or {}).items()):
        out.append(f"ALTER TABLE {qualified(schema, root)} RENAME TO {ident(new)}")
    for src, dst in sorted({(t.schema, t.target_schema) for t in tables if t.target_schema}):
        out.append(f"ALTER SCHEMA {ident(src)} RENAME TO {ident(dst)}")
        if src == "public":  # a database without "public" surprises every client's search_path
            out.append("CREATE SCHEMA public")
    return out


def apply_renames(
    conn: Any, tables: list[Table], volume_id: str, parents: dict[tuple[str, str], str] | None = None
) -> bool:
    """Run the rename statements once for ``volume_id``, in one transaction with their marker row (the
    schema sections' table), so a rerun or a second loader finds them done.  Returns whether it ran them."""
    statements = rename_statements(tables, parents)
    if not statements:
        return False

    def other_volume(volume: str) -> None:
        raise TargetError(
            f"the target's tables were renamed by another volume's load ({volume})",
            "load this volume into a fresh database",
        )

    def rename() -> None:
        _refuse_taken_names(conn, tables)
        for statement in statements:
            conn.execute(statement)

    return once_per_volume(conn, SECTION, volume_id, rename, other_volume)


def _refuse_taken_names(conn: Any, tables: list[Table]) -> None:
    """A target schema or table that already exists would stop the rename half-way: name it first."""
    for src, dst in sorted({(t.schema, t.target_schema) for t in tables if t.target_schema}):
        if conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (dst,)).fetchone():
            raise TargetError(
                f"schema {dst} already exists on the target; the rename rules would rename {src} onto it",
                f"drop schema {dst} on the target (or rename it into a schema of its own), then rerun `bulkmig load`",
            )
    for t in tables:
        if t.target_name:
            found = conn.execute("SELECT to_regclass(%s)", (qualified(t.schema, t.target_name),)).fetchone()
            if found and found[0] is not None:
                raise TargetError(
                    f"{t.schema}.{t.target_name} already exists on the target; {t.qualified} would be renamed onto it",
                    "drop it or change the table rules, then rerun `bulkmig load`",
                )


def function_notes(conn: Any, tables: list[Table]) -> list[str]:
    """Functions and procedures on the source whose body names a renamed schema, table or column: PostgreSQL
    keeps bodies as text, so they still name the old objects after the rename (one note each, to fix by hand)."""
    old: set[str] = set()
    for t in tables:
        if t.target_schema:
            old.add(t.schema)
        if t.target_name:
            old.add(t.name)
        old.update(c.name for c in t.columns if c.target_name)
    if not old:
        return []
    rows = conn.execute(
        "SELECT n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', "
        "p.prokind, p.prosrc FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "LEFT JOIN pg_catalog.pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e' "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND d.objid IS NULL ORDER BY 1"
    ).fetchall()
    notes = []
    for name, kind, body in rows:
        words = set(_words(body or ""))
        hits = sorted(n for n in old if n.lower() in words or n in words)
        if hits:
            what = "procedure" if kind == "p" else "function"
            notes.append(
                f"{what} {name}: its body names renamed object(s) {', '.join(hits)}; PostgreSQL does not rewrite "
                "bodies — fix it on the target after the load"
            )
    return notes


def _words(text: str) -> list[str]:
    """Identifiers in a body, unquoted ones folded to lower case as PostgreSQL does."""
    import re

    out = [m.group(1).replace('""', '"') for m in re.finditer(r'"((?:[^"]|"")+)"', text)]
    out += [w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", text)]
    return out
