"""The MySQL value scan against a real MariaDB: zero dates, tinyint(1) values other than 0/1 and invalid
ENUM values are counted per column, with the first key, in the notes the assessment report shows — for
``plan`` (``open_catalog``, inside the snapshot) and ``bulkmig convert`` (``reflect_source``) alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.task import Task
from bulkmig.convert import convert, reflect_source
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, Catalog
from bulkmig.demo.servers import MariaDBServer
from bulkmig.engines.mysql import source

# sql_mode '' admits zero dates and stores '' for an ENUM value that is no label (index 0).
SETUP = """
SET SESSION sql_mode = '';
CREATE TABLE ev (
  id int PRIMARY KEY, d date, dt datetime NOT NULL DEFAULT '2000-01-01 00:00:00', ts timestamp NULL DEFAULT NULL,
  ok date, flag tinyint(1), e enum('x', 'y'), e2 enum('', 'a'), gen date AS (d) VIRTUAL
);
INSERT INTO ev (id, d, dt, ts, ok, flag, e, e2) VALUES
  (1, '2020-01-01', '2020-01-01 00:00:00', '2020-01-01 00:00:00', '2020-01-01', 1, 'x', 'a'),
  (5, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2020-01-02', 2, 'nope', 'nope'),
  (9, '2020-00-10', '2020-05-00 10:00:00', NULL, NULL, -1, 'y', ''),
  (12, '2021-01-01', '2021-01-01 00:00:00', NULL, NULL, 0, NULL, NULL);
CREATE TABLE pair (a int, b varchar(5), d date, PRIMARY KEY (a, b));
INSERT INTO pair VALUES (3, 'a', '0000-00-00'), (2, 'z', '2020-00-00'), (1, 'q', '2020-01-01'), (2, 'y', NULL);
CREATE TABLE nokey (d date);
INSERT INTO nokey VALUES ('0000-00-00'), ('2020-01-01');
"""

COUNTED = re.compile(r"\d+ (zero dates?|values? other than|invalid ENUM)")

# What the scan adds, per column, on the fixture with the default settings.
EXPECTED: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("ev", "d"): [(CHANGED, "2 zero dates load as NULL (zero_dates: null), first at key (5)")],
    ("ev", "dt"): [
        (
            ACTION,
            "2 zero dates, first at key (5), in a NOT NULL column that cannot take them as NULL: extract stops at "
            "the first one; fix: UPDATE them to real dates on the source, or make the column nullable there "
            "(zero_dates: null then loads them as NULL)",
        )
    ],
    ("ev", "ts"): [(CHANGED, "1 zero date loads as NULL (zero_dates: null), first at key (5)")],
    ("ev", "flag"): [
        (
            ACTION,
            "2 values other than 0 and 1, first at key (5), cannot become boolean: extract stops at the first one; "
            "fix: settings.mysql.tinyint1_as_boolean: false (keeps smallint), or UPDATE them to 0/1 on the source",
        )
    ],
    ("ev", "e"): [
        (
            ACTION,
            "1 invalid ENUM value ('' stored outside strict mode), first at key (5): the PostgreSQL enum has no "
            "such label, so extract stops at the first one; fix: UPDATE them to a valid label or NULL on the source",
        )
    ],
    ("ev", "e2"): [
        (
            CHANGED,
            "1 invalid ENUM value ('' stored outside strict mode), first at key (5), loads as the label '' (the "
            "column also has '' as a real label)",
        )
    ],
    ("pair", "d"): [(CHANGED, "2 zero dates load as NULL (zero_dates: null), first at key (2,z)")],
    ("nokey", "d"): [(CHANGED, "1 zero date loads as NULL (zero_dates: null)")],
}


def make_task(mariadb: MariaDBServer, db: str, mysql: dict[str, Any] | None = None, mappings: Any = None) -> Task:
    doc: dict[str, Any] = {
        "source": mariadb.url(db),
        "target": "postgresql://admin@127.0.0.1:1/unused",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/scan",
        "settings": {"mysql": mysql or {}},
    }
    if mappings is not None:
        doc["table_mappings"] = mappings
    return Task.from_dict(doc, Path("."), env={"BULKMIG_SOURCE_PASSWORD": mariadb.password})


def scan_notes(catalog: Catalog) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The notes the scan added (the type map's own notes never carry a count)."""
    out = {}
    for ct in catalog.tables:
        for c in ct.columns:
            added = [(n.status, n.message) for n in c.mapping.notes if COUNTED.match(n.message)]
            if added:
                out[(ct.table.name, c.name)] = added
    return out


@pytest.fixture
def broken_db(mariadb: MariaDBServer, mysql_db: str) -> str:
    mariadb.execute(mysql_db, SETUP)
    return mysql_db


def test_plan_catalog_counts_every_changed_or_refused_value_with_its_first_key(
    mariadb: MariaDBServer, broken_db: str
) -> None:
    catalog, position = source.open_catalog(make_task(mariadb, broken_db))
    assert position["exported_by"] == source.EXPORTED_BY
    assert scan_notes(catalog) == EXPECTED
    # The counts decide the column's status: a date column holding zero dates is "converted with changes",
    # a clean one stays "converted", a refused value makes it "needs action".
    ev = {c.name: c for c in catalog.table("ev").columns}
    assert [ev[n].mapping.status for n in ("dt", "flag", "e")] == [ACTION] * 3
    assert (ev["ok"].mapping.status, ev["d"].mapping.status) == (CONVERTED, CHANGED)


def test_zero_dates_refuse_makes_every_zero_date_an_action(mariadb: MariaDBServer, broken_db: str) -> None:
    catalog, _ = source.open_catalog(make_task(mariadb, broken_db, {"zero_dates": "refuse"}))
    notes = scan_notes(catalog)
    assert notes[("ev", "d")] == [
        (
            ACTION,
            "2 zero dates, first at key (5): extract stops at the first one (zero_dates: refuse); fix: UPDATE them "
            "to real dates or NULL on the source, or set settings.mysql.zero_dates: null to load them as NULL",
        )
    ]
    assert notes[("ev", "dt")] == EXPECTED[("ev", "dt")]  # NOT NULL: the same whatever the setting
    assert notes[("ev", "flag")] == EXPECTED[("ev", "flag")]


def test_tinyint1_as_smallint_has_nothing_to_refuse(mariadb: MariaDBServer, broken_db: str) -> None:
    catalog, _ = source.open_catalog(make_task(mariadb, broken_db, {"tinyint1_as_boolean": False}))
    notes = scan_notes(catalog)
    assert ("ev", "flag") not in notes
    assert notes[("ev", "e")] == EXPECTED[("ev", "e")]


def test_scan_values_false_skips_the_scan_and_keeps_the_fingerprint(mariadb: MariaDBServer, broken_db: str) -> None:
    on = make_task(mariadb, broken_db)
    off = make_task(mariadb, broken_db, {"scan_values": False})
    assert off.settings.mysql.scan_values is False and on.settings.mysql.scan_values is True
    catalog, _ = source.open_catalog(off)
    assert scan_notes(catalog) == {}
    # It changes only the report: the volume a task fits stays the same.
    assert off.fingerprint() == on.fingerprint()
    assert on.fingerprint_inputs()["settings"]["mysql"] == {
        "tinyint1_as_boolean": True,
        "zero_dates": "null",
        "time_as": "time",
        "postgis": False,
    }


def test_only_what_the_mappings_move_is_counted(mariadb: MariaDBServer, broken_db: str) -> None:
    """An excluded table, a filtered-out row and a removed column hold nothing the load could refuse."""
    locator = {"schema-name": broken_db, "table-name": "ev"}
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "ev-without-key-5",
                "object-locator": locator,
                "rule-action": "include",
                "filters": [
                    {
                        "filter-type": "source",
                        "column-name": "id",
                        "filter-conditions": [{"filter-operator": "noteq", "value": "5"}],
                    }
                ],
            },
            {
                "rule-type": "transformation",
                "rule-id": "2",
                "rule-name": "drop-flag",
                "rule-target": "column",
                "object-locator": {**locator, "column-name": "flag"},
                "rule-action": "remove-column",
            },
        ]
    }
    catalog, _ = source.open_catalog(make_task(mariadb, broken_db, mappings=mappings))
    assert scan_notes(catalog) == {
        ("ev", "d"): [(CHANGED, "1 zero date loads as NULL (zero_dates: null), first at key (9)")],
        ("ev", "dt"): [
            (
                ACTION,
                EXPECTED[("ev", "dt")][0][1].replace("2 zero dates, first at key (5)", "1 zero date, first at key (9)"),
            )
        ],
    }


def test_convert_report_shows_the_counts_and_lists_the_refusals(mariadb: MariaDBServer, broken_db: str) -> None:
    """``bulkmig convert``'s path (a plain connection): the counts reach both renderings of the report."""
    task = make_task(mariadb, broken_db)
    conversion = convert(reflect_source(task), task)
    objects = {o["name"]: o for o in conversion.report["objects"] if o["kind"] == "column"}
    for (table, column), notes in EXPECTED.items():
        got = [(n["status"], n["message"]) for n in objects[f"{table}.{column}"]["notes"]]
        assert all(n in got for n in notes), (table, column, got)
    assert {name for name, o in objects.items() if o["status"] == ACTION} == {"ev.dt", "ev.flag", "ev.e"}
    md = conversion.render_markdown()
    needs, tables = md.split("## Needs action", 1)[1].split("## Tables", 1)
    for name in ("ev.dt", "ev.flag", "ev.e"):
        assert f"### column `{name}` (table ev)" in needs
    assert "- 2 values other than 0 and 1, first at key (5), cannot become boolean" in needs
    d_row = next(line for line in tables.splitlines() if line.startswith("| d | date |"))
    assert "2 zero dates load as NULL (zero_dates: null), first at key (5)" in d_row
