"""SQL written in the source's dialect, rewritten for PostgreSQL: defaults, checks, generated columns, views.

Why sqlglot and not string edits: a check or a view is a tree (nested calls, quoted names that look like
keywords, string literals that contain column names); only a parser renames the right identifiers.
sqlglot (read "mysql" or "sqlite", write "postgres") also knows which functions have another name or
form in PostgreSQL (``curdate()`` → ``CURRENT_DATE``, ``concat`` → ``||``, ``group_concat`` →
``string_agg``).

The rule for everything here: a translation is either trusted or reported, never guessed at.  A function
sqlglot does not know comes through under its MySQL name (an ``Anonymous`` node), which PostgreSQL would
refuse at apply time and take the whole section down with it, so its presence makes the object "needs
action", with the original SQL in the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bulkmig.engines.postgres.schema import BULKMIG_SCHEMA
from bulkmig.engines.postgres.sql import literal, qualified
from bulkmig.engines.postgres.target.skipped import SKIPPED_TABLE

# Defaults that mean "now": MySQL/MariaDB spellings, with or without fractional digits, and SQLite's.
_NOW = re.compile(
    r"^\(?\s*(?:current_timestamp|now|localtimestamp|localtime|sysdate)\s*(?:\(\s*\d*\s*\))?\s*\)?$", re.I
)
_TODAY = re.compile(r"^\(?\s*(?:current_date|curdate)\s*(?:\(\s*\))?\s*\)?$", re.I)
_CLOCK = re.compile(r"^\(?\s*(?:current_time|curtime)\s*(?:\(\s*\d*\s*\))?\s*\)?$", re.I)
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_STRING = re.compile(r"^(?:_[A-Za-z0-9]+)?'((?:[^'\\]|''|\\.)*)'$", re.S)
_BITS = re.compile(r"^[bB]'([01]*)'$")
_HEX = re.compile(r"^(?:0x([0-9A-Fa-f]+)|[xX]'([0-9A-Fa-f]*)')$")
_ZERO_DATE = re.compile(r"^0000-00-00|^\d{4}-00-|^\d{4}-\d{2}-00")
_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


@dataclass
class Translated:
    """The PostgreSQL text of an expression, or why there is none."""

    sql: str | None
    changes: list[str] = field(default_factory=list)  # what differs from the source, for the report
    problem: str | None = None  # set when ``sql`` is None: why it needs action
    references: set[str] = field(default_factory=set)  # source tables/views a view reads


def unquote_string(text: str, dialect: str) -> str | None:
    """The value of a string literal as the source printed it, or None if ``text`` is not one.

    MySQL strings take backslash escapes as well as doubled quotes (``\\%`` and ``\\_`` keep their
    backslash, as in MySQL); SQLite strings only doubled quotes.
    """
    m = _STRING.match(text.strip())
    if not m:
        return None
    body = m.group(1)
    if dialect != "mysql":
        return body.replace("''", "'")

    def one(mm: re.Match[str]) -> str:
        tok = mm.group(0)
        if tok == "''":
            return "'"
        ch = tok[1]
        if ch in "%_":
            return tok
        return _MYSQL_ESCAPES.get(ch, ch)

    return re.sub(r"''|\\.", one, body, flags=re.S)


def _bool_value(text: str) -> str | None:
    try:
        number = float(text)
    except ValueError:
        return None
    if number == 0:
        return "false"
    if number == 1:
        return "true"
    return None


def default_sql(
    raw: str | None,
    *,
    logical: str,
    target_type: str,
    dialect: str,
    columns: Callable[[str], str | None] | None = None,
) -> Translated:
    """A column's DEFAULT for PostgreSQL.  ``raw`` is the default as the catalog prints it (an SQL
    expression: ``'abc'``, ``4.99``, ``current_timestamp()``, ``b'101'``); ``logical`` and ``target_type``
    are the column's mapping (they decide how a literal is written).  ``Translated.sql`` None with no
    problem means "no default"."""
    if raw is None:
        return Translated(None)
    text = raw.strip()
    if text.upper() == "NULL":
        return Translated(None)
    if logical in ("timestamp", "timestamptz", "date", "time") or target_type.startswith(("timestamp", "date", "time")):
        if _NOW.match(text):
            if logical == "date":
                return Translated("CURRENT_DATE", ["the current date at insert"])
            if logical == "time":
                return Translated("LOCALTIME", ["the current time at insert"])
            changes = [] if text.lower().startswith("current_timestamp") else [f"{text} becomes CURRENT_TIMESTAMP"]
            return Translated("CURRENT_TIMESTAMP", changes)
        if _TODAY.match(text):
            return Translated("CURRENT_DATE")
        if _CLOCK.match(text):
            return Translated("LOCALTIME")
    value = unquote_string(text, dialect)
    if value is not None:
        return _literal_default(value, False, logical, target_type)
    if _NUMBER.match(text):
        return _literal_default(text, True, logical, target_type)
    if (m := _BITS.match(text)) and logical in ("bits", "integer", "bool", "binary"):
        bits = m.group(1) or "0"
        return (
            _literal_default(str(int(bits, 2)), True, logical, target_type)
            if logical != "bits"
            else _bits(bits, target_type)
        )
    if (m := _HEX.match(text)) and logical == "binary":
        return Translated(f"'\\x{(m.group(1) or m.group(2) or '').lower()}'::bytea")
    # An expression default (MySQL 8.0.13+, MariaDB 10.2+, SQLite "(expr)").
    return translate_expression(text, dialect, columns or (lambda c: None), what="default")


def _literal_default(value: str, is_number: bool, logical: str, target_type: str) -> Translated:
    if logical == "bool":
        b = _bool_value(value)
        if b is None:
            return Translated(None, problem=f"default {value!r} is neither 0 nor 1 on a boolean column")
        return Translated(b, [f"{value} becomes {b}"])
    if logical in ("integer", "decimal", "float"):
        if is_number or _NUMBER.match(value.strip()):
            return Translated(value.strip())
        return Translated(None, problem=f"default {value!r} is not a number")
    if logical == "bits":
        if is_number:
            return _bits(bin(int(float(value)))[2:], target_type)
        return Translated(None, problem=f"default {value!r} is not a bit string")
    if logical in ("date", "timestamp", "timestamptz"):
        if _ZERO_DATE.match(value):
            return Translated(None, [f"zero-date default {value!r} dropped: PostgreSQL has no such date"])
        return Translated(literal(value))
    if logical == "binary":
        return Translated("'\\x" + value.encode("utf-8").hex() + "'::bytea")
    if logical == "array":
        members = [m for m in value.split(",")] if value != "" else []
        if not members:
            return Translated("'{}'::text[]")
        return Translated("ARRAY[" + ", ".join(literal(m) for m in members) + "]::text[]")
    if logical == "json":
        return Translated(literal(value) + "::jsonb")
    if logical == "geometry":
        return Translated(None, problem="a default on a geometry column is not converted")
    return Translated(literal(value))


def _bits(bits: str, target_type: str) -> Translated:
    """``B'...'`` left-padded to the column's width (casting B'101' to bit(5) would pad on the right)."""
    m = re.search(r"\((\d+)\)", target_type)
    width = int(m.group(1)) if m else len(bits)
    if len(bits) > width:
        return Translated(None, problem=f"default b'{bits}' is wider than {target_type}")
    return Translated(f"B'{bits.rjust(width, '0')}'")


# ----------------------------------------------------------------------------------------- expressions

# Node types a generated column may use: PostgreSQL wants IMMUTABLE expressions there, and these are.
_IMMUTABLE_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Neg,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.Case,
    exp.If,
    exp.Coalesce,
    exp.Abs,
    exp.Round,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Substring,
    exp.Trim,
    exp.Floor,
    exp.Ceil,
    exp.DataType,
    exp.Cast,
    exp.Tuple,
    exp.In,
    exp.Between,
)


def _parse(text: str, dialect: str) -> exp.Expression | None:
    try:
        return sqlglot.parse_one(text, read=dialect)
    except SqlglotError:
        return None


# Functions sqlglot passes through untranslated that PostgreSQL has with the same name and meaning.
SAME_IN_POSTGRES = frozenset({"now", "octet_length", "bit_length", "md5", "ascii", "repeat", "reverse", "lpad", "rpad"})


def unknown_functions(tree: exp.Expression) -> list[str]:
    """Functions sqlglot did not recognise: they would reach PostgreSQL under their source name."""
    names = {str(node.name) for node in tree.find_all(exp.Anonymous)}
    return sorted(n for n in names if n.lower() not in SAME_IN_POSTGRES)


def translate_expression(
    text: str,
    dialect: str,
    columns: Callable[[str], str | None],
    *,
    what: str,
    immutable: bool = False,
    booleans: Collection[str] = (),
) -> Translated:
    """A scalar expression (check clause, default, generated column, index expression or predicate) for
    PostgreSQL, with its column references renamed by ``columns`` (source column → target column, None:
    not on the target).  ``booleans`` names the target columns that are boolean on the target: there,
    MySQL's and SQLite's ``flag = 1`` / ``flag IN (0, 1)`` become ``= TRUE`` / ``IN (FALSE, TRUE)``,
    which PostgreSQL accepts (it has no boolean = integer operator)."""
    tree = _parse(text, dialect)
    if tree is None:
        return Translated(None, problem=f"the {what} {text!r} does not parse as {dialect} SQL")
    missing = []
    for col in list(tree.find_all(exp.Column)):
        target = columns(col.name)
        if target is None:
            missing.append(col.name)
            continue
        col.replace(exp.column(target, quoted=True))
    if missing:
        return Translated(None, problem=f"the {what} uses columns that do not move: {', '.join(sorted(missing))}")
    if booleans:
        tree = _boolean_comparisons(tree, set(booleans))
    unknown = unknown_functions(tree)
    if unknown:
        return Translated(
            None, problem=f"the {what} calls {', '.join(unknown)}, which has no known PostgreSQL equivalent"
        )
    if immutable:
        odd = sorted({_node_name(n) for n in tree.walk() if not isinstance(n, _IMMUTABLE_NODES)})
        if odd:
            return Translated(
                None,
                problem=f"the {what} uses {', '.join(odd)}, which PostgreSQL may not accept as IMMUTABLE",
            )
    out = tree.sql(dialect="postgres", identify=True)
    changes = [] if _normalise(out) == _normalise(text) else [f"translated: {text} → {out}"]
    return Translated(out, changes)


def _boolean_comparisons(tree: exp.Expression, booleans: set[str]) -> exp.Expression:
    """``flag = 1``, ``0 <> flag``, ``flag IN (0, 1)`` with ``flag`` a boolean target column: the 0/1
    literals become FALSE/TRUE.  Other numbers are left alone (PostgreSQL refuses them; MySQL and SQLite
    compare them as integers, which no boolean holds)."""

    def is_bool_column(node: exp.Expression | None) -> bool:
        return isinstance(node, exp.Column) and str(node.name) in booleans

    def as_bool(node: exp.Expression | None) -> exp.Expression | None:
        if isinstance(node, exp.Literal) and not node.is_string and node.this in ("0", "1"):
            return exp.Boolean(this=node.this == "1")
        return None

    for node in list(tree.find_all(exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ)):
        for column_side, literal_side in (("this", "expression"), ("expression", "this")):
            value = as_bool(node.args.get(literal_side))
            if is_bool_column(node.args.get(column_side)) and value is not None:
                node.set(literal_side, value)
    for node in list(tree.find_all(exp.In)):
        if is_bool_column(node.this):
            values = [as_bool(e) for e in node.expressions]
            if values and all(v is not None for v in values):
                node.set("expressions", values)
    return tree


def _node_name(node: exp.Expression) -> str:
    """How the report names a construct: ``now()`` for a function, the node's class otherwise."""
    if isinstance(node, exp.Anonymous):
        return f"{node.name}()"
    if isinstance(node, exp.Func):
        return f"{node.sql_name()}()"
    return type(node).__name__


def _normalise(sql: str) -> str:
    return re.sub(r"[\s`\"()]", "", sql).lower()


# ------------------------------------------------------------------------------------------------ views


@dataclass
class ViewContext:
    """What a view's SQL may refer to, and the names those things get on the target."""

    dialect: str
    source_schema: str
    target_schema: str
    tables: dict[str, tuple[str, dict[str, str]]]  # source table -> (target name, source column -> target column)
    views: dict[str, str]  # source view -> target view (only views that convert)
    fold: Callable[[str], str]  # aliases and output names: folded like every other identifier
    primary_keys: dict[str, list[str]] = field(default_factory=dict)  # source table -> its key's columns


def translate_view(select_sql: str, ctx: ViewContext) -> Translated:
    """A view's SELECT for PostgreSQL, or the reason it needs action.

    Table and view names become their target (schema-qualified) names, column references their target
    column names (found through the table or alias qualifying them, or, unqualified, through the tables
    the query reads), aliases are folded like other identifiers.  Refuses when the query reads anything
    that is not converted, or calls functions sqlglot cannot translate.
    """
    tree = _parse(select_sql, ctx.dialect)
    if tree is None:
        return Translated(None, problem=f"the view's SQL does not parse as {ctx.dialect} SQL")
    ctes = {str(c.alias) for c in tree.find_all(exp.CTE)}
    aliases: dict[str, set[str]] = {}
    read: set[str] = set()
    missing: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        name, db = str(table.name), str(table.db or "")
        if not db and name in ctes:
            table.set("this", exp.to_identifier(ctx.fold(name), quoted=True))
            continue
        if db and db != ctx.source_schema:
            missing.append(f"{db}.{name}")
            continue
        name = _find(name, ctx.tables) or _find(name, ctx.views) or name
        if name in ctx.tables:
            target = ctx.tables[name][0]
        elif name in ctx.views:
            target = ctx.views[name]
        else:
            missing.append(name)
            continue
        read.add(name)
        alias = str(table.alias) if table.alias else str(table.name)
        aliases.setdefault(alias.casefold(), set()).add(name)
        # Edit the node in place: a parenthesised join hangs its joins on the first table's node.
        table.set("this", exp.to_identifier(target, quoted=True))
        table.set("db", exp.to_identifier(ctx.target_schema, quoted=True))
        table.set("catalog", None)
    if missing:
        return Translated(
            None, problem=f"the view reads objects that are not converted: {', '.join(sorted(set(missing)))}"
        )
    refused = _refused_by_postgres(tree, aliases, ctx)
    if refused:
        return Translated(None, problem=refused)

    def column_target(source_table: str, column: str) -> str | None:
        if source_table in ctx.tables:
            columns = ctx.tables[source_table][1]
            found = _find(column, columns)
            return columns[found] if found is not None else None
        return ctx.fold(column) if source_table in ctx.views else None

    for col in list(tree.find_all(exp.Column)):
        qualifier, name = str(col.table or ""), str(col.name)
        if isinstance(col.this, exp.Star):
            if qualifier:
                col.set("table", exp.to_identifier(_qualifier(qualifier, aliases, ctx), quoted=True))
            col.set("db", None)
            continue
        if qualifier:
            sources = aliases.get(qualifier.casefold(), set())
            targets = {column_target(s, name) for s in sources} - {None}
            new_name = targets.pop() if len(targets) == 1 else ctx.fold(name)
            col.set("table", exp.to_identifier(_qualifier(qualifier, aliases, ctx), quoted=True))
        else:
            targets = {column_target(s, name) for s in read} - {None}
            new_name = targets.pop() if len(targets) == 1 else ctx.fold(name)
        col.set("this", exp.to_identifier(new_name, quoted=True))
        col.set("db", None)
        col.set("catalog", None)
    for alias in list(tree.find_all(exp.Alias)):
        alias.set("alias", exp.to_identifier(ctx.fold(str(alias.alias)), quoted=True))
    # Table, subquery and CTE aliases (and their column lists) fold like the references to them.
    for table_alias in list(tree.find_all(exp.TableAlias)):
        if table_alias.this is not None:
            table_alias.set("this", exp.to_identifier(ctx.fold(str(table_alias.name)), quoted=True))
        cols = table_alias.args.get("columns") or []
        table_alias.set("columns", [exp.to_identifier(ctx.fold(str(c.name)), quoted=True) for c in cols])
    unknown = unknown_functions(tree)
    if unknown:
        return Translated(
            None,
            problem=f"the view calls {', '.join(unknown)}, which sqlglot cannot translate to PostgreSQL",
        )
    out = tree.sql(dialect="postgres", identify=True, pretty=True)
    return Translated(out, ["translated from MySQL SQL by sqlglot"], references=read)


def view_reads(select_sql: str, dialect: str, source_schema: str) -> set[str]:
    """The names of the objects (tables or views) of ``source_schema`` a view's SELECT reads, as written;
    empty when it does not parse (translation reports that)."""
    tree = _parse(select_sql, dialect)
    if tree is None:
        return set()
    ctes = {str(c.alias) for c in tree.find_all(exp.CTE)}
    return {
        str(t.name)
        for t in tree.find_all(exp.Table)
        if (str(t.db or "") in ("", source_schema)) and not (not t.db and str(t.name) in ctes)
    }


def view_order(definitions: dict[str, str], dialect: str, source_schema: str) -> list[str]:
    """View names ordered so that every view comes after the views it reads (names compared ignoring
    case, as MySQL and SQLite may); ties keep the catalog's order."""
    folded = {n.casefold(): n for n in definitions}
    deps = {
        name: {folded[r.casefold()] for r in view_reads(sql, dialect, source_schema) if r.casefold() in folded} - {name}
        for name, sql in definitions.items()
    }
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:  # a cycle cannot exist in a real catalog; stop rather than loop
            return
        state[name] = 1
        for dep in sorted(deps[name], key=list(definitions).index):
            visit(dep)
        state[name] = 2
        out.append(name)

    for name in definitions:
        visit(name)
    return out


def _refused_by_postgres(tree: exp.Expression, aliases: dict[str, set[str]], ctx: ViewContext) -> str | None:
    """What MySQL accepts and PostgreSQL refuses, found without a server (on the tree with source names).

    - an aggregate with DISTINCT ordered by something that is not its argument
      (``GROUP_CONCAT(DISTINCT a ORDER BY b)``);
    - a grouped SELECT listing columns that are neither grouped, aggregated, nor columns of a table whose
      primary key is grouped (MySQL without ONLY_FULL_GROUP_BY picks any value; PostgreSQL refuses).
    """
    for order in tree.find_all(exp.Order):
        distinct = order.this
        if isinstance(distinct, exp.Distinct):
            args = {a.sql() for a in distinct.expressions}
            keys = [o.this.sql() if isinstance(o, exp.Ordered) else o.sql() for o in order.expressions]
            odd = [k for k in keys if k not in args]
            if odd:
                return (
                    f"an aggregate with DISTINCT is ordered by {', '.join(odd)}, which is not its argument "
                    "(PostgreSQL refuses that)"
                )
    for select in tree.find_all(exp.Select):
        group = select.args.get("group")
        if not group:
            continue
        grouped_sql = {g.sql() for g in group.expressions}
        grouped_cols = {(str(c.table or ""), str(c.name)) for c in group.expressions if isinstance(c, exp.Column)}
        grouped_names = {name for _, name in grouped_cols}
        loose: list[str] = []
        for projection in select.expressions:
            expr = projection.this if isinstance(projection, exp.Alias) else projection
            if expr.sql() in grouped_sql:
                continue
            for col in expr.find_all(exp.Column):
                if isinstance(col.this, exp.Star) or _inside_aggregate(col, expr):
                    continue
                qualifier, name = str(col.table or ""), str(col.name)
                if (qualifier, name) in grouped_cols or (not qualifier and name in grouped_names):
                    continue
                if qualifier and _key_grouped(qualifier, aliases, grouped_cols, ctx):
                    continue
                loose.append(f"{qualifier}.{name}" if qualifier else name)
        if loose:
            return (
                f"the view selects {', '.join(dict.fromkeys(loose))} without grouping or aggregating "
                "(MySQL allows it, PostgreSQL refuses it); add them to GROUP BY if they depend on the grouped key"
            )
    return None


def _inside_aggregate(node: exp.Expression, top: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None and parent is not top.parent:
        if isinstance(parent, exp.AggFunc | exp.Subquery | exp.Select):
            return True
        parent = parent.parent
    return False


def _key_grouped(qualifier: str, aliases: dict[str, set[str]], grouped: set[tuple[str, str]], ctx: ViewContext) -> bool:
    """Whether the table behind ``qualifier`` has its whole primary key in GROUP BY (then PostgreSQL
    accepts its other columns: they depend on the key)."""
    sources = aliases.get(qualifier.casefold(), set())
    if len(sources) != 1:
        return False
    key = ctx.primary_keys.get(next(iter(sources)), [])
    return bool(key) and all((qualifier, k) in grouped for k in key)


def _qualifier(qualifier: str, aliases: dict[str, set[str]], ctx: ViewContext) -> str:
    """What a column's table qualifier becomes: an alias is folded; a bare table name is its target name."""
    sources = aliases.get(qualifier.casefold(), set())
    table = _find(qualifier, ctx.tables) or _find(qualifier, ctx.views)
    if table is not None and sources == {table}:  # no alias: the table itself
        return ctx.tables[table][0] if table in ctx.tables else ctx.views[table]
    return ctx.fold(qualifier)


def _find(name: str, names: Collection[str]) -> str | None:
    """``name`` itself, or the one name in ``names`` equal to it but for case (MySQL column names and
    SQLite names are case-insensitive); None when there is none or several."""
    if name in names:
        return name
    matches = [n for n in names if n.casefold() == name.casefold()]
    return matches[0] if len(matches) == 1 else None


def create_view_sql(schema: str, name: str, body: str, *, check_option: str | None, invoker: bool) -> str:
    opts = " WITH (security_invoker = true)" if invoker else ""
    check = ""
    if check_option and check_option.upper() in ("CASCADED", "LOCAL"):
        check = f"\n  WITH {check_option.upper()} CHECK OPTION"
    return f"CREATE VIEW {qualified(schema, name)}{opts} AS\n{body}{check}"


def guarded(kind: str, schema: str, name: str, statement: str) -> str:
    """``statement`` run so that PostgreSQL refusing it does not undo post-data (keys, indexes, foreign
    keys), which may come after hours of loading: the refusal is printed as a WARNING and recorded in
    ``bulkmig.skipped_objects`` (kind, schema, name, error), which ``load`` and ``status`` list.

    Used for what sqlglot translated (views, indexes on expressions or with a WHERE): its output is
    checked for what can be checked without a server (unknown functions, names), but PostgreSQL may
    still refuse a construct the source allows (:mod:`bulkmig.engines.postgres.target.skipped` reads the table back).
    """
    tag = "$bulkmig_stmt$"
    n = 0
    while tag in statement:
        n += 1
        tag = f"$bulkmig_stmt{n}$"
    table = qualified(BULKMIG_SCHEMA, SKIPPED_TABLE)
    values = f"{literal(kind)}, {literal(schema)}, {literal(name)}"
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (kind text NOT NULL, schema_name text NOT NULL, name text NOT NULL, "
        "error text NOT NULL, at timestamptz NOT NULL DEFAULT pg_catalog.now());\n"
        "DO $bulkmig$\nBEGIN\n"
        f"  EXECUTE {tag}{statement}{tag};\n"
        "EXCEPTION WHEN others THEN\n"
        f"  RAISE WARNING 'bulkmig: % %.% not created: %', {values}, SQLERRM;\n"
        f"  INSERT INTO {table} (kind, schema_name, name, error) VALUES ({values}, SQLERRM);\n"
        "END\n$bulkmig$;"
    )
