"""DMS ``table-settings`` rules with a MariaDB source (MySQL → PostgreSQL) through the real CLI: ``ranges`` give
exactly the documented segments, ``partitions-auto`` / ``partitions-list`` read the table's own partitions
(``SELECT … FROM t PARTITION (p…)``), every row arrives once (validate equal), and a limited LOB size smaller
than the largest value is refused up front.  Rule shapes as in the DMS User Guide's "Table-settings examples".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SOURCE_SQL = """
CREATE TABLE sales (sales_no int NOT NULL, region varchar(10) NOT NULL, amount decimal(10, 2),
                    PRIMARY KEY (sales_no, region));
INSERT INTO sales SELECT seq, ELT(1 + seq % 4, 'EAST', 'NORTH', 'SOUTH', 'WEST'), seq * 1.25 FROM seq_1_to_4000;
CREATE TABLE orders (id int NOT NULL PRIMARY KEY, note varchar(64))
  PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (1000), PARTITION p1 VALUES LESS THAN (2000),
                           PARTITION pmax VALUES LESS THAN MAXVALUE);
INSERT INTO orders SELECT seq, MD5(seq) FROM seq_1_to_3500;
CREATE TABLE events (id int NOT NULL PRIMARY KEY, kind char(1))
  PARTITION BY RANGE (id) (PARTITION e0 VALUES LESS THAN (100), PARTITION e1 VALUES LESS THAN (200),
                           PARTITION e2 VALUES LESS THAN (300), PARTITION e3 VALUES LESS THAN MAXVALUE);
INSERT INTO events SELECT seq, CHAR(97 + seq % 26) FROM seq_1_to_400;
"""


def rule(rule_id: str, schema: str, table: str, **body: Any) -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": rule_id,
        "object-locator": {"schema-name": schema, "table-name": table},
        **body,
    }


INCLUDE = {
    "rule-type": "selection",
    "rule-id": "1",
    "rule-name": "1",
    "object-locator": {"schema-name": "%", "table-name": "%"},
    "rule-action": "include",
}


def test_parallel_load_from_mariadb(make_mysql_flow, mariadb, mysql_db, pg_target, target_db) -> None:  # noqa: ANN001
    mariadb.execute(mysql_db, SOURCE_SQL)
    ranges = {"type": "ranges", "columns": ["sales_no", "region"], "boundaries": [["1000", "NORTH"], ["3000", "WEST"]]}
    mappings = {
        "rules": [
            INCLUDE,
            rule("2", mysql_db, "sales", **{"parallel-load": ranges}),
            rule("3", mysql_db, "orders", **{"parallel-load": {"type": "partitions-auto"}}),
            rule("4", mysql_db, "events", **{"parallel-load": {"type": "partitions-list", "partitions": ["e1", "e3"]}}),
        ]
    }
    flow = make_mysql_flow(table_mappings=mappings)
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "all equal" in run.err
    plan = json.loads((flow.volume / "plan.json").read_text())
    jsonschema.validate(plan, json.loads((Path(__file__).parents[2] / "manifests" / "plan.schema.json").read_text()))
    tables = {t["name"]: t for t in plan["tables"]}

    def ledger(table: str) -> list[int]:
        rows = pg_target.execute(
            target_db, "SELECT rows FROM bulkmig.loaded_parts WHERE table_name = %s ORDER BY part_key", (table,)
        )
        return [r[0] for r in rows]

    assert [p["bounds"]["hi"] for p in tables["sales"]["partitions"]] == [["1000", "NORTH"], ["3000", "WEST"], None]
    want = mariadb.execute(
        mysql_db,
        "SELECT SUM((sales_no, region) < (1000, 'NORTH')),"
        " SUM((sales_no, region) >= (1000, 'NORTH') AND (sales_no, region) < (3000, 'WEST')),"
        " SUM((sales_no, region) >= (3000, 'WEST')) FROM sales",
    )[0]
    assert ledger("sales") == [int(n) for n in want] and sum(ledger("sales")) == 4000

    assert [p["bounds"]["partitions"] for p in tables["orders"]["partitions"]] == [["p0"], ["p1"], ["pmax"]]
    assert ledger("orders") == [999, 1000, 1501]
    # partitions-list: each listed partition alone, then the others together (bulkmig never skips rows).
    assert [p["bounds"]["partitions"] for p in tables["events"]["partitions"]] == [["e1"], ["e3"], ["e0", "e2"]]
    assert ledger("events") == [100, 101, 199]


def test_limited_lob_size_is_refused_for_mariadb(make_mysql_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    mariadb.execute(
        mysql_db,
        "CREATE TABLE docs (id int PRIMARY KEY, body longtext, tag varchar(20));"
        "INSERT INTO docs VALUES (1, REPEAT('a', 20000), 't'), (2, 'b', 'u');",
    )
    limited = rule("2", mysql_db, "docs", **{"lob-settings": {"mode": "limited", "bulk-max-size": "16"}})
    flow = make_mysql_flow(table_mappings={"rules": [INCLUDE, limited]})
    run = flow.bulkmig("plan")
    assert run.code == 2, run.text
    assert f"{mysql_db}.docs.body: its largest value is 20,000 bytes (20 KB), more than the limited LOB size" in run.err
    assert "docs.tag" not in run.err
