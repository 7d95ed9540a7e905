"""DMS rename rules on PostgreSQL -> PostgreSQL: the schema lands under the new names, whole (views, keys,
indexes, sequences and their ownership, triggers follow), validation pairs the renamed tables, replay writes
into them; a function body naming a renamed object is reported."""

from __future__ import annotations

import json
import re
from typing import Any

from bulkmig.demo.servers import load_dataset


def _rule(n: int, target: str, action: str, locator: dict[str, str], value: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "rule-type": "transformation",
        "rule-id": str(n),
        "rule-name": f"r{n}",
        "rule-target": target,
        "object-locator": locator,
        "rule-action": action,
    }
    if value is not None:
        rule["value"] = value
    return rule


MAPPINGS = {
    "rules": [
        {
            "rule-type": "selection",
            "rule-id": "1",
            "rule-name": "all",
            "object-locator": {"schema-name": "pub%", "table-name": "%"},
            "rule-action": "include",
        },
        _rule(10, "schema", "rename", {"schema-name": "public"}, "dms_sample"),
        _rule(11, "table", "convert-uppercase", {"schema-name": "public", "table-name": "actor"}),
        _rule(12, "table", "add-prefix", {"schema-name": "public", "table-name": "film%"}, "t_"),
        _rule(13, "table", "add-suffix", {"schema-name": "public", "table-name": "payment%"}, "_hist"),
        _rule(
            14,
            "column",
            "rename",
            {"schema-name": "public", "table-name": "customer", "column-name": "first_name"},
            "given_name",
        ),
    ]
}


def _rows(server, db: str, table: str) -> list[tuple]:  # noqa: ANN001
    """Every column of every row, as text, in a stable order (exact comparison, not counts)."""
    return server.execute(db, f"SELECT t::text FROM {table} t ORDER BY t::text")


def _actor_info(server, db: str, schema: str) -> list[tuple]:  # noqa: ANN001
    """pagila's actor_info view, row by row, with the films of each category sorted: the view lists them in
    whatever order its unordered subquery meets them, which is the heap's order and differs after a load of
    parts side by side.  Which films, under which category, for which actor, is the view's meaning."""
    rows = server.execute(
        db, f"SELECT actor_id, first_name, last_name, film_info FROM {schema}.actor_info ORDER BY actor_id"
    )
    out = []
    for actor_id, first, last, info in rows:
        categories = re.split(r", (?=[A-Z][A-Za-z-]*: )", info or "")
        films = {c.split(": ", 1)[0]: sorted(c.split(": ", 1)[1].split(", ")) for c in categories if c}
        out.append((actor_id, first, last, films))
    return out


def test_pagila_with_renames(make_flow, pg_source, pg_target, source_db, target_db, datasets) -> None:  # noqa: ANN001
    load_dataset(pg_source, "pagila", source_db)
    flow = make_flow(table_mappings=MAPPINGS, settings={"max_part_bytes": "256kB"})
    plan_run = flow.bulkmig("plan")
    assert plan_run.code == 0, plan_run.text
    # get_customer_balance's body names film, which becomes t_film: reported, as bodies are text.
    assert "needs action: function public.get_customer_balance(" in plan_run.err, plan_run.err
    plan = json.loads((flow.volume / "plan.json").read_text())
    assert any("get_customer_balance" in n for n in plan["notes"])
    assert flow.bulkmig("extract").code == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True
    assert all(t["equal"] and t["source_rows"] == t["target_rows"] for t in report["tables"])

    q = pg_target.execute
    assert q(target_db, "SELECT nspname FROM pg_namespace WHERE nspname IN ('public', 'dms_sample') ORDER BY 1") == [
        ("dms_sample",),
        ("public",),
    ]
    assert q(target_db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == [(0,)]
    # Data exactly, every column, across the renames.
    pairs = {
        "public.actor": 'dms_sample."ACTOR"',
        "public.film": "dms_sample.t_film",
        "public.film_actor": "dms_sample.t_film_actor",
        "public.customer": "dms_sample.customer",
        "public.payment": "dms_sample.payment_hist",
        "public.rental": "dms_sample.rental",
    }
    for src, dst in pairs.items():
        assert _rows(pg_target, target_db, dst) == _rows(pg_source, source_db, src), dst
    cols = q(
        target_db,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dms_sample' "
        "AND table_name = 'customer' AND column_name IN ('first_name', 'given_name')",
    )
    assert cols == [("given_name",)]
    # Sequences follow the new names (pagila's are not OWNED BY: the CDC test checks ownership).
    default = q(
        target_db,
        """SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'dms_sample."ACTOR"'::regclass""",
    )
    assert ("nextval('dms_sample.actor_actor_id_seq'::regclass)",) in default
    want_seq = pg_source.execute(source_db, "SELECT last_value FROM public.actor_actor_id_seq")
    assert q(target_db, "SELECT last_value FROM dms_sample.actor_actor_id_seq") == want_seq
    # Foreign keys, views, indexes and triggers name the renamed tables.
    fks = dict(
        q(
            target_db,
            "SELECT conname, confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = 'dms_sample.t_film_actor'::regclass",
        )
    )
    assert fks == {"film_actor_actor_id_fkey": 'dms_sample."ACTOR"', "film_actor_film_id_fkey": "dms_sample.t_film"}
    view = q(target_db, "SELECT pg_get_viewdef('dms_sample.actor_info'::regclass)")[0][0]
    assert '"ACTOR"' in view and "t_film_actor" in view
    assert _actor_info(pg_target, target_db, "dms_sample") == _actor_info(pg_source, source_db, "public")
    indexes = {r[0] for r in q(target_db, "SELECT tablename FROM pg_indexes WHERE schemaname = 'dms_sample'")}
    assert {"ACTOR", "t_film", "payment_hist"} <= indexes
    triggers = q(
        target_db,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'dms_sample.\"ACTOR\"'::regclass AND NOT tgisinternal",
    )
    assert triggers == [("last_updated",)]
    q(target_db, """UPDATE dms_sample."ACTOR" SET last_name = 'X' WHERE actor_id = 1""")  # the trigger still runs

    # A rerun renames nothing twice and loads nothing twice.
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert "renamed" not in again.err


def test_full_load_and_cdc_replays_into_renamed_tables(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE items (id serial PRIMARY KEY, label text, price numeric(8,2));"
        "INSERT INTO items (label, price) SELECT 'item ' || g, g * 1.5 FROM generate_series(1, 500) g;",
    )
    mappings = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "all",
                "object-locator": {"schema-name": "public", "table-name": "%"},
                "rule-action": "include",
            },
            _rule(10, "schema", "rename", {"schema-name": "public"}, "shop"),
            _rule(11, "table", "convert-uppercase", {"schema-name": "public", "table-name": "%"}),
            _rule(
                12, "column", "rename", {"schema-name": "public", "table-name": "items", "column-name": "label"}, "name"
            ),
        ]
    }
    flow = make_flow(migration_type="full-load-and-cdc", table_mappings=mappings)
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    # The sequence's ownership follows the renamed table and column, its value is the source's.
    owned = pg_target.execute(target_db, """SELECT pg_get_serial_sequence('shop."ITEMS"', 'id')""")
    assert owned == [("shop.items_id_seq",)]
    assert pg_target.execute(target_db, "SELECT last_value FROM shop.items_id_seq") == [(500,)]
    pg_source.execute(
        source_db,
        "UPDATE items SET label = 'changed', price = 9.99 WHERE id = 7; DELETE FROM items WHERE id = 8;"
        "INSERT INTO items VALUES (1001, 'new', 1.25);",
    )
    cap = flow.bulkmig("capture", "--once")
    assert cap.code == 0, cap.text
    rep = flow.bulkmig("replay")
    assert rep.code == 0, rep.text
    want = pg_source.execute(source_db, "SELECT id, label, price FROM public.items ORDER BY id")
    assert pg_target.execute(target_db, 'SELECT id, name, price FROM shop."ITEMS" ORDER BY id') == want
    check = flow.bulkmig("validate")
    assert check.code == 0, check.text
