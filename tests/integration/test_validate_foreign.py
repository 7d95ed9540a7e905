"""validate across engines: MariaDB tables and PostgreSQL tables made by hand, compared value by value.

The plan-like tables are built from the real MySQL → PostgreSQL type map (``map_column``), so each column
carries the logical type, Arrow type, ``read_as`` and target type a plan would give it; the PostgreSQL side
holds what a correct load would have written.  Every test changes one thing and checks that validate names
it (key, column, both values) — or, for a zero date loaded as NULL, counts it as a converted value.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bulkmig.config.task import Task
from bulkmig.core.catalog import ColumnMapping
from bulkmig.core.model import Column, Table
from bulkmig.demo.servers import MariaDBServer, PostgresServer
from bulkmig.engines import pairing as compare
from bulkmig.engines.mysql.types import TypeSettings, map_column
from bulkmig.engines.sqlite.types import map_declared
from bulkmig.validation.validate import ValidationReport, compare_foreign_table


def plan_column(name: str, source_type: str, m: ColumnMapping, nullable: bool = True) -> Column:
    """The plan's column for a source column the type map mapped to ``m`` (target name folded to lower case)."""
    return Column(
        name=name,
        source_type=source_type,
        logical_type=m.logical_type,
        arrow_type=m.arrow_type,
        transfer=m.transfer,
        nullable=nullable,
        read_as=m.read_as,
        target_name=name.lower(),
        target_type=m.target_type,
    )


def column(table: str, name: str, ctype: str, *, nullable: bool = True, **settings: object) -> Column:
    """A plan column for MySQL type ``ctype``, mapped the way conversion maps it."""
    m = map_column(ctype, table=table, column=name, nullable=nullable, settings=TypeSettings(**settings))  # type: ignore[arg-type]
    return plan_column(name, ctype, m, nullable)


@pytest.fixture
def task(mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str, tmp_path: Path) -> Task:
    doc = {
        "source": mariadb.url(mysql_db),
        "target": pg_target.url(target_db),
        "migration_type": "full-load",
        "volume": str(tmp_path / "volume"),
        "bucket": "s3://unused/validate",
    }
    env = {"BULKMIG_SOURCE_PASSWORD": mariadb.password, "BULKMIG_TARGET_PASSWORD": pg_target.password}
    return Task.from_dict(doc, tmp_path, env=env)


# ---------------------------------------------------------------------------------- every type family

MYSQL_ALL = """
SET time_zone = '+00:00';
CREATE TABLE everything (
  id int PRIMARY KEY, ti tinyint, tu tinyint unsigned, bi bigint, bu bigint unsigned, flag tinyint(1),
  d decimal(12,3), f float, db double, bt bit(5), c char(5), vc varchar(20), tx text, bn binary(4),
  vb varbinary(8), bl blob, e enum('small','large'), s set('a','b','c'), y year, dd date, dtm datetime(6),
  ts timestamp(3) NULL DEFAULT NULL, tm time, ti2 time, j json, u uuid, ip inet6, g point
);
INSERT INTO everything VALUES
 (1, -128, 255, -9223372036854775808, 18446744073709551615, 1, 123456789.120, 16777217, 0.30000000000000004,
  b'00101', 'ab', 'x  ', 'héllo ☃\t', 'a', x'00ff', x'deadbeef', 'large', 'a,c', 2155, '1000-01-01',
  '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.499', '23:59:59', '-838:59:59',
  '{"b": 1, "a": [1.50, 2, {"z": null}]}', '123e4567-e89b-12d3-a456-426614174000', '::ffff:1.2.3.4',
  ST_GeomFromText('POINT(1 2)')),
 (2, 0, 0, 0, 0, 0, -0.5, 0.1, -1e300, b'00000', '', '', '', 'b', '', '', 'small', '', 1901, '2020-02-29',
  '2020-02-29 12:00:00', '1970-01-01 00:00:01', '00:00:00', '838:59:59.000000', '[]',
  '00000000-0000-0000-0000-000000000000', '2001:db8::1', ST_GeomFromText('POINT(0 0)')),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""

PG_ALL = """
CREATE SCHEMA s;
CREATE TYPE s.everything_e AS ENUM ('small', 'large');
CREATE TABLE s.everything (
  id integer PRIMARY KEY, ti smallint, tu smallint, bi bigint, bu numeric(20), flag boolean, d numeric(12,3),
  f real, db double precision, bt bit(5), c char(5), vc varchar(20), tx text, bn bytea, vb bytea, bl bytea,
  e s.everything_e, s text[], y smallint, dd date, dtm timestamp(6), ts timestamptz(3), tm time, ti2 interval,
  j jsonb, u uuid, ip inet, g bytea
);
INSERT INTO s.everything VALUES
 (1, -128, 255, -9223372036854775808, 18446744073709551615, true, 123456789.12, 16777216, 0.30000000000000004,
  B'00101', 'ab', 'x  ', E'héllo ☃\\t', '\\x61000000', '\\x00ff', '\\xdeadbeef', 'large', '{a,c}', 2155,
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.499+00', '23:59:59', '-838:59:59',
  '{"a": [1.5, 2, {"z": null}], "b": 1}', '123e4567-e89b-12d3-a456-426614174000', '::ffff:1.2.3.4',
  '\\x0101000000000000000000f03f0000000000000040'),
 (2, 0, 0, 0, 0, false, -0.500, 0.1, -1e300, B'00000', '', '', '', '\\x62000000', '', '', 'small', '{}', 1901,
  '2020-02-29', '2020-02-29 12:00:00', '1970-01-01 00:00:01+00', '00:00:00', '838:59:59', '[]',
  '00000000-0000-0000-0000-000000000000', '2001:db8::1', '\\x010100000000000000000000000000000000000000'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def everything_table(schema: str) -> Table:
    t = "everything"
    types = [
        ("id", "int(11)"),
        ("ti", "tinyint(4)"),
        ("tu", "tinyint(3) unsigned"),
        ("bi", "bigint(20)"),
        ("bu", "bigint(20) unsigned"),
        ("flag", "tinyint(1)"),
        ("d", "decimal(12,3)"),
        ("f", "float"),
        ("db", "double"),
        ("bt", "bit(5)"),
        ("c", "char(5)"),
        ("vc", "varchar(20)"),
        ("tx", "text"),
        ("bn", "binary(4)"),
        ("vb", "varbinary(8)"),
        ("bl", "blob"),
        ("e", "enum('small','large')"),
        ("s", "set('a','b','c')"),
        ("y", "year(4)"),
        ("dd", "date"),
        ("dtm", "datetime(6)"),
        ("ts", "timestamp(3)"),
        ("tm", "time"),
        ("j", "json"),
        ("u", "uuid"),
        ("ip", "inet6"),
        ("g", "point"),
    ]
    columns = [column(t, n, ct, nullable=n != "id") for n, ct in types]
    columns.insert(23, column(t, "ti2", "time", time_as="interval"))
    return Table(schema, t, columns, primary_key=["id"], target_schema="s", target_name=t)


@pytest.fixture
def everything(task: Task, mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str) -> Table:
    mariadb.execute(mysql_db, MYSQL_ALL)
    pg_target.execute(target_db, PG_ALL)
    return everything_table(mysql_db)


def test_every_type_family_compares_equal(task: Task, everything: Table) -> None:
    result = compare_foreign_table(task, everything)
    assert result.differences == [] and result.conversions == []
    assert result.equal, result
    assert (result.source_rows, result.target_rows, result.method) == (3, 3, "merge")
    assert result.target == "s.everything"


@pytest.mark.parametrize(
    ("column_name", "new_value", "source_shown", "target_shown"),
    [
        ("f", "16777218", "16777216.0", "16777218.0"),  # float32: one ulp apart
        ("db", "0.3", "0.30000000000000004", "0.3"),
        ("d", "123456789.121", "123456789.120", "123456789.121"),
        ("flag", "false", "True", "False"),
        ("c", "'ab c'", "'ab'", "'ab c'"),
        ("tx", "'héllo ☃'", "'héllo ☃\\t'", "'héllo ☃'"),  # a trailing tab is part of the text
        ("s", "'{c,a}'", "('a', 'c')", "('c', 'a')"),
        ("ts", "'2038-01-19 03:14:07.5+00'", "2038-01-19 03:14:07.499000+00:00", "2038-01-19 03:14:07.500000+00:00"),
        ("ti2", "'-838:59:58'", "-838:59:59", "-838:59:58"),
        ("bn", "'\\x61'", "\\x61000000", "\\x61"),  # binary(n)'s zero padding is part of the value
    ],
)
def test_one_changed_value_is_named_with_key_and_column(
    task: Task,
    everything: Table,
    pg_target: PostgresServer,
    target_db: str,
    column_name: str,
    new_value: str,
    source_shown: str,
    target_shown: str,
) -> None:
    pg_target.execute(target_db, f"UPDATE s.everything SET {column_name} = {new_value} WHERE id = 1")
    result = compare_foreign_table(task, everything)
    assert not result.equal
    assert (result.differing_rows, result.missing_on_target, result.extra_on_target) == (1, 0, 0)
    assert result.differing_keys == ["(1)"]
    assert result.differences == [
        {
            "key": "(1)",
            "kind": "differs",
            "columns": [{"column": column_name, "source": source_shown, "target": target_shown}],
        }
    ]


def test_json_key_order_and_spacing_do_not_count_but_values_do(
    task: Task, everything: Table, pg_target: PostgresServer, target_db: str
) -> None:
    pg_target.execute(target_db, """UPDATE s.everything SET j = '{"b":1,"a":[1.500,2,{"z":null}]}' WHERE id = 1""")
    assert compare_foreign_table(task, everything).equal
    pg_target.execute(target_db, """UPDATE s.everything SET j = '{"b":1,"a":[1.5,2,{"z":0}]}' WHERE id = 1""")
    result = compare_foreign_table(task, everything)
    assert not result.equal and result.differences[0]["columns"][0]["column"] == "j"


def test_missing_and_extra_rows(task: Task, everything: Table, pg_target: PostgresServer, target_db: str) -> None:
    pg_target.execute(
        target_db,
        "DELETE FROM s.everything WHERE id = 2; INSERT INTO s.everything (id, vc) VALUES (7, 'new'), (0, 'zero')",
    )
    result = compare_foreign_table(task, everything)
    assert not result.equal
    assert (result.source_rows, result.target_rows) == (3, 4)
    assert (result.missing_on_target, result.extra_on_target, result.differing_rows) == (1, 2, 0)
    assert result.differing_keys == ["(0)", "(2)", "(7)"]
    kinds = {d["key"]: d["kind"] for d in result.differences}
    assert kinds == {"(0)": "extra on target", "(2)": "missing on target", "(7)": "extra on target"}
    missing = next(d for d in result.differences if d["key"] == "(2)")
    assert missing["row"]["vc"] == "''" and missing["row"]["d"] == "-0.500"


def test_the_report_renders_and_serialises_the_differences(
    task: Task, everything: Table, pg_target: PostgresServer, target_db: str
) -> None:
    pg_target.execute(
        target_db, "UPDATE s.everything SET vc = 'changed' WHERE id = 2; DELETE FROM s.everything WHERE id = 3"
    )
    report = ValidationReport([compare_foreign_table(task, everything)])
    text = report.render()
    assert "DIFFERENT" in text and "missing on target 1, extra on target 0, differing rows 1" in text
    assert "(2) vc: source '', target 'changed'" in text
    assert "(3) missing on target: id=3" in text
    doc = json.loads(report.to_json())
    assert doc["equal"] is False and doc["converted_values"] == 0
    (t,) = doc["tables"]
    # The PG → PG fields are all still there, the foreign ones are added.
    assert {"table", "equal", "source_rows", "target_rows", "differing_keys", "note"} <= t.keys()
    assert t["differing_keys"] == ["(2)", "(3)"] and t["method"] == "merge"


# ---------------------------------------------------------------------------------- zero dates


@pytest.fixture
def zero_dates(
    mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str
) -> Callable[[str], Table]:
    """``zero_dates(pg_rows)``: rows 2 and 3 hold zero dates in MariaDB; ``pg_rows`` are the target's rows 2, 3."""

    def make(pg_rows: str) -> Table:
        return _zero_dates(mariadb, mysql_db, pg_target, target_db, pg_rows)

    return make


def _zero_dates(
    mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str, pg_rows: str
) -> Table:
    mariadb.execute(
        mysql_db,
        "SET SESSION sql_mode = ''; SET time_zone = '+00:00';"
        "CREATE TABLE z (id int PRIMARY KEY, d date, dt datetime, ts timestamp NULL DEFAULT NULL);"
        "INSERT INTO z VALUES (1, '2020-01-02', '2020-01-02 03:04:05', '2020-01-02 03:04:05'),"
        " (2, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00'),"
        " (3, '2020-00-15', '2020-05-00 10:00:00', NULL)",
    )
    pg_target.execute(
        target_db,
        "CREATE TABLE z (id integer PRIMARY KEY, d date, dt timestamp, ts timestamptz);"
        f"INSERT INTO z VALUES (1, '2020-01-02', '2020-01-02 03:04:05', '2020-01-02 03:04:05+00'), {pg_rows}",
    )
    columns = [
        column("z", "id", "int(11)", nullable=False),
        column("z", "d", "date"),
        column("z", "dt", "datetime"),
        column("z", "ts", "timestamp"),
    ]
    return Table(mysql_db, "z", columns, primary_key=["id"], target_schema="public", target_name="z")


def test_zero_dates_loaded_as_null_are_counted_as_converted(task: Task, zero_dates: Callable[[str], Table]) -> None:
    table = zero_dates("(2, NULL, NULL, NULL), (3, NULL, NULL, NULL)")
    result = compare_foreign_table(task, table)
    assert result.equal and result.differing_rows == 0
    assert result.converted_values == 5
    why = "zero date loaded as NULL (zero_dates: null)"
    assert result.conversions == [
        {"column": "d", "why": why, "count": 2, "keys": ["(2)", "(3)"]},
        {"column": "dt", "why": why, "count": 2, "keys": ["(2)", "(3)"]},
        {"column": "ts", "why": why, "count": 1, "keys": ["(2)"]},
    ]
    report = ValidationReport([result])
    text = report.render()
    assert "2 converted in d: zero date loaded as NULL (zero_dates: null) at (2), (3)" in text
    assert "5 values converted" in text
    assert json.loads(report.to_json())["converted_values"] == 5


def test_a_zero_date_that_did_not_become_null_is_a_difference(task: Task, zero_dates: Callable[[str], Table]) -> None:
    table = zero_dates("(2, '2000-01-01', NULL, NULL), (3, NULL, NULL, NULL)")
    result = compare_foreign_table(task, table)
    assert not result.equal and result.differing_keys == ["(2)"]
    (diff,) = result.differences
    assert diff["columns"] == [
        {"column": "d", "source": "0000-00-00 (zero date loaded as NULL (zero_dates: null))", "target": "2000-01-01"}
    ]
    assert result.converted_values == 4  # the other zero dates did become NULL


# ---------------------------------------------------------------------------------- keys and no keys


def text_keyed(mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str) -> Table:
    # utf8mb4_general_ci sorts a < B < c < _ ... ; PostgreSQL's C.UTF-8 sorts B < _ < a < c: no common order.
    keys = ["a", "B", "_", "c", "Zz", "☃", "a b", "(x,y)", '"q"']
    mariadb.execute(
        mysql_db,
        "CREATE TABLE tk (k varchar(10) COLLATE utf8mb4_general_ci PRIMARY KEY, n int);"
        + "INSERT INTO tk VALUES "
        + ", ".join(f"('{k}', {i})" for i, k in enumerate(keys)),
    )
    order = [r[0] for r in mariadb.execute(mysql_db, "SELECT k FROM tk ORDER BY k")]
    pg_target.execute(
        target_db,
        "CREATE TABLE tk (k varchar(10) PRIMARY KEY, n integer); INSERT INTO tk VALUES "
        + ", ".join(f"('{k}', {i})" for i, k in enumerate(keys)),
    )
    assert order != [r[0] for r in pg_target.execute(target_db, "SELECT k FROM tk ORDER BY k")]
    columns = [column("tk", "k", "varchar(10)", nullable=False), column("tk", "n", "int(11)")]
    return Table(mysql_db, "tk", columns, primary_key=["k"], target_schema="public", target_name="tk")


@pytest.mark.parametrize("bucket_rows", [200_000, 2], ids=["in-memory", "spilled-buckets"])
def test_text_keys_that_collate_differently_still_pair(
    task: Task,
    mariadb: MariaDBServer,
    mysql_db: str,
    pg_target: PostgresServer,
    target_db: str,
    monkeypatch: pytest.MonkeyPatch,
    bucket_rows: int,
) -> None:
    monkeypatch.setattr(compare, "BUCKET_ROWS", bucket_rows)
    table = text_keyed(mariadb, mysql_db, pg_target, target_db)
    table.estimated_rows = 9
    result = compare_foreign_table(task, table)
    assert result.equal, result
    assert (result.method, result.source_rows, result.target_rows) == ("hash", 9, 9)

    pg_target.execute(target_db, "UPDATE tk SET n = 99 WHERE k = '_'; DELETE FROM tk WHERE k = 'a b'")
    result = compare_foreign_table(task, table)
    assert (result.differing_rows, result.missing_on_target, result.extra_on_target) == (1, 1, 0)
    assert result.differing_keys == ['("a b")', "(_)"]
    diff = next(d for d in result.differences if d["kind"] == "differs")
    assert diff == {"key": "(_)", "kind": "differs", "columns": [{"column": "n", "source": "2", "target": "99"}]}


def test_integer_keys_merge_across_chunks(
    task: Task,
    mariadb: MariaDBServer,
    mysql_db: str,
    pg_target: PostgresServer,
    target_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compare, "CHUNK_ROWS", 7)
    mariadb.execute(
        mysql_db,
        "CREATE TABLE m (a int, b bigint unsigned, v varchar(10), PRIMARY KEY (a, b));"
        "INSERT INTO m SELECT seq % 10, seq, CONCAT('v', seq) FROM seq_1_to_200",
    )
    pg_target.execute(
        target_db,
        "CREATE TABLE m (a integer, b numeric(20), v varchar(10), PRIMARY KEY (a, b));"
        "INSERT INTO m SELECT g % 10, g, 'v' || g FROM generate_series(1, 200) g WHERE g <> 55;"
        "UPDATE m SET v = 'x' WHERE b = 199; INSERT INTO m VALUES (3, 1000, 'extra')",
    )
    columns = [
        column("m", "a", "int(11)", nullable=False),
        column("m", "b", "bigint(20) unsigned", nullable=False),
        column("m", "v", "varchar(10)"),
    ]
    result = compare_foreign_table(task, Table(mysql_db, "m", columns, primary_key=["a", "b"], target_schema="public"))
    assert result.method == "merge"
    assert (result.source_rows, result.target_rows) == (200, 200)
    assert (result.missing_on_target, result.extra_on_target, result.differing_rows) == (1, 1, 1)
    assert result.differing_keys == ["(3,1000)", "(5,55)", "(9,199)"]


def test_tables_without_a_primary_key_compare_as_multisets(
    task: Task, mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str
) -> None:
    mariadb.execute(
        mysql_db,
        "SET SESSION sql_mode = '';"
        "CREATE TABLE nk (v varchar(10), d date);"
        "INSERT INTO nk VALUES ('dup', '2020-01-01'), ('dup', '2020-01-01'), ('one', NULL), ('z', '0000-00-00')",
    )
    pg_target.execute(
        target_db,
        "CREATE TABLE nk (v varchar(10), d date);"
        "INSERT INTO nk VALUES ('one', NULL), ('dup', '2020-01-01'), ('z', NULL), ('dup', '2020-01-01')",
    )
    columns = [column("nk", "v", "varchar(10)"), column("nk", "d", "date")]
    table = Table(mysql_db, "nk", columns, target_schema="public")
    result = compare_foreign_table(task, table)
    assert result.equal and result.method == "multiset"
    assert result.converted_values == 1 and result.conversions[0]["keys"] == ["value 0000-00-00"]

    pg_target.execute(target_db, "DELETE FROM nk WHERE ctid = (SELECT min(ctid) FROM nk WHERE v = 'dup')")
    pg_target.execute(target_db, "INSERT INTO nk VALUES ('one', NULL)")
    result = compare_foreign_table(task, table)
    assert not result.equal
    assert (result.missing_on_target, result.extra_on_target) == (1, 1)
    rows = {d["kind"]: d["row"] for d in result.differences}
    assert rows == {
        "missing on target": {"v": "'dup'", "d": "2020-01-01"},
        "extra on target": {"v": "'one'", "d": "NULL"},
    }


def test_a_table_missing_on_the_target(task: Task, mariadb: MariaDBServer, mysql_db: str) -> None:
    mariadb.execute(mysql_db, "CREATE TABLE gone (id int PRIMARY KEY)")
    table = Table(mysql_db, "gone", [column("gone", "id", "int(11)", nullable=False)], primary_key=["id"])
    result = compare_foreign_table(task, table)
    assert not result.equal and result.note == "missing on the target"


# ---------------------------------------------------------------------------------- SQLite sources


def sqlite_column(name: str, declared: str) -> Column:
    """A plan column for SQLite declared type ``declared``, mapped the way conversion maps it."""
    return plan_column(name, declared, map_declared(declared))


@pytest.fixture
def sqlite_task(pg_target: PostgresServer, target_db: str, tmp_path: Path) -> Task:
    doc = {
        "source": f"sqlite:///{tmp_path / 'source.db'}",
        "target": pg_target.url(target_db),
        "migration_type": "full-load",
        "volume": str(tmp_path / "volume"),
        "bucket": "s3://unused/validate",
    }
    return Task.from_dict(doc, tmp_path, env={"BULKMIG_TARGET_PASSWORD": pg_target.password})


SQLITE_TYPES = [
    ("Id", "INTEGER"),
    ("R", "REAL"),
    ("T", "NVARCHAR(20)"),
    ("B", "BLOB"),
    ("Price", "NUMERIC(10,2)"),
    ("Flag", "BOOLEAN"),
    ("D", "DATE"),
    ("Ts", "DATETIME"),
    ("J", "JSON"),
    ("U", ""),
]
SQLITE_ROWS = [
    (1, 0.1, "héllo ", b"\x00\xff", 0.99, 1, "2020-02-29", "2009-01-01 00:00:00", '{"b": 1, "a": [1.0]}', 7),
    (2, -1e300, "", b"", 1234.5, 0, "1000-01-01", 2455197.5, "[]", 1.5),  # a julian-day datetime
    (3, 2.0, None, None, 3, None, None, 1262304000, None, "text"),  # a unix-epoch datetime
    (4, None, None, None, None, None, None, None, None, None),
]
PG_SQLITE = """
CREATE TABLE things (
  id bigint PRIMARY KEY, r double precision, t varchar(20), b bytea, price numeric(10,2), flag boolean, d date,
  ts timestamp, j jsonb, u text
);
INSERT INTO things VALUES
 (1, 0.1, 'héllo ', '\\x00ff', 0.99, true, '2020-02-29', '2009-01-01 00:00:00', '{"a": [1.0], "b": 1}', '7'),
 (2, -1e300, '', '', 1234.50, false, '1000-01-01', '2010-01-01 00:00:00', '[]', '1.5'),
 (3, 2, NULL, NULL, 3.00, NULL, NULL, '2010-01-01 00:00:00', NULL, 'text'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


@pytest.fixture
def things(sqlite_task: Task, pg_target: PostgresServer, target_db: str) -> Table:
    db = sqlite3.connect(sqlite_task.source.database)
    decl = ", ".join(f'"{n}" {t}' + (" PRIMARY KEY" if n == "Id" else "") for n, t in SQLITE_TYPES)
    db.execute(f"CREATE TABLE Things ({decl})")
    db.executemany(f"INSERT INTO Things VALUES ({', '.join('?' * len(SQLITE_TYPES))})", SQLITE_ROWS)
    db.commit()
    db.close()
    pg_target.execute(target_db, PG_SQLITE)
    columns = [sqlite_column(n, t) for n, t in SQLITE_TYPES]
    return Table("main", "Things", columns, primary_key=["Id"], target_schema="public", target_name="things")


def test_sqlite_values_compare_equal_and_numeric_dates_count_as_converted(sqlite_task: Task, things: Table) -> None:
    result = compare_foreign_table(sqlite_task, things)
    assert result.differences == []
    assert result.equal and (result.source_rows, result.target_rows, result.method) == (4, 4, "merge")
    why = "a number read as a date by SQLite's date functions (numeric_dates)"
    assert result.conversions == [{"column": "ts", "why": why, "count": 2, "keys": ["(2)", "(3)"]}]


@pytest.mark.parametrize(
    ("update", "column_name", "source_shown", "target_shown"),
    [
        ("price = 0.98 WHERE id = 1", "price", "0.99", "0.98"),
        ("u = '1.50' WHERE id = 2", "u", "'1.5'", "'1.50'"),  # an untyped real travels as its shortest text
        (
            "ts = '2010-01-01 00:00:01' WHERE id = 3",
            "ts",
            "int 1262304000 (a number read as a date",
            "2010-01-01 00:00:01",
        ),
        ("t = 'héllo' WHERE id = 1", "t", "'héllo '", "'héllo'"),
    ],
)
def test_sqlite_one_changed_value_is_named(
    sqlite_task: Task,
    things: Table,
    pg_target: PostgresServer,
    target_db: str,
    update: str,
    column_name: str,
    source_shown: str,
    target_shown: str,
) -> None:
    pg_target.execute(target_db, f"UPDATE things SET {update}")
    result = compare_foreign_table(sqlite_task, things)
    assert not result.equal and result.differing_rows == 1
    ((diff,),) = [d["columns"] for d in result.differences]
    assert diff["column"] == column_name
    assert diff["source"].startswith(source_shown) and diff["target"].endswith(target_shown)


def test_sqlite_misfit_value_shows_as_a_difference(
    sqlite_task: Task, things: Table, pg_target: PostgresServer, target_db: str
) -> None:
    """Values the load would refuse (text in a REAL column, too many digits for NUMERIC(10,2)) are never
    coerced into agreeing with whatever the target holds."""
    db = sqlite3.connect(sqlite_task.source.database)
    db.execute("UPDATE Things SET R = 'abc', Price = 12345678901.5 WHERE Id = 3")
    db.commit()
    db.close()
    result = compare_foreign_table(sqlite_task, things)
    assert not result.equal and result.differing_keys == ["(3)"]
    (diff,) = result.differences
    assert [c["column"] for c in diff["columns"]] == ["r", "price"]
    assert diff["columns"][0] == {"column": "r", "source": "'abc'", "target": "2.0"}


def test_sqlite_text_keys_in_nocase_order_still_pair(
    sqlite_task: Task, pg_target: PostgresServer, target_db: str
) -> None:
    keys = ["a", "B", "_", "c", "Zz", "☃"]
    db = sqlite3.connect(sqlite_task.source.database)
    db.execute("CREATE TABLE k (name TEXT COLLATE NOCASE PRIMARY KEY, n INTEGER)")
    db.executemany("INSERT INTO k VALUES (?, ?)", [(k, i) for i, k in enumerate(keys)])
    db.commit()
    db.close()
    pg_target.execute(
        target_db,
        "CREATE TABLE k (name text PRIMARY KEY, n bigint); INSERT INTO k VALUES "
        + ", ".join(f"('{k}', {i})" for i, k in enumerate(keys) if k != "c")
        + ", ('C', 3)",
    )
    columns = [sqlite_column("name", "TEXT"), sqlite_column("n", "INTEGER")]
    table = Table("main", "k", columns, primary_key=["name"], target_schema="public")
    result = compare_foreign_table(sqlite_task, table)
    assert result.method == "hash" and (result.source_rows, result.target_rows) == (6, 6)
    assert (result.missing_on_target, result.extra_on_target, result.differing_rows) == (1, 1, 0)
    assert result.differing_keys == ["(C)", "(c)"]


def test_keys_that_cannot_be_merged_fall_back_to_pairing_by_hash(
    task: Task, mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str
) -> None:
    """A zero date in a date key has no place in any order: the merge stops there (the source's stream
    still open) and the table is paired through a dict instead; the zero-dated row has no partner."""
    mariadb.execute(
        mysql_db,
        "SET SESSION sql_mode = ''; CREATE TABLE dk (d date PRIMARY KEY, n int);"
        "INSERT INTO dk SELECT '2020-01-01' + INTERVAL seq DAY, seq FROM seq_1_to_30000;"
        "INSERT INTO dk VALUES ('0000-00-00', 0)",
    )
    pg_target.execute(
        target_db,
        "CREATE TABLE dk (d date PRIMARY KEY, n integer);"
        "INSERT INTO dk SELECT date '2020-01-01' + g, g FROM generate_series(1, 30000) g",
    )
    columns = [column("dk", "d", "date", nullable=False), column("dk", "n", "int(11)")]
    result = compare_foreign_table(task, Table(mysql_db, "dk", columns, primary_key=["d"], target_schema="public"))
    assert result.method == "hash"
    assert (result.source_rows, result.target_rows, result.missing_on_target) == (30001, 30000, 1)
    assert result.differing_keys == ["(0000-00-00)"]
