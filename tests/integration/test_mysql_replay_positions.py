"""MySQL full-load-and-cdc: replay skips, per table, the changes the loaded rows already hold.

plan records binlog position P0 and capture starts there; extract reads in its own FLUSH TABLES WITH READ
LOCK snapshot at a later P1 (each sidecar records it).  A change between P0 and P1 is in the loaded rows
already: applied again it would double a key-less table's inserts (and change the wrong one of two equal
rows).  The flows here write between plan and extract and after it, through the real CLI, MariaDB, moto's
S3 and PostgreSQL, and compare the target with the source exactly (the key-less table as a multiset).
Parts of one table read in two snapshots (two extract agents), and a column added before the snapshot
(which the parts lack), converge for a keyed table and are refused for a key-less one.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from bulkmig.core.errors import IntegrityError, PlanError
from bulkmig.core.model import Column, Partition, Table
from bulkmig.engines.mysql.binlog import BinlogPos, in_snapshot, snapshot_position
from bulkmig.fullload.plan import Plan
from bulkmig.replay.marks import TableMark, refuse_mixed_keyless, snapshot_marks

Row = tuple[str | None, ...]

SCHEMA = """
CREATE TABLE bag (n int NOT NULL, label varchar(20), amount decimal(10,2)) ENGINE=InnoDB;
CREATE TABLE item (id int PRIMARY KEY, label varchar(20), qty int) ENGINE=InnoDB;
INSERT INTO bag VALUES (1, 'same', 1.50), (1, 'same', 1.50), (2, 'two', NULL), (3, 'three', 3.00);
INSERT INTO item VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);
"""

# Between plan and extract: in the parts already, never to be applied again.  10 row changes; the last
# is an insert into the key-less table, so a snapshot boundary off by one transaction doubles a row.
BEFORE_EXTRACT = """
INSERT INTO bag VALUES (4, 'four', 4.00), (4, 'four', 4.00);
UPDATE bag SET label = 'changed' WHERE n = 1 LIMIT 1;
DELETE FROM bag WHERE n = 2;
INSERT INTO item VALUES (4, 'four', 4);
UPDATE item SET qty = qty + 10 WHERE id = 1;
DELETE FROM item WHERE id = 2;
BEGIN; INSERT INTO bag VALUES (5, 'in txn', 5.00); UPDATE item SET label = 'txn' WHERE id = 3; COMMIT;
INSERT INTO bag VALUES (6, 'last before', 6.00);
"""

# After extract: not in the parts, applied once.  7 row changes.
AFTER_EXTRACT = """
INSERT INTO bag VALUES (7, 'after', 7.00), (1, 'same', 1.50);
UPDATE bag SET amount = 9.99 WHERE n = 4 LIMIT 1;
DELETE FROM bag WHERE n = 3;
INSERT INTO item VALUES (5, 'five', 5);
UPDATE item SET qty = 0 WHERE id = 4;
DELETE FROM item WHERE id = 3;
"""


def _text(rows: list[tuple[Any, ...]]) -> list[Row]:
    return [tuple(None if v is None else str(v) for v in r) for r in rows]


def source_bag(mariadb: Any, db: str) -> Counter[Row]:
    return Counter(_text(mariadb.execute(db, "SELECT n, label, CAST(amount AS CHAR) FROM bag")))


def target_bag(pg: Any, db: str, schema: str) -> Counter[Row]:
    return Counter(_text(pg.execute(db, f'SELECT n::text, label, amount::text FROM "{schema}".bag')))


def source_items(mariadb: Any, db: str) -> list[Row]:
    return _text(mariadb.execute(db, "SELECT id, label, qty FROM item ORDER BY id"))


def target_items(pg: Any, db: str, schema: str) -> list[Row]:
    return _text(pg.execute(db, f'SELECT id::text, label, qty::text FROM "{schema}".item ORDER BY id'))


def run_ok(flow: Any, command: str, *args: str) -> str:
    run = flow.bulkmig(command, *args)
    assert run.code == 0, (command, run.text)
    return run.err


def seal_import_load_capture(flow: Any) -> None:
    seal = flow.run("volume", "seal", str(flow.volume))
    assert seal.code == 0, seal.text
    run_ok(flow, "volume import")
    run_ok(flow, "load")
    run_ok(flow, "capture", "--once")


def snapshot_positions(flow: Any, table: str) -> list[BinlogPos]:
    """The snapshot position each of the table's parts on the local volume was read at, by part index."""
    found = []
    for path in sorted(flow.volume.glob(f"data/*/{table}/part-*.json")):
        pos = snapshot_position(json.loads(path.read_text())["source_position"])
        assert pos is not None, path
        found.append(pos)
    return found


def split_in_two(flow: Any, table: str, where: tuple[str, str]) -> None:
    """Give ``table`` two parts in the plan on the volume (MySQL splits only by an integer key, and only
    large tables): two extract agents then read them in two snapshots."""
    path = flow.volume / "plan.json"
    doc = json.loads(path.read_text())
    (entry,) = [t for t in doc["tables"] if t["name"] == table]
    entry["partitions"] = [{"index": i, "where": w, "bounds": {}, "estimated_bytes": 1} for i, w in enumerate(where)]
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------------------------------ flows


def test_changes_between_plan_and_extract_are_applied_exactly_once(
    make_mysql_flow: Any, mariadb: Any, mysql_db: str, pg_target: Any, target_db: str
) -> None:
    mariadb.execute(mysql_db, SCHEMA)
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    run_ok(flow, "plan")
    snapshot = json.loads((flow.volume / "plan.json").read_text())["snapshot"]
    p0 = BinlogPos(snapshot["binlog_file"], snapshot["binlog_pos"])
    mariadb.execute(mysql_db, BEFORE_EXTRACT)
    run_ok(flow, "extract")
    (p1,) = set(snapshot_positions(flow, "bag") + snapshot_positions(flow, "item"))
    assert p1.ordinal > p0.ordinal  # the parts hold BEFORE_EXTRACT, the stream starts before it
    mariadb.execute(mysql_db, AFTER_EXTRACT)
    seal_import_load_capture(flow)

    err = run_ok(flow, "replay", "--until-caught-up")
    schema = mysql_db.lower()
    assert target_bag(pg_target, target_db, schema) == source_bag(mariadb, mysql_db)
    assert target_items(pg_target, target_db, schema) == source_items(mariadb, mysql_db)
    assert "17 changes" in err and "10 changes skipped as already in the loaded rows" in err, err
    assert source_bag(mariadb, mysql_db)[("1", "same", "1.50")] == 2  # one of two equal rows changed, one added

    # Later changes arrive as usual; the marks are recomputed by each run and skip nothing more.
    mariadb.execute(mysql_db, "INSERT INTO bag VALUES (8, 'later', NULL); UPDATE item SET qty = 7 WHERE id = 5")
    run_ok(flow, "capture", "--once")
    err = run_ok(flow, "replay", "--until-caught-up")
    assert "skipped" not in err and "2 changes" in err, err  # past every snapshot: nothing skipped, nothing said
    assert target_bag(pg_target, target_db, schema) == source_bag(mariadb, mysql_db)
    assert target_items(pg_target, target_db, schema) == source_items(mariadb, mysql_db)


def test_a_keyed_table_read_in_two_snapshots_converges_from_the_lower_one(
    make_mysql_flow: Any, mariadb: Any, mysql_db: str, pg_target: Any, target_db: str
) -> None:
    mariadb.execute(mysql_db, "CREATE TABLE item (id int PRIMARY KEY, label varchar(20), qty int) ENGINE=InnoDB")
    mariadb.execute(mysql_db, "INSERT INTO item VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3), (4, 'f', 4)")
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    run_ok(flow, "plan")
    split_in_two(flow, "item", ("`id` < 3", "`id` >= 3"))
    mariadb.execute(mysql_db, "UPDATE item SET qty = 10 WHERE id IN (1, 3); INSERT INTO item VALUES (5, 'v', 5)")
    run_ok(flow, "extract", "--agent", "1/2")
    # Between the two snapshots: in part 1's rows, not in part 0's.
    mariadb.execute(mysql_db, "UPDATE item SET qty = qty + 1; DELETE FROM item WHERE id IN (2, 4)")
    run_ok(flow, "extract", "--agent", "2/2")
    low, high = snapshot_positions(flow, "item")
    assert low.ordinal < high.ordinal
    mariadb.execute(mysql_db, "UPDATE item SET label = 'after' WHERE id IN (1, 3); INSERT INTO item VALUES (6, 'w', 6)")
    seal_import_load_capture(flow)

    err = run_ok(flow, "replay", "--until-caught-up")
    # Only what came before the lower snapshot is skipped: the update of 1 and 3 and the insert of 5.
    assert "3 changes skipped as already in the loaded rows" in err, err
    assert target_items(pg_target, target_db, mysql_db.lower()) == source_items(mariadb, mysql_db)


def test_a_keyless_table_read_in_two_snapshots_is_refused(
    make_mysql_flow: Any, mariadb: Any, mysql_db: str, pg_target: Any, target_db: str
) -> None:
    mariadb.execute(mysql_db, "CREATE TABLE bag (n int NOT NULL, label varchar(20)) ENGINE=InnoDB")
    mariadb.execute(mysql_db, "INSERT INTO bag VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c')")
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    run_ok(flow, "plan")
    split_in_two(flow, "bag", ("`n` % 2 = 0", "`n` % 2 <> 0"))
    run_ok(flow, "extract", "--agent", "1/2")
    mariadb.execute(mysql_db, "INSERT INTO bag VALUES (4, 'd'), (5, 'e')")  # in part 1, not in part 0
    run_ok(flow, "extract", "--agent", "2/2")
    low, high = snapshot_positions(flow, "bag")
    assert low.ordinal < high.ordinal
    seal_import_load_capture(flow)
    loaded = Counter(_text(pg_target.execute(target_db, f'SELECT * FROM "{mysql_db.lower()}".bag')))
    assert loaded[("4", "d")] == 0 and loaded[("5", "e")] == 1  # the two parts show two moments

    run = flow.bulkmig("replay", "--until-caught-up")
    assert run.code == 4, run.text
    last = run.err.strip().splitlines()[-1]
    assert f"table {mysql_db}.bag has no primary key" in last and f"binlog {low}, {high}" in last, last
    assert "re-extract the table in one extract run" in last and "bulkmig plan --restart" in last, last
    # Nothing was applied.
    assert Counter(_text(pg_target.execute(target_db, f'SELECT * FROM "{mysql_db.lower()}".bag'))) == loaded
    assert pg_target.execute(target_db, "SELECT count(*) FROM bulkmig.replay_position")[0][0] == 0


def test_a_column_added_before_the_snapshot_is_replayed_again_for_a_keyed_table(
    make_mysql_flow: Any, mariadb: Any, mysql_db: str, pg_target: Any, target_db: str
) -> None:
    """extract reads the planned columns only: the values a column added after the plan got before the
    snapshot are not in the parts.  A keyed table gets the changes since the ADD COLUMN again (idempotent);
    a key-less one cannot (next test)."""
    mariadb.execute(mysql_db, SCHEMA)
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    run_ok(flow, "plan")
    mariadb.execute(
        mysql_db,
        "UPDATE item SET qty = 5 WHERE id = 1; ALTER TABLE item ADD COLUMN note varchar(10);"
        "UPDATE item SET note = 'noted' WHERE id = 2; INSERT INTO item VALUES (4, 'four', 4, 'new');"
        "DELETE FROM item WHERE id = 3",
    )
    run_ok(flow, "extract")
    mariadb.execute(mysql_db, "UPDATE item SET note = 'after' WHERE id = 4; INSERT INTO bag VALUES (9, 'z', NULL)")
    seal_import_load_capture(flow)
    schema = mysql_db.lower()
    assert pg_target.execute(target_db, f'SELECT count(*) FROM "{schema}".item')[0][0] == 3  # 1, 2 and 4

    err = run_ok(flow, "replay", "--until-caught-up")
    assert "1 changes skipped as already in the loaded rows" in err, err  # the update before the ALTER
    rows = pg_target.execute(target_db, f'SELECT id::text, label, qty::text, note FROM "{schema}".item ORDER BY id')
    assert _text(rows) == _text(mariadb.execute(mysql_db, "SELECT id, label, qty, note FROM item ORDER BY id"))
    assert target_bag(pg_target, target_db, schema) == source_bag(mariadb, mysql_db)

    # A column added to the key-less table after its snapshot holds nothing back: applied as usual.
    mariadb.execute(mysql_db, "ALTER TABLE bag ADD COLUMN note varchar(10); INSERT INTO bag VALUES (10, 'y', 1, 'n')")
    run_ok(flow, "capture", "--once")
    before = target_bag(pg_target, target_db, schema)
    run = flow.bulkmig("replay", "--until-caught-up")
    assert run.code == 0, run.text
    assert target_bag(pg_target, target_db, schema) == before + Counter({("10", "y", "1.00"): 1})


def test_a_keyless_table_with_a_column_added_before_its_snapshot_is_refused(
    make_mysql_flow: Any, mariadb: Any, mysql_db: str, pg_target: Any, target_db: str
) -> None:
    mariadb.execute(mysql_db, SCHEMA)
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    run_ok(flow, "plan")
    mariadb.execute(mysql_db, "ALTER TABLE bag ADD COLUMN note varchar(10); INSERT INTO bag VALUES (9, 'z', 1, 'x')")
    run_ok(flow, "extract")
    seal_import_load_capture(flow)
    schema = mysql_db.lower()
    loaded = target_bag(pg_target, target_db, schema)
    assert loaded[("9", "z", "1.00")] == 1

    run = flow.bulkmig("replay", "--until-caught-up")
    assert run.code == 4, run.text
    last = run.err.strip().splitlines()[-1]
    assert f"column(s) 'note' of {mysql_db}.bag were added on the source before the snapshot" in last, last
    assert "bulkmig plan --restart" in last, last
    assert target_bag(pg_target, target_db, schema) == loaded  # the batch was not applied


# ------------------------------------------------------------------------------------------ pure logic


def _plan(tables: list[Table]) -> Plan:
    return Plan("vol-1", "2024-01-01T00:00:00+00:00", "t", "f", "full-load-and-cdc", {}, {}, {}, [], tables, {})


def _table(name: str, key: list[str], parts: int) -> Table:
    cols = [Column("id", "int", "integer", "int32", nullable=False), Column("v", "int", "integer", "int32")]
    cols[1].target_name = "v_t"
    table = Table(schema="shop", name=name, columns=cols, primary_key=key)
    table.target_schema, table.target_name = "shop", f"{name}_t"
    table.partitions = [Partition(i, None) for i in range(parts)]
    return table


def _at(file: str, pos: int) -> dict[str, Any]:
    return {"snapshot": "s", "lsn": f"{file}:{pos}", "binlog_file": file, "binlog_pos": pos}


def test_in_snapshot_is_the_commit_event_start_below_the_snapshot_position() -> None:
    snapshot = BinlogPos("binlog.000002", 1000).ordinal
    assert in_snapshot(BinlogPos("binlog.000002", 969).ordinal, snapshot)  # its XID event ends at 1000
    assert not in_snapshot(BinlogPos("binlog.000002", 1000).ordinal, snapshot)  # the next commit after it
    assert in_snapshot(BinlogPos("binlog.000001", 4_000_000).ordinal, snapshot)  # an earlier file
    assert not in_snapshot(BinlogPos("binlog.000003", 4).ordinal, snapshot)


def test_marks_take_the_lowest_snapshot_and_refuse_a_mixed_keyless_table() -> None:
    keyed, keyless = _table("keyed", ["id"], 2), _table("bag", [], 2)
    positions = {
        ("shop", "keyed", 0): _at("binlog.000002", 500),
        ("shop", "keyed", 1): _at("binlog.000001", 900),
        ("shop", "bag", 0): _at("binlog.000002", 700),
        ("shop", "bag", 1): _at("binlog.000002", 700),
    }
    marks = snapshot_marks(_plan([keyed, keyless]), positions, "binlog")
    assert marks[("shop", "keyed_t")] == TableMark(
        "shop.keyed",
        BinlogPos("binlog.000001", 900).ordinal,
        ("binlog.000001:900", "binlog.000002:500"),
        frozenset({"id", "v_t"}),
        True,
    )
    assert not marks[("shop", "bag_t")].mixed
    refuse_mixed_keyless(marks, lambda target: False)  # the keyed one is mixed, the key-less one is not

    positions[("shop", "bag", 1)] = _at("binlog.000002", 800)
    marks = snapshot_marks(_plan([keyed, keyless]), positions, "binlog")
    refuse_mixed_keyless(marks, lambda target: target == ("shop", "bag_t"))  # the target has a key after all
    with pytest.raises(
        PlanError, match=r"table shop\.bag has no primary key .*\(binlog binlog\.000002:700, binlog\.000002:800\)"
    ):
        refuse_mixed_keyless(marks, lambda target: False)


def test_a_part_without_a_binlog_position_of_the_stream_is_refused() -> None:
    table = _table("keyed", ["id"], 1)
    with pytest.raises(IntegrityError, match="part 0 of shop.keyed on volume vol-1 records no binlog position"):
        snapshot_marks(_plan([table]), {("shop", "keyed", 0): {"snapshot": "s", "binlog_file": None}}, "binlog")
    with pytest.raises(IntegrityError, match=r"not in the stream's binlog\.\* files"):
        snapshot_marks(_plan([table]), {("shop", "keyed", 0): _at("mysql-bin.000001", 4)}, "binlog")
