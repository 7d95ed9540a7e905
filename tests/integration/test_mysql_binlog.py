"""What MySQL change data capture needs from the server, and how it reads binlog statements and values.

Against the session's MariaDB (row binlog, FULL image, server_id=1): the settings check refuses
``binlog_format=STATEMENT`` / ``binlog_row_image=MINIMAL`` naming the exact setting (set globally and
restored), and a user without the replication grants naming the GRANT; binlog positions order across
files.  Pure logic (DDL statement reading, value conversion of every type rule) runs without servers.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from pymysqlreplication.constants import NONE_SOURCE

from bulkmig.cdc.position import parse_lsn
from bulkmig.core.errors import PrivilegeError, SourceError
from bulkmig.demo.servers import MariaDBServer
from bulkmig.engines.mysql import binlog, changes, ddl, types
from bulkmig.engines.mysql.binlog import BinlogPos, check_binlog_settings
from bulkmig.engines.mysql.changes import Col, ColumnSpec, ValueRefused
from bulkmig.engines.mysql.statements import classify


@pytest.fixture
def conn(mariadb: MariaDBServer) -> Iterator[pymysql.connections.Connection]:
    c = pymysql.connect(**mariadb.connect_args(), autocommit=True)
    yield c
    c.close()


@pytest.fixture
def global_setting(mariadb: MariaDBServer) -> Iterator[Any]:
    """Set a global variable for one test; the old value comes back afterwards, whatever happens."""
    saved: dict[str, Any] = {}

    def set_(name: str, value: str) -> None:
        if name not in saved:
            saved[name] = mariadb.execute(None, f"SELECT @@GLOBAL.{name}")[0][0]
        mariadb.execute(None, f"SET GLOBAL {name} = %s", (value,))

    yield set_
    for name, value in saved.items():
        mariadb.execute(None, f"SET GLOBAL {name} = %s", (value,))


# ------------------------------------------------------------------------------------ settings check


def test_settings_check_passes_on_a_row_binlog_server(conn: Any) -> None:
    facts = check_binlog_settings(conn)
    assert facts["server_id"] == 1 and facts["mariadb"] is True
    assert facts["basename"] == "binlog"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("binlog_format", "STATEMENT", "SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_format", "MIXED", "SET GLOBAL binlog_format = 'ROW'"),
        ("binlog_row_image", "MINIMAL", "SET GLOBAL binlog_row_image = 'FULL'"),
        ("log_bin_compress", "ON", "SET GLOBAL log_bin_compress = OFF"),
    ],
)
def test_settings_check_names_the_setting_to_change(
    mariadb: MariaDBServer, global_setting: Any, name: str, value: str, says: str
) -> None:
    global_setting(name, value)
    c = pymysql.connect(**mariadb.connect_args(), autocommit=True)  # a new session sees the new global
    try:
        with pytest.raises(SourceError) as err:
            check_binlog_settings(c)
    finally:
        c.close()
    assert f"{name} is {value}" in err.value.message
    assert says in err.value.hint and "[mysqld]" in err.value.hint


def test_settings_check_names_the_missing_grants(mariadb: MariaDBServer) -> None:
    user, password = f"noreplica_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    mariadb.execute(None, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    try:
        mariadb.execute(None, f"GRANT SELECT ON *.* TO '{user}'@'127.0.0.1'")
        args = {**mariadb.connect_args(), "user": user, "password": password}
        c = pymysql.connect(**args, autocommit=True)
        try:
            with pytest.raises(PrivilegeError) as err:
                check_binlog_settings(c, user)
        finally:
            c.close()
        assert "REPLICATION SLAVE and REPLICATION CLIENT" in err.value.message
        assert f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'<host>'" in err.value.hint
        # MariaDB 10.11 spells REPLICATION CLIENT as BINLOG MONITOR; either name satisfies the check.
        mariadb.execute(None, f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'127.0.0.1'")
        c = pymysql.connect(**args, autocommit=True)
        try:
            assert "BINLOG MONITOR" in binlog.global_privileges(c)
            assert check_binlog_settings(c, user)["server_id"] == 1
        finally:
            c.close()
    finally:
        mariadb.execute(None, f"DROP USER '{user}'@'127.0.0.1'")


def test_position_and_binary_logs_without_show_master_status_only(conn: Any, mariadb: MariaDBServer) -> None:
    before = binlog.binlog_status(conn)
    assert before is not None and before.file.startswith("binlog.")
    mariadb.execute(None, "FLUSH BINARY LOGS")
    after = binlog.binlog_status(conn)
    assert after is not None and after.number == before.number + 1
    assert after.ordinal > before.ordinal  # orders across files, whatever the offsets
    names = [name for name, _ in binlog.binary_logs(conn)]
    assert before.file in names and after.file in names


# ------------------------------------------------------------------------------------------ positions


def test_binlog_positions_are_ordered_lsns_and_round_trip() -> None:
    a, b = BinlogPos("binlog.000009", 4_000_000), BinlogPos("binlog.000010", 4)
    assert a.ordinal < b.ordinal and parse_lsn(a.lsn) == a.ordinal
    assert BinlogPos.from_ordinal("binlog", b.ordinal) == b
    assert BinlogPos.from_ordinal("binlog", BinlogPos("binlog.1000000", 7).ordinal).file == "binlog.1000000"
    assert BinlogPos.parse("mysql-bin.000042:1234") == BinlogPos("mysql-bin.000042", 1234)
    assert str(BinlogPos.parse("binlog.000001:4")) == "binlog.000001:4"


# ------------------------------------------------------------------------------------ binlog statements


@pytest.mark.parametrize(
    ("sql", "kind", "tables"),
    [
        ("BEGIN", "begin", []),
        ("COMMIT", "commit", []),
        ("ROLLBACK", "rollback", []),
        ("SAVEPOINT `s1`", "savepoint", []),
        ("ROLLBACK TO `s1`", "savepoint", []),
        ("XA START 'x'", "xa", []),
        ("TRUNCATE t", "truncate", [("d", "t")]),
        ("TRUNCATE TABLE `o`.`T 1`", "truncate", [("o", "T 1")]),
        ("ALTER TABLE t ADD COLUMN z int", "add_column", [("d", "t")]),
        ("ALTER TABLE t ADD z varchar(5) NULL DEFAULT NULL COMMENT 'x, y'", "add_column", [("d", "t")]),
        ("ALTER TABLE t ADD COLUMN z int NOT NULL", "stop", [("d", "t")]),
        ("ALTER TABLE t ADD COLUMN z int AFTER a", "stop", [("d", "t")]),
        ("ALTER TABLE t ADD COLUMN z int FIRST", "stop", [("d", "t")]),
        ("ALTER TABLE t ADD COLUMN z int, ADD COLUMN y int", "stop", [("d", "t")]),
        ("ALTER TABLE t DROP COLUMN a", "stop", [("d", "t")]),
        ("ALTER TABLE t MODIFY a bigint", "stop", [("d", "t")]),
        ("ALTER TABLE t CHANGE a b int", "stop", [("d", "t")]),
        ("ALTER TABLE t ADD INDEX i (a), DROP KEY k", "ignore", [("d", "t")]),
        ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", "ignore", [("d", "t")]),
        ("CREATE INDEX i ON o.t (a)", "ignore", [("o", "t")]),
        ("DROP TABLE `t` /* generated by server */", "stop", [("d", "t")]),
        ("DROP TABLE IF EXISTS a, o.b", "stop", [("d", "a"), ("o", "b")]),
        ("DROP TEMPORARY TABLE IF EXISTS tmp", "ignore", []),
        ("RENAME TABLE a TO b", "stop", [("d", "a")]),
        ("CREATE TABLE n (a int)", "create_table", [("d", "n")]),
        ("CREATE OR REPLACE TABLE n (a int)", "stop", [("d", "n")]),
        ("DROP DATABASE d2", "drop_schema", [("d2", "*")]),
        ("CREATE DEFINER=`root`@`localhost` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", "ignore", []),
        ("CREATE ALGORITHM=UNDEFINED DEFINER=`u`@`%` SQL SECURITY DEFINER VIEW v AS SELECT 1", "ignore", []),
        ("GRANT SELECT ON *.* TO 'x'@'%'", "ignore", []),
        ("INSERT INTO t VALUES (1)", "dml", []),
        ("UPDATE t SET a = 1", "dml", []),
    ],
)
def test_binlog_statements_are_read_for_what_they_do_to_captured_tables(
    sql: str, kind: str, tables: list[tuple[str, str]]
) -> None:
    st = classify(sql, "d")
    assert (st.kind, st.tables) == (kind, tables)


def test_added_column_definition_is_taken_apart() -> None:
    st = classify("ALTER TABLE t ADD COLUMN `e` enum('a','b,c') CHARACTER SET latin1 DEFAULT 'it''s'", "d")
    assert (st.column, st.column_type, st.charset, st.default) == ("e", "enum('a','b,c')", "latin1", "'it''s'")
    st = classify("ALTER TABLE t ADD COLUMN n decimal(10, 2) unsigned DEFAULT -1.5", "d")
    assert (st.column_type, st.default) == ("decimal(10,2) unsigned", "-1.5")


@pytest.mark.parametrize(
    ("column_type", "default", "expected"),
    [
        ("float unsigned", "1", "1"),
        ("double unsigned", "2.5", "2.5"),
        ("decimal(10,2) unsigned", "-1.5", "-1.5"),
        ("int unsigned", "7", "7"),
        ("varchar(10)", "'it''s'", "'it''s'"),
        ("tinyint(1)", "1", "true"),
    ],
)
def test_added_column_literal_default_is_kept(column_type: str, default: str, expected: str) -> None:
    """Every numeric, string and date rule's literal default passes to replay (float/double unsigned once
    stopped capture: the hand-kept list of such rules had drifted from types.RULES)."""
    st = classify(f"ALTER TABLE t ADD COLUMN x {column_type} DEFAULT {default}", "d")
    rule = types.map_column(st.column_type or "", settings=types.TypeSettings()).rule
    assert rule is not None
    assert ddl.pg_default(st.default, rule.source) == expected


def test_added_column_default_replay_cannot_reproduce_is_refused() -> None:
    with pytest.raises(ValueError):
        ddl.pg_default("'abc'", "blob")


# ------------------------------------------------------------------------------------------ values

DEFAULT = types.TypeSettings()


def col(column_type: str, settings: types.TypeSettings = DEFAULT, **kw: Any) -> Col:
    spec = ColumnSpec("c", "c", column_type, types.map_column(column_type, settings=settings).target_type, **kw)
    return Col("d.t", spec, settings)


def test_every_type_rule_has_a_converter() -> None:
    assert set(changes.CONVERTERS) == {r.source for r in types.RULES}


@pytest.mark.parametrize(
    ("column_type", "value", "text"),
    [
        ("tinyint(1)", 1, "t"),
        ("tinyint(1)", 0, "f"),
        ("tinyint(3) unsigned", -1, "255"),  # read without signedness metadata: wrapped back
        ("smallint(5) unsigned", 65535, "65535"),
        ("mediumint(8) unsigned", -1, "16777215"),
        ("int(10) unsigned", -1, "4294967295"),
        ("bigint(20) unsigned", -1, "18446744073709551615"),
        ("bigint(20)", -(2**63), "-9223372036854775808"),
        ("decimal(65,30)", Decimal("-0.000000000000000000000000000001"), "-0.000000000000000000000000000001"),
        ("decimal(5,2)", Decimal(".50"), "0.50"),
        ("float", 0.10000000149011612, "0.10000000149011612"),
        ("double", 1.7976931348623157e308, "1.7976931348623157e+308"),
        ("bit(10)", "1000000001", "1000000001"),
        ("bit(8)", "101", "00000101"),
        ("varchar(10)", "café".encode(), "café"),
        ("binary(4)", b"\x00\x01", "\\x00010000"),  # the binlog drops trailing zero bytes
        ("varbinary(4)", b"\xff\x00", "\\xff00"),
        ("enum('a','b c')", "b c", "b c"),
        ("set('x','y','z')", {"z", "x"}, '{"x","z"}'),
        ("set('a\"b','c\\\\d')", {'a"b', "c\\d"}, '{"a\\"b","c\\\\d"}'),
        ("year(4)", 1900, "0"),
        ("year(4)", 2155, "2155"),
        ("date", dt.date(1, 1, 1), "0001-01-01"),
        ("datetime(6)", dt.datetime(2024, 2, 29, 23, 59, 59, 123456), "2024-02-29 23:59:59.123456"),
        ("timestamp(3)", dt.datetime(2024, 1, 1, 0, 0, 0, 500000), "2024-01-01 00:00:00.500000+00"),
        ("time(2)", dt.timedelta(hours=24), "24:00:00"),
        ("time(2)", dt.timedelta(hours=12, minutes=34, seconds=56, microseconds=780000), "12:34:56.780000"),
        ("json", {b"a": [1, 2.5, b"x"]}, '{"a": [1, 2.5, "x"]}'),  # MySQL's binary JSON, decoded
        ("json", b'{"a": 1}', '{"a": 1}'),  # MariaDB's JSON text
        ("uuid", bytes.fromhex("123e4567e89b12d3a456426614174000")[:15], "123e4567-e89b-12d3-a456-426614174000"),
        ("inet4", b"\x01\x02\x03\x04", "1.2.3.4"),
        ("inet6", bytes(10) + b"\xff\xff\x01\x02\x03\x04", "::ffff:102:304"),
        ("point", bytes(4) + bytes.fromhex("0101000000000000000000f03f0000000000000040"),
         "\\x0101000000000000000000f03f0000000000000040"),
    ],
)  # fmt: skip
def test_binlog_values_become_postgresql_text(column_type: str, value: Any, text: str) -> None:
    c = col(column_type, is_json=column_type == "json")
    assert c.text(value, None) == text


def test_latin1_is_mysqls_windows_1252() -> None:
    c = col("varchar(10)", charset="latin1")
    assert c.text(b"caf\xe9\x80\x81", None) == "café€\x81"


def test_time_beyond_a_day_is_an_interval_or_refused() -> None:
    span = -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=500000)
    assert col("time(1)", types.TypeSettings(time_as="interval")).text(span, None) == "-838:59:59.500000"
    with pytest.raises(ValueRefused, match="time_as: interval"):
        col("time").text(dt.timedelta(hours=25), None)


def test_zero_dates_follow_the_setting_and_nullability() -> None:
    zero = NONE_SOURCE.OUT_OF_DATE_RANGE
    assert col("date").text(None, zero) is None
    assert col("timestamp").text(dt.datetime(1970, 1, 1), None) is None  # the zero TIMESTAMP
    assert col("date").text(None, NONE_SOURCE.NULL) is None
    with pytest.raises(ValueRefused, match="NOT NULL"):
        col("date", nullable=False).text(None, zero)
    with pytest.raises(ValueRefused, match="zero_dates: null"):
        col("datetime", types.TypeSettings(zero_dates="refuse")).text(None, NONE_SOURCE.OUT_OF_DATETIME2_RANGE)


def test_empty_set_is_an_empty_array_not_null() -> None:
    assert col("set('a','b')").text(None, NONE_SOURCE.EMPTY_SET) == "{}"
    assert col("set('a','b')").text(None, NONE_SOURCE.NULL) is None


def test_values_postgresql_cannot_hold_are_refused_by_name() -> None:
    with pytest.raises(ValueRefused, match=r"d\.t\.c .*holds only 0 and 1"):
        col("tinyint(1)").text(2, None)
    with pytest.raises(ValueRefused, match="invalid ENUM"):
        col("enum('a')").text("", None)
    with pytest.raises(ValueRefused, match="NUL"):
        col("text").text(b"a\x00b", None)


def test_a_charset_capture_cannot_decode_is_refused_when_the_stream_starts() -> None:
    with pytest.raises(SourceError, match="character set swe7"):
        col("varchar(3)", charset="swe7")
