"""What the data-changing DMS rules decide per table at plan time, and what they refuse in one line."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.model import Column, Table
from bulkmig.transform import plan as tplan
from bulkmig.transform.apply import Transformer, part_schema
from bulkmig.transform.validation import note, source_forms


def _table() -> Table:
    return Table(
        "public",
        "people",
        [
            Column("id", "integer", "integer", "int32"),
            Column("name", "text", "text", "string"),
            Column("code", "character varying(20)", "text", "string"),
            Column("amount", "numeric(10,2)", "decimal", "string"),
            Column("born", "date", "date", "date32"),
            Column("blob", "bytea", "binary", "binary"),
        ],
        primary_key=["id"],
    )


def _mappings(*rules: dict[str, Any]) -> Mappings:
    select = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "object-locator": {"schema-name": "%", "table-name": "%"},
        "rule-action": "include",
    }
    return Mappings.from_doc({"rules": [select, *rules]})


def _rule(n: int, action: str, column: str | None = None, **extra: Any) -> dict[str, Any]:
    loc = {"schema-name": "public", "table-name": "people"} | ({"column-name": column} if column else {})
    target = extra.pop("target", "table" if action == "define-primary-key" else "column")
    return {
        "rule-type": "transformation",
        "rule-id": str(n),
        "rule-name": f"r{n}",
        "rule-action": action,
        "rule-target": target,
        "object-locator": loc,
        **extra,
    }


def _built(*rules: dict[str, Any]) -> Table:
    table = _table()
    tplan.build(_mappings(*rules), [table])
    return table


def test_plan_records_every_kind_of_rule() -> None:
    t = _built(
        _rule(2, "data-masking-digits-mask", "code", value="*"),
        _rule(3, "data-masking-hash-mask", "name"),
        _rule(4, "add-column", value="label", expression="$name || ':' || $id", **{"data-type": {"type": "string"}}),
        _rule(5, "change-data-type", "code", **{"data-type": {"type": "string", "length": 80}}),
        _rule(6, "define-primary-key", **{"primary-key-def": {"origin": "unique-index", "columns": ["code", "label"]}}),
    )
    assert [m["column"] for m in t.transform["masks"]] == ["code", "name"]
    assert t.transform["added"][0]["pg_type"] == "text" and t.transform["added"][0]["arrow_type"] == "string"
    assert t.transform["types"] == [{"column": "code", "pg_type": "varchar(80)", "rule": "r5"}]
    assert t.transform["primary_key"] == {
        "name": "people_pkey",
        "origin": "unique-index",
        "columns": ["code", "label"],
        "rule": "r6",
    }
    assert Table.from_dict(t.to_dict()).transform == t.transform  # the plan keeps it
    forms = source_forms(t)
    assert forms["code"] == "regexp_replace(({})::varchar(80), '[0-9]', '*', 'g')"
    assert "sha256" in forms["name"] and note(t) == ""  # the added column is recomputed and compared (recompute.py)


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        (_rule(2, "data-masking-hash-mask", "id"), "id is part of the primary key"),
        (_rule(2, "data-masking-digits-randomize", "born"), "born is date, not a text column"),
        (_rule(2, "data-masking-hash-mask", "code"), "the 64-character hash does not fit"),
        (_rule(2, "data-masking-hash-mask", "nope"), "matches no column or table"),
        (_rule(2, "add-column", value="name", expression="1", **{"data-type": {"type": "int4"}}), "already exists"),
        (_rule(2, "add-column", value="x", expression="$name", **{"data-type": {"type": "int8"}}), "gives TEXT"),
        (_rule(2, "add-column", value="x", expression="$blob", **{"data-type": {"type": "string"}}), "$blob is not"),
        (_rule(2, "add-column", value="x", expression="1", **{"data-type": {"type": "blob"}}), "cannot be computed"),
        (
            _rule(2, "define-primary-key", **{"primary-key-def": {"columns": ["missing"]}}),
            "primary-key-def names 'missing'",
        ),
    ],
)
def test_refused_at_plan_time(rule: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        _built(rule)
    assert named in str(err.value) and "r2" in str(err.value) and "\n" not in str(err.value)


def test_cdc_add_column_needs_a_key_and_no_operation_indicator() -> None:
    keyless = _table()
    keyless.primary_key = []
    rule = _rule(2, "add-column", value="x", expression="$AR_H_OPERATION", **{"data-type": {"type": "string"}})
    with pytest.raises(ConfigError, match="has no primary key: not honoured in CDC"):
        tplan.build(_mappings(rule), [keyless], cdc=True)
    t = _table()
    tplan.build(_mappings(rule), [t], cdc=True)  # the header is there with CDC
    flag = _rule(
        2, "add-column", value="x", expression="operation_indicator('D','U','I')", **{"data-type": {"type": "string"}}
    )
    tplan.build(_mappings(flag), [_table()])  # full load: 'I'
    with pytest.raises(ConfigError, match="operation_indicator"):
        tplan.build(_mappings(flag), [_table()], cdc=True)


def test_a_hash_fits_once_the_type_is_widened() -> None:
    t = _built(
        _rule(2, "change-data-type", "code", **{"data-type": {"type": "string", "length": 64}}),
        _rule(3, "data-masking-hash-mask", "code"),
    )
    assert t.transform["masks"][0]["action"] == "data-masking-hash-mask"


def test_cdc_and_other_engines_refuse_in_one_line() -> None:
    m = _mappings(_rule(2, "change-data-type", "name", **{"data-type": {"type": "string"}}))
    with pytest.raises(ConfigError, match=r"'r2' \(change-data-type\) is not honoured in CDC"):
        tplan.refuse_data_rules(m, "in CDC", tplan.CDC_OK)
    masked = _mappings(_rule(2, "data-masking-hash-mask", "name"))
    tplan.refuse_data_rules(masked, "in CDC", tplan.CDC_OK)  # capture masks too
    with pytest.raises(ConfigError, match="is not honoured for a MySQL/MariaDB target"):
        tplan.refuse_data_rules(masked, "for a MySQL/MariaDB target")
    space = _mappings(
        _rule(2, "rename", target="table-tablespace", value="fast", **{})
        | {"object-locator": {"schema-name": "public", "table-name": "people", "table-tablespace-name": "%"}}
    )
    tplan.refuse_data_rules(space, "in CDC", tplan.CDC_OK)  # DDL only: fine with CDC


def test_transformer_masks_before_expressions_see_the_values() -> None:
    t = _built(
        _rule(2, "data-masking-digits-mask", "code", value="#"),
        _rule(3, "add-column", value="echo", expression="$code || '/' || $name", **{"data-type": {"type": "string"}}),
        _rule(4, "add-column", value="n", expression="round($amount) * 2", **{"data-type": {"type": "real8"}}),
        _rule(5, "add-column", value="empty", **{"data-type": {"type": "date"}}),
    )
    t.columns = [c for c in t.columns if c.name != "blob"]
    from bulkmig.engines.postgres.reader import arrow_schema

    schema = part_schema(t, arrow_schema(t))
    assert schema.names == ["id", "name", "code", "amount", "born", "echo", "n", "empty"]
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2], pa.int32()),
            "name": ["a", None],
            "code": ["A12", "9"],
            "amount": pa.array(["1.50", None]),
            "born": pa.array([None, None], pa.date32()),
        }
    )
    out = Transformer(t).apply(batch, schema).to_pydict()
    assert out["code"] == ["A##", "#"]
    assert out["echo"] == ["A##/a", None]  # the expression saw the masked value
    assert out["n"] == [4.0, None] and out["empty"] == [None, None]


def _one_row(name: str) -> pa.RecordBatch:
    """One source row of the test table (its blob column left out), ``name`` as given."""
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1], pa.int32()),
            "name": [name],
            "code": ["x"],
            "amount": pa.array(["1"]),
            "born": pa.array([None], pa.date32()),
        }
    )


def test_validation_recomputes_only_what_has_no_change_header() -> None:
    """Outside a load (no snapshot time), a datetime of $AR_H_COMMIT_TIMESTAMP has no value: validation asks
    for the other added columns only, and must not stop on it (issue 15's migrate failure)."""
    t = _built(
        _rule(
            2, "add-column", value="seen", expression="$AR_H_COMMIT_TIMESTAMP", **{"data-type": {"type": "datetime"}}
        ),
        _rule(3, "add-column", value="echo", expression="$name || '!'", **{"data-type": {"type": "string"}}),
    )
    t.columns = [c for c in t.columns if c.name != "blob"]
    from bulkmig.engines.postgres.reader import arrow_schema
    from bulkmig.transform.recompute import recomputable

    assert recomputable(t) == (["echo"], ["seen"])
    batch = _one_row("a")
    schema = part_schema(t, arrow_schema(t))
    with pytest.raises(SourceError, match="is not a YYYY-MM-DD"):
        Transformer(t).apply(batch, schema)  # every column, with no snapshot time: refused
    out = Transformer(t, only=["echo"]).apply(batch, schema).to_pydict()
    assert out["echo"] == ["a!"] and out["seen"] == [None]
    taken = Transformer(t, {"taken_at": "2026-12-07T16:00:00+00:00"}).apply(batch, schema).to_pydict()
    assert str(taken["seen"][0]) == "2026-12-07 16:00:00"


def test_added_string_longer_than_its_length_stops_without_the_value() -> None:
    t = _built(
        _rule(
            2, "add-column", value="short", expression="$name || 'xx'", **{"data-type": {"type": "string", "length": 2}}
        )
    )
    t.columns = [c for c in t.columns if c.name != "blob"]
    from bulkmig.engines.postgres.reader import arrow_schema

    batch = _one_row("secret")
    with pytest.raises(SourceError) as err:
        Transformer(t).apply(batch, part_schema(t, arrow_schema(t)))
    assert "longer than 2" in str(err.value) and "secret" not in str(err.value)


def test_partitions_follow_their_table_and_refuse_what_needs_the_parent() -> None:
    leaf = _table()
    leaf.name, leaf.kind, leaf.parent = "people_2024", "partition", "public.people"
    tplan.build(_mappings(_rule(2, "data-masking-hash-mask", "name")), [leaf], cdc=True)  # the rule names the parent
    assert leaf.transform["masks"][0]["column"] == "name"
    add = _rule(2, "add-column", value="x", expression="1", **{"data-type": {"type": "int4"}})
    with pytest.raises(ConfigError, match="only masking is honoured on partitioned tables"):
        tplan.build(_mappings(add), [leaf])
    by_leaf = _rule(2, "data-masking-hash-mask", "name")
    by_leaf["object-locator"]["table-name"] = "people_2024"
    other = _table()
    other.name, other.kind, other.parent = "people_2024", "partition", "public.people"
    tplan.build(_mappings(by_leaf), [other])  # full load: the leaf's own parts are masked
    with pytest.raises(ConfigError, match="captured changes come under public.people's name"):
        tplan.build(_mappings(by_leaf), [_leaf_copy()], cdc=True)


def _leaf_copy() -> Table:
    leaf = _table()
    leaf.name, leaf.kind, leaf.parent = "people_2024", "partition", "public.people"
    return leaf
