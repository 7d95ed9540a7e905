"""A PostgreSQL target's view of a replayed table: its columns and key as the target has them now.

What replay (:mod:`.apply`) and the ``dms-s3://`` reader plan their statements on; the why of replay is in
:mod:`bulkmig.replay.runner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from bulkmig.cdc.batch import TableChanges
from bulkmig.engines.postgres.sql import ident, qualified

# ============================================================================================ target


@dataclass
class TargetTable:
    """What replay needs to know about a target table, read from its catalog."""

    schema: str
    name: str
    oid: int
    relkind: str
    types: dict[str, str]  # column -> format_type, in attnum order
    generated: set[str]  # GENERATED ALWAYS AS (…) STORED: never written
    identity_always: set[str]  # GENERATED ALWAYS AS IDENTITY: inserted with OVERRIDING, never SET
    primary_key: list[str]
    unique_keys: list[frozenset[str]]  # immediate, non-partial, non-expression unique indexes
    loose: set[str] = field(default_factory=set)  # columns with a nondeterministic collation ('a' = 'A')

    @property
    def sql(self) -> str:
        return qualified(self.schema, self.name)


def read_target_table(conn: psycopg.Connection, schema: str, name: str) -> TargetTable | None:
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(%s)",
        (qualified(schema, name),),
    ).fetchone()
    if row is None:
        return None
    oid, relkind = int(row[0]), str(row[1])
    types: dict[str, str] = {}
    generated: set[str] = set()
    always: set[str] = set()
    loose: set[str] = set()
    # collisdeterministic is PostgreSQL 12's: read through to_jsonb so an older server says NULL (none are).
    for attname, typ, gen, ident_always, nondeterministic in conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.attidentity = 'a', "
        "COALESCE((SELECT NOT (to_jsonb(co) ->> 'collisdeterministic')::boolean FROM pg_catalog.pg_collation co "
        "WHERE co.oid = a.attcollation), false) "
        "FROM pg_catalog.pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (oid,),
    ):
        types[attname] = typ
        if gen:
            generated.add(attname)
        if ident_always:
            always.add(attname)
        if nondeterministic:
            loose.add(attname)
    primary: list[str] = []
    uniques: list[frozenset[str]] = []
    for is_primary, cols in conn.execute(
        "SELECT i.indisprimary, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) "
        "FROM pg_catalog.pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid "
        "AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY NOT i.indisprimary",
        (oid,),
    ):
        if is_primary:
            primary = list(cols)
        uniques.append(frozenset(cols))
    return TargetTable(schema, name, oid, relkind, types, generated, always, primary, uniques, loose)


@dataclass
class TablePlan:
    """How one batch's changes of one source table go into one target table."""

    table: TargetTable
    changes: TableChanges
    src_idx: list[int]  # indexes into changes.columns of the columns written
    cols: list[str]  # their target names, same order
    key: list[str]  # source names of the key columns ([] = key-less)
    key_cols: list[str]  # their target names


def _p(name: str) -> str:
    """An identifier for a statement that also has %s parameters (psycopg reads % in the text)."""
    return ident(name).replace("%", "%%")
