"""MySQL/MariaDB -> Parquet volume -> S3 (moto over HTTP) -> PostgreSQL through the real CLI, with the shared
sakila and chinook datasets: plan (catalog + conversion in one snapshot), extract, seal, import, load.

Every table is compared row by row and value by value between MariaDB and PostgreSQL, rows paired by
primary key, values normalised only where the two engines spell the same value differently (a SET's
``'a,b'`` is a text[] ``['a', 'b']``, tinyint(1) is a boolean, a geometry is its WKB).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq

from bulkmig.config.task import Endpoint
from bulkmig.demo.servers import MariaDBServer, PostgresServer, load_dataset
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql.reflect import quote_ident
from bulkmig.engines.postgres.sql import ident, qualified

# The datasets' README row counts, summed.
SAKILA_TABLES, SAKILA_ROWS = 16, 47_273
CHINOOK_TABLES, CHINOOK_ROWS = 11, 15_607


def source_rows(mariadb: MariaDBServer, db: str, table: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of a planned table as MariaDB holds it (read with bulkmig's session: UTC timestamps)."""
    exprs = []
    for col in table["columns"]:
        ref = quote_ident(col["name"])
        exprs.append(f"ST_AsBinary({ref})" if col["logical_type"] == "geometry" else ref)
    conn = my.connect(Endpoint.parse(mariadb.url(db), "source").with_password(mariadb.password))
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT {', '.join(exprs)} FROM {quote_ident(db)}.{quote_ident(table['name'])}")
        return [normal_row(row, table) for row in cur.fetchall()]
    finally:
        conn.close()


def target_rows(pg: PostgresServer, db: str, table: dict[str, Any]) -> list[tuple[Any, ...]]:
    cols = ", ".join(ident(c["target_name"] or c["name"]) for c in table["columns"])
    rows = pg.execute(db, f"SELECT {cols} FROM {qualified(table['target_schema'], table['target_name'])}")
    return [normal_row(row, table) for row in rows]


def normal_row(row: tuple[Any, ...], table: dict[str, Any]) -> tuple[Any, ...]:
    """``normal`` per value; CHAR(n) without its trailing blanks (insignificant in both engines, but
    PostgreSQL prints them and MySQL strips them)."""
    out = []
    for value, col in zip(row, table["columns"], strict=True):
        value = normal(value)
        if isinstance(value, str) and col["source_type"].startswith("char("):
            value = value.rstrip(" ")
        out.append(value)
    return tuple(out)


def normal(value: Any) -> Any:
    """One spelling per value: the engines' drivers hand over the same value in different Python types."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, list):  # text[] from a SET
        return ",".join(value)
    if isinstance(value, set):
        return ",".join(sorted(value))
    return value


def compare_every_table(mariadb: MariaDBServer, db: str, pg: PostgresServer, target_db: str, plan: dict) -> int:
    """Assert that every planned table holds the same rows on both sides; returns the rows compared."""
    compared = 0
    for table in plan["tables"]:
        names = [c["name"] for c in table["columns"]]
        key = [names.index(k) for k in table["primary_key"]]

        def by_key(row: tuple[Any, ...], key: list[int] = key) -> tuple[Any, ...]:
            return tuple(row[i] for i in key) if key else tuple(str(v) for v in row)

        want = sorted(source_rows(mariadb, db, table), key=by_key)
        got = sorted(target_rows(pg, target_db, table), key=by_key)
        assert len(got) == len(want), table["name"]
        for w, g in zip(want, got, strict=True):
            assert g == w, f"{table['name']} key {by_key(w)}: target {g!r} != source {w!r}"
        compared += len(want)
    return compared


def validate_says_equal(flow: Any, plan: dict) -> None:
    """`bulkmig validate` (the cross-engine comparison) agrees with the comparison above, table by table."""
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True, check.out
    assert len(report["tables"]) == len(plan["tables"])


def run_flow(flow: Any) -> None:
    """plan → extract → seal → import → load, each a CLI process, as an operator runs them."""
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
    run = flow.run("volume", "seal", str(flow.volume))
    assert run.code == 0, run.text
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"


def test_sakila_mysql_to_postgresql(make_mysql_flow, mariadb, pg_target, target_db, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "sakila-mysql", "sakila")
    # InnoDB's size estimates are stale right after a bulk load; the split below depends on them.
    mariadb.execute("sakila", "ANALYZE TABLE payment, rental")
    flow = make_mysql_flow(database="sakila", settings={"max_part_bytes": "256kB"})
    run_flow(flow)
    plan = json.loads((flow.volume / "plan.json").read_text())

    # The plan: MySQL source, the binlog position of its snapshot, the conversion's files beside it.
    assert plan["source"]["engine"] == "mysql" and plan["source"]["database"] == "sakila"
    snap = plan["snapshot"]
    assert snap["exported_by"] == "flush-tables-read-lock" and snap["server_id"] == 1
    assert snap["lsn"] == f"{snap['binlog_file']}:{snap['binlog_pos']}" and snap["gtid_set"]
    for name in ("pre-data", "post-data", "assessment-md", "assessment-json"):
        assert (flow.volume / plan["schema_files"][name]["key"]).is_file(), name
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    assert assessment["summary"]["total"] > 100
    assert "film" in (flow.volume / "schema/assessment.md").read_text()
    schemas = Path(__file__).parents[2] / "manifests"
    jsonschema.validate(plan, json.loads((schemas / "plan.schema.json").read_text()))

    # Big tables were split by their integer keys; each sidecar records where its rows come from.
    payment = next(t for t in plan["tables"] if t["name"] == "payment")
    assert payment["split"] == {"method": "key-range", "column": "payment_id"} and len(payment["partitions"]) > 1
    sidecars = sorted(flow.volume.glob("data/sakila/payment/part-*.json"))
    assert len(sidecars) == len(payment["partitions"])
    for sidecar in sidecars:
        pos = json.loads(sidecar.read_text())["source_position"]
        assert pos["exported_by"] == "flush-tables-read-lock" and pos["binlog_file"] == snap["binlog_file"]
        jsonschema.validate(json.loads(sidecar.read_text()), json.loads((schemas / "part.schema.json").read_text()))

    assert len(plan["tables"]) == SAKILA_TABLES
    assert compare_every_table(mariadb, "sakila", pg_target, target_db, plan) == SAKILA_ROWS
    validate_says_equal(flow, plan)

    # Loaded once per part; a rerun loads nothing again.
    ledger = pg_target.execute(target_db, "SELECT count(*), count(DISTINCT part_key) FROM bulkmig.loaded_parts")
    assert ledger == [(sum(len(t["partitions"]) for t in plan["tables"]),) * 2]
    again = flow.bulkmig("load")
    assert again.code == 0 and "already loaded" in again.err, again.text
    # Identities continue past the loaded rows; the foreign keys are there.
    new_id = pg_target.execute(
        target_db, "INSERT INTO sakila.actor (first_name, last_name) VALUES ('A', 'B') RETURNING actor_id"
    )
    assert new_id[0][0] > 200
    fks = pg_target.execute(
        target_db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'sakila'::regnamespace"
    )
    assert fks == [(22,)]


def test_chinook_mysql_folds_names_and_keeps_every_value(
    make_mysql_flow, mariadb, pg_target, target_db, datasets
) -> None:  # noqa: ANN001
    load_dataset(mariadb, "chinook-mysql", "Chinook")
    # Fresh statistics, as a long-lived database has them (InnoDB updates them in the background after a load).
    tables = [t for (t,) in mariadb.execute("Chinook", "SHOW TABLES")]
    mariadb.execute("Chinook", "ANALYZE TABLE " + ", ".join(quote_ident(t) for t in tables))
    flow = make_mysql_flow(database="Chinook", settings={"max_part_bytes": "64kB", "workers": 3})
    run_flow(flow)
    plan = json.loads((flow.volume / "plan.json").read_text())
    # identifiers: lower (the default) folds the names: "Chinook"."InvoiceLine" becomes chinook.invoiceline.
    assert len(tables) == CHINOOK_TABLES and "InvoiceLine" in tables
    assert {(t["name"], t["target_schema"], t["target_name"]) for t in plan["tables"]} == {
        (name, "chinook", name.lower()) for name in tables
    }
    assert compare_every_table(mariadb, "Chinook", pg_target, target_db, plan) == CHINOOK_ROWS
    validate_says_equal(flow, plan)
    track = next(t for t in plan["tables"] if t["name"] == "Track")
    assert len(track["partitions"]) > 1


def test_cdc_plan_refuses_a_statement_binlog(make_mysql_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    """full-load-and-cdc needs row events: with binlog_format=STATEMENT plan refuses, naming the setting,
    and writes no plan; with ROW (the fixture's server) it records the binlog position."""
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY)")
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    saved = mariadb.execute(None, "SELECT @@GLOBAL.binlog_format")[0][0]
    mariadb.execute(None, "SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        refused = flow.bulkmig("plan")
    finally:
        mariadb.execute(None, "SET GLOBAL binlog_format = %s", (saved,))
    assert refused.code != 0 and "binlog_format" in refused.err and "ROW" in refused.err, refused.text
    assert not (flow.volume / "plan.json").exists()
    run = flow.bulkmig("plan")
    assert run.code == 0, run.text
    plan = json.loads((flow.volume / "plan.json").read_text())
    assert plan["migration_type"] == "full-load-and-cdc" and plan["snapshot"]["binlog_file"]


def test_extract_reads_one_moment_while_a_writer_commits(make_mysql_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    """Two tables updated together in every transaction, extracted in many parts by three workers while
    the writer goes on: the parts must add up to one state of the source (equal sums), and every sidecar
    must name the same snapshot and binlog position."""
    mariadb.execute(
        mysql_db,
        "CREATE TABLE a (id int PRIMARY KEY, v bigint NOT NULL, pad char(60) NOT NULL DEFAULT '');"
        "CREATE TABLE b (id int PRIMARY KEY, v bigint NOT NULL, pad char(60) NOT NULL DEFAULT '');"
        "INSERT INTO a (id, v) SELECT seq, 0 FROM seq_1_to_20000;"
        "INSERT INTO b (id, v) SELECT seq, 0 FROM seq_1_to_20000;"
        "ANALYZE TABLE a, b",
    )
    flow = make_mysql_flow(settings={"max_part_bytes": "128kB", "workers": 3})
    run = flow.bulkmig("plan")
    assert run.code == 0, run.text
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        conn = my.connect(Endpoint.parse(mariadb.url(mysql_db), "source").with_password(mariadb.password))
        cur = conn.cursor()
        try:
            while not stop.is_set():
                row = commits[0] * 7919 % 20000 + 1
                cur.execute("UPDATE a SET v = v + 1 WHERE id = %s", (row,))
                cur.execute("UPDATE b SET v = v + 1 WHERE id = %s", (row,))
                conn.commit()
                commits[0] += 1
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while commits[0] < 50:
            assert writer.is_alive(), "the writer died before extract started"
            time.sleep(0.01)
        before = commits[0]
        run = flow.bulkmig("extract")
        during = commits[0] - before
    finally:
        stop.set()
        writer.join()
    assert run.code == 0, run.text
    assert during > 50, "the writer must have committed while extract ran"
    sums, snapshots = {}, set()
    for name in ("a", "b"):
        parts = sorted(flow.volume.glob(f"data/{mysql_db}/{name}/part-*.parquet"))
        assert len(parts) > 2, name
        sums[name] = sum(sum(pq.read_table(p, columns=["v"]).column("v").to_pylist()) for p in parts)
        for sidecar in flow.volume.glob(f"data/{mysql_db}/{name}/part-*.json"):
            pos = json.loads(sidecar.read_text())["source_position"]
            snapshots.add((pos["snapshot"], pos["lsn"]))
    assert sums["a"] == sums["b"] > 0
    assert len(snapshots) == 1
    final = mariadb.execute(mysql_db, "SELECT (SELECT sum(v) FROM a), (SELECT sum(v) FROM b)")[0]
    assert final[0] == final[1] > sums["a"], "the writer went on after the snapshot; the parts must not show it"


def test_migrate_moves_a_mysql_database_in_one_command(
    make_mysql_flow, mariadb, mysql_db, pg_target, target_db
) -> None:  # noqa: ANN001
    mariadb.execute(
        mysql_db,
        "SET SESSION sql_mode = '';"
        "CREATE TABLE Things (Id int unsigned AUTO_INCREMENT PRIMARY KEY, Flag tinyint(1), Born date,"
        " Kind enum('a','b'), Tags set('x','y'), Doc json, Price decimal(65,30), Big bigint unsigned);"
        "INSERT INTO Things VALUES (1, 1, '0000-00-00', 'b', 'x,y', '{\"k\": 1}', 1.5, 18446744073709551615),"
        " (2, 0, '2024-02-29', NULL, '', NULL, NULL, 0)",
    )
    run = make_mysql_flow().bulkmig("migrate")
    assert run.code == 0, run.text
    rows = pg_target.execute(
        target_db, f"SELECT id, flag, born, kind::text, tags, doc->>'k', price, big FROM {mysql_db}.things ORDER BY id"
    )
    assert [tuple(str(v) if v is not None else None for v in r) for r in rows] == [
        ("1", "True", None, "b", "['x', 'y']", "1", "1.500000000000000000000000000000", "18446744073709551615"),
        ("2", "False", "2024-02-29", None, "[]", None, None, "0"),
    ]
