"""Defaults, checks, generated columns and views rewritten for PostgreSQL (bulkmig.convert.expressions)."""

from __future__ import annotations

import pytest

from bulkmig.convert import expressions as ex


def default(raw: str | None, logical: str, target_type: str = "text", dialect: str = "mysql") -> ex.Translated:
    return ex.default_sql(raw, logical=logical, target_type=target_type, dialect=dialect, columns=lambda c: c.lower())


@pytest.mark.parametrize(
    ("raw", "logical", "target_type", "sql"),
    [
        (None, "text", "text", None),
        ("NULL", "integer", "integer", None),
        ("'abc'", "text", "varchar(10)", "'abc'"),
        ("'a''b'", "text", "text", "'a''b'"),
        ("'a\\\\b\\n'", "text", "text", "'a\\b\n'"),  # MySQL backslash escapes: \\ and \n
        ("_utf8mb4'x'", "text", "text", "'x'"),
        ("4.99", "decimal", "numeric(4,2)", "4.99"),
        ("-1", "integer", "integer", "-1"),
        ("'7'", "integer", "integer", "7"),
        ("1", "bool", "boolean", "true"),
        ("'0'", "bool", "boolean", "false"),
        ("b'101'", "bits", "bit(5)", "B'00101'"),
        ("5", "bits", "bit(4)", "B'0101'"),
        ("current_timestamp()", "timestamptz", "timestamptz(0)", "CURRENT_TIMESTAMP"),
        ("CURRENT_TIMESTAMP(3)", "timestamp", "timestamp(3)", "CURRENT_TIMESTAMP"),
        ("now()", "timestamp", "timestamp(0)", "CURRENT_TIMESTAMP"),
        ("curdate()", "date", "date", "CURRENT_DATE"),
        ("'2000-01-01'", "date", "date", "'2000-01-01'"),
        ("'G'", "enum", '"s"."film_rating"', "'G'"),
        ("'a,b'", "array", "text[]", "ARRAY['a', 'b']::text[]"),
        ("''", "array", "text[]", "'{}'::text[]"),
        ("'ab'", "binary", "bytea", "'\\x6162'::bytea"),
        ("0x00ff", "binary", "bytea", "'\\x00ff'::bytea"),
        ("'{}'", "json", "jsonb", "'{}'::jsonb"),
        ("uuid()", "uuid", "uuid", "GEN_RANDOM_UUID()"),
        ("(`a` + 1)", "integer", "integer", '("a" + 1)'),
    ],
)
def test_defaults(raw: str | None, logical: str, target_type: str, sql: str | None) -> None:
    t = default(raw, logical, target_type)
    assert (t.sql, t.problem) == (sql, None)


def test_sqlite_defaults() -> None:
    assert default("'it''s'", "text", dialect="sqlite").sql == "'it''s'"
    assert default("'a\\n'", "text", dialect="sqlite").sql == "'a\\n'"  # no backslash escapes in SQLite
    assert default("CURRENT_TIMESTAMP", "timestamp", "timestamp", dialect="sqlite").sql == "CURRENT_TIMESTAMP"


def test_defaults_that_cannot_be_kept() -> None:
    zero = default("'0000-00-00 00:00:00'", "timestamp", "timestamp(0)")
    assert zero.sql is None and zero.problem is None and "zero-date default" in zero.changes[0]
    assert "neither 0 nor 1" in (default("2", "bool", "boolean").problem or "")
    assert "wider than bit(2)" in (default("b'111'", "bits", "bit(2)").problem or "")
    unknown = default("my_func(1)", "integer", "integer")
    assert unknown.sql is None and "my_func" in (unknown.problem or "")


def test_unquote_string() -> None:
    assert ex.unquote_string("'a\\%b\\_c\\0'", "mysql") == "a\\%b\\_c\0"
    assert ex.unquote_string("abc", "mysql") is None


def test_check_translation_renames_columns() -> None:
    t = ex.translate_expression(
        "`Price` >= 0 and char_length(`Name`) > 2", "mysql", {"Price": "price", "Name": "name"}.get, what="check"
    )
    assert t.sql == '"price" >= 0 AND LENGTH("name") > 2'
    missing = ex.translate_expression("`gone` > 0", "mysql", {}.get, what="check")
    assert missing.sql is None and "do not move: gone" in (missing.problem or "")
    unknown = ex.translate_expression("regexp_like(`a`, 'x')", "mysql", {"a": "a"}.get, what="check")
    assert unknown.sql is not None or "regexp_like" in (unknown.problem or "")
    odd = ex.translate_expression("weird_fn(`a`) > 0", "mysql", {"a": "a"}.get, what="check")
    assert odd.sql is None and "weird_fn" in (odd.problem or "")


def test_generated_expressions_must_be_immutable() -> None:
    ok = ex.translate_expression("`price` * 2", "mysql", {"price": "price"}.get, what="gen", immutable=True)
    assert ok.sql == '"price" * 2'
    now = ex.translate_expression("now()", "mysql", {}.get, what="gen", immutable=True)
    assert now.sql is None and "IMMUTABLE" in (now.problem or "")


def ctx(**kw: object) -> ex.ViewContext:
    base: dict[str, object] = {
        "dialect": "mysql",
        "source_schema": "Shop",
        "target_schema": "shop",
        "tables": {
            "Customer": ("customer", {"Id": "id", "Name": "name", "City": "city"}),
            "Orders": ("orders", {"Id": "id", "CustomerId": "customerid", "Total": "total"}),
        },
        "views": {},
        "fold": str.lower,
        "primary_keys": {"Customer": ["Id"], "Orders": ["Id"]},
    }
    base.update(kw)
    return ex.ViewContext(**base)  # type: ignore[arg-type]


def test_view_translation_renames_tables_columns_and_aliases() -> None:
    sql = (
        "select `c`.`Name` AS `CustomerName`,sum(`Shop`.`Orders`.`Total`) AS `Spent`,"
        "group_concat(`c`.`City` separator ', ') AS `Cities` "
        "from (`Shop`.`Customer` `c` join `Shop`.`Orders` on(`Shop`.`Orders`.`CustomerId` = `c`.`Id`)) "
        "group by `c`.`Id`"
    )
    t = ex.translate_view(sql, ctx())
    assert t.problem is None and t.sql is not None
    flat = " ".join(t.sql.split())
    assert '"shop"."customer" AS "c"' in flat and '"shop"."orders"' in flat
    assert '"c"."name" AS "customername"' in flat
    assert 'SUM("orders"."total") AS "spent"' in flat
    assert "STRING_AGG(" in flat and '"c"."city"' in flat
    assert '"orders"."customerid" = "c"."id"' in flat
    assert t.references == {"Customer", "Orders"}


def test_views_that_need_action() -> None:
    missing = ex.translate_view("select `x`.`a` AS `a` from `Shop`.`Elsewhere` `x`", ctx())
    assert missing.sql is None and "not converted: Elsewhere" in (missing.problem or "")
    other_db = ex.translate_view("select `a` from `other`.`Customer`", ctx())
    assert other_db.sql is None and "other.Customer" in (other_db.problem or "")
    unknown = ex.translate_view("select weird_fn(`Id`) AS `w` from `Shop`.`Customer`", ctx())
    assert unknown.sql is None and "weird_fn" in (unknown.problem or "")
    loose = ex.translate_view(
        "select `o`.`Total` AS `t`, count(0) AS `n` from `Shop`.`Orders` `o` join `Shop`.`Customer` `c` "
        "on `o`.`CustomerId` = `c`.`Id` group by `c`.`Id`",
        ctx(),
    )
    assert loose.sql is None and "o.Total without grouping" in (loose.problem or "")
    distinct = ex.translate_view(
        "select group_concat(distinct concat(`c`.`Name`, 'x') order by `c`.`Name` ASC separator ', ') AS `g` "
        "from `Shop`.`Customer` `c`",
        ctx(),
    )
    assert distinct.sql is None and "DISTINCT" in (distinct.problem or "")
    garbage = ex.translate_view("select from where", ctx())
    assert garbage.sql is None and "does not parse" in (garbage.problem or "")


def test_grouping_by_the_key_allows_the_tables_other_columns() -> None:
    t = ex.translate_view(
        "select `c`.`Id` AS `id`, `c`.`Name` AS `name`, count(0) AS `n` from `Shop`.`Customer` `c` group by `c`.`Id`",
        ctx(),
    )
    assert t.problem is None


def test_guarded_statement_records_refusals() -> None:
    sql = ex.guarded("view", "shop", "v", "CREATE VIEW x AS SELECT '$bulkmig_stmt$'")
    assert "$bulkmig_stmt1$CREATE VIEW x AS SELECT '$bulkmig_stmt$'$bulkmig_stmt1$" in sql
    assert 'INSERT INTO "bulkmig"."skipped_objects"' in sql and "EXCEPTION WHEN others" in sql


def test_view_names_fold_consistently_through_ctes_subqueries_and_case() -> None:
    t = ex.translate_view(
        "with Recent as (select `id` AS `Id` from `customer`) "
        "select `R`.`Id` AS `X`, `S`.`N` AS `N` from Recent `R` join (select count(0) AS `N` from `ORDERS`) `S`",
        ctx(),
    )
    assert t.problem is None and t.sql is not None
    flat = " ".join(t.sql.split())
    assert 'WITH "recent" AS ( SELECT "id" AS "id" FROM "shop"."customer" )' in flat
    assert 'FROM "recent" AS "r"' in flat and 'FROM "shop"."orders" ) AS "s"' in flat
    assert '"r"."id" AS "x"' in flat and '"s"."n" AS "n"' in flat
    assert t.references == {"Customer", "Orders"}


def test_view_order_puts_read_views_first() -> None:
    defs = {
        "top": "select `a` from `Shop`.`Middle`",
        "middle": "select `a` from `base`",
        "base": "select `a` from `Shop`.`t`",
        "alone": "select 1",
        "broken": "select from where",
    }
    order = ex.view_order(defs, "mysql", "Shop")
    assert sorted(order) == sorted(defs)
    assert order.index("base") < order.index("middle") < order.index("top")
    assert ex.view_reads("select `a` from `Shop`.`t` join `other`.`u` join v", "mysql", "Shop") == {"t", "v"}
