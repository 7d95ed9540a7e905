"""DMS ``table-settings`` rules, used unchanged, through the real CLI on real servers: ``parallel-load`` decides
the parts of a table (checked in plan.json and in the target's ledger, and every row arrives once: validate
says equal), and a limited LOB size smaller than the largest value is refused up front.

The rule shapes are the DMS documentation's own examples ("Table-settings examples" in the DMS User Guide:
CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings), with our table names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SALES_ROWS = 4_000
REGIONS = ("EAST", "NORTH", "SOUTH", "WEST")

SOURCE_SQL = f"""
CREATE TABLE public.sales (sales_no int NOT NULL, region text NOT NULL, amount numeric(10, 2),
                           PRIMARY KEY (sales_no, region));
INSERT INTO public.sales SELECT g, (ARRAY{list(REGIONS)})[1 + g % 4], g * 1.25 FROM generate_series(1, {SALES_ROWS}) g;
-- No key and NULLs in the range column: DMS would leave the NULL rows out, bulkmig puts them in the last part.
CREATE TABLE public.events (id int, kind text, payload text);
INSERT INTO public.events SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE chr(97 + g % 26) END, repeat('x', g % 50)
FROM generate_series(1, 3000) g;
CREATE TABLE public.orders (id int NOT NULL, placed date NOT NULL, note text) PARTITION BY RANGE (id);
CREATE TABLE public.orders_1 PARTITION OF public.orders FOR VALUES FROM (MINVALUE) TO (10000);
CREATE TABLE public.orders_2 PARTITION OF public.orders FOR VALUES FROM (10000) TO (20000);
CREATE TABLE public.orders_3 PARTITION OF public.orders FOR VALUES FROM (20000) TO (30000);
CREATE TABLE public.orders_rest PARTITION OF public.orders DEFAULT;
INSERT INTO public.orders SELECT g, DATE '2024-01-01' + g % 365, repeat(md5(g::text), 4)
FROM generate_series(1, 40000) g;
CREATE TABLE public.big (id int PRIMARY KEY, note text);
INSERT INTO public.big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;
CREATE TABLE public.listed (id int NOT NULL, note text) PARTITION BY LIST ((id % 2));
CREATE TABLE public.listed_even PARTITION OF public.listed FOR VALUES IN (0);
CREATE TABLE public.listed_odd PARTITION OF public.listed FOR VALUES IN (1);
INSERT INTO public.listed SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;
"""


def include_all() -> dict[str, Any]:
    return {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "object-locator": {"schema-name": "%", "table-name": "%"},
        "rule-action": "include",
    }


def settings_rule(rule_id: str, table: str, **body: Any) -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": rule_id,
        "rule-name": rule_id,
        "object-locator": {"schema-name": "public", "table-name": table},
        **body,
    }


def parts_of(plan: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(t for t in plan["tables"] if t["name"] == name)["partitions"]


def test_parallel_load_decides_the_parts(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)
    mappings = {
        "rules": [
            include_all(),
            # DMS's "Load a table segmented by ranges of column values" example: two columns, two boundaries.
            settings_rule(
                "2",
                "sales",
                **{
                    "parallel-load": {
                        "type": "ranges",
                        "columns": ["sales_no", "region"],
                        "boundaries": [["1000", "NORTH"], ["3000", "WEST"]],
                    }
                },
            ),
            settings_rule(
                "3",
                "events",
                **{"parallel-load": {"type": "ranges", "columns": ["kind"], "boundaries": [["h"], ["p"]]}},
            ),
            settings_rule("4", "orders", **{"parallel-load": {"type": "partitions-auto"}}),
            settings_rule("5", "big", **{"parallel-load": {"type": "none"}}),
            settings_rule(
                "6", "listed", **{"parallel-load": {"type": "partitions-list", "partitions": ["listed_even"]}}
            ),
        ]
    }
    # Small parts, so that every table above would be cut by size if its setting were ignored.
    flow = make_flow(table_mappings=mappings, settings={"max_part_bytes": "64kB"})
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "all equal" in run.err
    plan = json.loads((flow.volume / "plan.json").read_text())
    schemas = Path(__file__).parents[2] / "manifests"
    jsonschema.validate(plan, json.loads((schemas / "plan.schema.json").read_text()))

    # ranges: exactly len(boundaries) + 1 parts, each holding exactly the rows of its segment.
    sales = parts_of(plan, "sales")
    assert [p["bounds"] for p in sales] == [
        {"columns": ["sales_no", "region"], "lo": None, "hi": ["1000", "NORTH"]},
        {"columns": ["sales_no", "region"], "lo": ["1000", "NORTH"], "hi": ["3000", "WEST"]},
        {"columns": ["sales_no", "region"], "lo": ["3000", "WEST"], "hi": None},
    ]
    ledger = dict(
        pg_target.execute(
            target_db, "SELECT part_key, rows FROM bulkmig.loaded_parts WHERE table_name = 'sales' ORDER BY 1"
        )
    )
    want = pg_source.execute(
        source_db,
        """SELECT count(*) FILTER (WHERE (sales_no, region) < (1000, 'NORTH')),
                  count(*) FILTER (WHERE (sales_no, region) >= (1000, 'NORTH') AND (sales_no, region) < (3000, 'WEST')),
                  count(*) FILTER (WHERE (sales_no, region) >= (3000, 'WEST'))
           FROM public.sales""",
    )[0]
    assert list(ledger.values()) == list(want) and sum(want) == SALES_ROWS and min(want) > 0

    events = parts_of(plan, "events")
    assert len(events) == 3
    events_ledger = pg_target.execute(
        target_db, "SELECT rows FROM bulkmig.loaded_parts WHERE table_name = 'events' ORDER BY part_key"
    )
    nulls, at_or_above_p = pg_source.execute(
        source_db, "SELECT count(*) FILTER (WHERE kind IS NULL), count(*) FILTER (WHERE kind >= 'p') FROM events"
    )[0]
    assert nulls > 0 and events_ledger[2][0] == nulls + at_or_above_p  # the NULL rows arrive, in the last part
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.events WHERE kind IS NULL")[0][0] == nulls

    # partitions-auto: one part per partition (PostgreSQL moves a partitioned table leaf by leaf).
    leaves = {t["name"]: t for t in plan["tables"] if t["parent"] == "public.orders"}
    assert sorted(leaves) == ["orders_1", "orders_2", "orders_3", "orders_rest"]
    assert all(len(t["partitions"]) == 1 and t["split"]["method"] == "partition" for t in leaves.values())
    # none: one part, although the table is many times max_part_bytes.
    assert len(parts_of(plan, "big")) == 1
    # partitions-list: the listed partition in one part; the other still moves, cut by size as usual.
    assert len(parts_of(plan, "listed_even")) == 1 and len(parts_of(plan, "listed_odd")) > 1

    for table in ("sales", "events", "orders", "big", "listed"):
        assert pg_target.execute(target_db, f"SELECT count(*) FROM public.{table}") == pg_source.execute(
            source_db, f"SELECT count(*) FROM public.{table}"
        ), table


def test_table_settings_that_cannot_be_honoured_are_refused(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)
    cases = [
        (
            settings_rule("2", "big", **{"parallel-load": {"type": "partitions-auto"}}),
            "public.big has no partitions, so parallel-load partitions-auto has nothing to load in parallel",
        ),
        (
            settings_rule("2", "orders", **{"parallel-load": {"type": "subpartitions-auto"}}),
            "public.orders has no subpartitions",
        ),
        (
            settings_rule("2", "orders", **{"parallel-load": {"type": "partitions-list", "partitions": ["orders_9"]}}),
            "public.orders has no partition 'orders_9' (its partitions: orders_1, orders_2, orders_3, orders_rest)",
        ),
        (
            settings_rule(
                "2", "sales", **{"parallel-load": {"type": "ranges", "columns": ["SALES_NO"], "boundaries": [["1"]]}}
            ),
            "parallel-load ranges column 'SALES_NO' is not a column of the table",
        ),
        (
            settings_rule("2", "Sales", **{"parallel-load": {"type": "none"}}),
            "table-settings rule '2' (public.Sales) names a table the selection rules do not select",
        ),
    ]
    for rule, message in cases:
        flow = make_flow(table_mappings={"rules": [include_all(), rule]})
        run = flow.bulkmig("plan", "--restart")
        assert run.code == 2, run.text
        assert message in run.err, run.err
        assert not (flow.volume / "plan.json").exists()


def test_limited_lob_size_smaller_than_the_largest_value_is_refused(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        """CREATE TABLE public.items (id int PRIMARY KEY, doc text, img bytea, small varchar(10));
           INSERT INTO public.items SELECT g, repeat('d', g * 100), decode(repeat('ab', g * 300), 'hex'), 'x'
           FROM generate_series(1, 50) g;""",
    )
    # The largest doc is 5,000 bytes, the largest img 15,000 bytes: a 10 KB limit cuts img only.
    limited = settings_rule("2", "items", **{"lob-settings": {"mode": "limited", "bulk-max-size": "10"}})
    flow = make_flow(table_mappings={"rules": [include_all(), limited]})
    run = flow.bulkmig("plan")
    assert run.code == 2, run.text
    assert (
        "public.items.img: its largest value is 15,000 bytes (15 KB), more than the limited LOB size 10,240 bytes"
        in run.err
    )
    assert "public.items.doc" not in run.err and "small" not in run.err
    assert "DMS would truncate it" in run.err and not (flow.volume / "plan.json").exists()

    # A limit above the largest value, and DMS's unlimited mode, plan (and copy every value whole).
    for lob in ({"bulk-max-size": "15"}, {"mode": "unlimited", "bulk-max-size": "0"}):
        flow = make_flow(
            table_mappings={"rules": [include_all(), settings_rule("2", "items", **{"lob-settings": lob})]}
        )
        run = flow.bulkmig("plan", "--restart")
        assert run.code == 0, run.text
