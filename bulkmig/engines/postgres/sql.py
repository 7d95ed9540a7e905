"""Quoting and session settings for PostgreSQL, in one place.

Every identifier bulkmig puts into SQL goes through :func:`ident`, whatever it is called: users name
columns ``select``, ``Op``, ``"quoted"`` or ``naïve name``, and generated SQL must never let such a
name shadow one of ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Session settings that make text output canonical and identical on every connection we open:
# text forms of dates, intervals and floats depend on them, and validation compares text.
CANONICAL_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
}


# The FROM and WHERE of a query over the user's relations: ``c`` (pg_class) with ``n`` its pg_namespace, leaving
# out the schemas the ``skip`` parameter lists, TOAST and temporary schemas, and what an extension created.
FROM_USER_RELATIONS = """FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> ALL (%(skip)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid
                  AND ext.deptype = 'e')"""


def ident(name: str) -> str:
    """A double-quoted identifier; embedded quotes are doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def select(schema: str, name: str, exprs: Iterable[str], where: str | None = None, order_by: Sequence[str] = ()) -> str:
    """``SELECT exprs FROM schema.name [WHERE where] [ORDER BY order_by]``: the table and the order-by columns
    quoted, ``exprs`` and ``where`` as given (SQL already)."""
    sql = f"SELECT {', '.join(exprs)} FROM {qualified(schema, name)}"
    if where:
        sql += f" WHERE {where}"
    if order_by:
        sql += " ORDER BY " + ", ".join(ident(k) for k in order_by)
    return sql


def literal(value: str) -> str:
    """A standard-conforming string literal (E'' escapes are never needed with standard strings on)."""
    return "'" + value.replace("'", "''") + "'"


def options_string(settings: dict[str, str]) -> str:
    """The libpq ``options`` value that applies ``settings`` at connection start.

    Applying them at connect time (rather than with SET) keeps ``SET TRANSACTION SNAPSHOT`` the first
    statement of every worker's transaction, as PostgreSQL requires.
    """
    parts = []
    for key, value in settings.items():
        escaped = value.replace("\\", "\\\\").replace(" ", "\\ ")
        parts.append(f"-c {key}={escaped}")
    return " ".join(parts)
