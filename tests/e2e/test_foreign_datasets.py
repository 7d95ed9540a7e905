"""The shared datasets from MySQL/MariaDB and SQLite into PostgreSQL through the real CLI, checked by
``bulkmig validate`` itself: every table equal value by value, and a deliberately broken value (a zero
date in MariaDB, a value out of its column's range in SQLite) named in the assessment report and by
validate or the load — never silent damage.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from typing import Any

from bulkmig.demo.servers import load_dataset

CHINOOK_TABLES = 11
CHINOOK_ROWS = 15607  # the README's row counts, summed
SAKILA_TABLES = 16
SAKILA_ROWS = 47_273


def by_table(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["table"]: t for t in report["tables"]}


def column_notes(assessment: dict[str, Any], table: str, column: str) -> list[str]:
    """Every report line about one column of the assessment JSON (wherever the report nests it)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("kind") == "column" and node.get("name") == f"{table}.{column}":
                found.append(json.dumps(node))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(assessment)
    return found


def migrate_and_validate(flow: Any) -> dict[str, Any]:
    """``bulkmig migrate``, then ``bulkmig validate --json`` on its own: both succeed; the report."""
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    return json.loads(check.out)


def assert_all_of_chinook(report: dict[str, Any], converted: int) -> None:
    assert report["equal"] is True and report["converted_values"] == converted
    assert len(report["tables"]) == CHINOOK_TABLES
    assert sum(t["source_rows"] for t in report["tables"]) == CHINOOK_ROWS
    assert all(t["method"] == "merge" and t["source_rows"] == t["target_rows"] for t in report["tables"])


def test_sakila_zero_date_is_a_converted_value_and_a_changed_value_is_named(
    make_mysql_flow, mariadb, pg_target, target_db, datasets
) -> None:  # noqa: ANN001
    load_dataset(mariadb, "sakila-mysql", "sakila")
    # A zero date, as an old application running without strict mode leaves behind.
    mariadb.execute(
        "sakila", "SET SESSION sql_mode = ''; UPDATE rental SET return_date = '0000-00-00 00:00:00' WHERE rental_id = 7"
    )
    flow = make_mysql_flow(database="sakila")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    # migrate's own validation already says so, by column and key.
    assert "all equal; 1 value converted as the task's settings say" in run.err, run.err
    assert "converted in return_date: zero date loaded as NULL (zero_dates: null) at (7)" in run.err

    # The assessment report announced it for the column, counted with its key by the plan's value scan.
    counted = "1 zero date loads as NULL (zero_dates: null), first at key (7)"
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    notes = " ".join(column_notes(assessment, "rental", "return_date"))
    assert "zero dates" in notes and counted in notes, notes
    markdown = (flow.volume / "schema/assessment.md").read_text()
    assert any(line.startswith("| return_date |") and counted in line for line in markdown.splitlines()), markdown

    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True and report["converted_values"] == 1
    tables = by_table(report)
    assert len(tables) == SAKILA_TABLES and sum(t["source_rows"] for t in tables.values()) == SAKILA_ROWS
    assert all(t["source_rows"] == t["target_rows"] for t in tables.values())
    assert tables["sakila.rental"]["conversions"] == [
        {"column": "return_date", "why": "zero date loaded as NULL (zero_dates: null)", "count": 1, "keys": ["(7)"]}
    ]
    assert pg_target.execute(target_db, "SELECT return_date FROM sakila.rental WHERE rental_id = 7") == [(None,)]

    # Damage on the target is named: key, column, both values; exit code 5.
    # (as a replica: the converted ON UPDATE CURRENT_TIMESTAMP trigger would change last_update as well)
    pg_target.execute(
        target_db,
        "SET session_replication_role = replica; UPDATE sakila.film SET rental_rate = 5.00 WHERE film_id = 3",
    )
    bad = flow.bulkmig("validate", "--json")
    assert bad.code == 5, bad.text
    film = by_table(json.loads(bad.out))["sakila.film"]
    assert film["differing_rows"] == 1 and film["differing_keys"] == ["(3)"]
    assert film["differences"][0]["columns"] == [{"column": "rental_rate", "source": "2.99", "target": "5.00"}]


def test_chinook_mysql_validates_equal(make_mysql_flow, mariadb, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "chinook-mysql", "Chinook")
    report = migrate_and_validate(make_mysql_flow(database="Chinook"))
    assert_all_of_chinook(report, converted=0)
    assert by_table(report)["Chinook.Track"]["target"] == "chinook.track"


def test_chinook_sqlite_out_of_range_value_is_refused_then_validates_equal(make_flow, datasets, tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "chinook.db"  # the dataset's file is read-only and shared: work on a copy
    shutil.copyfile(datasets / "chinook" / "Chinook_Sqlite.sqlite", db)
    db.chmod(0o644)
    with sqlite3.connect(db) as conn:
        # Too many digits for NUMERIC(10,2), and an invoice date stored as a julian day number.
        conn.execute("UPDATE Track SET UnitPrice = 123456789012.5 WHERE TrackId = 7")
        conn.execute("UPDATE Invoice SET InvoiceDate = 2455197.5 WHERE InvoiceId = 1")
    conn.close()
    flow = make_flow(source=f"sqlite:///{db}")

    # The assessment report names both, with an example row.
    convert = flow.bulkmig("convert", "--out", str(tmp_path / "convert"))
    assert convert.code == 0, convert.text
    assessment = json.loads((tmp_path / "convert" / "assessment.json").read_text())
    price = " ".join(column_notes(assessment, "Track", "UnitPrice"))
    assert "1 value(s) do not fit numeric(10,2), e.g. rowid 7: real 123456789012.5" in price, price
    dates = " ".join(column_notes(assessment, "Invoice", "InvoiceDate"))
    assert "1 date(s) stored as numbers" in dates, dates

    # The load refuses the value by name rather than round or truncate it.
    run = flow.bulkmig("migrate")
    assert run.code != 0
    assert "UnitPrice" in run.err and "123456789012.5" in run.err, run.err

    # Fixed on the source, a fresh volume migrates; validate counts the numeric date as a converted value.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE Track SET UnitPrice = 0.99 WHERE TrackId = 7")
    conn.close()
    report = migrate_and_validate(make_flow(source=f"sqlite:///{db}", volume="./volume2", bucket=flow.bucket + "2"))
    assert_all_of_chinook(report, converted=1)
    (conversion,) = by_table(report)["main.Invoice"]["conversions"]
    assert conversion["column"] == "invoicedate" and conversion["keys"] == ["(1)"]
