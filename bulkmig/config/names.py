"""Target identifiers for a foreign source: schemas, tables, columns, and the names PostgreSQL adds.

Why a module of its own: every name the target gets is decided here once, and ``plan``, ``load``,
``capture`` and the report all read the same answer.  The rules (issue 5 §3):

- a MySQL database becomes a PostgreSQL schema of the same name; SQLite's ``main`` becomes ``public``;
- ``settings.identifiers: lower`` folds every name to lower case, so users query ``film`` rather than
  ``"Film"`` — except names whose folded form collides with another object's (``Album`` and ``ALBUM``
  in one database): those keep their source spelling, and the report says so;
  ``identifiers: preserve`` keeps every spelling;
- the DMS transformation rules (``rename``, ``convert-lowercase``, prefixes, …) apply on top, in rule-id
  order.  Their object-locators match the *source* names (as in DMS), each action rewriting the name the
  previous step produced; ``remove-column`` / ``include-column`` decide which columns move.

PostgreSQL also needs names MySQL does not have or keeps in another scope: index names are unique per
schema in PostgreSQL (per table in MySQL), the primary key's constraint needs one, an enum column needs
a type.  :class:`Namespace` hands out such names without collisions and within the 63-byte limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkmig.config.mapping_rules import RENAME_ACTIONS, apply_rules, refuse_duplicates
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes, silently: two long names could become one.
MAX_IDENT_BYTES = 63

SQLITE_MAIN = "main"
SQLITE_TARGET_SCHEMA = "public"


def fold(name: str, mode: str) -> str:
    """One name folded as ``settings.identifiers`` says (``lower``; anything else keeps it): the single
    spelling of the rule, so tables, keys, constraints and views cannot fold differently."""
    return name.lower() if mode == "lower" else name


def fold_all(names: Iterable[str], mode: str) -> tuple[dict[str, str], list[list[str]]]:
    """Each name's folded form, and the groups of names that collide when folded (those keep theirs).

    ``mode`` is ``settings.identifiers``: ``lower`` or ``preserve``.
    """
    names = list(dict.fromkeys(names))
    if mode == "preserve":
        return {n: n for n in names}, []
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.lower(), []).append(n)
    clashes = [g for g in groups.values() if len(g) > 1]
    clashing = {n for g in clashes for n in g}
    return {n: (n if n in clashing else n.lower()) for n in names}, clashes


def truncate(name: str, limit: int = MAX_IDENT_BYTES) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, never inside a character."""
    raw = name.encode("utf-8")
    if len(raw) <= limit:
        return name
    return raw[:limit].decode("utf-8", errors="ignore")


def _too_long(name: str) -> bool:
    return len(name.encode("utf-8")) > MAX_IDENT_BYTES


class Namespace:
    """Names already taken in one PostgreSQL namespace (a schema's relations and types, or the
    constraints of a table).  ``claim`` returns the wanted name, or a close one that is free."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken: set[str] = set(taken)

    def claim(self, wanted: str) -> str:
        name = truncate(wanted)
        n = 1
        while name in self.taken:
            n += 1
            suffix = f"_{n}"
            name = truncate(wanted, MAX_IDENT_BYTES - len(suffix)) + suffix
        self.taken.add(name)
        return name


@dataclass
class TableNames:
    """One table's names on the target."""

    source: str
    schema: str
    name: str
    columns: dict[str, str]  # kept source column -> target column
    removed: list[str]  # source columns that do not move (remove-column / include-column)
    folded_clashes: list[list[str]] = field(default_factory=list)  # column groups that kept their spelling
    renamed_by_rules: dict[str, str] = field(default_factory=dict)  # source column -> name after DMS rules


@dataclass
class Names:
    """Every target identifier of one conversion."""

    source_schema: str
    schema: str
    tables: dict[str, TableNames]  # by source table name
    views: dict[str, str]  # source view name -> target view name (same schema)
    table_clashes: list[list[str]]  # tables/views that kept their spelling because folding collides
    schema_ns: Namespace  # relation and type names taken in the target schema

    def table(self, name: str) -> TableNames:
        return self.tables[name]

    def column(self, table: str, column: str) -> str:
        return self.tables[table].columns[column]


def target_schema(dialect: str, schema: str, mode: str, mappings: Mappings) -> str:
    """The schema a source database (MySQL) or a SQLite file's ``main`` lands in, before table rules."""
    base = SQLITE_TARGET_SCHEMA if dialect == "sqlite" and schema == SQLITE_MAIN else schema
    base = fold(base, mode)
    rules = [
        r for r in mappings.transformations if r.target == "schema" and r.action in RENAME_ACTIONS and r.matches(schema)
    ]
    return apply_rules(base, rules)


def decide(
    dialect: str,
    schema: str,
    tables: dict[str, list[str]],
    views: list[str],
    mode: str,
    mappings: Mappings,
) -> Names:
    """Decide every name.  ``tables``: source table -> its source columns in order; ``views``: view names.

    Raises ConfigError when the DMS rules send two objects to one name (a fold never does: it backs off).
    """
    target = target_schema(dialect, schema, mode, mappings)
    folded, clashes = fold_all([*tables, *views], mode)
    out: dict[str, TableNames] = {}
    for table, columns in tables.items():
        rules = [
            r
            for r in mappings.transformations
            if r.target == "table" and r.action in RENAME_ACTIONS and r.matches(schema, table)
        ]
        # A table rule may move it to another schema only through schema rules (DMS has no per-table schema).
        tname = apply_rules(folded[table], rules)
        removed = mappings.removed_columns(schema, table, columns)
        kept = [c for c in columns if c not in removed]
        cfold, cclash = fold_all(kept, mode)
        cols: dict[str, str] = {}
        renamed: dict[str, str] = {}
        for c in kept:
            crules = [
                r
                for r in mappings.transformations
                if r.target == "column" and r.action in RENAME_ACTIONS and r.matches(schema, table, c)
            ]
            cols[c] = apply_rules(cfold[c], crules)
            if crules:
                renamed[c] = cols[c]
        refuse_duplicates(f"table {schema}.{table}: columns", cols)
        _refuse_long(f"table {schema}.{table}: column", cols)
        out[table] = TableNames(table, target, tname, cols, [c for c in columns if c in removed], cclash, renamed)
    view_names = {}
    for view in views:
        rules = [
            r
            for r in mappings.transformations
            if r.target == "table" and r.action in RENAME_ACTIONS and r.matches(schema, view)
        ]
        view_names[view] = apply_rules(folded[view], rules)
    relations = {**{t: n.name for t, n in out.items()}, **{f"view {v}": n for v, n in view_names.items()}}
    refuse_duplicates(f"schema {target}: tables and views", relations)
    _refuse_long(f"schema {target}: table", relations)
    if _too_long(target):
        raise ConfigError(
            f"target schema name {target!r} is longer than {MAX_IDENT_BYTES} bytes; PostgreSQL would cut it",
            "add a DMS rename rule for the schema (rule-target: schema)",
        )
    return Names(schema, target, out, view_names, clashes, Namespace(relations.values()))


def _refuse_long(what: str, mapping: dict[str, str]) -> None:
    for src, dst in mapping.items():
        if _too_long(dst):
            raise ConfigError(
                f"{what} {src!r} would be named {dst!r} on the target, longer than {MAX_IDENT_BYTES} bytes "
                "(PostgreSQL cuts such names, which can make two objects one)",
                "add a DMS rename rule giving it a shorter name",
            )
