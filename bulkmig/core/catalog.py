"""The source catalog schema conversion works from, the same for every foreign engine (MySQL, SQLite).

An engine's ``reflect`` fills these in (``engines/mysql/reflect.py``, ``engines/sqlite/reflect.py``);
``bulkmig.convert`` reads them to write the PostgreSQL DDL and the assessment report.  Each column
carries its :class:`ColumnMapping`: what it becomes in PostgreSQL, how it travels, and the report's
notes on it.  Nothing here talks to a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core.model import Column, Table

# Assessment categories, the same words the report uses (issue 5): worst one wins for a column.
CONVERTED = "converted"
CHANGED = "converted with changes"
ACTION = "needs action"
_SEVERITY = {CONVERTED: 0, CHANGED: 1, ACTION: 2}


def worst(statuses: Iterable[str]) -> str:
    """The most severe of ``statuses`` (CONVERTED when there are none).  One ranking for columns and
    for the report's objects, so a column and the item that reports it can never disagree."""
    return max(statuses, key=_SEVERITY.__getitem__, default=CONVERTED)


@dataclass(frozen=True)
class TypeRule:
    """One row of the map.  ``target`` and ``arrow`` are templates over the column's own numbers:
    ``{p}``/``{s}`` precision and scale, ``{n}`` length, ``{fsp}`` fractional-second digits,
    ``{enum}`` the enum type's name, ``{shape}`` the PostGIS geometry subtype."""

    source: str  # what the row matches (the map's key)
    target: str
    logical: str
    arrow: str
    status: str
    reason: str
    example: str  # a COLUMN_TYPE this row maps, so the table documents (and tests) itself
    transfer: str = "native"  # "text": the value travels as MySQL's canonical text (see ``read_as``)


@dataclass(frozen=True)
class Note:
    """One line of the assessment report about a column."""

    status: str  # CONVERTED | CHANGED | ACTION
    message: str


@dataclass
class ColumnMapping:
    """What one MySQL column becomes in PostgreSQL, and what the report says about it."""

    source_type: str
    target_type: str
    logical_type: str
    arrow_type: str
    transfer: str
    rule: TypeRule | None  # None: no rule matched (the column needs action)
    notes: list[Note]
    read_as: str | None = None  # SELECT expression over ``{col}`` when the raw value is not what travels
    enum_type: str | None = None  # the CREATE TYPE this column needs (name), with ``enum_labels``
    enum_labels: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The worst note decides: one refused value class makes the column "needs action"."""
        return worst(n.status for n in self.notes)


@dataclass
class CatalogColumn:
    """What the source catalog says about a column beyond :class:`bulkmig.core.model.Column`, and what it maps to."""

    name: str
    column_type: str  # COLUMN_TYPE exactly, e.g. "tinyint(3) unsigned", "enum('G','PG')"
    data_type: str
    nullable: bool
    default: str | None  # an SQL expression as MariaDB prints it ("'abc'", "current_timestamp()", "1"); None = none
    auto_increment: bool
    on_update_current_timestamp: bool
    generated: str | None  # "VIRTUAL" | "STORED" for generated columns
    generation_expression: str | None
    charset: str | None
    collation: str | None
    comment: str
    is_json: bool  # MariaDB JSON (LONGTEXT + json_valid check) or MySQL JSON
    mapping: ColumnMapping

    def to_model(self) -> Column:
        """The engine-neutral column the plan carries.  One builder for every engine, so MySQL, SQLite
        and conversion cannot drift apart on how a catalog column reads (``read_as`` included)."""
        m = self.mapping
        return Column(
            name=self.name,
            source_type=self.column_type,
            logical_type=m.logical_type,
            arrow_type=m.arrow_type,
            transfer=m.transfer,
            nullable=self.nullable,
            generated=self.generated is not None,
            read_as=m.read_as,
        )


@dataclass
class Index:
    """A PRIMARY/UNIQUE key or a plain index.  ``kind`` is MySQL's INDEX_TYPE: BTREE, HASH, FULLTEXT,
    SPATIAL — the last two have no B-tree equivalent and are reported by conversion."""

    name: str
    columns: list[str]
    unique: bool
    primary: bool
    kind: str
    prefix_lengths: list[int | None]  # SUB_PART per column: a prefix index (PostgreSQL has none)
    descending: list[bool]
    comment: str = ""
    # SQLite (and MySQL 8 functional indexes): True where ``columns[i]`` is an expression's text in the
    # catalog's dialect rather than a column name; empty means all are column names.
    expressions: list[bool] = field(default_factory=list)
    where: str | None = None  # a partial index's predicate, in the catalog's dialect (SQLite)
    # The collation each key part compares with, as the source names it (SQLite: PRAGMA index_xinfo's
    # "NOCASE", "RTRIM", an application's own); None = byte-wise (SQLite's BINARY), which PostgreSQL's
    # equality is too.  Empty means each part compares with its column's collation (MySQL: always).
    # A unique key over a case-insensitive collation refused 'abc' next to 'ABC': conversion keeps that.
    collations: list[str | None] = field(default_factory=list)

    @property
    def fulltext(self) -> bool:
        return self.kind == "FULLTEXT"

    @property
    def spatial(self) -> bool:
        return self.kind == "SPATIAL"


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    ref_schema: str
    ref_table: str
    ref_columns: list[str]
    on_update: str  # RESTRICT, CASCADE, SET NULL, NO ACTION, SET DEFAULT
    on_delete: str
    self_referencing: bool


@dataclass
class CheckConstraint:
    name: str
    clause: str  # as MySQL prints it, e.g. "`price` >= 0"; translated by conversion, not here


@dataclass
class CatalogTable:
    """A table as the catalog shows it: the engine-neutral :class:`Table` plus MySQL's details."""

    table: Table
    columns: list[CatalogColumn]
    indexes: list[Index]
    foreign_keys: list[ForeignKey]
    checks: list[CheckConstraint]
    engine: str | None
    collation: str | None
    auto_increment: int | None  # the next value: the target identity restarts past it after load
    comment: str
    partitioned: bool

    @property
    def unique_keys(self) -> list[Index]:
        return [i for i in self.indexes if i.unique and not i.primary]


@dataclass
class SchemaObject:
    """A view, trigger or routine: conversion translates (views) or reports (the rest) its SQL."""

    kind: str  # view | trigger | procedure | function
    schema: str
    name: str
    definition: str  # the body: a view's SELECT, a trigger's or routine's statement
    create_sql: str  # the complete CREATE statement from SHOW CREATE …, for the report
    table: str | None = None  # a trigger's table
    details: dict[str, Any] = field(default_factory=dict)  # timing/event, security, return type, …


@dataclass
class Catalog:
    """One database's reflection.  ``dialect`` names the SQL its defaults, checks and code objects are
    written in ("mysql" covers MariaDB; "sqlite"), which conversion translates from."""

    dialect: str
    server_version: str
    mariadb: bool
    schema: str
    tables: list[CatalogTable]
    views: list[SchemaObject]
    triggers: list[SchemaObject]
    routines: list[SchemaObject]

    def table(self, name: str) -> CatalogTable:
        for t in self.tables:
            if t.table.name == name:
                return t
        raise KeyError(name)

    @property
    def unmapped(self) -> list[tuple[str, str, str]]:
        """(table, column, type) of every column no type rule covers: each needs a choice by the user."""
        return [(t.table.name, c.name, c.column_type) for t in self.tables for c in t.columns if c.mapping.rule is None]
