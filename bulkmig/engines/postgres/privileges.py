"""What the source login must be allowed to do, checked before anything starts.

Without these checks a missing privilege surfaces deep inside a stage — pg_dump's "permission denied
for table x" after the snapshot is taken, or CREATE PUBLICATION's "permission denied for database" after
the plan has begun — naming one object at a time.  Checked up front, every missing privilege is listed
at once with the statement a DBA can paste, and nothing on the source has changed yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from bulkmig.core.errors import PrivilegeError

SHOWN = 20  # objects named in one message; the count says how many more


def _listing(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _current_user(conn: psycopg.Connection) -> str:
    """The login's name, quoted only where SQL needs it (as PostgreSQL's quote_ident does)."""
    row = conn.execute("SELECT quote_ident(current_user)").fetchone()
    assert row is not None
    return str(row[0])


def require_select(conn: psycopg.Connection, tables: Sequence[tuple[str, str]]) -> None:
    """Refuse when the login may not read every one of ``tables`` ((schema, name) pairs): extraction reads
    them, and pg_dump locks them (LOCK TABLE needs SELECT)."""
    if not tables:
        return
    rows = conn.execute(
        """
        SELECT quote_ident(t.nsp), format('%%I.%%I', t.nsp, t.rel),
               has_schema_privilege(n.oid, 'USAGE'),
               has_table_privilege(c.oid, 'SELECT')
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(nsp, rel, ord)
        JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
        ORDER BY t.nsp, t.rel
        """,
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    schemas = sorted({nsp for nsp, _, usage, _ in rows if not usage})
    unreadable = [name for _, name, usage, select in rows if usage and not select]
    unreadable_in_schemas = [name for _, name, usage, _ in rows if not usage]
    if not schemas and not unreadable:
        return
    user = _current_user(conn)
    grants = []
    if schemas:
        grants.append(f"GRANT USAGE ON SCHEMA {', '.join(schemas)} TO {user}")
    missing = sorted(unreadable + unreadable_in_schemas)
    grants.append(f"GRANT SELECT ON {_listing(missing)} TO {user}")
    raise PrivilegeError(
        f"the source login {user} has no SELECT privilege on {len(missing)} selected table(s): {_listing(missing)}"
        + (f" (no USAGE on schema {', '.join(schemas)})" if schemas else ""),
        f"on the source run {'; '.join(grants)} (or GRANT pg_read_all_data TO {user}), or leave those tables "
        "out with a selection rule",
    )


def require_cdc(conn: psycopg.Connection, tables: Sequence[tuple[str, str]]) -> None:
    """Refuse when the login cannot start change data capture for ``tables``: the REPLICATION attribute
    (for the slot), CREATE on the database (for the publication) and ownership of each published table
    (CREATE PUBLICATION … FOR TABLE and REPLICA IDENTITY need it).  Superusers have all three."""
    row = conn.execute(
        """
        SELECT quote_ident(r.rolname), r.rolsuper, r.rolreplication,
               has_database_privilege(current_database(), 'CREATE'), quote_ident(current_database())
        FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
        """
    ).fetchone()
    assert row is not None
    name, superuser, replication, create, database = row
    if superuser:
        return
    user = name
    problems: list[str] = []
    fixes: list[str] = []
    if not replication:
        problems.append(f"role {user} has no REPLICATION attribute (needed for the replication slot)")
        fixes.append(f"ALTER ROLE {user} REPLICATION")
    if not create:
        problems.append(f"role {user} may not CREATE in database {database} (needed for the publication)")
        fixes.append(f"GRANT CREATE ON DATABASE {database} TO {user}")
    if tables:
        owned = conn.execute(
            """
            SELECT format('%%I.%%I', t.nsp, t.rel)
            FROM unnest(%s::text[], %s::text[]) AS t(nsp, rel)
            JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp
            JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
            WHERE NOT pg_has_role(c.relowner, 'USAGE')
            ORDER BY t.nsp, t.rel
            """,
            ([s for s, _ in tables], [t for _, t in tables]),
        ).fetchall()
        if owned:
            listed = _listing([r[0] for r in owned])
            problems.append(f"role {user} does not own {len(owned)} table(s) to publish: {listed}")
            fixes.append(f"ALTER TABLE … OWNER TO {user} (or GRANT the owning role to {user}) for {listed}")
    if problems:
        raise PrivilegeError(
            "the source login cannot start change data capture: " + "; ".join(problems),
            f"on the source run {'; '.join(fixes)}, or use a superuser login for the source",
        )
