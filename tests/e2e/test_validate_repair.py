"""validate → failure records → status → validate --repair → validate, through the real CLI (PG → PG)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from bulkmig.core.manifest import validate_document

STATUS_SCHEMA = json.loads((Path(__file__).parents[2] / "manifests" / "status.schema.json").read_text())


def table_status(flow, name: str) -> dict:  # noqa: ANN001
    doc = json.loads(flow.bulkmig("status", "--json").out)
    jsonschema.validate(doc, STATUS_SCHEMA)
    return next(t for t in doc["tables"] if t["table"] == name)["validation"]


def test_failures_recorded_shown_in_status_and_repaired(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE acct (id bigint PRIMARY KEY, owner text, balance numeric(12,2), rate float8);"
        "INSERT INTO acct SELECT g, 'owner ' || g, g * 1.25, 0.5 FROM generate_series(1, 20000) g;"
        "UPDATE acct SET owner = '', rate = 0.0 WHERE id = 77;"
        "CREATE TABLE fine (id int PRIMARY KEY, v text);"
        "INSERT INTO fine SELECT g, 'f' FROM generate_series(1, 500) g;",
    )
    flow = make_flow(settings={"validation": {"partition_size": 1000}})
    assert flow.bulkmig("migrate").code == 0
    assert table_status(flow, "acct")["state"] == "Validated"
    pg_target.execute(
        target_db,
        "UPDATE acct SET balance = 0 WHERE id = 5000; DELETE FROM acct WHERE id = 12345;"
        "INSERT INTO acct VALUES (20001, 'new', 1, 1); UPDATE acct SET owner = NULL, rate = '-0' WHERE id = 77;",
    )

    run = flow.bulkmig("validate", "--json")
    assert run.code == 5, run.text
    report = json.loads(run.out)
    validate_document(report, "validate")
    acct = next(t for t in report["tables"] if t["table"] == "public.acct")
    assert acct["validation_state"] == "Mismatched records" and acct["differing_keys"] == [
        "(77)",
        "(5000)",
        "(12345)",
        "(20001)",
    ]
    assert [(f["key"], f["failure_type"]) for f in acct["failures"]] == [
        ('{"key": ["77"]}', "RECORD_DIFF"),
        ('{"key": ["5000"]}', "RECORD_DIFF"),
        ('{"key": ["12345"]}', "MISSING_TARGET"),
        ('{"key": ["20001"]}', "MISSING_SOURCE"),
    ]
    assert json.loads(acct["failures"][0]["details"]) == [[{"owner": "", "rate": "0"}, {"owner": None, "rate": "-0"}]]
    assert acct["partitions"] >= 10 and acct["partitions_differing"] <= 4 and acct["queries"] > 0
    assert f"{acct['partitions']} partitions, {acct['partitions_differing']} differ" in run.err
    assert "4 failure records in bulkmig.validation_failures" in run.err
    rows = pg_target.execute(
        target_db,
        "SELECT task_name, table_owner, table_name, key_type, key, failure_type FROM bulkmig.validation_failures"
        " ORDER BY failure_type, key",
    )
    assert rows == [
        ("task", "public", "acct", "Row", '{"key": ["20001"]}', "MISSING_SOURCE"),
        ("task", "public", "acct", "Row", '{"key": ["12345"]}', "MISSING_TARGET"),
        ("task", "public", "acct", "Row", '{"key": ["5000"]}', "RECORD_DIFF"),
        ("task", "public", "acct", "Row", '{"key": ["77"]}', "RECORD_DIFF"),
    ]
    assert table_status(flow, "acct") | {"at": None} == {
        "state": "Mismatched records",
        "failed_records": 4,
        "repaired_records": 0,
        "partitions": acct["partitions"],
        "at": None,
    }
    assert table_status(flow, "fine")["state"] == "Validated"
    text = flow.bulkmig("status").out
    assert "public.acct" in text and "(Mismatched records: 4 failed)" in text

    fix = flow.bulkmig("validate", "--repair", "--json")
    assert fix.code == 0, fix.text
    fixed = next(t for t in json.loads(fix.out)["tables"] if t["table"] == "public.acct")
    assert fixed["equal"] and fixed["repaired"] == 4 and fixed["validation_state"] == "Validated"
    assert table_status(flow, "acct")["repaired_records"] == 4
    stamped = pg_target.execute(
        target_db, "SELECT count(*) FROM bulkmig.validation_failures WHERE repaired_at IS NOT NULL"
    )
    assert stamped == [(4,)]
    q = "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM acct t"
    assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q)

    again = flow.bulkmig("validate")
    assert again.code == 0, again.text
    assert pg_target.execute(target_db, "SELECT count(*) FROM bulkmig.validation_failures") == [(0,)]
    assert table_status(flow, "acct")["state"] == "Validated"
