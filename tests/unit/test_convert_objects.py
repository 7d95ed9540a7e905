"""convert() on hand-built catalogs: one test per branch of the conversion, and the report's shape.

The catalogs are built with the real MySQL type map (``engines/mysql/types.map_column``), as ``reflect``
builds them, so a column here carries the same notes and targets it would from a server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bulkmig.config.task import Task
from bulkmig.convert import convert, summary_lines, write_outputs
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
    SchemaObject,
)
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Table
from bulkmig.engines.mysql import types

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "manifests" / "assessment.schema.json"


def col(
    name: str,
    ctype: str,
    *,
    table: str = "t",
    nullable: bool = True,
    default: str | None = None,
    auto: bool = False,
    on_update: bool = False,
    generated: str | None = None,
    expression: str | None = None,
    is_json: bool = False,
    comment: str = "",
) -> CatalogColumn:
    mapping = types.map_column(
        ctype, table=table, column=name, nullable=nullable, is_json=is_json, on_update_current_timestamp=on_update
    )
    return CatalogColumn(
        name=name,
        column_type=ctype,
        data_type=types.parse_column_type(ctype).name,
        nullable=nullable,
        default=default,
        auto_increment=auto,
        on_update_current_timestamp=on_update,
        generated=generated,
        generation_expression=expression,
        charset=None,
        collation=None,
        comment=comment,
        is_json=is_json,
        mapping=mapping,
    )


def idx(
    name: str,
    *columns: str,
    unique: bool = False,
    kind: str = "BTREE",
    prefix: list[int | None] | None = None,
    desc: list[bool] | None = None,
) -> Index:
    return Index(
        name=name,
        columns=list(columns),
        unique=unique or name == "PRIMARY",
        primary=name == "PRIMARY",
        kind=kind,
        prefix_lengths=prefix or [None] * len(columns),
        descending=desc or [False] * len(columns),
    )


def tbl(
    name: str,
    columns: list[CatalogColumn],
    *,
    pk: tuple[str, ...] = (),
    indexes: list[Index] | None = None,
    fks: list[ForeignKey] | None = None,
    checks: list[CheckConstraint] | None = None,
    auto_increment: int | None = None,
    schema: str = "Shop",
    comment: str = "",
) -> CatalogTable:
    model = Table(schema=schema, name=name, columns=[c.to_model() for c in columns], primary_key=list(pk))
    all_indexes = ([idx("PRIMARY", *pk)] if pk else []) + (indexes or [])
    return CatalogTable(
        model, columns, all_indexes, fks or [], checks or [], "InnoDB", None, auto_increment, comment, False
    )


def fk(
    name: str,
    columns: list[str],
    ref_table: str,
    ref_columns: list[str],
    *,
    table: str,
    on_delete: str = "RESTRICT",
    schema: str = "Shop",
) -> ForeignKey:
    return ForeignKey(name, columns, schema, ref_table, ref_columns, "CASCADE", on_delete, ref_table == table)


def catalog(
    *tables: CatalogTable,
    views: list[SchemaObject] | None = None,
    triggers: list[SchemaObject] | None = None,
    routines: list[SchemaObject] | None = None,
    schema: str = "Shop",
    dialect: str = "mysql",
) -> Catalog:
    return Catalog(dialect, "10.11.6-MariaDB", True, schema, list(tables), views or [], triggers or [], routines or [])


def task(settings: dict[str, Any] | None = None, mappings: dict[str, Any] | None = None) -> Task:
    doc: dict[str, Any] = {
        "source": "mysql://app@db.example/Shop",
        "target": "postgresql://admin@pg.example/shop",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/shop",
        "settings": settings or {},
    }
    if mappings is not None:
        doc["table_mappings"] = mappings
    return Task.from_dict(doc, Path("."), env={})


def objects(conv: Any, kind: str) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in conv.report["objects"] if o["kind"] == kind}


def validate(conv: Any) -> None:
    jsonschema.validate(json.loads(json.dumps(conv.report)), json.loads(SCHEMA_FILE.read_text()))


# ------------------------------------------------------------------------------------------------ tables


def shop() -> Catalog:
    customer = tbl(
        "Customer",
        [
            col("Id", "int(10) unsigned", table="Customer", nullable=False, auto=True),
            col("Name", "varchar(40)", table="Customer", nullable=False, default="'anon'"),
            col("Status", "enum('new','vip','gone')", table="Customer", default="'new'"),
            col("Tags", "set('a','b')", table="Customer", default="'a,b'"),
            col("Active", "tinyint(1)", table="Customer", nullable=False, default="1"),
            col("Bio", "text", table="Customer"),
            col("ReferredBy", "int(10) unsigned", table="Customer"),
            col("Doc", "longtext", table="Customer", is_json=True),
            col(
                "Updated",
                "timestamp",
                table="Customer",
                nullable=False,
                default="current_timestamp()",
                on_update=True,
            ),
        ],
        pk=("Id",),
        indexes=[
            idx("Name", "Name", unique=True),
            idx("bio_prefix", "Bio", prefix=[10]),
            idx("name_prefix", "Name", prefix=[5]),
            idx("bio_ft", "Bio", kind="FULLTEXT"),
            idx("fk_ref", "ReferredBy"),
        ],
        fks=[fk("fk_customer_referrer", ["ReferredBy"], "Customer", ["Id"], table="Customer", on_delete="SET NULL")],
        checks=[CheckConstraint("Doc", "json_valid(`Doc`)"), CheckConstraint("name_len", "char_length(`Name`) > 1")],
        auto_increment=101,
        comment="people who buy",
    )
    orders = tbl(
        "Orders",
        [
            col("Id", "bigint(20) unsigned", table="Orders", nullable=False, auto=True),
            col("CustomerId", "int(10) unsigned", table="Orders", nullable=False),
            col("Total", "decimal(10,2)", table="Orders", nullable=False, default="0.00"),
            col("Twice", "decimal(11,2)", table="Orders", generated="STORED", expression="`Total` * 2"),
            col("Stamp", "datetime", table="Orders", generated="VIRTUAL", expression="now()"),
        ],
        pk=("Id",),
        indexes=[idx("fk_ref", "CustomerId")],
        fks=[fk("fk_orders_customer", ["CustomerId"], "Customer", ["Id"], table="Orders")],
        auto_increment=5,
    )
    views = [
        SchemaObject(
            "view",
            "Shop",
            "BigSpenders",
            "select `c`.`Name` AS `Name`,sum(`o`.`Total`) AS `Spent` from (`Shop`.`Customer` `c` join "
            "`Shop`.`Orders` `o` on(`o`.`CustomerId` = `c`.`Id`)) group by `c`.`Id`",
            "CREATE VIEW `BigSpenders` AS select …",
            details={"security": "DEFINER", "check_option": "NONE"},
        ),
        SchemaObject(
            "view",
            "Shop",
            "Odd",
            "select weird_fn(`Shop`.`Customer`.`Id`) AS `w` from `Shop`.`Customer`",
            "CREATE VIEW `Odd` AS select weird_fn(`Id`) AS `w` from `Customer`",
            details={},
        ),
        SchemaObject(
            "view",
            "Shop",
            "OnView",
            "select `BigSpenders`.`Name` AS `Name` from `Shop`.`BigSpenders`",
            "CREATE VIEW `OnView` AS …",
            details={},
        ),
    ]
    triggers = [
        SchemaObject(
            "trigger",
            "Shop",
            "audit",
            "INSERT INTO log VALUES (NEW.Id)",
            "CREATE TRIGGER audit AFTER INSERT ON Customer FOR EACH ROW INSERT INTO log VALUES (NEW.Id)",
            table="Customer",
            details={"timing": "AFTER", "event": "INSERT"},
        )
    ]
    routines = [
        SchemaObject(
            "function", "Shop", "f", "RETURN 1", "CREATE FUNCTION f() RETURNS int RETURN 1", details={"definer": "x@y"}
        )
    ]
    return catalog(customer, orders, views=views, triggers=triggers, routines=routines)


@pytest.fixture(scope="module")
def conv() -> Any:
    return convert(shop(), task())


def test_tables_get_target_names_types_and_read_expressions(conv: Any) -> None:
    tables = {t.name: t for t in conv.tables}
    customer = tables["Customer"]
    assert (customer.schema, customer.target_schema, customer.target_name) == ("Shop", "shop", "customer")
    assert customer.primary_key == ["Id"]  # source names
    cols = {c.name: c for c in customer.columns}
    assert cols["Id"].target == "id" and cols["Id"].target_type == "bigint"
    assert cols["Status"].target_type == '"shop"."customer_status"'
    assert cols["Tags"].target_type == "text[]" and cols["Tags"].read_as == "CAST({col} AS CHAR)"
    assert cols["Doc"].target_type == "jsonb"
    orders = {c.name: c for c in tables["Orders"].columns}
    assert orders["Twice"].generated and not orders["Stamp"].generated  # untranslatable: copied as plain values
    assert [c.name for c in tables["Orders"].copied_columns] == ["Id", "CustomerId", "Total", "Stamp"]


def test_pre_data(conv: Any) -> None:
    pre = conv.pre_data_sql
    assert 'CREATE SCHEMA IF NOT EXISTS "shop";' in pre
    assert "CREATE TYPE \"shop\".\"customer_status\" AS ENUM ('new', 'vip', 'gone');" in pre
    assert '"id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL' in pre
    assert "\"name\" varchar(40) DEFAULT 'anon' NOT NULL" in pre
    assert '"status" "shop"."customer_status" DEFAULT \'new\'' in pre
    assert "\"tags\" text[] DEFAULT ARRAY['a', 'b']::text[]" in pre
    assert '"active" boolean DEFAULT true NOT NULL' in pre
    assert '"updated" timestamptz(0) DEFAULT CURRENT_TIMESTAMP NOT NULL' in pre
    assert "PRIMARY KEY" not in pre  # by default keys come after the data (test_primary_keys_before)
    # bigint unsigned → numeric(20), which cannot be an identity: a sequence owned by the column.
    assert 'CREATE SEQUENCE "shop"."orders_id_seq" AS bigint;' in pre
    assert '"id" numeric(20) DEFAULT nextval(\'"shop"."orders_id_seq"\'::regclass) NOT NULL' in pre
    assert 'ALTER SEQUENCE "shop"."orders_id_seq" OWNED BY "shop"."orders"."id";' in pre
    assert '"twice" numeric(11,2) GENERATED ALWAYS AS ("total" * 2) STORED' in pre
    assert '"stamp" timestamp(0),' in pre or '"stamp" timestamp(0)\n' in pre
    assert 'COMMENT ON TABLE "shop"."customer" IS \'people who buy\';' in pre
    assert pre.index("CREATE TYPE") < pre.index('CREATE TABLE "shop"."customer"')


def test_post_data(conv: Any) -> None:
    post = conv.post_data_sql
    assert (
        "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('\"shop\".\"customer\"', 'id')::regclass, "
        'GREATEST(m, 1), m >= 1) FROM (SELECT GREATEST(COALESCE(max("id"), 0), 100)::bigint AS m '
        'FROM "shop"."customer") AS x;'
    ) in post
    assert 'setval(\'"shop"."orders_id_seq"\'::regclass' in post and "0), 4)::bigint" in post
    assert 'ALTER TABLE ONLY "shop"."customer" ADD CONSTRAINT "name" UNIQUE ("name");' in post
    assert 'CREATE INDEX "bio_prefix" ON "shop"."customer" ((left("bio", 10)));' in post
    assert 'CREATE INDEX "name_prefix" ON "shop"."customer" ("name");' in post  # varchar: the whole value
    assert "bio_ft" not in post and "to_tsvector" not in post
    # MySQL index names are per table: the second fk_ref gets the table's name in front.
    assert 'CREATE INDEX "fk_ref" ON "shop"."customer" ("referredby");' in post
    assert 'CREATE INDEX "orders_fk_ref" ON "shop"."orders" ("customerid");' in post
    assert 'ADD CONSTRAINT "name_len" CHECK (LENGTH("name") > 1);' in post
    assert "json_valid" not in post.lower()
    assert (
        'ALTER TABLE ONLY "shop"."customer" ADD CONSTRAINT "fk_customer_referrer" FOREIGN KEY ("referredby") '
        'REFERENCES "shop"."customer" ("id") ON UPDATE CASCADE ON DELETE SET NULL;'
    ) in post
    assert 'REFERENCES "shop"."customer" ("id") ON UPDATE CASCADE ON DELETE RESTRICT;' in post
    assert 'CREATE TRIGGER "customer_on_update" BEFORE UPDATE ON "shop"."customer"' in post
    assert 'NEW."updated" := CURRENT_TIMESTAMP;' in post
    assert 'CREATE VIEW "shop"."bigspenders" AS' in post and 'CREATE VIEW "shop"."onview" AS' in post
    assert post.index('"bigspenders" AS') < post.index('"onview" AS')  # a view after the view it reads
    assert "weird_fn" not in post
    # Order: identities, indexes, checks, foreign keys, triggers, views.
    marks = ["setval", "CREATE INDEX", "CHECK (", "FOREIGN KEY", "CREATE TRIGGER", "CREATE VIEW"]
    assert [post.index(m) for m in marks] == sorted(post.index(m) for m in marks)


def test_report_statuses(conv: Any) -> None:
    cols = objects(conv, "column")
    assert cols["Customer.Id"]["status"] == CHANGED  # unsigned widened, identity
    assert cols["Customer.Bio"]["status"] == CONVERTED
    updated = cols["Customer.Updated"]
    assert updated["status"] == CHANGED and any("BEFORE UPDATE trigger" in n["message"] for n in updated["notes"])
    assert cols["Orders.Stamp"]["status"] == ACTION and "now" in cols["Orders.Stamp"]["notes"][-1]["message"]
    assert cols["Orders.Twice"]["status"] == CONVERTED
    indexes = objects(conv, "index")
    assert indexes["Customer.bio_ft"]["status"] == ACTION and "to_tsvector" in indexes["Customer.bio_ft"]["suggestion"]
    assert indexes["Customer.bio_prefix"]["status"] == CHANGED
    assert indexes["Orders.fk_ref"]["target"] == "orders_fk_ref" and indexes["Orders.fk_ref"]["status"] == CHANGED
    checks = objects(conv, "check")
    assert checks["Customer.Doc"]["status"] == CONVERTED and checks["Customer.Doc"]["target"] is None
    assert checks["Customer.name_len"]["target"] == "name_len"
    fks = objects(conv, "foreign_key")
    assert "self-referencing" in fks["Customer.fk_customer_referrer"]["notes"][0]["message"]
    views = objects(conv, "view")
    assert views["BigSpenders"]["status"] == CHANGED and views["BigSpenders"]["target"] == "shop.bigspenders"
    assert views["Odd"]["status"] == ACTION and views["Odd"]["target"] is None
    assert (
        views["Odd"]["source_sql"].startswith("CREATE VIEW `Odd`") and "weird_fn" in views["Odd"]["notes"][0]["message"]
    )
    assert objects(conv, "trigger")["audit"]["status"] == ACTION
    assert "CREATE TRIGGER audit" in objects(conv, "trigger")["audit"]["source_sql"]
    assert objects(conv, "function")["f"]["details"] == {}  # the definer is left out


def test_summary_counts(conv: Any) -> None:
    s = conv.report["summary"]
    statuses = [o["status"] for o in conv.report["objects"]]
    assert s["total"] == len(statuses)
    assert s["by_status"] == {st: statuses.count(st) for st in (CONVERTED, CHANGED, ACTION)}
    assert s["needs_action"] == statuses.count(ACTION) == conv.needs_action
    # Stamp, bio_ft, Odd, audit, f
    assert s["needs_action"] == 5
    assert s["by_kind"]["view"] == {CONVERTED: 0, CHANGED: 2, ACTION: 1, "total": 3}
    assert s["by_kind"]["table"]["total"] == 2 and s["by_kind"]["procedure"]["total"] == 0
    assert summary_lines(conv)[0] == (
        f"convert: {s['total']} objects: {s['by_status'][CONVERTED]} converted, "
        f"{s['by_status'][CHANGED]} converted with changes, 5 need action"
    )


def test_report_matches_its_json_schema(conv: Any) -> None:
    validate(conv)
    for o in conv.report["objects"]:
        if o["status"] == ACTION:
            assert o["suggestion"], o["name"]


def test_markdown_leads_with_summary_then_actions_then_tables(conv: Any) -> None:
    md = conv.render_markdown()
    assert md.startswith("# Assessment: MariaDB `Shop` → PostgreSQL schema `shop`")
    order = [md.index("## Summary"), md.index("**5 objects need action**"), md.index("## Needs action")]
    order += [md.index("## Tables"), md.index("## Views, triggers and routines")]
    assert order == sorted(order)
    actions = md[md.index("## Needs action") : md.index("## Tables")]
    assert "### view `Odd`" in actions and "CREATE VIEW `Odd`" in actions and "**Suggestion:**" in actions
    assert "### index `Customer.bio_ft`" in actions and "### trigger `audit`" in actions
    assert "| view | 0 | 2 | 1 | 3 |" in md
    assert "### `Customer` → `shop.customer`" in md


def test_write_outputs(conv: Any, tmp_path: Path) -> None:
    paths = write_outputs(conv, tmp_path / "out")
    assert [p.name for p in paths] == ["pre-data.sql", "post-data.sql", "assessment.md", "assessment.json"]
    assert json.loads((tmp_path / "out" / "assessment.json").read_text()) == json.loads(json.dumps(conv.report))
    assert (tmp_path / "out" / "pre-data.sql").read_text() == conv.pre_data_sql


# ------------------------------------------------------------------------------------------- variations


def test_identifiers_preserve() -> None:
    conv = convert(shop(), task({"identifiers": "preserve"}))
    assert 'CREATE TABLE "Shop"."Customer" (' in conv.pre_data_sql
    assert '"Id" bigint GENERATED BY DEFAULT AS IDENTITY' in conv.pre_data_sql
    assert 'CREATE VIEW "Shop"."BigSpenders" AS' in conv.post_data_sql
    assert {t.name: t.target_name for t in conv.tables} == {"Customer": "Customer", "Orders": "Orders"}


def test_folding_collision_is_reported() -> None:
    a = tbl("Item", [col("Id", "int(11)", nullable=False), col("id", "int(11)")], pk=("Id",))
    b = tbl("ITEM", [col("x", "int(11)")])
    conv = convert(catalog(a, b), task())
    assert 'CREATE TABLE "shop"."Item" (' in conv.pre_data_sql and 'CREATE TABLE "shop"."ITEM" (' in conv.pre_data_sql
    assert '"Id" integer NOT NULL' in conv.pre_data_sql and '"id" integer' in conv.pre_data_sql
    schema = objects(conv, "schema")["Shop"]
    assert schema["status"] == CHANGED and "Item, ITEM differ only in case" in schema["notes"][-1]["message"]
    assert objects(conv, "table")["Item"]["status"] == CHANGED


def test_mapping_rules_rename_remove_and_select() -> None:
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "all",
                "rule-action": "include",
                "object-locator": {"schema-name": "Shop", "table-name": "%"},
            },
            {
                "rule-type": "selection",
                "rule-id": "2",
                "rule-name": "no-orders",
                "rule-action": "exclude",
                "object-locator": {"schema-name": "Shop", "table-name": "Orders"},
            },
            {
                "rule-type": "transformation",
                "rule-id": "3",
                "rule-name": "ren",
                "rule-action": "rename",
                "rule-target": "table",
                "object-locator": {"schema-name": "Shop", "table-name": "Customer"},
                "value": "client",
            },
            {
                "rule-type": "transformation",
                "rule-id": "4",
                "rule-name": "rm",
                "rule-action": "remove-column",
                "rule-target": "column",
                "object-locator": {"schema-name": "Shop", "table-name": "Customer", "column-name": "Bio"},
            },
        ]
    }
    conv = convert(shop(), task(mappings=mappings))
    assert [t.name for t in conv.tables] == ["Customer"] and conv.tables[0].target_name == "client"
    assert "bio" not in [c.target for c in conv.tables[0].columns]
    assert conv.report["excluded_tables"] == ["Orders"]
    assert 'CREATE TABLE "shop"."client" (' in conv.pre_data_sql and '"bio"' not in conv.pre_data_sql
    idx = objects(conv, "index")
    assert idx["Customer.bio_prefix"]["status"] == ACTION  # its column does not move
    views = objects(conv, "view")
    assert views["BigSpenders"]["status"] == ACTION and "Orders" in views["BigSpenders"]["notes"][0]["message"]
    assert views["OnView"]["status"] == ACTION  # reads a view that is not created
    validate(conv)


def test_primary_keys_before() -> None:
    conv = convert(shop(), task({"schema": {"primary_keys": "before"}}))
    assert 'CONSTRAINT "customer_pkey" PRIMARY KEY ("id")' in conv.pre_data_sql
    assert "PRIMARY KEY" not in conv.post_data_sql


def test_primary_keys_after() -> None:
    conv = convert(shop(), task({"schema": {"primary_keys": "after"}}))
    assert conv.pre_data_sql == convert(shop(), task()).pre_data_sql  # the default
    assert "PRIMARY KEY" not in conv.pre_data_sql
    post = conv.post_data_sql
    assert 'ALTER TABLE ONLY "shop"."customer" ADD CONSTRAINT "customer_pkey" PRIMARY KEY ("id");' in post
    assert post.index("PRIMARY KEY") < post.index("FOREIGN KEY")


def test_foreign_key_to_non_unique_columns_and_missing_tables() -> None:
    parent = tbl(
        "p", [col("id", "int(11)", nullable=False), col("code", "int(11)")], pk=("id",), indexes=[idx("code", "code")]
    )
    child = tbl(
        "c",
        [col("pid", "int(11)"), col("code", "int(11)")],
        fks=[
            fk("c_code", ["code"], "p", ["code"], table="c"),
            fk("c_other", ["pid"], "elsewhere", ["id"], table="c", schema="otherdb"),
            fk("c_p", ["pid"], "p", ["id"], table="c"),
        ],
    )
    conv = convert(catalog(parent, child), task())
    fks = objects(conv, "foreign_key")
    assert (
        fks["c.c_code"]["status"] == ACTION
        and "neither its primary key nor a unique key" in fks["c.c_code"]["notes"][0]["message"]
    )
    assert fks["c.c_other"]["status"] == ACTION and "otherdb.elsewhere" in fks["c.c_other"]["notes"][0]["message"]
    assert fks["c.c_p"]["status"] == CONVERTED
    assert conv.post_data_sql.count("FOREIGN KEY") == 1
    assert objects(conv, "table")["c"]["notes"][0]["message"].startswith("no primary key")


def test_unique_prefix_and_descending_and_spatial() -> None:
    t = tbl(
        "g",
        [col("id", "int(11)", nullable=False), col("name", "varchar(100)"), col("pt", "point")],
        pk=("id",),
        indexes=[
            idx("u_name", "name", unique=True, prefix=[8]),
            idx("d_name", "name", desc=[True]),
            idx("sp", "pt", kind="SPATIAL"),
        ],
    )
    conv = convert(catalog(t), task())
    post = conv.post_data_sql
    assert 'CREATE UNIQUE INDEX "u_name" ON "shop"."g" ((left("name", 8)));' in post
    assert 'CREATE INDEX "d_name" ON "shop"."g" ("name" DESC);' in post
    assert '"sp"' not in post
    sp = objects(conv, "index")["g.sp"]
    assert sp["status"] == ACTION and "postgis: true" in sp["suggestion"]


def test_sqlite_main_goes_to_public() -> None:
    t = tbl("Album", [col("AlbumId", "int(11)", nullable=False, auto=True)], pk=("AlbumId",), schema="main")
    cat = Catalog("sqlite", "3.45.1", False, "main", [t], [], [], [])
    conv = convert(cat, task())
    assert 'CREATE SCHEMA IF NOT EXISTS "public";' in conv.pre_data_sql
    assert 'CREATE TABLE "public"."album" (' in conv.pre_data_sql
    assert conv.tables[0].target_qualified == ("public", "album")
    assert conv.report["source"]["engine"] == "SQLite" and "tinyint1_as_boolean" not in conv.report["settings"]
    validate(conv)


def test_mapping_rules_that_collide_are_refused() -> None:
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
                "rule-name": "ren",
                "rule-action": "rename",
                "rule-target": "table",
                "object-locator": {"schema-name": "Shop", "table-name": "Orders"},
                "value": "customer",
            },
        ]
    }
    with pytest.raises(ConfigError, match="land on one target name"):
        convert(shop(), task(mappings=mappings))


# ---------------------------------------------------------------------------------------------- settings


def test_settings_mysql_section() -> None:
    t = task({"mysql": {"tinyint1_as_boolean": False, "zero_dates": "refuse", "time_as": "interval", "postgis": True}})
    assert t.settings.mysql == types.TypeSettings(False, "refuse", "interval", True)
    assert task().settings.mysql == types.TypeSettings()
    with pytest.raises(ConfigError) as err:
        task({"mysql": {"zero_date": "null", "time_as": "intervals", "postgis": "yes"}})
    text = str(err.value)
    assert "settings.mysql.zero_date: unknown key (did you mean 'zero_dates'?)" in text
    assert "settings.mysql.time_as: 'intervals' is not one of time, interval (did you mean 'interval'?)" in text
    assert "settings.mysql.postgis: must be true or false" in text


def test_mysql_settings_change_the_fingerprint_of_mysql_tasks_only() -> None:
    assert task().fingerprint() != task({"mysql": {"tinyint1_as_boolean": False}}).fingerprint()
    assert "mysql" in task().fingerprint_inputs()["settings"]


def test_spatial_index_with_postgis() -> None:
    pt = col("pt", "point", table="g", nullable=False)
    pt.mapping = types.map_column("point", table="g", column="pt", settings=types.TypeSettings(postgis=True))
    t = tbl("g", [col("id", "int(11)", nullable=False), pt], pk=("id",), indexes=[idx("sp", "pt", kind="SPATIAL")])
    conv = convert(catalog(t), task({"mysql": {"postgis": True}}))
    assert '"pt" geometry(Point) NOT NULL' in conv.pre_data_sql
    assert 'CREATE INDEX "sp" ON "shop"."g" USING gist ("pt");' in conv.post_data_sql
    assert objects(conv, "index")["g.sp"]["status"] == CHANGED
    assert conv.report["settings"]["postgis"] is True
