"""The schema of a MySQL/MariaDB target: read from a MySQL source as it is (homogeneous), written as two
statement files (pre-data, post-data), and applied step by step, resumably.

MySQL → MySQL keeps the schema as the source has it: each table's ``SHOW CREATE TABLE`` (columns, primary key,
checks, character sets and collations, engine, ``AUTO_INCREMENT`` value, partitioning), the database's default
character set and collation, and — after the data — its secondary indexes and foreign keys (one ``ALTER TABLE``
per table, which InnoDB builds in one sorted pass: faster than maintaining them row by row), then views,
triggers and routines, each under the ``sql_mode`` it was created with.  That is what ``mysqldump --no-data``
gives, split in two; the one change is that ``DEFINER`` clauses are dropped (the loading user becomes the
definer — creating objects for another account needs SUPER/SET USER), reported per object.

The files use the mysql client's own ``DELIMITER ;;`` convention, so an operator can also run them by hand.
DDL is not transactional in MySQL, so :func:`apply` records every finished statement in ``bulkmig.schema_steps``
and a rerun continues after the last one; a statement that finished without its record is recognised by its
"already exists" error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bulkmig.convert.report import Item
from bulkmig.core.catalog import CHANGED, CONVERTED, Catalog
from bulkmig.core.errors import TargetError

DELIMITER = ";;"
_HEADER = f"DELIMITER {DELIMITER}\n"
_SECONDARY = re.compile(r"^\s*(UNIQUE |FULLTEXT |SPATIAL )?(KEY|INDEX) ")
_FOREIGN = re.compile(r"^\s*CONSTRAINT .* FOREIGN KEY ")
_DEFINER = re.compile(r"DEFINER=(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)\s+")
# Errors that mean "this statement already ran" (table, key name, FK, trigger, routine, view exists).
ALREADY_DONE = {1050, 1061, 1826, 1359, 1304, 1022, 1068}
NO_SUCH_TABLE = 1146  # a view over a view not created yet: retried after the others


@dataclass
class Statement:
    kind: str  # database | table | index | foreign_key | view | trigger | procedure | function
    name: str
    sql: str
    # The session it was created under (views, triggers, routines keep it): "SET SESSION sql_mode = …, …".
    session: str | None = None


def session_sql(sql_mode: str | None, charset: str, collation: str) -> str:
    """The SET that recreates a code object's creation session (mysqldump sets the same three)."""
    mode = f"sql_mode = '{sql_mode}', " if sql_mode is not None else ""
    return f"SET SESSION {mode}character_set_client = {charset}, collation_connection = {collation}"


def render(statements: list[Statement], title: str) -> str:
    """Statements as a mysql-client script (``DELIMITER ;;``), each under its ``sql_mode`` when it has one."""
    out = [f"-- bulkmig: {title}", _HEADER]
    for st in statements:
        out.append(f"-- {st.kind} {st.name}")
        if st.session is not None:
            out.append(f"{st.session}\n{DELIMITER}")
        out.append(f"{st.sql}\n{DELIMITER}")
    return "\n".join(out) + "\n"


def parse(text: str) -> list[Statement]:
    """The statements of a file :func:`render` wrote (a ``SET SESSION`` folded into the next statement)."""
    body = text.split(_HEADER, 1)[1] if _HEADER in text else text
    found: list[Statement] = []
    mode: str | None = None
    kind, name = "statement", ""
    for chunk in body.split(f"\n{DELIMITER}\n"):
        lines = chunk.strip("\n").split("\n")
        while lines and lines[0].startswith("-- "):
            head = lines.pop(0)[3:].split(" ", 1)
            kind, name = head[0], head[1] if len(head) > 1 else ""
        sql = "\n".join(lines).strip()
        if not sql:
            continue
        if sql.startswith("SET SESSION "):
            mode = sql
            continue
        found.append(Statement(kind, name, sql, mode))
        mode = None
    return found


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class SplitTable:
    create: str  # CREATE TABLE with columns, primary key, checks (and the auto-increment column's key)
    indexes: list[str]  # "KEY `i` (`c`)" clauses, added after the data
    foreign_keys: list[str]  # "CONSTRAINT `f` FOREIGN KEY …" clauses


def split_create_table(create_sql: str) -> SplitTable:
    """``SHOW CREATE TABLE`` output without its secondary indexes and foreign keys (returned apart).

    The key an ``AUTO_INCREMENT`` column needs (InnoDB wants it indexed) stays when it is not the primary key."""
    lines = create_sql.split("\n")
    close = next(i for i in range(len(lines) - 1, 0, -1) if lines[i].startswith(")"))
    body = [ln.rstrip(",") for ln in lines[1:close]]
    auto = [ln.split("`")[1] for ln in body if ln.startswith("  `") and " AUTO_INCREMENT" in ln]
    keep, indexes, fks = [], [], []
    for ln in body:
        if _FOREIGN.match(ln):
            fks.append(ln.strip())
        elif _SECONDARY.match(ln):
            first = re.search(r"\(`((?:[^`]|``)*)`", ln)
            if auto and first and first.group(1) == auto[0] and not any(k.startswith("  PRIMARY KEY") for k in body):
                keep.append(ln)
                auto = []
            else:
                indexes.append(ln.strip())
        else:
            keep.append(ln)
    create = "\n".join([lines[0], ",\n".join(keep), *lines[close:]])
    return SplitTable(create, indexes, fks)


def index_statements(table: str, split: SplitTable) -> list[Statement]:
    """One ALTER for the B-tree keys (one sorted build each, one table pass); FULLTEXT one at a time (InnoDB)."""
    plain = [c for c in split.indexes if not c.startswith("FULLTEXT")]
    out = []
    if plain:
        out.append(
            Statement("index", table, f"ALTER TABLE {quote_ident(table)} " + ", ".join(f"ADD {c}" for c in plain))
        )
    for c in split.indexes:
        if c.startswith("FULLTEXT"):
            out.append(Statement("index", table, f"ALTER TABLE {quote_ident(table)} ADD {c}"))
    return out


def _row(conn: Any, sql: str) -> tuple[Any, ...]:
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return row


def _no_definer(sql: str, item: Item) -> str:
    stripped = _DEFINER.sub("", sql, count=1)
    if stripped != sql:
        item.note(CHANGED, "DEFINER dropped: the loading user becomes the definer (set it after load if it matters)")
    return stripped


@dataclass
class HomogeneousSchema:
    pre: list[Statement]
    post: list[Statement]
    items: list[Item]


def read_homogeneous(conn: Any, catalog: Catalog, tables: list[str]) -> HomogeneousSchema:
    """The source's own DDL for ``tables`` (and the catalog's views, their triggers, every routine).

    ``conn`` is connected to the source database, so ``SHOW CREATE`` leaves names unqualified and the schema
    lands in whatever database the target names."""
    pre: list[Statement] = []
    post_idx: list[Statement] = []
    post_fk: list[Statement] = []
    post_code: list[Statement] = []
    post_auto: list[Statement] = []
    items: list[Item] = []
    charset, collation = _row(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
        "WHERE SCHEMA_NAME = DATABASE()",
    )
    pre.append(Statement("database", "", f"ALTER DATABASE CHARACTER SET {charset} COLLATE {collation}"))
    items.append(Item("schema", catalog.schema, notes=[], details={"charset": charset, "collation": collation}))
    for name in tables:
        create = _row(conn, f"SHOW CREATE TABLE {quote_ident(name)}")[1]
        split = split_create_table(create)
        pre.append(Statement("table", name, split.create))
        post_idx.extend(index_statements(name, split))
        if m := re.search(r"\) .*\bAUTO_INCREMENT=(\d+)", create):
            # LOAD DATA may move the counter past the source's even with explicit values: set it back after.
            sql = f"ALTER TABLE {quote_ident(name)} AUTO_INCREMENT = {m.group(1)}"
            post_auto.append(Statement("auto_increment", name, sql))
        if split.foreign_keys:
            sql = f"ALTER TABLE {quote_ident(name)} " + ", ".join(f"ADD {c}" for c in split.foreign_keys)
            post_fk.append(Statement("foreign_key", name, sql))
        items.append(Item("table", name, table=name, target=name, source_sql=create))
        for clause in split.indexes:
            items.append(Item("index", f"{name}.{clause.split('`')[1]}", table=name, target=name, source_sql=clause))
        for clause in split.foreign_keys:
            items.append(Item("foreign_key", f"{name}.{clause.split('`')[1]}", table=name, target=name))
    chosen = set(tables)
    for view in catalog.views:
        item = Item("view", view.name, target=view.name)
        row = _row(conn, f"SHOW CREATE VIEW {quote_ident(view.name)}")
        post_code.append(Statement("view", view.name, _no_definer(row[1], item), session_sql(None, row[2], row[3])))
        item.source_sql = row[1]
        items.append(item)
    for trig in catalog.triggers:
        if trig.table not in chosen:
            continue
        item = Item("trigger", trig.name, table=trig.table, target=trig.name)
        row = _row(conn, f"SHOW CREATE TRIGGER {quote_ident(trig.name)}")
        session = session_sql(row[1], row[3], row[4])
        post_code.append(Statement("trigger", trig.name, _no_definer(row[2], item), session))
        item.source_sql = row[2]
        items.append(item)
    for routine in catalog.routines:
        kind = "FUNCTION" if routine.kind == "function" else "PROCEDURE"
        item = Item(routine.kind, routine.name, target=routine.name)
        row = _row(conn, f"SHOW CREATE {kind} {quote_ident(routine.name)}")
        session = session_sql(row[1], row[3], row[4])
        post_code.append(Statement(routine.kind, routine.name, _no_definer(row[2], item), session))
        item.source_sql = row[2]
        items.append(item)
    for item in items:
        if not item.notes:
            item.note(CONVERTED, "created as the source has it")
    return HomogeneousSchema(pre, post_idx + post_fk + post_auto + post_code, items)


# ----------------------------------------------------------------------------------------------- apply

STEPS_DDL = (
    "CREATE TABLE IF NOT EXISTS bulkmig.schema_steps (volume_id varchar(64) NOT NULL, section varchar(16) NOT NULL,"
    " step int NOT NULL, statement text NOT NULL, applied_at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " PRIMARY KEY (volume_id, section, step)) ENGINE=InnoDB"
)


def apply(conn: Any, statements: list[Statement], volume_id: str, section: str, error_code: Any) -> int:
    """Run ``statements`` on ``conn`` (autocommit, in the target database), skipping those this volume already
    ran; views whose view is not there yet are retried after the rest.  Returns how many ran now."""
    cur = conn.cursor()
    cur.execute(STEPS_DDL)
    cur.execute("SELECT step FROM bulkmig.schema_steps WHERE volume_id = %s AND section = %s", (volume_id, section))
    done = {r[0] for r in cur.fetchall()}
    cur.execute("SELECT @@SESSION.sql_mode, @@character_set_client, @@collation_connection")
    restore = cur.fetchone()
    todo = [(n, st) for n, st in enumerate(statements) if n not in done]
    ran = 0
    while todo:
        deferred = []
        for n, st in todo:
            try:
                if st.session is not None:
                    cur.execute(st.session)
                try:
                    cur.execute(st.sql)
                finally:
                    if st.session is not None:
                        cur.execute(
                            "SET SESSION sql_mode = %s, character_set_client = %s, collation_connection = %s", restore
                        )
            except Exception as exc:  # the driver's error: decide by its number
                code = error_code(exc)
                if code == NO_SUCH_TABLE and st.kind == "view":
                    deferred.append((n, st, exc))
                    continue
                # Only pre-data proves an empty database; later sections may find what a crash left unrecorded.
                if code not in ALREADY_DONE or not (done or section != "pre-data"):
                    raise TargetError(
                        f"{section} {st.kind} {st.name or ''} failed on the target: {exc}".replace("  ", " "),
                        "fix the cause (privileges, an existing object of that name) and rerun `bulkmig load`",
                    ) from None
            cur.execute(
                "INSERT INTO bulkmig.schema_steps (volume_id, section, step, statement) VALUES (%s, %s, %s, %s)",
                (volume_id, section, n, st.sql[:60000]),
            )
            conn.commit()
            ran += 1
        if len(deferred) == len(todo):
            n, st, exc = deferred[0]
            raise TargetError(f"{section} view {st.name} failed on the target: {exc}", "create what it reads first")
        todo = [(n, st) for n, st, _ in deferred]
    cur.close()
    return ran
