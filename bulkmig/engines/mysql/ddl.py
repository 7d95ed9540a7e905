"""Statements in a MySQL/MariaDB binlog that are not rows: transaction boundaries, DDL, TRUNCATE, statement DML.

A capture stream keeps its own table definitions (``stream.json``, then ``progress.json``).  What a statement on a
captured table does to them is decided here: ADD COLUMN of a nullable column at the end grows the definition and
becomes a schema change replay applies (its literal DEFAULT translated for the target, :func:`pg_default` or
:func:`mysql_default`); TRUNCATE becomes a ``T`` change; anything else that changes a captured table (or DML
written as a statement) stops capture before it, through :meth:`.session.CaptureSession.stop`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bulkmig.core.log import say
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.batching import Txn, utc
from bulkmig.engines.mysql.binlog import BinlogPos, query_rows
from bulkmig.engines.mysql.changes import MYSQL_FORMS, ColumnSpec
from bulkmig.engines.mysql.statements import Statement, classify, mysql_string
from bulkmig.engines.mysql.stream import TableDef
from bulkmig.engines.postgres.sql import literal

if TYPE_CHECKING:
    from bulkmig.engines.mysql.session import CaptureSession

# Rules whose literal default is already the PostgreSQL text (numbers, strings, dates): derived from
# types.RULES by logical type, so a rule added there (say another unsigned spelling) is covered here too.
_LITERAL_DEFAULT_LOGICAL = frozenset({"integer", "decimal", "float", "text", "date", "timestamp"})
_LITERAL_DEFAULT_RULES = frozenset(r.source for r in types.RULES if r.logical in _LITERAL_DEFAULT_LOGICAL)


def pg_default(default: str | None, rule: str | None) -> str | None:
    """A MySQL literal default as the PostgreSQL literal replay adds the column with (None: no default)."""
    if default is None:
        return None
    if rule == "tinyint(1)" and default in ("0", "1", "'0'", "'1'"):
        return "true" if default.strip("'") == "1" else "false"
    if rule not in _LITERAL_DEFAULT_RULES:
        raise ValueError(default)
    if default.startswith("'"):
        return literal(mysql_string(default))
    return default


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?", re.I)


def mysql_default(default: str | None) -> str | None:
    """A literal default as the MySQL literal replay adds the column with (a MySQL target takes the source's
    own): a string or a number; an expression (CURRENT_TIMESTAMP, a function) cannot be reproduced later."""
    if default is None or default.upper() == "NULL":
        return None
    if default.startswith("'") or _NUMBER.fullmatch(default):
        return default
    raise ValueError(default)


def apply_change(defs: dict[tuple[str, str], TableDef], change: dict[str, Any]) -> None:
    """Adopt a column added by a durable batch (the defs progress.json holds may predate it)."""
    key = (change.get("source_schema"), change.get("source_table"))
    d = defs.get(key)  # type: ignore[arg-type]
    if change.get("kind") != "column_added" or d is None:
        return
    if any(c.name == change["source_column"] for c in d.columns):
        return
    d.columns.append(
        ColumnSpec(
            name=change["source_column"],
            target=change["column"],
            column_type=change["column_type"],
            target_type=change["type"],
            charset=change.get("charset"),
            nullable=True,
            is_json=bool(change.get("is_json")),
        )
    )


def query(session: CaptureSession, ev: Any, start: BinlogPos, end: BinlogPos) -> None:
    """One QUERY event (``start``..``end``): a transaction boundary, or a statement judged against the captured
    tables — taken (TRUNCATE, ADD COLUMN), said and passed over, or where capture stops."""
    schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema or "")
    st = classify(ev.query, schema)
    if st.kind == "begin":
        if session.txn is None:
            session.txn, session.group = Txn(), start
        return
    if st.kind in ("commit", "rollback"):  # ROLLBACK ends a group whose non-transactional rows stayed
        session.commit(start, end, getattr(ev, "xid", 0) or 0, ev.timestamp)
        return
    if st.kind == "savepoint":
        return
    at = session.group or start  # where a restart re-reads this statement
    session.commit(start, start, 0, ev.timestamp)  # DDL commits what came before it (normally nothing)
    session.group = at
    captured = [t for t in st.tables if t in session.defs or (t[1] == "*" and any(s == t[0] for s, _ in session.defs))]
    schemas = {s for s, _ in session.defs}
    if st.kind == "xa":
        session.stop(start, st.why, st.text)
    elif st.kind == "dml":
        if schema in schemas or any(s.lower() in st.text.lower() for s in schemas):
            session.stop(start, st.why, st.text)
    elif st.kind == "truncate":
        if captured:
            txn = Txn([(t, "T", [None] * len(session.defs[t].columns), None) for t in captured])
            session.builder.add(txn, session.defs, start, end, getattr(ev, "xid", 0) or 0, utc(ev.timestamp))
    elif st.kind == "add_column" and captured:
        add_column(session, st, captured[0], start, end)
    elif st.kind == "create_table":
        for t in st.tables:
            if t in session.defs:
                session.stop(start, f"re-creating captured table {t[0]}.{t[1]}", st.text)
            elif t[0] in schemas and t not in session.warned:
                session.warned.add(t)
                say(f"capture: table {t[0]}.{t[1]} was created on the source after the plan; it is not captured")
    elif st.kind in ("stop", "drop_schema") and (captured or (not st.tables and schema in schemas)):
        named = ", ".join(f"{s}.{t}" for s, t in captured) or f"database {schema}"
        session.stop(start, f"{st.why or 'a schema change'} ({named})", st.text)
    elif st.kind == "ignore" and captured:
        say(f"capture: {st.text[:120]!r} at {start} changes no rows; it is not applied to the target")
    session.group = None


def add_column(session: CaptureSession, st: Statement, key: tuple[str, str], start: BinlogPos, end: BinlogPos) -> None:
    """ADD COLUMN of a nullable column at the end: the batches before it are closed, the next batch
    carries the change (replay adds the column before that batch's rows), the definition grows."""
    from bulkmig.config.names import decide

    d = session.defs[key]
    assert st.column and st.column_type
    is_json = types.parse_column_type(st.column_type).name == "json"
    mapping = types.map_column(
        st.column_type, table=d.table, column=st.column, is_json=is_json, settings=session.settings
    )
    mysql = session.value_forms == MYSQL_FORMS
    try:
        if mysql:
            default = mysql_default(st.default)
        else:
            default = pg_default(st.default, mapping.rule.source if mapping.rule else None)
    except ValueError:
        session.stop(start, f"a column added to {d.qualname} with a DEFAULT replay cannot reproduce", st.text)
    charset = st.charset
    if charset is None and mapping.logical_type == "text":
        rows = query_rows(
            session.ctl,
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND COLUMN_NAME = %s",
            (d.schema, d.table, st.column),
        )
        charset = rows[0][0] if rows and rows[0][0] else None
    names = decide(
        "mysql",
        d.schema,
        {d.table: [*(c.name for c in d.columns), st.column]},
        [],
        session.task.settings.identifiers,
        session.task.mappings,
    )
    target = names.column(d.table, st.column) if st.column in names.table(d.table).columns else None
    if target is None:
        say(f"capture: column {st.column!r} added to {d.qualname} is removed by the table mappings")
        target = st.column
    # Rows before the change go in batches of their own (one column list per table); until the batch
    # holding the change is durable, a restart reads the statement again (from the group's start).
    session.flush(upto=session.group or start)
    # A MySQL target gets the column as the source has it (its own type, in its character set).
    target_type = mapping.target_type
    if mysql:
        target_type = st.column_type + (f" character set {charset}" if charset and st.charset else "")
    spec = ColumnSpec(st.column, target, st.column_type, target_type, charset, True, is_json, False)
    d.columns.append(spec)
    session.converters[key] = session.converter(d)
    if session.reader is not None:  # the reader reads a table map once per table id: make it read the next one
        for table_id, table in list(session.reader.table_map.items()):
            if (table.schema, table.table) == key:
                del session.reader.table_map[table_id]
    detail = f"column {target!r} added ({st.column_type} → {target_type})"
    change = {
        "schema": d.target_schema,
        "table": d.target_table,
        "kind": "column_added",
        "column": target,
        "type": target_type,
        "default": default,
        "not_null": False,
        "detail": detail + (f" default {default}" if default else ""),
        "statement": st.text[:1000],
        "source_schema": d.schema,
        "source_table": d.table,
        "source_column": st.column,
        "column_type": st.column_type,
        "charset": charset,
        "is_json": is_json,
    }
    session.builder.add_schema_change(change, start, end)
    say(f"capture: {d.qualname}: {detail} at {start}; replay adds it")
