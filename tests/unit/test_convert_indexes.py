"""convert() on SQLite indexes with expressions among their keys or a WHERE predicate: translated with sqlglot
and created whole, or reported with their original SQL and not created at all — never widened into a full
index (a partial UNIQUE index without its WHERE would refuse rows the source holds).

Catalogs are built with the real SQLite type map (``engines/sqlite/types.map_declared``), as ``reflect`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bulkmig.config.task import Task
from bulkmig.convert import Conversion, convert
from bulkmig.convert.expressions import SKIPPED_TABLE
from bulkmig.core.catalog import (
    ACTION,
    CHANGED,
    CONVERTED,
    Catalog,
    CatalogColumn,
    CatalogTable,
    CheckConstraint,
    ForeignKey,
    Index,
)
from bulkmig.core.model import Column, Table
from bulkmig.engines.sqlite.types import map_declared

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "manifests" / "assessment.schema.json"


def col(name: str, declared: str, nullable: bool = True) -> CatalogColumn:
    return CatalogColumn(
        name=name,
        column_type=declared,
        data_type=declared,
        nullable=nullable,
        default=None,
        auto_increment=False,
        on_update_current_timestamp=False,
        generated=None,
        generation_expression=None,
        charset=None,
        collation=None,
        comment="",
        is_json=False,
        mapping=map_declared(declared),
    )


def model_column(c: CatalogColumn) -> Column:
    m = c.mapping
    return Column(c.name, c.column_type, m.logical_type, m.arrow_type, m.transfer, c.nullable)


def index(
    name: str,
    *parts: str,
    unique: bool = False,
    expressions: list[bool] | None = None,
    where: str | None = None,
    desc: list[bool] | None = None,
) -> Index:
    return Index(
        name=name,
        columns=list(parts),
        unique=unique,
        primary=name == "PRIMARY",
        kind="BTREE",
        prefix_lengths=[None] * len(parts),
        descending=desc or [False] * len(parts),
        expressions=expressions or [],
        where=where,
    )


def users(*indexes: Index, checks: list[CheckConstraint] | None = None) -> CatalogTable:
    columns = [
        col("Id", "INTEGER", nullable=False),
        col("Email", "VARCHAR(120)"),
        col("Active", "BOOLEAN"),
        col("DeletedAt", "DATETIME"),
        col("Score", "INTEGER"),
    ]
    model = Table(
        schema="main",
        name="Users",
        columns=[model_column(c) for c in columns],
        primary_key=["Id"],
    )
    all_indexes = [index("PRIMARY", "Id", unique=True), *indexes]
    return CatalogTable(model, columns, all_indexes, [], checks or [], None, None, None, "", False)


def sqlite_catalog(*tables: CatalogTable) -> Catalog:
    return Catalog("sqlite", "3.45.1", False, "main", list(tables), [], [], [])


def task(mappings: dict[str, Any] | None = None) -> Task:
    doc: dict[str, Any] = {
        "source": "sqlite:///app.db",
        "target": "postgresql://admin@pg.example/app",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/app",
    }
    if mappings is not None:
        doc["table_mappings"] = mappings
    return Task.from_dict(doc, Path("."), env={})


def item(conv: Conversion, name: str) -> dict[str, Any]:
    return next(o for o in conv.report["objects"] if o["name"] == name)


def validate(conv: Conversion) -> None:
    jsonschema.validate(json.loads(json.dumps(conv.report)), json.loads(SCHEMA_FILE.read_text()))


def test_partial_unique_index_keeps_its_predicate() -> None:
    conv = convert(
        sqlite_catalog(users(index("users_live_email", "Email", unique=True, where="DeletedAt IS NULL"))), task()
    )
    post = conv.post_data_sql
    stmt = 'CREATE UNIQUE INDEX "users_live_email" ON "public"."users" ("email") WHERE "deletedat" IS NULL'
    assert stmt in post
    assert "UNIQUE (" not in post  # never a plain (full) unique constraint
    assert post.count('"users_live_email"') == 1
    assert f"bulkmig.{SKIPPED_TABLE}" in post.replace('"', "")  # guarded: a refusal is recorded, not fatal
    o = item(conv, "Users.users_live_email")
    assert o["kind"] == "unique_key" and o["status"] == CONVERTED and o["target"] == "users_live_email"
    assert o["source_sql"] == 'CREATE UNIQUE INDEX "users_live_email" ON "Users" ("Email") WHERE DeletedAt IS NULL'
    assert o["target_sql"] == stmt + ";"
    assert "unique partial index" in o["notes"][-1]["message"]
    validate(conv)


def test_expression_index_is_translated_with_target_names() -> None:
    conv = convert(
        sqlite_catalog(users(index("users_lower_email", "lower(Email)", "Id", expressions=[True, False]))), task()
    )
    assert 'CREATE INDEX "users_lower_email" ON "public"."users" ((LOWER("email")), "id")' in conv.post_data_sql
    o = item(conv, "Users.users_lower_email")
    assert o["kind"] == "index" and o["status"] == CONVERTED
    assert "index on expressions" in o["notes"][-1]["message"]
    assert "not migrated" not in json.dumps(o)  # the old, wrong wording
    validate(conv)


def test_unique_expression_index_with_predicate_and_desc() -> None:
    idx = index(
        "one_active_score",
        "abs(Score)",
        unique=True,
        expressions=[True],
        desc=[True],
        where="Active = 1 AND Score IS NOT NULL",
    )
    conv = convert(sqlite_catalog(users(idx)), task())
    # BOOLEAN becomes boolean: PostgreSQL has no boolean = integer, so 1 is written TRUE.
    assert (
        'CREATE UNIQUE INDEX "one_active_score" ON "public"."users" ((ABS("score")) DESC) '
        'WHERE "active" = TRUE AND NOT "score" IS NULL'
    ) in conv.post_data_sql
    o = item(conv, "Users.one_active_score")
    assert o["status"] == CHANGED  # the predicate's text changed: the report shows both
    assert any("→" in n["message"] for n in o["notes"])


@pytest.mark.parametrize(
    ("where", "parts", "flags", "problem"),
    [
        ("my_func(Score) > 0", ["Email"], [False], "calls my_func"),
        ("DeletedAt > CURRENT_TIMESTAMP", ["Email"], [False], "IMMUTABLE"),
        ("Nope IS NULL", ["Email"], [False], "columns that do not move: Nope"),
        (None, ["Email COLLATE nocase ||"], [True], "does not parse"),
        (None, ["random()"], [True], "IMMUTABLE"),
    ],
)
def test_untranslatable_index_is_reported_and_not_created(
    where: str | None, parts: list[str], flags: list[bool], problem: str
) -> None:
    conv = convert(sqlite_catalog(users(index("odd", *parts, unique=True, expressions=flags, where=where))), task())
    assert '"odd"' not in conv.post_data_sql  # neither the index nor a widened version of it
    assert "UNIQUE" not in conv.post_data_sql
    o = item(conv, "Users.odd")
    assert o["status"] == ACTION and o["target"] is None
    assert problem in o["notes"][-1]["message"] and "not created" in o["notes"][-1]["message"]
    assert o["source_sql"].startswith('CREATE UNIQUE INDEX "odd" ON "Users" (')
    if where:
        assert o["source_sql"].endswith(f"WHERE {where}")
    assert o["suggestion"]
    assert "CREATE UNIQUE INDEX" in conv.render_markdown()  # the original SQL is in the report
    validate(conv)


def test_predicate_on_a_removed_column_is_not_created() -> None:
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "all",
                "rule-action": "include",
                "object-locator": {"schema-name": "%", "table-name": "%"},
            },
            {
                "rule-type": "transformation",
                "rule-id": "2",
                "rule-name": "drop",
                "rule-action": "remove-column",
                "rule-target": "column",
                "object-locator": {"schema-name": "%", "table-name": "Users", "column-name": "DeletedAt"},
            },
        ]
    }
    conv = convert(
        sqlite_catalog(users(index("live", "Email", unique=True, where="DeletedAt IS NULL"))), task(mappings)
    )
    assert '"live"' not in conv.post_data_sql
    assert item(conv, "Users.live")["status"] == ACTION


def test_foreign_key_to_a_partial_unique_index_is_refused() -> None:
    """PostgreSQL's foreign keys need a plain unique key; a partial one does not count."""
    parent = users(index("live_email", "Email", unique=True, where="DeletedAt IS NULL"))
    child_cols = [col("Id", "INTEGER", nullable=False), col("Email", "VARCHAR(120)")]
    child = CatalogTable(
        Table(schema="main", name="Notes", columns=[model_column(c) for c in child_cols], primary_key=["Id"]),
        child_cols,
        [index("PRIMARY", "Id", unique=True)],
        [ForeignKey("fk_email", ["Email"], "main", "Users", ["Email"], "NO ACTION", "NO ACTION", False)],
        [],
        None,
        None,
        None,
        "",
        False,
    )
    conv = convert(sqlite_catalog(parent, child), task())
    assert "FOREIGN KEY" not in conv.post_data_sql
    assert item(conv, "Notes.fk_email")["status"] == ACTION


def test_check_on_a_boolean_column_compares_with_booleans() -> None:
    chk = CheckConstraint("active_is_bool", "Active IN (0, 1) AND Score <> 1")
    conv = convert(sqlite_catalog(users(checks=[chk])), task())
    assert 'CHECK ("active" IN (FALSE, TRUE) AND "score" <> 1)' in conv.post_data_sql


def test_plain_indexes_are_unchanged() -> None:
    conv = convert(sqlite_catalog(users(index("u_email", "Email", unique=True), index("i_score", "Score"))), task())
    post = conv.post_data_sql
    assert 'ALTER TABLE ONLY "public"."users" ADD CONSTRAINT "u_email" UNIQUE ("email");' in post
    assert 'CREATE INDEX "i_score" ON "public"."users" ("score");' in post
    assert SKIPPED_TABLE not in post


def test_column_types_naming_no_column_is_reported() -> None:
    """settings.sqlite.column_types keys are matched exactly: one that names no column would silently not
    apply, so the report says so (here: the wrong case, and a typo)."""
    doc: dict[str, Any] = {
        "source": "sqlite:///app.db",
        "target": "postgresql://admin@pg.example/app",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/app",
        "settings": {"sqlite": {"column_types": {"users.email": "TEXT", "Users.Scor": "TEXT", "Users.Id": "TEXT"}}},
    }
    conv = convert(sqlite_catalog(users()), Task.from_dict(doc, Path("."), env={}))
    schema = item(conv, "main")
    messages = [n["message"] for n in schema["notes"] if n["status"] == ACTION]
    assert messages == [
        "settings.sqlite.column_types names 'users.email', which is no column: not applied "
        "(did you mean 'Users.Email'?)",
        "settings.sqlite.column_types names 'Users.Scor', which is no column: not applied "
        "(did you mean 'Users.Score'?)",
    ]
    validate(conv)
