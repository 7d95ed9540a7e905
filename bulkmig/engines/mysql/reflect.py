"""Read a MySQL/MariaDB database's catalog from information_schema into :mod:`bulkmig.core.model` tables plus
what schema conversion needs beside them: keys, indexes, foreign keys, checks, and the code objects
(views, triggers, routines) with their SQL.

Everything comes from information_schema (plus ``SHOW CREATE`` for the full text of code objects), the
one catalog MySQL 5.7/8.x and MariaDB 10.x share; the few places where they print things differently
(column defaults, CHECK_CONSTRAINTS, MariaDB's JSON alias) are handled here and named where they are.
Each column is mapped to PostgreSQL on the way (:mod:`.types`), so a catalog always says what every
column becomes and how it travels; ``unmapped`` lists the columns no rule covers.

Run it inside the extraction's consistent snapshot (DESIGN §5) so the catalog and the data agree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from bulkmig.core.catalog import (
    Catalog,
    CatalogColumn,
    CatalogTable,
    CheckConstraint,
    ForeignKey,
    Index,
    SchemaObject,
)
from bulkmig.core.model import Table
from bulkmig.engines.mysql import types


class Connection(Protocol):
    """The DB-API surface used here (pymysql and mysqlclient both fit; ``%s`` parameters)."""

    def cursor(self) -> Any: ...


# ---------------------------------------------------------------------------------------------- queries

_TABLES_SQL = """
SELECT TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, AUTO_INCREMENT, TABLE_COLLATION,
       TABLE_COMMENT, CREATE_OPTIONS
FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
ORDER BY TABLE_NAME
"""

_COLUMNS_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
       GENERATION_EXPRESSION, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_COMMENT
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

_INDEXES_SQL = """
SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION, INDEX_COMMENT
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX
"""

_FKS_SQL = """
SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,
       k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.REFERENTIAL_CONSTRAINTS r
  ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
 AND r.TABLE_NAME = k.TABLE_NAME
WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL
ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION
"""

# MariaDB names a column-level check after its column, so names repeat across tables: CHECK_CONSTRAINTS
# carries TABLE_NAME there.  MySQL 8 has no such column but keeps names unique per schema.
_CHECKS_SQL_MARIADB = """
SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s
ORDER BY TABLE_NAME, CONSTRAINT_NAME
"""
_CHECKS_SQL_MYSQL = """
SELECT t.TABLE_NAME, c.CONSTRAINT_NAME, c.CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS c
JOIN information_schema.TABLE_CONSTRAINTS t
  ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME
 AND t.CONSTRAINT_TYPE = 'CHECK'
WHERE c.CONSTRAINT_SCHEMA = %s
ORDER BY t.TABLE_NAME, c.CONSTRAINT_NAME
"""

_VIEWS_SQL = """
SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, IS_UPDATABLE, DEFINER, SECURITY_TYPE
FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME
"""

_TRIGGERS_SQL = """
SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, ACTION_STATEMENT,
       DEFINER, SQL_MODE
FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER, TRIGGER_NAME
"""

_ROUTINES_SQL = """
SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION, DTD_IDENTIFIER, IS_DETERMINISTIC, SQL_DATA_ACCESS,
       SECURITY_TYPE, DEFINER, SQL_MODE
FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME
"""

_JSON_CHECK = re.compile(r"^\s*json_valid\(\s*`((?:[^`]|``)+)`\s*\)\s*$", re.I)
_ON_UPDATE = re.compile(r"on update current_timestamp", re.I)

T = TypeVar("T")


def _rows(conn: Connection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(query, params or None)
        return [tuple(_text(v) for v in row) for row in cur.fetchall()]
    finally:
        cur.close()


def _text(value: Any) -> Any:
    """information_schema columns are sometimes typed as binary (MySQL 8 longtext bodies): decode them."""
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def quote_ident(name: str) -> str:
    """A backquoted MySQL identifier; embedded backquotes are doubled."""
    return "`" + name.replace("`", "``") + "`"


# ---------------------------------------------------------------------------------------------- reflect


def server_info(conn: Connection) -> tuple[str, bool]:
    """(version string, is MariaDB).  MariaDB and MySQL differ in a few catalog details (see module doc)."""
    (version,) = _rows(conn, "SELECT VERSION()")[0]
    return str(version), "mariadb" in str(version).lower()


def reflect(
    conn: Connection,
    schema: str,
    settings: types.TypeSettings | None = None,
    *,
    objects: bool = True,
) -> Catalog:
    """Reflect one database (``schema``: MySQL calls databases schemas in information_schema).

    ``objects=False`` skips views, triggers and routines (extraction needs only tables).
    """
    settings = settings or types.TypeSettings()
    version, mariadb = server_info(conn)
    checks = _checks(conn, schema, mariadb)
    json_columns = {
        (table, m.group(1).replace("``", "`"))
        for table, chks in checks.items()
        for chk in chks
        if (m := _JSON_CHECK.match(chk.clause))
    }
    columns = _columns(conn, schema, settings, mariadb, json_columns)
    indexes = _indexes(conn, schema)
    fks = _foreign_keys(conn, schema)
    tables = []
    for name, engine, rows, data, _index_bytes, auto_inc, collation, comment, options in _rows(
        conn, _TABLES_SQL, schema
    ):
        cols = columns.get(name, [])
        idx = indexes.get(name, [])
        pk = next((i.columns for i in idx if i.primary), [])
        table = Table(
            schema=schema,
            name=name,
            columns=[c.to_model() for c in cols],
            primary_key=list(pk),
            estimated_rows=int(rows or 0),
            estimated_bytes=int(data or 0),
        )
        tables.append(
            CatalogTable(
                table=table,
                columns=cols,
                indexes=idx,
                foreign_keys=fks.get(name, []),
                checks=checks.get(name, []),
                engine=engine,
                collation=collation,
                auto_increment=int(auto_inc) if auto_inc is not None else None,
                comment=comment or "",
                partitioned="partitioned" in (options or "").lower(),
            )
        )
    catalog = Catalog("mysql", version, mariadb, schema, tables, [], [], [])
    if objects:
        catalog.views = _views(conn, schema)
        catalog.triggers = _triggers(conn, schema)
        catalog.routines = _routines(conn, schema)
    return catalog


def _default(raw: str | None, extra: str, mariadb: bool, data_type: str) -> str | None:
    """The default as an SQL expression.  MariaDB (10.2.7+) already prints one, with NULL as ``NULL``;
    MySQL prints a bare literal unless EXTRA says DEFAULT_GENERATED (an expression)."""
    if raw is None:
        return None
    if mariadb:
        return None if raw == "NULL" else raw
    if "DEFAULT_GENERATED" in extra.upper() or data_type in _NUMERIC_TYPES:
        return raw
    return "'" + raw.replace("\\", "\\\\").replace("'", "''") + "'"


_NUMERIC_TYPES = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float", "double", "bit", "year"}
)


def _columns(
    conn: Connection,
    schema: str,
    settings: types.TypeSettings,
    mariadb: bool,
    json_columns: set[tuple[str, str]],
) -> dict[str, list[CatalogColumn]]:
    out: dict[str, list[CatalogColumn]] = defaultdict(list)
    for table, name, ctype, dtype, nullable, raw_default, extra, gen_expr, charset, collation, comment in _rows(
        conn, _COLUMNS_SQL, schema
    ):
        extra = extra or ""
        dtype = dtype.lower()
        generated = None
        if "GENERATED" in extra.upper():
            generated = "STORED" if re.search(r"stored|persistent", extra, re.I) else "VIRTUAL"
        is_json = dtype == "json" or (table, name) in json_columns
        on_update = bool(_ON_UPDATE.search(extra))
        mapping = types.map_column(
            ctype,
            table=table,
            column=name,
            nullable=nullable == "YES",
            charset=charset,
            collation=collation,
            is_json=is_json,
            on_update_current_timestamp=on_update,
            settings=settings,
        )
        out[table].append(
            CatalogColumn(
                name=name,
                column_type=ctype,
                data_type=dtype,
                nullable=nullable == "YES",
                default=None if generated else _default(raw_default, extra, mariadb, dtype),
                auto_increment="auto_increment" in extra.lower(),
                on_update_current_timestamp=on_update,
                generated=generated,
                generation_expression=gen_expr or None,
                charset=charset,
                collation=collation,
                comment=comment or "",
                is_json=is_json,
                mapping=mapping,
            )
        )
    return out


def _per_table(rows: list[tuple[Any, ...]], make: Callable[[str, list[tuple[Any, ...]]], T]) -> dict[str, list[T]]:
    """Catalog objects that take one row per column (an index, a foreign key), by table.  Rows start with
    (table, name); ``make(name, its rows)`` builds each object once its rows are together, in the query's order."""
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault((row[0], row[1]), []).append(row)
    out: dict[str, list[T]] = defaultdict(list)
    for (table, name), group in grouped.items():
        out[table].append(make(name, group))
    return out


def _indexes(conn: Connection, schema: str) -> dict[str, list[Index]]:
    def index(name: str, rows: list[tuple[Any, ...]]) -> Index:
        _, _, non_unique, columns, sub_parts, kinds, collations, comments = zip(*rows, strict=True)
        return Index(
            name=name,
            columns=list(columns),
            unique=not int(non_unique[0]),
            primary=name == "PRIMARY",
            kind=str(kinds[0]).upper(),
            prefix_lengths=[int(n) if n is not None else None for n in sub_parts],
            descending=[c == "D" for c in collations],
            comment=comments[0] or "",
        )

    return _per_table(_rows(conn, _INDEXES_SQL, schema), index)


def _foreign_keys(conn: Connection, schema: str) -> dict[str, list[ForeignKey]]:
    def foreign_key(name: str, rows: list[tuple[Any, ...]]) -> ForeignKey:
        table, _, columns, ref_schema, ref_table, ref_columns, on_update, on_delete = zip(*rows, strict=True)
        return ForeignKey(
            name=name,
            columns=list(columns),
            ref_schema=ref_schema[0],
            ref_table=ref_table[0],
            ref_columns=list(ref_columns),
            on_update=on_update[0],
            on_delete=on_delete[0],
            self_referencing=ref_schema[0] == schema and ref_table[0] == table[0],
        )

    return _per_table(_rows(conn, _FKS_SQL, schema), foreign_key)


def _checks(conn: Connection, schema: str, mariadb: bool) -> dict[str, list[CheckConstraint]]:
    out: dict[str, list[CheckConstraint]] = defaultdict(list)
    query = _CHECKS_SQL_MARIADB if mariadb else _CHECKS_SQL_MYSQL
    for table, name, clause in _rows(conn, query, schema):
        out[table].append(CheckConstraint(name, clause))
    return out


def _schema_object(
    conn: Connection, kind: str, schema: str, name: str, definition: str | None, **rest: Any
) -> SchemaObject:
    """A view, trigger or routine (``kind`` as SHOW CREATE names it): its body as information_schema reads it,
    and the whole statement from SHOW CREATE, which puts it in the second column for a view, else the third."""
    rows = _rows(conn, f"SHOW CREATE {kind.upper()} {quote_ident(schema)}.{quote_ident(name)}")
    column = 1 if kind.upper() == "VIEW" else 2
    return SchemaObject(
        kind=kind.lower(),
        schema=schema,
        name=name,
        definition=definition or "",
        create_sql=str(rows[0][column]) if rows and rows[0][column] is not None else "",
        **rest,
    )


def _views(conn: Connection, schema: str) -> list[SchemaObject]:
    out = []
    for name, definition, check_option, updatable, definer, security in _rows(conn, _VIEWS_SQL, schema):
        details = {
            "check_option": check_option,
            "updatable": updatable == "YES",
            "definer": definer,
            "security": security,
        }
        out.append(_schema_object(conn, "VIEW", schema, name, definition, details=details))
    return out


def _triggers(conn: Connection, schema: str) -> list[SchemaObject]:
    out = []
    for name, table, timing, event, order, statement, definer, sql_mode in _rows(conn, _TRIGGERS_SQL, schema):
        details = {"timing": timing, "event": event, "order": order, "definer": definer, "sql_mode": sql_mode}
        out.append(_schema_object(conn, "TRIGGER", schema, name, statement, table=table, details=details))
    return out


def _routines(conn: Connection, schema: str) -> list[SchemaObject]:
    out = []
    rows = _rows(conn, _ROUTINES_SQL, schema)
    for name, kind, definition, returns, deterministic, access, security, definer, sql_mode in rows:
        details = {
            "returns": returns if kind.upper() == "FUNCTION" else None,
            "deterministic": deterministic == "YES",
            "data_access": access,
            "security": security,
            "definer": definer,
            "sql_mode": sql_mode,
        }
        out.append(_schema_object(conn, kind, schema, name, definition, details=details))
    return out
