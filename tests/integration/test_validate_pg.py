"""PG → PG validation on two real PostgreSQL servers: partition hashes, bisection, failure records, repair.

Each test builds the same table on the source and on the target, plants differences on the target, and
checks that validation names exactly those rows with DMS's failure types, records them in
``bulkmig.validation_failures``, that ``repair`` makes the target equal (every column compared, by the
row's full text) and that validating again is clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkmig.config.task import Task
from bulkmig.core.model import Column, Table
from bulkmig.demo.servers import PostgresServer
from bulkmig.engines.postgres.connect import connect
from bulkmig.validation import failures as failures_table
from bulkmig.validation.validate import TableResult, compare_pg


def make_task(
    pg_source: PostgresServer, source_db: str, pg_target: PostgresServer, target_db: str, tmp: Path, **validation: int
) -> Task:
    doc = {
        "name": "pgval",
        "source": pg_source.url(source_db),
        "target": pg_target.url(target_db),
        "migration_type": "full-load",
        "volume": str(tmp / "volume"),
        "bucket": "s3://unused/validate",
        "settings": {"validation": validation} if validation else None,
    }
    env = {"BULKMIG_SOURCE_PASSWORD": pg_source.password, "BULKMIG_TARGET_PASSWORD": pg_target.password}
    task = Task.from_dict(doc, tmp, env=env)
    with connect(task.target, autocommit=True) as conn:
        failures_table.ensure(conn)
    return task


def table(name: str, columns: list[str], key: list[str], *, where: str | None = None, generated: tuple = ()) -> Table:
    """The plan's view of a table: only names (and which columns are generated) matter to PG → PG validation."""
    cols = [Column(c, "text", "text", "string", generated=c in generated) for c in columns]
    return Table("public", name, cols, primary_key=key, filter=where)


def both(pg_source: PostgresServer, source_db: str, pg_target: PostgresServer, target_db: str, sql: str) -> None:
    pg_source.execute(source_db, sql)
    pg_target.execute(target_db, sql)


def same_rows(pg_source: PostgresServer, source_db: str, pg_target: PostgresServer, target_db: str, name: str) -> bool:
    q = f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {name} t"
    return pg_source.execute(source_db, q) == pg_target.execute(target_db, q)


def failures(result: TableResult) -> dict[str, str]:
    """key text → failure type."""
    return {f["key"]: f["failure_type"] for f in result.failures}


def recorded(pg_target: PostgresServer, target_db: str, name: str) -> list[tuple]:
    return pg_target.execute(
        target_db,
        "SELECT key, failure_type, key_type, details, repaired_at IS NOT NULL FROM bulkmig.validation_failures"
        f" WHERE task_name = 'pgval' AND table_name = '{name}' ORDER BY key",
    )


PLANTED = """
CREATE TABLE items (id int PRIMARY KEY, v text, f float8, n numeric, j jsonb, ts timestamptz, b bytea,
  vl int GENERATED ALWAYS AS (length(v)) STORED);
INSERT INTO items SELECT g, 'v' || g, g * 0.5, g / 4.0, jsonb_build_object('g', g),
  '2024-01-01'::timestamptz + g * interval '1 minute', int4send(g) FROM generate_series(1, 5000) g;
UPDATE items SET v = '' WHERE id = 20;
UPDATE items SET f = 0.0 WHERE id = 30;
ANALYZE items;
"""


def test_planted_differences_are_found_recorded_and_repaired(
    pg_source, source_db, pg_target, target_db, tmp_path
) -> None:  # noqa: ANN001
    both(pg_source, source_db, pg_target, target_db, PLANTED)
    pg_target.execute(
        target_db,
        "UPDATE items SET v = 'changed' WHERE id = 17;"  # a changed value
        "DELETE FROM items WHERE id = 400;"  # a missing row
        "INSERT INTO items VALUES (5001, 'extra', 1, 1, '{}', now(), '');"  # an extra row (vl is computed)
        "UPDATE items SET v = NULL WHERE id = 20;"  # NULL where the source has ''
        "UPDATE items SET f = '-0' WHERE id = 30;"  # -0.0 where the source has 0.0 (their text differs)
        "UPDATE items SET n = 1.50 WHERE id = 6;",  # 1.50 where the source has 1.5000…: same number, other scale
    )
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=500)
    items = table("items", ["id", "v", "f", "n", "j", "ts", "b", "vl"], ["id"], generated=("vl",))

    result = compare_pg(task, items)
    want = {
        '{"key": ["6"]}': "RECORD_DIFF",
        '{"key": ["17"]}': "RECORD_DIFF",
        '{"key": ["20"]}': "RECORD_DIFF",
        '{"key": ["30"]}': "RECORD_DIFF",
        '{"key": ["400"]}': "MISSING_TARGET",
        '{"key": ["5001"]}': "MISSING_SOURCE",
    }
    assert failures(result) == want
    assert not result.equal and result.failures_total == 6
    assert result.differing_keys == ["(6)", "(17)", "(20)", "(30)", "(400)", "(5001)"]
    assert (result.differing_rows, result.missing_on_target, result.extra_on_target) == (4, 1, 1)
    assert result.method.startswith("key-range partitions (integer key")
    details = {f["key"]: json.loads(f["details"]) for f in result.failures}
    assert details['{"key": ["17"]}'] == [[{"v": "v17", "vl": "3"}, {"v": "changed", "vl": "7"}]]
    assert details['{"key": ["20"]}'] == [[{"v": "", "vl": "0"}, {"v": None, "vl": None}]]
    assert details['{"key": ["30"]}'] == [[{"f": "0"}, {"f": "-0"}]]
    assert details['{"key": ["6"]}'] == [[{"n": "1.5000000000000000"}, {"n": "1.50"}]]
    assert details['{"key": ["400"]}'][0][0]["v"] == "v400" and details['{"key": ["400"]}'][0][1] == {}
    assert details['{"key": ["5001"]}'][0][0] == {} and details['{"key": ["5001"]}'][0][1]["v"] == "extra"
    # The records on the target: DMS's columns, one per row.
    rows = recorded(pg_target, target_db, "items")
    assert {r[0]: r[1] for r in rows} == want and {r[2] for r in rows} == {"Row"} and not any(r[4] for r in rows)
    # Only the differing partitions were read again.
    assert result.partitions >= 10 and result.partitions_differing <= 3

    repaired = compare_pg(task, items, repair=True)
    assert repaired.repaired == 6 and repaired.equal, repaired.note
    assert same_rows(pg_source, source_db, pg_target, target_db, "items")
    assert all(r[4] for r in recorded(pg_target, target_db, "items"))  # stamped repaired_at

    again = compare_pg(task, items)
    assert again.equal and again.failures == []
    assert again.method.startswith("table hash") and again.partitions == 1  # one pass when equal
    assert recorded(pg_target, target_db, "items") == []  # the clean run replaced the records


COMPOSITE = """
CREATE TABLE lines (code text, n int, qty int, note text, PRIMARY KEY (code, n));
INSERT INTO lines SELECT md5((g / 3)::text), g % 3, g, 'note ' || g FROM generate_series(1, 6000) g;
ANALYZE lines;
"""


def test_composite_text_key_and_a_filter_with_a_percent_sign(
    pg_source, source_db, pg_target, target_db, tmp_path
) -> None:  # noqa: ANN001
    both(pg_source, source_db, pg_target, target_db, COMPOSITE)
    # The mapping's filter moved only notes ending in 1 or 2; the target holds exactly those rows.
    pg_target.execute(target_db, "DELETE FROM lines WHERE note NOT LIKE '%1' AND note NOT LIKE '%2'")
    a, b = pg_target.execute(target_db, "SELECT code, n FROM lines ORDER BY code, n LIMIT 2 OFFSET 700")
    pg_target.execute(
        target_db,
        f"UPDATE lines SET qty = -1 WHERE code = '{a[0]}' AND n = {a[1]};"
        f"DELETE FROM lines WHERE code = '{b[0]}' AND n = {b[1]};"
        "INSERT INTO lines VALUES ('zzz \"quoted\", (odd)', 1, 1, 'x1');",
    )
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=100)
    lines = table("lines", ["code", "n", "qty", "note"], ["code", "n"], where="note LIKE '%1' OR note LIKE '%2'")
    result = compare_pg(task, lines)
    assert failures(result) == {
        json.dumps({"key": [a[0], str(a[1])]}): "RECORD_DIFF",
        json.dumps({"key": [b[0], str(b[1])]}): "MISSING_TARGET",
        json.dumps({"key": ['zzz "quoted", (odd)', "1"]}): "MISSING_SOURCE",
    }
    assert result.method == "key-range partitions" and result.partitions > 10
    assert compare_pg(task, lines, repair=True).equal
    assert compare_pg(task, lines).equal
    q = "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM lines t"
    q += " WHERE note LIKE '%1' OR note LIKE '%2'"
    assert pg_source.execute(source_db, q) == pg_target.execute(target_db, q)


def test_keys_sorted_differently_by_the_two_collations(pg_source, source_db, pg_target, target_db, tmp_path) -> None:  # noqa: ANN001
    """The source sorts its text key case-insensitively (ICU), the target bytewise: the source's boundaries
    are not in order on the target, so no row may fall between the target's ranges."""
    pg_source.execute(source_db, 'CREATE TABLE words (w text COLLATE "und-x-icu" PRIMARY KEY, v int)')
    pg_target.execute(target_db, 'CREATE TABLE words (w text COLLATE "C" PRIMARY KEY, v int)')
    fill = "INSERT INTO words SELECT CASE WHEN g % 2 = 0 THEN upper(md5(g::text)) ELSE md5(g::text) END, g"
    fill += " FROM generate_series(1, 3000) g"
    both(pg_source, source_db, pg_target, target_db, fill + "; ANALYZE words")
    pg_target.execute(target_db, "INSERT INTO words VALUES ('a-new-word', 1); UPDATE words SET v = 0 WHERE v = 2")
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=100)
    result = compare_pg(task, table("words", ["w", "v"], ["w"]))
    assert failures(result) == {
        '{"key": ["a-new-word"]}': "MISSING_SOURCE",
        json.dumps({"key": [pg_source.execute(source_db, "SELECT w FROM words WHERE v = 2")[0][0]]}): "RECORD_DIFF",
    }


KEYLESS = """
CREATE TABLE logs (msg text, level int);
INSERT INTO logs SELECT 'm' || (g % 300), g % 5 FROM generate_series(1, 3000) g;
INSERT INTO logs VALUES ('dup', 1), ('dup', 1), ('gone', 2);
ANALYZE logs;
"""


def test_a_table_without_a_primary_key_is_a_multiset(pg_source, source_db, pg_target, target_db, tmp_path) -> None:  # noqa: ANN001
    both(pg_source, source_db, pg_target, target_db, KEYLESS)
    pg_target.execute(
        target_db,
        "DELETE FROM logs WHERE ctid = (SELECT min(ctid) FROM logs WHERE msg = 'dup');"  # one copy of two gone
        "DELETE FROM logs WHERE msg = 'gone';"
        "INSERT INTO logs VALUES ('new', 3), ('new', 3);"  # two copies the source lacks
        "UPDATE logs SET level = 9 WHERE ctid = (SELECT min(ctid) FROM logs WHERE msg = 'm7');",  # a changed row
    )
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=200)
    logs = table("logs", ["msg", "level"], [])
    result = compare_pg(task, logs)
    got = [(f["failure_type"], json.loads(f["details"])[0], json.loads(f["key"])["copies"]) for f in result.failures]
    assert sorted(got, key=lambda g: (g[0], json.dumps(g[1], sort_keys=True))) == [
        ("MISSING_SOURCE", [{}, {"level": "3", "msg": "new"}], 2),
        ("MISSING_SOURCE", [{}, {"level": "9", "msg": "m7"}], 1),
        ("MISSING_TARGET", [{"level": "1", "msg": "dup"}, {}], 1),
        ("MISSING_TARGET", [{"level": "2", "msg": "gone"}, {}], 1),
        ("MISSING_TARGET", [{"level": "2", "msg": "m7"}, {}], 1),
    ]
    assert {f["key_type"] for f in result.failures} == {"RowHash"} and "no primary key" in result.note
    assert (result.missing_on_target, result.extra_on_target) == (3, 3)
    fixed = compare_pg(task, logs, repair=True)
    assert fixed.equal and fixed.repaired == 6
    assert same_rows(pg_source, source_db, pg_target, target_db, "logs")
    assert compare_pg(task, logs).equal


@pytest.mark.parametrize(
    ("key_type", "fill", "where"),
    [
        ("bigint", "g", "id = 654321"),
        ("uuid", "md5(g::text)::uuid", "id = md5('654321')::uuid"),
    ],
)
def test_one_difference_in_a_million_rows_reads_few_ranges(
    pg_source,
    source_db,
    pg_target,
    target_db,
    tmp_path,
    key_type,
    fill,
    where,  # noqa: ANN001
) -> None:
    sql = (
        f"CREATE TABLE big (id {key_type} PRIMARY KEY, a int, t text);"
        f"INSERT INTO big SELECT {fill}, g % 1000, 'row ' || g FROM generate_series(1, 1000000) g; ANALYZE big"
    )
    both(pg_source, source_db, pg_target, target_db, sql)
    pg_target.execute(target_db, f"UPDATE big SET a = -1 WHERE {where}")
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path)  # PartitionSize 10,000 as in DMS
    result = compare_pg(task, table("big", ["id", "a", "t"], ["id"]))
    assert len(result.failures) == 1 and result.failures[0]["failure_type"] == "RECORD_DIFF"
    assert json.loads(result.failures[0]["details"]) == [[{"a": "321"}, {"a": "-1"}]]
    assert 50 <= result.partitions <= 200 and result.partitions_differing == 1
    # Bisection: the integer key's partition in 16ths twice, then ~40 rows; the uuid's one partition read whole.
    assert result.ranges_visited == (3 if key_type == "bigint" else 1)
    assert result.queries <= 20


def test_failure_max_count_stops_the_bisection_and_repair_is_partial(
    pg_source,
    source_db,
    pg_target,
    target_db,
    tmp_path,  # noqa: ANN001
) -> None:
    both(
        pg_source,
        source_db,
        pg_target,
        target_db,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 20000) g;"
        "ANALYZE t",
    )
    pg_target.execute(target_db, "UPDATE t SET v = 0 WHERE id % 1000 = 0")  # 20 rows, one per 1,000 keys
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=500, failure_max_count=3)
    t = table("t", ["id", "v"], ["id"])
    result = compare_pg(task, t)
    assert len(result.failures) == 3 and not result.equal and result.failures_total == 20
    assert set(result.differing_keys) <= {f"({k})" for k in range(1000, 20001, 1000)}
    assert "20 rows differ; the first 3 are recorded (settings.validation.failure_max_count)" in result.note
    assert len(recorded(pg_target, target_db, "t")) == 3
    partial = compare_pg(task, t, repair=True)
    assert partial.repaired == 3 and not partial.equal  # the rows past the cap are still to be found
    task = make_task(pg_source, source_db, pg_target, target_db, tmp_path, partition_size=500)
    assert compare_pg(task, t, repair=True).repaired == 17
    assert compare_pg(task, t).equal
