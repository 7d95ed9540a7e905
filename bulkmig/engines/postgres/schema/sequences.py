"""Sequence values: read on the source inside the snapshot (pg_dump --schema-only leaves them out), set on the
target after the load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from bulkmig.core.errors import SourceError
from bulkmig.engines.postgres.schema.common import _SKIP_SCHEMAS
from bulkmig.engines.postgres.schema.dump import _kept_tables
from bulkmig.engines.postgres.sql import FROM_USER_RELATIONS, literal, qualified

# ----------------------------------------------------------------------------------------- sequences


_SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname,
       (SELECT d.refobjid FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i') LIMIT 1) AS owner,
       has_sequence_privilege(c.oid, 'SELECT') AS readable,
       ARRAY(SELECT a.adrelid FROM pg_depend d JOIN pg_attrdef a ON a.oid = d.objid
             WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = c.oid
               AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass
                               AND i.objid = c.oid AND i.deptype = 'i')) AS used_by
{FROM_USER_RELATIONS}
  AND c.relkind = 'S'
ORDER BY 1, 2
"""


def sequence_values(conn: psycopg.Connection, tables: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """``[{"schema", "name", "last_value", "is_called"}, ...]`` for every user sequence, for the plan.

    ``--schema-only`` dumps sequences at their START value, so the loader sets these after the load.
    Sequences are not transactional: this reads their value *now*, not as of the caller's snapshot,
    which is why cutover syncs them again from a fresh read (DESIGN §6).  With ``tables`` (a subset),
    sequences owned by tables that are not selected (serial and identity ones) are left out unless a
    selected table's default uses them, as :func:`dump_schema` does with the schema.  Safe inside the caller's snapshot
    transaction: unreadable sequences are reported before anything could fail and abort it.
    """
    keep = _kept_tables(conn, tables) if tables is not None else None
    found = conn.execute(_SEQUENCES_SQL, {"skip": list(_SKIP_SCHEMAS)}).fetchall()
    if keep is not None:  # the rule dump_schema follows: a sequence stays if its owner or a user stays
        found = [row for row in found if row[2] is None or row[2] in keep or keep.intersection(row[4])]
    unreadable = [f"{nsp}.{rel}" for nsp, rel, _, readable, _ in found if not readable]
    if unreadable:
        raise SourceError(
            f"the source user may not read sequence {', '.join(unreadable[:5])}"
            + (f" (+{len(unreadable) - 5} more)" if len(unreadable) > 5 else ""),
            "GRANT SELECT ON the sequences to the migration user",
        )
    out: list[dict[str, Any]] = []
    for start in range(0, len(found), 200):  # a few round trips, not one per sequence
        chunk = found[start : start + 200]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, last_value, is_called FROM {}.{}").format(
                sql.Literal(i), sql.Identifier(nsp), sql.Identifier(rel)
            )
            for i, (nsp, rel, *_) in enumerate(chunk)
        )
        values = {i: (last, called) for i, last, called in conn.execute(query)}
        for i, (nsp, rel, *_) in enumerate(chunk):
            last, called = values[i]
            out.append({"schema": nsp, "name": rel, "last_value": int(last), "is_called": bool(called)})
    return out


def set_sequences_sql(values: Iterable[Mapping[str, Any]]) -> str:
    """``SELECT pg_catalog.setval(...)`` for each value of :func:`sequence_values`, in one string.

    ``is_called`` matters: false means the next ``nextval`` returns ``last_value`` itself (a sequence
    never used), true means it returns the one after.  Empty input gives an empty string.
    """
    lines = []
    for v in values:
        name = literal(qualified(str(v["schema"]), str(v["name"])))
        called = "true" if v["is_called"] else "false"
        lines.append(f"SELECT pg_catalog.setval({name}, {int(v['last_value'])}, {called});")
    return "\n".join(lines)
