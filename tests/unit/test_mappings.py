"""AWS DMS table mappings: real DMS documents must parse and mean what they mean in DMS."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.mapping_rules import Filter, FilterCondition, Pattern, filters_where_sql
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sel(rid: str, schema: str, table: str, action: str = "include", **extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "selection",
        "rule-id": rid,
        "rule-name": rid,
        "object-locator": {"schema-name": schema, "table-name": table},
        "rule-action": action,
        **extra,
    }


def tr(rid: str, action: str, target: str, locator: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "transformation",
        "rule-id": rid,
        "rule-name": rid,
        "rule-action": action,
        "rule-target": target,
        "object-locator": locator,
        **extra,
    }


def parse(*rules: dict[str, Any]) -> Mappings:
    return Mappings.from_doc({"rules": list(rules)})


def error_of(*rules: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(*rules)
    return str(info.value)


# The combined example of dms.md §2.6, every rule shape copied from the DMS documentation.
DMS_EXAMPLE: dict[str, Any] = {
    "rules": [
        sel("1", "HR", "%"),
        sel("2", "HR", "TMP%", "exclude"),
        sel(
            "3",
            "HR",
            "EMPLOYEE",
            **{
                "load-order": "2",
                "filters": [
                    {
                        "filter-type": "source",
                        "column-name": "EMPID",
                        "filter-conditions": [
                            {"filter-operator": "lte", "value": "10"},
                            {"filter-operator": "between", "start-value": "50", "end-value": "75"},
                        ],
                    },
                    {
                        "filter-type": "source",
                        "column-name": "DEPT",
                        "filter-conditions": [{"filter-operator": "notnull"}],
                    },
                ],
            },
        ),
        tr("10", "rename", "schema", {"schema-name": "HR"}, value="hr_new"),
        tr("11", "convert-lowercase", "table", {"schema-name": "HR", "table-name": "%"}),
        tr("12", "add-prefix", "table", {"schema-name": "HR", "table-name": "AUDIT%"}, value="legacy_"),
        tr(
            "13",
            "remove-column",
            "column",
            {"schema-name": "HR", "table-name": "EMPLOYEE", "column-name": "SSN%"},
        ),
        tr(
            "14",
            "rename",
            "column",
            {"schema-name": "HR", "table-name": "EMPLOYEE", "column-name": "FIRST_NAME"},
            value="fname",
        ),
        tr(
            "15",
            "add-column",
            "column",
            {"schema-name": "HR", "table-name": "EMPLOYEE"},
            value="FULL_NAME",
            expression="$FIRST_NAME||'_'||$LAST_NAME",
            **{"data-type": {"type": "string", "length": 50}},
        ),
        tr(
            "16",
            "add-column",
            "column",
            {"schema-name": "%", "table-name": "%"},
            value="transact_id",
            expression="$AR_H_STREAM_POSITION",
            **{"data-type": {"type": "string", "length": 50}},
        ),
        tr(
            "17",
            "change-data-type",
            "column",
            {"schema-name": "HR", "table-name": "SALES", "column-name": "SALE_AMOUNT"},
            **{"data-type": {"type": "int8"}},
        ),
        tr(
            "18",
            "define-primary-key",
            "table",
            {"schema-name": "HR", "table-name": "ITEM"},
            **{"primary-key-def": {"name": "ITEM-primary-key", "columns": ["ITEM-NAME", "BOM-MODEL-NUM"]}},
        ),
        {
            "rule-type": "table-settings",
            "rule-id": "30",
            "rule-name": "30",
            "object-locator": {"schema-name": "HR", "table-name": "SALES"},
            "parallel-load": {
                "type": "ranges",
                "columns": ["SALES_NO", "REGION"],
                "boundaries": [["1000", "NORTH"], ["3000", "WEST"]],
            },
        },
        {
            "rule-type": "table-settings",
            "rule-id": "31",
            "rule-name": "31",
            "object-locator": {"schema-name": "HR", "table-name": "ORDERS"},
            "parallel-load": {"type": "partitions-auto"},
        },
        {
            "rule-type": "table-settings",
            "rule-id": "32",
            "rule-name": "32",
            "object-locator": {"schema-name": "HR", "table-name": "DOCS"},
            "lob-settings": {"mode": "unlimited", "bulk-max-size": "100000"},
        },
    ]
}
HR_TABLES = [
    ("HR", "EMPLOYEE"),
    ("HR", "TMP_LOAD"),
    ("HR", "AUDIT_LOG"),
    ("HR", "SALES"),
    ("HR", "ITEM"),
    ("SALES", "ORDERS"),
]


def dms_example_supported() -> dict[str, Any]:
    """The DMS example without the rules bulkmig refuses (add-column, change-data-type, PK)."""
    doc = copy.deepcopy(DMS_EXAMPLE)
    doc["rules"] = [r for r in doc["rules"] if r["rule-id"] not in ("15", "16", "17", "18")]
    return doc


# ------------------------------------------------------------------------------------ DMS example


def test_dms_example_parses_its_data_rules() -> None:
    """add-column, change-data-type and define-primary-key are read (bulkmig.transform runs them)."""
    from bulkmig.transform.types import DataType

    m = Mappings.from_doc(DMS_EXAMPLE)
    data = m.data_rules
    assert [r.action for r in data] == ["add-column", "add-column", "change-data-type", "define-primary-key"]
    assert data[0].extra["expression"] == "$FIRST_NAME||'_'||$LAST_NAME"
    assert data[0].extra["data-type"] == DataType("string", 50) and data[0].value == "FULL_NAME"
    assert data[2].extra["data-type"] == DataType("int8")
    assert data[2].column is not None and data[2].column.text == "SALE_AMOUNT"
    assert data[3].extra["primary-key-def"] == {
        "name": "ITEM-primary-key",
        "origin": "primary-key",
        "columns": ["ITEM-NAME", "BOM-MODEL-NUM"],
    }
    # They rename nothing: the names are those the rename rules give.
    assert m.target_table_name("HR", "ITEM") == ("hr_new", "item")
    assert m.canonical() != Mappings.from_doc(dms_example_supported()).canonical()


def test_before_image_columns_still_refused_unless_reporting() -> None:
    rule = tr(
        "2",
        "add-before-image-columns",
        "column",
        {"schema-name": "s", "table-name": "t"},
    )
    doc = {"rules": [sel("1", "%", "%"), rule]}
    with pytest.raises(ConfigError, match="add-before-image-columns is not supported yet"):
        Mappings.from_doc(doc)
    assert [r.action for r in Mappings.from_doc(doc, allow_unsupported=True).unsupported] == [
        "add-before-image-columns"
    ]


def test_dms_example_selection_exclude_wins_and_load_order() -> None:
    m = Mappings.from_doc(dms_example_supported())
    chosen = m.select(HR_TABLES)
    names = [(s.schema, s.table) for s in chosen]
    # TMP% excluded although HR.% includes it; SALES.ORDERS not in any include; EMPLOYEE first (load-order 2).
    assert names == [("HR", "EMPLOYEE"), ("HR", "AUDIT_LOG"), ("HR", "ITEM"), ("HR", "SALES")]
    employee = chosen[0]
    assert employee.load_order == 2
    assert employee.rules == ("1", "3")
    assert [f.column for f in employee.filters] == ["EMPID", "DEPT"]
    assert employee.where_sql(pg_ident, pg_literal) == (
        """("EMPID" <= '10' OR "EMPID" BETWEEN '50' AND '75') AND ("DEPT" IS NOT NULL)"""
    )
    assert chosen[1].filters == () and chosen[1].where_sql(pg_ident, pg_literal) is None


def test_dms_example_transformations_in_rule_id_order() -> None:
    m = Mappings.from_doc(dms_example_supported())
    # rule 10 renames the schema; 11 lower-cases HR's tables; 12 then prefixes AUDIT% (matched on the source name).
    assert m.target_table_name("HR", "EMPLOYEE") == ("hr_new", "employee")
    assert m.target_table_name("HR", "AUDIT_LOG") == ("hr_new", "legacy_audit_log")
    assert m.target_table_name("SALES", "ORDERS") == ("SALES", "ORDERS")
    assert m.target_column_name("HR", "EMPLOYEE", "FIRST_NAME") == "fname"
    assert m.target_column_name("HR", "EMPLOYEE", "LAST_NAME") == "LAST_NAME"
    assert m.target_column_name("HR", "SALES", "FIRST_NAME") == "FIRST_NAME"
    cols = ["EMPID", "FIRST_NAME", "SSN", "SSN_LAST4", "DEPT"]
    assert m.removed_columns("HR", "EMPLOYEE", cols) == {"SSN", "SSN_LAST4"}
    assert m.removed_columns("HR", "SALES", ["SSN"]) == set()
    assert m.target_columns("HR", "EMPLOYEE", cols) == {"EMPID": "EMPID", "FIRST_NAME": "fname", "DEPT": "DEPT"}


def test_dms_example_table_settings_are_parsed_not_ignored() -> None:
    m = Mappings.from_doc(dms_example_supported())
    assert m.other_rules == () and m.warnings == ()
    sales = m.table_settings_for("HR", "SALES")
    assert sales is not None and sales.parallel_load is not None
    assert sales.parallel_load.type == "ranges"
    assert sales.parallel_load.columns == ("SALES_NO", "REGION")
    assert sales.parallel_load.boundaries == (("1000", "NORTH"), ("3000", "WEST"))
    orders = m.table_settings_for("HR", "ORDERS")
    assert orders is not None and orders.parallel_load is not None and orders.parallel_load.type == "partitions-auto"
    docs = m.table_settings_for("HR", "DOCS")
    assert docs is not None and docs.parallel_load is None and docs.lob is not None and docs.lob.mode == "full"
    assert m.table_settings_for("HR", "EMPLOYEE") is None


def test_example_file_in_repo_parses() -> None:
    m = Mappings.load(EXAMPLES / "mappings.json")
    chosen = m.select([("public", "customer"), ("public", "film"), ("public", "tmp_x"), ("other", "t")])
    assert [(s.table, s.load_order) for s in chosen] == [("customer", 2), ("film", 0)]
    assert chosen[0].where_sql(pg_ident, pg_literal) == """"customer_id" >= '1'"""
    assert m.warnings == ()


# ---------------------------------------------------------------------------------------- wildcards


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("%", "anything", True),
        ("%", "", True),
        ("DMS%", "DMS_TABLE", True),
        ("DMS%", "XDMS", False),
        ("%_LOG", "AUDIT_LOG", True),
        ("T_ST", "TEST", True),
        ("T_ST", "TST", False),
        ("T_ST", "TEEST", False),
        ("TEST[_]T%", "TEST_TABLE", True),
        ("TEST[_]T%", "TESTXTABLE", False),
        ("[ab]%", "alpha", True),
        ("[ab]%", "beta", True),
        ("[ab]%", "gamma", False),
        ("t[a-d]", "tc", True),
        ("t[a-d]", "te", False),
        ("t[a-d_]", "t_", True),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("a$b", "a$b", True),
        ("x[y", "x[y", True),  # an unclosed '[' is literal
        ("Employee", "employee", False),  # case-sensitive, as in DMS
        ("%", "line\nbreak", True),
    ],
)
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert Pattern(pattern).matches(name) is expected


def test_literal_pattern_takes_wildcard_characters_literally() -> None:
    assert Pattern("order_items", literal=True).matches("order_items")
    assert not Pattern("order_items", literal=True).matches("orderXitems")
    assert Pattern("order_items", literal=True).is_exact
    assert not Pattern("order_items").is_exact
    assert Pattern("orders").is_exact


def test_explicit_selects_one_table_exactly() -> None:
    m = parse(sel("1", "NewCust", "Customer_1", "explicit"))
    chosen = m.select([("NewCust", "Customer_1"), ("NewCust", "CustomerX1"), ("newcust", "Customer_1")])
    assert [(s.schema, s.table) for s in chosen] == [("NewCust", "Customer_1")]


def test_explicit_refuses_percent_wildcard() -> None:
    msg = error_of(sel("1", "NewCust", "%", "explicit"))
    assert "rule '1'" in msg and "explicit" in msg and "include" in msg


def test_exclude_wins_over_explicit() -> None:
    m = parse(sel("1", "s", "t", "explicit"), sel("2", "s", "%", "exclude"))
    assert m.select([("s", "t")]) == []


def test_table_type_views_and_all() -> None:
    m = parse(
        {**sel("1", "s", "%"), "object-locator": {"schema-name": "s", "table-name": "%", "table-type": "view"}},
    )
    assert [(x.table, x.kind) for x in m.select([("s", "t")], views=[("s", "v")])] == [("v", "view")]
    m = parse({**sel("1", "s", "%"), "object-locator": {"schema-name": "s", "table-name": "%", "table-type": "all"}})
    assert [x.table for x in m.select([("s", "t")], views=[("s", "v")])] == ["t", "v"]
    # The default table-type is `table`: views are not picked up by include %.
    assert [x.table for x in parse(sel("1", "s", "%")).select([("s", "t")], views=[("s", "v")])] == ["t"]


def test_bad_table_type() -> None:
    rule = sel("1", "s", "%")
    rule["object-locator"]["table-type"] = "tables"
    assert "unknown table-type 'tables' (did you mean 'table'?)" in error_of(rule)


# ---------------------------------------------------------------------------------------- selection


def test_default_includes_everything() -> None:
    m = Mappings.default()
    assert m.is_default
    tables = [("public", "a"), ("sales", "b")]
    assert [(s.schema, s.table) for s in m.select(tables)] == tables
    assert m.selection_rules_matching_nothing(tables) == []
    assert m.target_table_name("sales", "b") == ("sales", "b")


def test_select_is_deterministic_and_deduplicated() -> None:
    m = parse(sel("1", "%", "%"))
    chosen = m.select([("b", "t"), ("a", "z"), ("a", "y"), ("a", "y")])
    assert [(s.schema, s.table) for s in chosen] == [("a", "y"), ("a", "z"), ("b", "t")]


def test_filters_from_several_include_rules_combine_with_and() -> None:
    f1 = {"column-name": "a", "filter-conditions": [{"filter-operator": "eq", "value": "1"}]}
    f2 = {"column-name": "b", "filter-conditions": [{"filter-operator": "null"}]}
    m = parse(sel("1", "s", "t", filters=[f1], **{"load-order": "1"}), sel("2", "s", "t", filters=[f2]))
    (only,) = m.select([("s", "t")])
    assert only.where_sql(pg_ident, pg_literal) == """("a" = '1') AND ("b" IS NULL)"""
    assert only.load_order == 1


def test_selection_rules_matching_nothing() -> None:
    m = parse(
        sel("1", "public", "%"),
        {**sel("2", "HR", "EMPLOYEE"), "rule-name": "hr-employees"},
        sel("3", "public", "gone%", "exclude"),  # an exclude matching nothing is harmless
        sel("4", "public", "orders", "explicit"),
    )
    tables = [("public", "orders"), ("hr", "employee")]
    assert m.selection_rules_matching_nothing(tables) == ["hr-employees"]
    # The hint for the plan's message: the rule would match if case were ignored.
    assert m.case_insensitive_matches("hr-employees", tables) == [("hr", "employee")]
    assert m.case_insensitive_matches("no-such-rule", tables) == []


def test_rules_sorted_by_numeric_rule_id_and_int_ids_accepted() -> None:
    m = parse(
        tr("10", "add-suffix", "table", {"schema-name": "s", "table-name": "%"}, value="_b"),
        {**tr("9", "add-suffix", "table", {"schema-name": "s", "table-name": "%"}, value="_a"), "rule-id": 9},
        sel("1", "s", "%"),
    )
    assert [r.rule_id for r in m.transformations] == [9, 10]
    assert m.target_table_name("s", "t") == ("s", "t_a_b")


# ------------------------------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    ("condition", "sql"),
    [
        ({"filter-operator": "eq", "value": "x'y"}, """"c" = 'x''y'"""),
        ({"filter-operator": "noteq", "value": "5"}, """"c" <> '5'"""),
        ({"filter-operator": "lte", "value": "5"}, """"c" <= '5'"""),
        ({"filter-operator": "ste", "value": "5"}, """"c" <= '5'"""),  # ste is DMS's alias of lte
        ({"filter-operator": "gte", "value": "2021-01-01"}, """"c" >= '2021-01-01'"""),
        ({"filter-operator": "between", "start-value": "1", "end-value": "9"}, """"c" BETWEEN '1' AND '9'"""),
        (
            {"filter-operator": "notbetween", "start-value": "1", "end-value": "9"},
            """"c" NOT BETWEEN '1' AND '9'""",
        ),
        ({"filter-operator": "null"}, """"c" IS NULL"""),
        ({"filter-operator": "notnull"}, """"c" IS NOT NULL"""),
        ({"filter-operator": "EQ", "value": "1"}, """"c" = '1'"""),
    ],
)
def test_filter_operators(condition: dict[str, Any], sql: str) -> None:
    m = parse(
        sel("1", "s", "t", filters=[{"filter-type": "source", "column-name": "c", "filter-conditions": [condition]}])
    )
    assert m.select([("s", "t")])[0].where_sql(pg_ident, pg_literal) == sql


def test_filters_structured_and_rendered_with_callers_quoting() -> None:
    rule = sel(
        "1",
        "s",
        "t",
        filters=[
            {
                "filter-type": "source",
                "column-name": "weird `col`",
                "filter-conditions": [{"filter-operator": "eq", "value": 7}, {"filter-operator": "null"}],
            }
        ],
    )
    (only,) = parse(rule).select([("s", "t")])
    assert only.filters == (Filter("weird `col`", (FilterCondition("eq", value=7), FilterCondition("null"))),)
    seen: list[Any] = []

    def lit(v: Any) -> str:
        seen.append(v)
        return str(v) if isinstance(v, int) else pg_literal(v)

    assert only.where_sql(mysql_ident, lit) == "(`weird ``col``` = 7 OR `weird ``col``` IS NULL)"
    assert seen == [7]  # values reach the literal function as written in the JSON


def test_filters_where_sql_helper() -> None:
    assert filters_where_sql([], pg_ident, pg_literal) is None
    one = Filter("a", (FilterCondition("gte", value="1"),))
    assert filters_where_sql([one], pg_ident, pg_literal) == """"a" >= '1'"""


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ([{"filter-operator": "like", "value": "x"}], "unknown filter-operator 'like'"),
        ([{"filter-operator": "eqq", "value": "x"}], "did you mean 'eq'?"),
        ([{"filter-operator": "eq"}], "filter-operator 'eq' needs 'value'"),
        ([{"filter-operator": "between", "start-value": "1"}], "needs 'end-value'"),
        ([{"filter-operator": "null", "value": "x"}], "takes no value"),
        (
            [{"filter-operator": "noteq", "value": "1"}, {"filter-operator": "notnull"}],
            "only one negative operator",
        ),
        ([], "filter-conditions must be a non-empty list"),
        ([{"filter-operator": "eq", "value": "1", "valeu": "2"}], "unknown key 'valeu' (did you mean 'value'?)"),
    ],
)
def test_bad_filters(conditions: list[dict[str, Any]], message: str) -> None:
    rule = sel("1", "s", "t", filters=[{"filter-type": "source", "column-name": "c", "filter-conditions": conditions}])
    msg = error_of(rule)
    assert message in msg
    assert "rule '1'" in msg


def test_filter_type_must_be_source_and_column_named() -> None:
    msg = error_of(
        sel(
            "1",
            "s",
            "t",
            filters=[{"filter-type": "target", "column-name": "c", "filter-conditions": [{"filter-operator": "null"}]}],
        ),
        sel("2", "s", "u", filters=[{"filter-type": "source", "filter-conditions": [{"filter-operator": "null"}]}]),
    )
    assert "filter-type 'target' is not supported" in msg
    assert "rule '2', filter 1: column-name is missing" in msg


def test_filters_on_exclude_are_refused_but_empty_filters_are_fine() -> None:
    f = [{"filter-type": "source", "column-name": "c", "filter-conditions": [{"filter-operator": "null"}]}]
    assert "filters only apply to include rules" in error_of(
        sel("1", "s", "%"), sel("2", "s", "t", "exclude", filters=f)
    )
    m = parse(sel("1", "s", "%", filters=[]), sel("2", "s", "t", "exclude", filters=[]))
    assert [x.table for x in m.select([("s", "t"), ("s", "u")])] == ["u"]


# ----------------------------------------------------------------------------------- transformations


@pytest.mark.parametrize(
    ("action", "extra", "before", "after"),
    [
        ("rename", {"value": "people"}, "EMPLOYEE", "people"),
        ("convert-lowercase", {}, "EMPLOYEE", "employee"),
        ("convert-uppercase", {}, "employee", "EMPLOYEE"),
        ("add-prefix", {"value": "old_"}, "emp", "old_emp"),
        ("remove-prefix", {"value": "tbl_"}, "tbl_emp", "emp"),
        ("remove-prefix", {"value": "tbl_"}, "emp", "emp"),
        ("replace-prefix", {"value": "new_", "old-value": "old_"}, "old_emp", "new_emp"),
        ("replace-prefix", {"value": "new_", "old-value": "old_"}, "emp", "emp"),
        ("add-suffix", {"value": "_v2"}, "emp", "emp_v2"),
        ("remove-suffix", {"value": "_bak"}, "emp_bak", "emp"),
        ("remove-suffix", {"value": "_bak"}, "emp", "emp"),
        ("replace-suffix", {"value": "_new", "old-value": "_old"}, "emp_old", "emp_new"),
    ],
)
def test_rename_actions_on_tables_columns_and_schemas(
    action: str, extra: dict[str, str], before: str, after: str
) -> None:
    m = parse(
        sel("1", "%", "%"),
        tr("2", action, "table", {"schema-name": "s", "table-name": "%"}, **extra),
        tr("3", action, "column", {"schema-name": "s", "table-name": "t", "column-name": "%"}, **extra),
        tr("4", action, "schema", {"schema-name": "x%"}, **extra),
    )
    assert m.target_table_name("s", before) == ("s", after)
    assert m.target_column_name("s", "t", before) == after
    assert m.target_column_name("s", "other", before) == before
    assert m.target_schema_name("x" + before) == m._renamed("x" + before, [m.transformations[2]])
    assert m.target_table_name("q", before) == ("q", before)


def test_schema_rename_with_console_style_nulls() -> None:
    # The DMS console writes "value": null / "old-value": null (and public files "null" strings).
    m = parse(
        sel("1", "%", "%"),
        tr(
            "2",
            "convert-lowercase",
            "schema",
            {"schema-name": "%", "table-name": "%"},
            value=None,
            **{"old-value": None},
        ),
        tr("3", "convert-lowercase", "table", {"schema-name": "%", "table-name": "%"}, value="null"),
    )
    assert m.target_table_name("HR", "EMP") == ("hr", "emp")


def test_schema_rule_with_specific_table_name_is_refused() -> None:
    msg = error_of(
        sel("1", "%", "%"), tr("2", "rename", "schema", {"schema-name": "HR", "table-name": "EMP"}, value="x")
    )
    assert "remove table-name" in msg


def test_include_column_keeps_only_named_columns_and_remove_wins() -> None:
    loc = {"schema-name": "mydatabase", "table-name": "User"}
    m = parse(
        sel("1", "mydatabase", "User"),
        tr("2", "include-column", "column", {**loc, "column-name": "id"}, value=None, **{"old-value": None}),
        tr("3", "include-column", "column", {**loc, "column-name": "user%"}),
        tr("4", "remove-column", "column", {**loc, "column-name": "user_secret"}),
    )
    cols = ["id", "username", "user_secret", "password_hash", "email"]
    assert m.removed_columns("mydatabase", "User", cols) == {"user_secret", "password_hash", "email"}
    assert m.removed_columns("mydatabase", "Profile", cols) == set()


def test_two_columns_onto_one_name_is_refused() -> None:
    m = parse(
        sel("1", "%", "%"),
        tr("2", "convert-lowercase", "column", {"schema-name": "s", "table-name": "t", "column-name": "%"}),
    )
    with pytest.raises(ConfigError, match=r"table s.t: columns land on one target name: .ID., .id. -> .id."):
        m.target_columns("s", "t", ["ID", "id"])


def test_two_tables_onto_one_target_is_refused() -> None:
    m = parse(
        sel("1", "%", "%"), tr("2", "remove-suffix", "table", {"schema-name": "s", "table-name": "%"}, value="_v2")
    )
    assert m.check_target_tables([("s", "a"), ("s", "b_v2")]) == {("s", "a"): ("s", "a"), ("s", "b_v2"): ("s", "b")}
    with pytest.raises(ConfigError, match=r"s\.t, s\.t_v2 -> s\.t"):
        m.check_target_tables([("s", "t"), ("s", "t_v2")])


def test_rule_producing_an_empty_name_is_refused() -> None:
    m = parse(sel("1", "%", "%"), tr("2", "remove-prefix", "table", {"schema-name": "s", "table-name": "%"}, value="t"))
    with pytest.raises(ConfigError, match="rule '2' turns 't' into an empty name"):
        m.target_table_name("s", "t")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (tr("2", "rename", "table", {"schema-name": "s", "table-name": "t"}), "rename needs a non-empty 'value'"),
        (
            tr("2", "replace-prefix", "table", {"schema-name": "s", "table-name": "t"}, value="x"),
            "replace-prefix needs 'old-value'",
        ),
        (tr("2", "rename", "table", {"schema-name": "s"}, value="x"), "object-locator needs table-name"),
        (tr("2", "rename", "column", {"schema-name": "s", "table-name": "t"}, value="x"), "needs column-name"),
        (tr("2", "remove-column", "table", {"schema-name": "s", "table-name": "t"}), "needs rule-target 'column'"),
        (tr("2", "renam", "table", {"schema-name": "s", "table-name": "t"}), "did you mean 'rename'?"),
        (tr("2", "rename", "tabel", {"schema-name": "s", "table-name": "t"}, value="x"), "did you mean 'table'?"),
        (
            tr("2", "rename", "table", {"schema-name": "s", "table-nme": "t"}, value="x"),
            "unknown key 'table-nme' (did you mean 'table-name'?)",
        ),
        (
            tr("2", "data-masking-hash-mask", "column", {"schema-name": "s", "table-name": "t"}),
            "needs column-name",
        ),
        (
            tr("2", "data-masking-digits-mask", "column", {"schema-name": "s", "table-name": "t", "column-name": "c"}),
            "needs 'value': one printable ASCII character",
        ),
        (
            tr(
                "2",
                "data-masking-digits-mask",
                "table",
                {"schema-name": "s", "table-name": "t", "column-name": "c"},
                value="#",
            ),
            "needs rule-target 'column'",
        ),
        (
            tr("2", "add-column", "column", {"schema-name": "s", "table-name": "t"}, value="c"),
            "add-column needs 'data-type'",
        ),
        (
            {**tr("2", "add-column", "column", {"schema-name": "s", "table-name": "t"}), "data-type": {"type": "int8"}},
            "add-column needs 'value'",
        ),
        (
            {
                **tr("2", "change-data-type", "column", {"schema-name": "s", "table-name": "t", "column-name": "c"}),
                "data-type": {"type": "int9"},
            },
            "data-type type 'int9' is not a DMS type",
        ),
        (
            {
                **tr("2", "define-primary-key", "table", {"schema-name": "s", "table-name": "t"}),
                "primary-key-def": {"columns": []},
            },
            "primary-key-def needs 'columns'",
        ),
        (
            tr("2", "convert-lowercase", "table-tablespace", {"schema-name": "s", "table-tablespace-name": "x"}),
            "takes rule-action rename",
        ),
        (
            tr("2", "rename", "index-tablespace", {"schema-name": "s", "index-tablespace-name": "x"}),
            "needs 'value' (the target tablespace)",
        ),
        (
            tr("2", "add-before-image-columns", "column", {"schema-name": "s", "table-name": "t"}),
            "add-before-image-columns is not supported yet",
        ),
    ],
)
def test_bad_transformations(rule: dict[str, Any], message: str) -> None:
    msg = error_of(sel("1", "%", "%"), rule)
    assert message in msg
    assert "rule '2'" in msg


# ------------------------------------------------------------------------------------- document errors


def test_bad_json_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"mappings\.json: not valid JSON at line 3, column"):
        Mappings.from_json('{"rules": [\n {"rule-type": "selection",\n  oops}\n]}', "mappings.json")


@pytest.mark.parametrize("doc", [[], {"rule": []}, {"rules": {}}, "x"])
def test_not_a_mapping_document(doc: Any) -> None:
    with pytest.raises(ConfigError, match='expected an object with a "rules" list'):
        Mappings.from_doc(doc)


def test_every_problem_is_reported_at_once() -> None:
    msg = error_of(
        {
            "rule-type": "selection",
            "rule-name": "no-id",
            "object-locator": {"schema-name": "s", "table-name": "t"},
            "rule-action": "include",
        },
        sel("2", "s", "t", "inclde"),
        {**sel("3", "s", "t"), "load_order": "1"},
        sel("4", "s", "t", **{"load-order": "first"}),
        {"rule-type": "selektion", "rule-id": "5", "rule-name": "5"},
        {**sel("6", "s", "t"), "object-locator": "s.t"},
        sel("6", "s", "u"),
        "not a rule",
    )
    assert "rule 'no-id': rule-id is missing" in msg
    assert "rule '2': unknown rule-action 'inclde' (did you mean 'include'?)" in msg
    assert "rule '3': unknown key 'load_order' (did you mean 'load-order'?)" in msg
    assert "rule '4': load-order must be a number" in msg
    assert "rule '5': unknown rule-type 'selektion' (did you mean 'selection'?)" in msg
    assert "rule '6': object-locator must be an object" in msg
    assert "rule-id 6 is used twice" in msg
    assert "rule #8: a rule must be a JSON object" in msg
    assert msg.startswith("table mappings: ")


def test_duplicate_rule_names_and_missing_locator_names() -> None:
    a = sel("1", "s", "t")
    b = {**sel("2", "s", "u"), "rule-name": "1"}
    c = {**sel("3", "s", "u"), "object-locator": {"schema-name": "s"}}
    msg = error_of(a, b, c)
    assert "rule-name is used twice" in msg
    assert "rule '3': object-locator needs table-name" in msg


def test_at_least_one_selection_rule() -> None:
    msg = error_of(tr("1", "convert-lowercase", "table", {"schema-name": "%", "table-name": "%"}))
    assert "no selection rule" in msg


def test_object_mapping_is_refused() -> None:
    rule = {"rule-type": "object-mapping", "rule-id": "2", "rule-name": "2", "rule-action": "map-record-to-record"}
    assert "DynamoDB/Kinesis/Kafka" in error_of(sel("1", "%", "%"), rule)


def test_post_processing_and_validation_rules_are_warnings() -> None:
    m = parse(
        sel("1", "%", "%"),
        {
            "rule-type": "post-processing",
            "rule-id": "2",
            "rule-name": "tags",
            "rule-action": "add-tag",
            "object-locator": {},
        },
        {"rule-type": "validation", "rule-id": "3", "rule-name": "3", "rule-action": "override-validation-function"},
    )
    assert len(m.warnings) == 2 and "S3 object tags" in m.warnings[0]


def test_rule_name_defaults_to_rule_id() -> None:
    rule = sel("7", "s", "missing")
    del rule["rule-name"]
    assert parse(rule).selection_rules_matching_nothing([("s", "t")]) == ["7"]


def test_load_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read table mappings"):
        Mappings.load(tmp_path / "nope.json")


def test_from_json_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_text(json.dumps(dms_example_supported()))
    assert Mappings.load(f).canonical() == Mappings.from_doc(dms_example_supported()).canonical()


# ----------------------------------------------------------------------------------------- canonical


def test_canonical_ignores_names_order_and_spelling_but_not_meaning() -> None:
    a = parse(sel("1", "s", "%"), sel("2", "s", "x%", "exclude"))
    renamed = parse(
        {**sel("2", "s", "x%", "exclude"), "rule-name": "other", "rule-id": 2},
        {**sel("1", "s", "%"), "rule-name": "first", "rule-action": "INCLUDE"},
    )
    assert a.canonical() == renamed.canonical()
    changed = parse(sel("1", "s", "%"), sel("2", "s", "y%", "exclude"))
    assert a.canonical() != changed.canonical()
    json.dumps(a.canonical())  # JSON-serialisable, for the task fingerprint


def test_select_or_refuse_names_a_rule_matching_nothing_and_an_empty_selection() -> None:
    tables = [("public", "film"), ("public", "actor")]
    typo = parse(sel("1", "public", "Film"))  # DMS matching is case-sensitive
    with pytest.raises(ConfigError, match=r"selection rule '1' matches no table in the source"):
        typo.select_or_refuse(tables)
    nothing = parse(sel("1", "public", "%"), sel("2", "public", "%", action="exclude"))
    with pytest.raises(ConfigError, match="the table mappings select no table"):
        nothing.select_or_refuse(tables)
    chosen = parse(sel("1", "public", "f%")).select_or_refuse(tables)
    assert [(s.schema, s.table) for s in chosen] == [("public", "film")]
