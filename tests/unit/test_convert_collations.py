"""convert() on keys and indexes over collations that are not byte-wise (SQLite's NOCASE and RTRIM, MySQL's
``_ci``): a unique key keeps refusing what the source refused — a unique index on lower()/rtrim() of the
column — a primary key stays on the column and gains that index, a plain index stays plain, and every one
of these says so in the report.  Nothing is dropped silently.

Catalogs are built by hand with the real type maps (``engines/sqlite/types``, ``engines/mysql/types``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bulkmig.config.task import Task
from bulkmig.convert import Conversion, collations, convert
from bulkmig.core.catalog import CHANGED, CONVERTED, Catalog, CatalogColumn, CatalogTable, ForeignKey, Index
from bulkmig.core.model import Column, Table
from bulkmig.engines.mysql import types as mysql_types
from bulkmig.engines.sqlite.types import map_declared

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "manifests" / "assessment.schema.json"


def col(name: str, declared: str, collation: str | None = None, *, mysql: bool = False) -> CatalogColumn:
    mapping = mysql_types.map_column(declared, table="t", column=name) if mysql else map_declared(declared)
    return CatalogColumn(
        name=name,
        column_type=declared,
        data_type=declared,
        nullable=True,
        default=None,
        auto_increment=False,
        on_update_current_timestamp=False,
        generated=None,
        generation_expression=None,
        charset=None,
        collation=collation,
        comment="",
        is_json=False,
        mapping=mapping,
    )


def index(
    name: str,
    *parts: str,
    unique: bool = False,
    primary: bool = False,
    collations: list[str | None] | None = None,
    expressions: list[bool] | None = None,
    where: str | None = None,
) -> Index:
    return Index(
        name=name,
        columns=list(parts),
        unique=unique or primary,
        primary=primary,
        kind="BTREE",
        prefix_lengths=[None] * len(parts),
        descending=[False] * len(parts),
        expressions=expressions or [],
        where=where,
        collations=collations or [],
    )


def table(
    name: str,
    columns: list[CatalogColumn],
    indexes: list[Index],
    pk: list[str] | None = None,
    fks: list[ForeignKey] | None = None,
    schema: str = "main",
) -> CatalogTable:
    model_cols = [
        Column(c.name, c.column_type, c.mapping.logical_type, c.mapping.arrow_type, c.mapping.transfer, c.nullable)
        for c in columns
    ]
    model = Table(schema=schema, name=name, columns=model_cols, primary_key=pk or [])
    return CatalogTable(model, columns, indexes, fks or [], [], None, None, None, "", False)


def sqlite(*tables: CatalogTable) -> Catalog:
    return Catalog("sqlite", "3.45.1", False, "main", list(tables), [], [], [])


def mysql(*tables: CatalogTable) -> Catalog:
    return Catalog("mysql", "10.11.6-MariaDB", True, "Shop", list(tables), [], [], [])


def task(source: str = "sqlite:///app.db", settings: dict[str, Any] | None = None) -> Task:
    doc: dict[str, Any] = {
        "source": source,
        "target": "postgresql://admin@pg.example/app",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/app",
        "settings": settings or {},
    }
    return Task.from_dict(doc, Path("."), env={})


def item(conv: Conversion, name: str) -> dict[str, Any]:
    return next(o for o in conv.report["objects"] if o["name"] == name)


def messages(conv: Conversion, name: str, status: str = CHANGED) -> list[str]:
    return [n["message"] for n in item(conv, name)["notes"] if n["status"] == status]


def validate(conv: Conversion) -> None:
    jsonschema.validate(json.loads(json.dumps(conv.report)), json.loads(SCHEMA_FILE.read_text()))


def users(*indexes: Index, email_collation: str | None = "NOCASE") -> CatalogTable:
    columns = [
        col("Id", "INTEGER"),
        col("Email", "VARCHAR(80)", email_collation),
        col("Code", "TEXT", "RTRIM"),
        col("Nick", "TEXT"),
        col("Level", "INTEGER", "NOCASE"),  # a collation on a number changes nothing on the target
    ]
    return table("Users", columns, [index("PRIMARY", "Id", primary=True, collations=[None]), *indexes], pk=["Id"])


GUARD = 'INSERT INTO "bulkmig"."skipped_objects"'


# -------------------------------------------------------------------------------------------- SQLite


def test_unique_over_nocase_becomes_a_unique_index_on_lower() -> None:
    conv = convert(sqlite(users(index("u_email", "Email", unique=True, collations=["NOCASE"]))), task())
    post = conv.post_data_sql
    stmt = 'CREATE UNIQUE INDEX "u_email" ON "public"."users" ((lower("email")))'
    assert stmt in post
    assert post.index(stmt) > post.index("DO $bulkmig$") and GUARD in post  # a refusal is recorded, not fatal
    assert "UNIQUE (" not in post  # no case-sensitive unique constraint in its place
    o = item(conv, "Users.u_email")
    assert (o["kind"], o["status"], o["target"], o["target_sql"]) == ("unique_key", CHANGED, "u_email", stmt + ";")
    [note] = messages(conv, "Users.u_email")
    assert note.startswith("unique index on lower(email) for SQLite's collation NOCASE: 'abc' next to 'ABC'")
    assert "NOCASE folds only ASCII letters while PostgreSQL's lower() folds all of Unicode" in note
    assert "bulkmig.skipped_objects" in note and "queries compare lower(email) = lower(…)" in note
    validate(conv)


def test_index_without_its_own_collations_takes_the_columns() -> None:
    """A catalog that does not list per-part collations (MySQL, older reflections): each part compares
    with its column's collation, as SQLite's index does unless the index says COLLATE."""
    conv = convert(sqlite(users(index("u_email", "Email", unique=True))), task())
    assert 'CREATE UNIQUE INDEX "u_email" ON "public"."users" ((lower("email")))' in conv.post_data_sql


def test_binary_part_on_a_nocase_column_stays_a_plain_constraint() -> None:
    """``UNIQUE (Email COLLATE BINARY)``: the index's own collation wins over the column's."""
    conv = convert(sqlite(users(index("u_email", "Email", unique=True, collations=[None]))), task())
    assert 'ALTER TABLE ONLY "public"."users" ADD CONSTRAINT "u_email" UNIQUE ("email");' in conv.post_data_sql
    assert "lower(" not in conv.post_data_sql
    assert item(conv, "Users.u_email")["status"] == CONVERTED


def test_nocase_part_on_a_binary_column_is_folded() -> None:
    """``CREATE UNIQUE INDEX … (Nick COLLATE NOCASE)`` on a column declared without a collation."""
    conv = convert(sqlite(users(index("u_nick", "Nick", unique=True, collations=["NOCASE"]))), task())
    assert 'CREATE UNIQUE INDEX "u_nick" ON "public"."users" ((lower("nick")))' in conv.post_data_sql


def test_unique_over_rtrim_becomes_a_unique_index_on_rtrim() -> None:
    conv = convert(sqlite(users(index("u_code", "Code", unique=True, collations=["RTRIM"]))), task())
    assert 'CREATE UNIQUE INDEX "u_code" ON "public"."users" ((rtrim("code")))' in conv.post_data_sql
    [note] = messages(conv, "Users.u_code")
    assert "rtrim(code) for SQLite's collation RTRIM: 'a' next to 'a ' stays refused, exactly as in SQLite" in note
    assert "Unicode" not in note


def test_mixed_key_folds_only_the_nocase_part_and_keeps_desc() -> None:
    idx = index("u_pair", "Email", "Nick", unique=True, collations=["NOCASE", None])
    idx.descending = [True, False]
    conv = convert(sqlite(users(idx)), task())
    assert 'CREATE UNIQUE INDEX "u_pair" ON "public"."users" ((lower("email")) DESC, "nick")' in conv.post_data_sql
    assert len(messages(conv, "Users.u_pair")) == 1


def test_collation_on_a_number_changes_nothing() -> None:
    conv = convert(sqlite(users(index("u_level", "Level", unique=True, collations=["NOCASE"]))), task())
    assert 'ADD CONSTRAINT "u_level" UNIQUE ("level");' in conv.post_data_sql
    assert item(conv, "Users.u_level")["status"] == CONVERTED


def test_plain_index_over_nocase_stays_plain_and_says_comparisons_change() -> None:
    conv = convert(sqlite(users(index("i_email", "Email", collations=["NOCASE"]))), task())
    assert 'CREATE INDEX "i_email" ON "public"."users" ("email");' in conv.post_data_sql
    assert "lower(" not in conv.post_data_sql
    assert messages(conv, "Users.i_email") == [
        "email compares with collation NOCASE in SQLite: comparisons become case-sensitive; use lower(email) in "
        "queries or a citext/nondeterministic ICU collation"
    ]
    assert item(conv, "Users.i_email")["status"] == CHANGED


def test_plain_index_over_rtrim_says_trailing_spaces_count() -> None:
    conv = convert(sqlite(users(index("i_code", "Code", collations=["RTRIM"]))), task())
    assert 'CREATE INDEX "i_code" ON "public"."users" ("code");' in conv.post_data_sql
    [note] = messages(conv, "Users.i_code")
    assert "trailing spaces become significant" in note and "rtrim(code)" in note


@pytest.mark.parametrize("primary_keys", ["before", "after"])
def test_primary_key_over_nocase_is_kept_and_gains_a_lower_index(primary_keys: str) -> None:
    columns = [col("Name", "TEXT", "NOCASE"), col("Value", "INTEGER")]
    kv = table("Kv", columns, [index("PRIMARY", "Name", primary=True, collations=["NOCASE"])], pk=["Name"])
    conv = convert(sqlite(kv), task(settings={"schema": {"primary_keys": primary_keys}}))
    pk_sql = 'CONSTRAINT "kv_pkey" PRIMARY KEY ("name")'
    assert pk_sql in (conv.pre_data_sql if primary_keys == "before" else conv.post_data_sql)
    stmt = 'CREATE UNIQUE INDEX "kv_name_lower_key" ON "public"."kv" ((lower("name")))'
    assert stmt in conv.post_data_sql and GUARD in conv.post_data_sql
    o = item(conv, "Kv.PRIMARY")
    assert o["kind"] == "primary_key" and o["status"] == CHANGED and o["target"] == "kv_pkey"
    assert o["target_sql"] == stmt + ";"
    kept, folded = messages(conv, "Kv.PRIMARY")
    assert kept.startswith("kept on (name), exact for the rows there are") and kept.endswith("kv_name_lower_key")
    assert folded.startswith("unique index on lower(name) for SQLite's collation NOCASE")
    assert conv.tables[0].primary_key == ["Name"]
    validate(conv)


def test_rowid_primary_key_has_no_collation() -> None:
    conv = convert(sqlite(users()), task())
    assert "lower(" not in conv.post_data_sql and "rtrim(" not in conv.post_data_sql
    assert item(conv, "Users.PRIMARY")["status"] == CONVERTED


def test_referenced_nocase_key_keeps_a_plain_constraint_for_the_foreign_key() -> None:
    """PostgreSQL's foreign keys need a plain unique constraint on the referenced columns: a unique index on
    lower() does not count, so the key gets both (the plain one is exact for the rows there are)."""
    parent = users(index("u_email", "Email", unique=True, collations=["NOCASE"]))
    child = table(
        "Notes",
        [col("Id", "INTEGER"), col("Email", "TEXT")],
        [index("PRIMARY", "Id", primary=True, collations=[None])],
        pk=["Id"],
        fks=[ForeignKey("fk_email", ["Email"], "main", "Users", ["Email"], "NO ACTION", "CASCADE", False)],
    )
    conv = convert(sqlite(parent, child), task())
    post = conv.post_data_sql
    assert 'CREATE UNIQUE INDEX "u_email" ON "public"."users" ((lower("email")))' in post
    assert 'ALTER TABLE ONLY "public"."users" ADD CONSTRAINT "users_email_key" UNIQUE ("email");' in post
    assert 'ADD CONSTRAINT "fk_email" FOREIGN KEY ("email") REFERENCES "public"."users" ("email")' in post
    assert post.index('"users_email_key" UNIQUE') < post.index('"fk_email" FOREIGN KEY')
    assert "also unique constraint users_email_key (email) for the foreign keys" in " ".join(
        messages(conv, "Users.u_email", CONVERTED)
    )


def test_unreferenced_nocase_key_gets_no_plain_constraint() -> None:
    conv = convert(sqlite(users(index("u_email", "Email", unique=True, collations=["NOCASE"]))), task())
    assert "users_email_key" not in conv.post_data_sql


def test_partial_unique_index_over_nocase_folds_inside_the_predicate_index() -> None:
    idx = index("u_live", "Email", unique=True, collations=["NOCASE"], where="Level > 0")
    conv = convert(sqlite(users(idx)), task())
    assert 'CREATE UNIQUE INDEX "u_live" ON "public"."users" ((lower("email"))) WHERE "level" > 0' in conv.post_data_sql
    assert any(m.startswith("unique index on lower(email)") for m in messages(conv, "Users.u_live"))


def test_unique_expression_with_nocase_folds_the_expression() -> None:
    """``CREATE UNIQUE INDEX … (trim(Nick) COLLATE NOCASE)``: the expression's value compared ignoring case."""
    idx = index("u_trim", "trim(Nick)", unique=True, collations=["NOCASE"], expressions=[True])
    conv = convert(sqlite(users(idx)), task())
    assert 'CREATE UNIQUE INDEX "u_trim" ON "public"."users" ((lower(TRIM("nick"))))' in conv.post_data_sql


def test_plain_expression_index_with_nocase_is_noted() -> None:
    idx = index("i_trim", "trim(Nick)", collations=["NOCASE"], expressions=[True])
    conv = convert(sqlite(users(idx)), task())
    assert 'CREATE INDEX "i_trim" ON "public"."users" ((TRIM("nick")))' in conv.post_data_sql
    assert any("compares with collation NOCASE" in m for m in messages(conv, "Users.i_trim"))


def test_application_collation_is_reported() -> None:
    conv = convert(sqlite(users(index("u_nick", "Nick", unique=True, collations=["MYCASE"]))), task())
    assert 'ADD CONSTRAINT "u_nick" UNIQUE ("nick");' in conv.post_data_sql
    assert messages(conv, "Users.u_nick") == [
        "nick compares with collation MYCASE (the application's own) in SQLite: PostgreSQL compares byte-wise, "
        "so the key refuses exact duplicates only"
    ]


# --------------------------------------------------------------------------------------------- MySQL


def shop(collation: str | None, *indexes: Index) -> CatalogTable:
    columns = [col("Id", "int(11)", mysql=True), col("Email", "varchar(80)", collation, mysql=True)]
    return table("Customer", columns, [index("PRIMARY", "Id", primary=True), *indexes], pk=["Id"], schema="Shop")


MYSQL = "mysql://app@db.example/Shop"


def test_mysql_unique_over_ci_becomes_lower_and_names_pad_space_and_accents() -> None:
    conv = convert(mysql(shop("utf8mb4_general_ci", index("email", "Email", unique=True))), task(MYSQL))
    assert 'CREATE UNIQUE INDEX "email" ON "shop"."customer" ((lower("email")))' in conv.post_data_sql
    assert "UNIQUE (" not in conv.post_data_sql
    [note] = messages(conv, "Customer.email")
    assert note.startswith("unique index on lower(email) for MySQL's collation utf8mb4_general_ci: 'abc' next to")
    assert "accents ('e' = 'é') and trailing spaces (PAD SPACE: 'a' = 'a ')" in note
    validate(conv)


def test_mysql_no_pad_accent_sensitive_collation_has_no_caveat() -> None:
    conv = convert(mysql(shop("utf8mb4_0900_as_ci", index("email", "Email", unique=True))), task(MYSQL))
    [note] = messages(conv, "Customer.email")
    assert "PAD SPACE" not in note and "accents" not in note
    assert 'CREATE UNIQUE INDEX "email" ON "shop"."customer" ((lower("email")))' in conv.post_data_sql


@pytest.mark.parametrize("collation", ["utf8mb4_bin", "latin1_general_cs", None])
def test_mysql_case_sensitive_unique_stays_a_constraint(collation: str | None) -> None:
    conv = convert(mysql(shop(collation, index("email", "Email", unique=True))), task(MYSQL))
    assert 'ADD CONSTRAINT "email" UNIQUE ("email");' in conv.post_data_sql
    assert "lower(" not in conv.post_data_sql


def test_mysql_plain_index_over_ci_is_unchanged() -> None:
    """The MySQL column already says its collation is case-insensitive; a plain index is not touched."""
    conv = convert(mysql(shop("utf8mb4_general_ci", index("email", "Email"))), task(MYSQL))
    assert 'CREATE INDEX "email" ON "shop"."customer" ("email");' in conv.post_data_sql
    assert item(conv, "Customer.email")["status"] == CONVERTED


def test_mysql_primary_key_over_ci_gains_a_lower_index() -> None:
    columns = [col("Code", "varchar(10)", "utf8mb4_unicode_ci", mysql=True)]
    ct = table("Country", columns, [index("PRIMARY", "Code", primary=True)], pk=["Code"], schema="Shop")
    conv = convert(mysql(ct), task(MYSQL))
    assert 'CONSTRAINT "country_pkey" PRIMARY KEY ("code")' in conv.post_data_sql
    assert 'CREATE UNIQUE INDEX "country_code_lower_key" ON "shop"."country" ((lower("code")))' in conv.post_data_sql


# ------------------------------------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("dialect", "collation", "function"),
    [
        ("sqlite", "NOCASE", "lower"),
        ("sqlite", "nocase", "lower"),
        ("sqlite", "RTRIM", "rtrim"),
        ("sqlite", "BINARY", None),
        ("sqlite", None, None),
        ("sqlite", "MYCASE", None),
        ("mysql", "utf8mb4_uca1400_ai_ci", "lower"),
        ("mysql", "utf8mb4_bin", None),
        ("mysql", "NOCASE", None),
        ("postgresql", "NOCASE", None),
    ],
)
def test_fold_table(dialect: str, collation: str | None, function: str | None) -> None:
    f = collations.fold(dialect, collation)
    assert (f.function if f else None) == function
    assert collations.unknown(dialect, collation) == (dialect == "sqlite" and collation == "MYCASE")
