"""Schema conversion PostgreSQL → MySQL/MariaDB, with the same assessment report as → PostgreSQL.

Every object gets a status — converted, converted with changes, needs action — and the reason.  What needs a
person (see ``PG_TYPES``' reasons and the notes below): arrays (no array type: loaded as PostgreSQL's array text
in LONGTEXT), numeric without precision (DECIMAL(65,30) holds at most 35 integer and 30 fraction digits; a value
beyond that is refused at load, never rounded), partial and expression indexes (not created), sequences shared
between tables (AUTO_INCREMENT is per table), identifiers over 64 characters, names equal but for case (MySQL
column names compare case-insensitively), PL/pgSQL code (views, triggers, functions are not translated).

Values MySQL cannot hold are refused up front: :func:`scan_values` counts, per column, dates and timestamps
before 1000-01-01 or after 9999-12-31 and infinities, and NaN in numeric, inside the plan's snapshot; plan
stops on any, naming the column, the count and the first key.  Text keys become VARCHAR(n) for the longest
value found (an index holds at most 3072 bytes: 768 utf8mb4 characters); longer ones need action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bulkmig.convert.report import Item
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Table

MAX_IDENT = 64
MAX_KEY_CHARS = 768  # 3072 index bytes / 4 bytes per utf8mb4 character

# pg base type name -> (MySQL type template, status, reason).  {p},{s} precision/scale, {n} length, {fsp} digits.
PG_TYPES: dict[str, tuple[str, str, str]] = {
    "int2": ("smallint", CONVERTED, "same range"),
    "int4": ("int", CONVERTED, "same range"),
    "int8": ("bigint", CONVERTED, "same range"),
    "float4": ("float", CONVERTED, "same IEEE single"),
    "float8": ("double", CONVERTED, "same IEEE double"),
    "bool": ("tinyint(1)", CHANGED, "MySQL's BOOLEAN is tinyint(1): true/false load as 1/0"),
    "text": ("longtext", CONVERTED, "LONGTEXT holds any text"),
    "varchar": ("varchar({n})", CONVERTED, "same length in characters"),
    "bpchar": ("char({n})", CHANGED, "MySQL strips a CHAR's trailing spaces when read; PostgreSQL keeps the padding"),
    "name": ("varchar(64)", CONVERTED, "identifier text"),
    "bytea": ("longblob", CONVERTED, "same bytes"),
    "uuid": ("char(36)", CHANGED, "no UUID type in MySQL: its 36-character text"),
    "json": ("json", CONVERTED, "JSON text as written"),
    "jsonb": ("json", CHANGED, "jsonb's normalised text; MySQL JSON orders keys its own way"),
    "numeric": ("decimal({p},{s})", CONVERTED, "same digits"),
    "date": ("date", CONVERTED, "same calendar dates (1000-01-01 .. 9999-12-31; others are refused)"),
    "timestamp": ("datetime({fsp})", CONVERTED, "wall-clock time without zone in both"),
    "timestamptz": (
        "datetime({fsp})",
        CHANGED,
        "no time-zone-aware type over the whole range: DATETIME holding UTC (TIMESTAMP stops in 2038)",
    ),
    "time": ("time({fsp})", CONVERTED, "same time of day"),
}
TEXT_FALLBACK = ("longtext", CHANGED, "no MySQL equivalent: loaded as PostgreSQL's text form")

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END,
       CASE WHEN t.typtype = 'd' THEN bt.typcategory ELSE t.typcategory END,
       t.typtype, a.atttypmod, a.attnotnull,
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname),
       pg_get_expr(d.adbin, d.adrelid),
       CASE WHEN t.typtype = 'e' THEN (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                                       FROM pg_enum e WHERE e.enumtypid = t.oid) END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
INDEXES_SQL = """
SELECT ic.relname, i.indisprimary, i.indisunique, i.indpred IS NOT NULL, i.indexprs IS NOT NULL,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %(oid)s ORDER BY i.indisprimary DESC, ic.relname
"""
FKS_SQL = """
SELECT con.conname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o),
       con.confupdtype, con.confdeltype
FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid
WHERE con.conrelid = %(oid)s AND con.contype = 'f' AND con.conparentid = 0 ORDER BY con.conname
"""
_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class PgColumn:
    name: str
    source_type: str
    base: str
    category: str
    typtype: str
    typmod: int
    notnull: bool
    sequence: str | None
    default: str | None
    labels: list[str] | None


@dataclass
class Converted:
    pre: list[Any] = field(default_factory=list)  # ddl.Statement
    post: list[Any] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)


def mysql_type(col: PgColumn, item: Item, key_chars: int | None) -> str:
    """The MySQL type for one column; notes go to ``item``.  ``key_chars``: longest value, for text in a key."""
    if col.category == "A":
        item.note(
            ACTION,
            "arrays have no MySQL type: loaded as PostgreSQL array text ('{1,2}') in LONGTEXT; "
            "change it to JSON or a child table",
        )
        return "longtext"
    if col.typtype == "e" and col.labels is not None:
        item.note(CONVERTED, "the enum type's labels become the column's ENUM, in the same order")
        return "enum(" + ", ".join(_literal(x) for x in col.labels) + ")"
    template, status, reason = PG_TYPES.get(col.base, TEXT_FALLBACK)
    nums = [int(x) for x in re.findall(r"\d+", col.source_type.split("[")[0])]
    fsp = min(nums[0], 6) if nums and col.base in ("timestamp", "timestamptz", "time") else 6
    p, s = (nums + [0, 0])[:2] if col.base == "numeric" else (0, 0)
    if col.base == "numeric" and not nums:
        item.note(
            ACTION,
            "numeric without precision: DECIMAL(65,30) (35 integer, 30 fraction digits); a value "
            "beyond that is refused at load — give the column a precision",
        )
        return "decimal(65,30)"
    if col.base == "numeric" and (p > 65 or s > 30):
        item.note(ACTION, f"numeric({p},{s}) exceeds MySQL's DECIMAL(65,30): give it a precision MySQL holds")
        return "decimal(65,30)"
    if (
        key_chars is not None
        and col.base in ("text", "varchar", "bpchar", "name")
        and template.startswith(("long", "varchar"))
    ):
        n = nums[0] if nums else 0
        width = max(n, 1) if n else max(key_chars, 1)
        if width > MAX_KEY_CHARS:
            item.note(
                ACTION,
                f"text in a key with values up to {key_chars} characters: an index holds at most "
                f"{MAX_KEY_CHARS} utf8mb4 characters (3072 bytes)",
            )
            return "longtext"
        if not n:
            item.note(CHANGED, f"text in a key: VARCHAR({width}), the longest value found (an index needs a length)")
        return f"varchar({width})"
    if template == "varchar({n})" and nums and nums[0] > 16383:
        template = "longtext"
    if template == "char({n})" and nums and nums[0] > 255:
        template = "varchar({n})"
    item.note(status, reason)
    return template.format(n=nums[0] if nums else 1, p=p, s=s, fsp=fsp)


def _nextval(default: str | None) -> str | None:
    """The sequence a ``nextval('…'::regclass)`` default draws from."""
    m = re.search(r"nextval\('([^']+)'(::regclass)?\)", default or "")
    return m.group(1) if m else None


def _name(name: str, item: Item) -> str:
    if len(name) > MAX_IDENT:
        item.note(ACTION, f"the name is {len(name)} characters; MySQL allows {MAX_IDENT}: rename it (a table mapping)")
    return name


def convert_postgres(conn: Any, sources: list[Any], database: str) -> tuple[Converted, list[Table]]:
    """The MySQL schema for the planned PostgreSQL tables (``reflect.SourceTable``s); leaves of a partitioned
    table load into one table named after their root."""
    from bulkmig.engines.mysql.target.ddl import Statement

    out = Converted()
    seq_users: dict[str, list[str]] = {}
    created: dict[str, str] = {}  # target name -> source qualified name
    lowered: dict[str, str] = {}
    for src in sources:
        table = src.table
        target = src.root_name or table.name
        table.target_schema, table.target_name = database, target
        for c in table.columns:
            c.target_name = None
        if target in created:
            continue  # another leaf of the same root
        qual = src.root or table.qualified  # a partitioned table is reported as its root
        created[target] = qual
        item = Item("table", qual, table=qual, target=target)
        if src.root_name:
            item.note(CHANGED, f"partition of {src.root}: every partition loads into one table {target}")
        if target.lower() in lowered:
            item.note(ACTION, f"{target} and {lowered[target.lower()]} differ only in case: rename one")
        lowered[target.lower()] = target
        _name(target, item)
        out.items.append(item)
        cols = [PgColumn(*r) for r in conn.execute(COLUMNS_SQL, {"oid": src.oid}).fetchall()]
        indexes = conn.execute(INDEXES_SQL, {"oid": src.oid}).fetchall()
        key_cols = {c for ix in indexes for c in ix[5]}
        scanned = tuple(src.root.split(".", 1)) if src.root else (table.schema, table.name)
        key_len = _key_lengths(
            conn, scanned, [c for c in cols if c.name in key_cols and c.base in ("text", "varchar", "bpchar")]
        )
        defs, seen = [], {}
        auto = None
        for c in cols:
            citem = Item("column", f"{qual}.{c.name}", table=qual, target=c.name)
            if c.name.lower() in seen:
                citem.note(
                    ACTION,
                    f"columns {c.name} and {seen[c.name.lower()]} differ only in case; MySQL column "
                    "names are case-insensitive: rename one",
                )
            seen[c.name.lower()] = c.name
            typ = mysql_type(c, citem, key_len.get(c.name) if c.name in key_cols else None)
            _name(c.name, citem)
            line = f"  {q(c.name)} {typ}{' NOT NULL' if c.notnull else ''}"
            seq = c.sequence or _nextval(c.default)
            if seq:
                seq_users.setdefault(seq, []).append(f"{qual}.{c.name}")
                if auto is None and c.base in ("int2", "int4", "int8"):
                    auto = c.name
                    line += " AUTO_INCREMENT"
                    citem.note(
                        CHANGED,
                        f"its sequence {seq} becomes the table's AUTO_INCREMENT (past the loaded maximum; "
                        "after cutover set it past the sequence's value if that is higher)",
                    )
                else:
                    citem.note(ACTION, f"default from sequence {seq}: one AUTO_INCREMENT per table; created without")
            citem.details = {"source_type": c.source_type, "target_type": typ}
            out.items.append(citem)
            defs.append(line)
            for mc in table.columns:
                if mc.name == c.name:
                    mc.target_type = typ
        pk = next((ix for ix in indexes if ix[1]), None)
        if pk:
            defs.append(f"  PRIMARY KEY ({', '.join(q(c) for c in pk[5])})")
            out.items.append(
                Item(
                    "primary_key",
                    f"{qual}.{pk[0]}",
                    table=qual,
                    target=target,
                    notes=[],
                    source_sql=pk[6],
                )
            )
        if auto and (pk is None or pk[5][0] != auto):
            defs.append(f"  KEY ({q(auto)})")  # InnoDB: an AUTO_INCREMENT column leads some key
        body = ",\n".join(defs)
        out.pre.append(
            Statement(
                "table",
                target,
                f"CREATE TABLE {q(target)} (\n{body}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            )
        )
        adds = []
        for name, primary, unique, partial, expr, columns, sql in indexes:
            if primary:
                continue
            iitem = Item(
                "unique_key" if unique else "index",
                f"{qual}.{name}",
                table=qual,
                target=target,
                source_sql=sql,
            )
            out.items.append(iitem)
            if partial or expr:
                iitem.note(
                    ACTION,
                    f"{'partial' if partial else 'expression'} index: MySQL has none; not created "
                    "(a generated column with an index can stand in)",
                )
                continue
            if any(len(k) > MAX_IDENT for k in [name]):
                iitem.note(ACTION, "index name over 64 characters: not created")
                continue
            adds.append(f"ADD {'UNIQUE ' if unique else ''}KEY {q(name)} ({', '.join(q(c) for c in columns)})")
        if adds:
            out.post.append(Statement("index", target, f"ALTER TABLE {q(target)} " + ", ".join(adds)))
        for name, ref, cols_, refcols, upd, dele in conn.execute(FKS_SQL, {"oid": src.oid}).fetchall():
            fitem = Item("foreign_key", f"{qual}.{name}", table=qual, target=target)
            out.items.append(fitem)
            if len(name) > MAX_IDENT:
                fitem.note(ACTION, "constraint name over 64 characters: not created")
                continue
            out.post.append(
                Statement(
                    "foreign_key",
                    target,
                    (
                        f"ALTER TABLE {q(target)} ADD CONSTRAINT {q(name)} "
                        f"FOREIGN KEY ({', '.join(q(c) for c in cols_)}) "
                        f"REFERENCES {q(ref)} ({', '.join(q(c) for c in refcols)}) ON DELETE {_FK_ACTIONS[dele]} "
                        f"ON UPDATE {_FK_ACTIONS[upd]}"
                    ),
                )
            )
    for seq, users in seq_users.items():
        if len(users) > 1:
            for it in out.items:
                if it.kind == "column" and it.name in users:
                    it.note(
                        ACTION,
                        f"sequence {seq} is shared by {', '.join(users)}: AUTO_INCREMENT is per table, "
                        "so ids may collide after cutover; give each table its own range",
                    )
    for item in out.items:
        if not item.notes:
            item.note(CONVERTED, "created as it is")
    return out, [s.table for s in sources]


def _key_lengths(conn: Any, table: tuple[str, str], cols: list[PgColumn]) -> dict[str, int]:
    """The longest value of each text key column (of a partitioned table's root: all its partitions)."""
    if not cols:
        return {}
    from bulkmig.engines.postgres.sql import ident, qualified

    exprs = ", ".join(f"coalesce(max(char_length({ident(c.name)})), 0)" for c in cols)
    row = conn.execute(f"SELECT {exprs} FROM {qualified(*table)}").fetchone()
    return {c.name: int(v) for c, v in zip(cols, row, strict=True)}


def scan_values(conn: Any, tables: list[Table]) -> list[str]:
    """Per column, values no MySQL column can hold (see the module doc): one line each, with the first key."""
    from bulkmig.engines.postgres.sql import ident, qualified

    problems = []
    for t in tables:
        for c in t.columns:
            base = c.source_type.split("(")[0]
            col = ident(c.name)
            if c.logical_type in ("date", "timestamp", "timestamptz"):
                cast = (
                    "::date"
                    if c.logical_type == "date"
                    else "::timestamp"
                    if c.logical_type == "timestamp"
                    else (" AT TIME ZONE 'UTC'")
                )
                cond = f"NOT isfinite({col}) OR ({col}){cast} < '1000-01-01' OR ({col}){cast} >= '10000-01-01'"
                why = "dates outside 1000-01-01 .. 9999-12-31 or infinite"
            elif c.logical_type == "decimal" or base == "numeric":
                cond = f"{col} = 'NaN'::numeric OR {col} IN ('Infinity'::numeric, '-Infinity'::numeric)"
                why = "NaN or infinite numerics"
            elif c.logical_type == "float":
                cond = f"{col} = 'NaN' OR {col} IN ('Infinity', '-Infinity')"
                why = "NaN or infinite floats"
            else:
                continue
            key = ", ".join(ident(k) for k in t.primary_key) or "ctid"
            row = conn.execute(
                f"SELECT count(*), min(({key})::text) FROM {qualified(t.schema, t.name)} WHERE {cond}"
            ).fetchone()
            if row[0]:
                problems.append(
                    f"{t.qualified}.{c.name}: {row[0]} {why} (MySQL cannot hold them), first at key {row[1]}"
                )
    return problems


def refuse_unholdable(problems: list[str]) -> None:
    if problems:
        raise ConfigError(
            f"{len(problems)} column(s) hold values MySQL cannot hold: " + "; ".join(problems[:5]),
            "fix or exclude those rows at the source (a table mapping filter); bulkmig never rewrites them silently",
        )


# The PostgreSQL type conversion chose for a foreign column (SQLite today) → its MySQL type, by base name.
_FROM_PG_TARGET = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "double precision": "float8",
    "real": "float4",
    "boolean": "bool",
    "text": "text",
    "character varying": "varchar",
    "varchar": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "numeric": "numeric",
    "bytea": "bytea",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time",
    "json": "json",
    "jsonb": "jsonb",
    "uuid": "uuid",
}


def convert_catalog(catalog: Any, tables: list[Table], database: str) -> Converted:
    """A foreign catalog (SQLite) for a MySQL target: each column from the type conversion chose for it
    (``Column.target_type``, a PostgreSQL type), keys, indexes and foreign keys from the catalog.  Names stay as
    the source has them; tables and columns keep their source names on the target."""
    from bulkmig.engines.mysql.target.ddl import Statement

    out = Converted()
    for table in tables:
        ct = catalog.table(table.name)
        table.target_schema, table.target_name = database, None
        item = Item("table", table.name, table=table.name, target=table.name)
        _name(table.name, item)
        out.items.append(item)
        defs, seen = [], {}
        for c in table.columns:
            c.target_name = None
            pg = (c.target_type or "text").lower()
            base = re.sub(r"\(.*\)|\[\]| without time zone", "", pg).strip()
            base = "timestamptz" if "with time zone" in pg else base
            nums = re.findall(r"\d+", pg)
            col = PgColumn(
                c.name,
                pg,
                _FROM_PG_TARGET.get(base, "unknown"),
                "A" if pg.endswith("[]") else "",
                "b",
                -1,
                not c.nullable,
                None,
                None,
                None,
            )
            citem = Item("column", f"{table.name}.{c.name}", table=table.name, target=c.name)
            if c.name.lower() in seen:
                citem.note(ACTION, f"columns {c.name} and {seen[c.name.lower()]} differ only in case: rename one")
            seen[c.name.lower()] = c.name
            in_key = any(c.name in ix.columns for ix in ct.indexes)
            typ = mysql_type(col, citem, int(nums[0]) if in_key and nums else (255 if in_key else None))
            c.target_type = typ
            citem.details = {"source_type": c.source_type, "target_type": typ}
            out.items.append(citem)
            defs.append(f"  {q(c.name)} {typ}{'' if c.nullable else ' NOT NULL'}")
        pk = next((ix for ix in ct.indexes if ix.primary), None)
        if pk:
            defs.append(f"  PRIMARY KEY ({', '.join(q(x) for x in pk.columns)})")
            out.items.append(Item("primary_key", f"{table.name}.{pk.name}", table=table.name, target=table.name))
        out.pre.append(
            Statement(
                "table",
                table.name,
                f"CREATE TABLE {q(table.name)} (\n"
                + ",\n".join(defs)
                + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            )
        )
        adds = []
        for ix in ct.indexes:
            if ix.primary:
                continue
            iitem = Item(
                "unique_key" if ix.unique else "index", f"{table.name}.{ix.name}", table=table.name, target=table.name
            )
            out.items.append(iitem)
            if ix.where or any(ix.expressions):
                iitem.note(ACTION, "partial or expression index: MySQL has none; not created")
                continue
            if any(x for x in ix.collations if x and x.upper() != "BINARY"):
                iitem.note(CHANGED, "the index's NOCASE/RTRIM collation is not kept: MySQL compares byte-wise here")
            adds.append(f"ADD {'UNIQUE ' if ix.unique else ''}KEY {q(ix.name)} ({', '.join(q(x) for x in ix.columns)})")
        if adds:
            out.post.append(Statement("index", table.name, f"ALTER TABLE {q(table.name)} " + ", ".join(adds)))
        for fk in ct.foreign_keys:
            out.items.append(Item("foreign_key", f"{table.name}.{fk.name}", table=table.name, target=table.name))
            out.post.append(
                Statement(
                    "foreign_key",
                    table.name,
                    (
                        f"ALTER TABLE {q(table.name)} ADD CONSTRAINT {q(fk.name)} FOREIGN KEY "
                        f"({', '.join(q(x) for x in fk.columns)}) REFERENCES {q(fk.ref_table)} "
                        f"({', '.join(q(x) for x in fk.ref_columns)}) ON DELETE {fk.on_delete} ON UPDATE {fk.on_update}"
                    ),
                )
            )
    for obj in [*catalog.views, *catalog.triggers]:
        oitem = Item(obj.kind, obj.name, table=obj.table, source_sql=obj.create_sql)
        oitem.note(ACTION, f"{obj.kind}s are not translated to MySQL: recreate it by hand")
        out.items.append(oitem)
    for item in out.items:
        if not item.notes:
            item.note(CONVERTED, "created as it is")
    return out
