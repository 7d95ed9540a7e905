"""The MySQL/MariaDB source against a real MariaDB: connections, the consistent snapshot, partitions and the
reader's rows → Arrow conversion of every mapped type, value by value.

Each type family gets a table of edge values (unsigned maxima, decimal(65,30), zero dates, tinyint(1),
BIT, ENUM, SET, JSON, TIME beyond 24 h, utf8mb4, bytes with NULs); the reader's Arrow values are compared
with the values MySQL holds, written out here, so a conversion that drifts by one digit fails.
"""

from __future__ import annotations

import copy
import struct
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from bulkmig.config.task import Endpoint
from bulkmig.core.catalog import Catalog
from bulkmig.core.errors import ConfigError, ConnectError, SourceError
from bulkmig.core.model import Partition, Table
from bulkmig.demo.servers import MariaDBServer
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql import source
from bulkmig.engines.mysql.reflect import reflect
from bulkmig.engines.postgres.reader import arrow_schema

# Tables of every mapped type family, filled with their edge values (sql_mode '' admits zero dates).
SETUP = r"""
SET SESSION sql_mode = '', time_zone = '+00:00';
CREATE TABLE ints (
  id int PRIMARY KEY, ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned, mi mediumint,
  miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned, y year
);
INSERT INTO ints VALUES
  (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 1901),
  (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
      18446744073709551615, 2155),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE nums (id int PRIMARY KEY, d65 decimal(65,30), d52 decimal(5,2), du decimal(10,2) unsigned,
  f float, dbl double);
INSERT INTO nums VALUES
  (1, -99999999999999999999999999999999999.999999999999999999999999999999, -999.99, 0.00, 3.1415927,
      1.7976931348623157e308),
  (2, 0.000000000000000000000000000001, 0.01, 99999999.99, 1e38, 5e-324),
  (3, 0, 0, NULL, -0.5, 0.1),
  (4, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE bools (id int PRIMARY KEY, b tinyint(1));
INSERT INTO bools VALUES (1, 0), (2, 1), (3, NULL);
CREATE TABLE dates (id int PRIMARY KEY, d date, dt datetime, dt6 datetime(6), ts timestamp(6) NULL DEFAULT NULL,
  t time, t3 time(3), zd date, zdt datetime);
INSERT INTO dates VALUES
  (1, '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000',
      '838:59:59', '-838:59:59.000', '0000-00-00', '0000-00-00 00:00:00'),
  (2, '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999',
      '-00:00:01', '23:59:59.999', '2020-00-10', '2020-05-00 10:00:00'),
  (3, '2024-02-29', '2024-02-29 12:34:56', '2024-02-29 12:34:56.000001', '2024-02-29 12:34:56.123456',
      '00:00:00', '12:00:00.500', '2024-02-29', '2024-02-29 01:02:03'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE strs (id int PRIMARY KEY, c char(3), v varchar(20), tx text, l1 varchar(10) CHARACTER SET latin1,
  e enum('a', 'b c', 'd''e'), s set('x', 'y', 'z'), j json, bt bit(5), bt64 bit(64), u uuid, ip inet6);
INSERT INTO strs VALUES
  (1, 'ab', '😀 ünïcödé', REPEAT('long ', 1000), 'café', 'b c', 'x,z', '{"a": [1, 2.50], "b": null}', b'101',
      b'1111111111111111111111111111111111111111111111111111111111111111', '123e4567-e89b-12d3-a456-426614174000',
      '2001:db8::1'),
  (2, '', '', '', '', 'd''e', '', '[]', b'0', b'0', '00000000-0000-0000-0000-000000000000', '::ffff:1.2.3.4'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE bins (id int PRIMARY KEY, b4 binary(4), vb varbinary(10), bl blob, lb longblob, g point);
INSERT INTO bins VALUES
  (1, 'ab', x'00ff00', x'000102', REPEAT(x'00', 70000), ST_GeomFromText('POINT(1 2)')),
  (2, x'00000000', '', '', '', ST_GeomFromText('POINT(-1.5 0)')),
  (3, NULL, NULL, NULL, NULL, NULL);
"""

EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "ints": [
        (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -(2**63), Decimal(0), 1901),
        (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 2**63 - 1, Decimal(2**64 - 1), 2155),
        (3, None, None, None, None, None, None, None, None, None, None, None),
    ],
    "nums": [
        (
            1,
            Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
            Decimal("-999.99"),
            Decimal("0.00"),
            struct.unpack("f", struct.pack("f", 3.1415927))[0],
            1.7976931348623157e308,
        ),
        (
            2,
            Decimal("0.000000000000000000000000000001"),
            Decimal("0.01"),
            Decimal("99999999.99"),
            struct.unpack("f", struct.pack("f", 1e38))[0],
            5e-324,
        ),
        (3, Decimal(0), Decimal("0.00"), None, -0.5, 0.1),
        (4, None, None, None, None, None),
    ],  # fmt: skip
    "bools": [(1, False), (2, True), (3, None)],
    "dates": [
        (
            1,
            date(1000, 1, 1),
            datetime(1000, 1, 1),
            datetime(1000, 1, 1),
            datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
            "838:59:59",
            "-838:59:59.000",
            None,  # zero dates load as NULL (zero_dates: null, nullable column)
            None,
        ),
        (
            2,
            date(9999, 12, 31),
            datetime(9999, 12, 31, 23, 59, 59),
            datetime(9999, 12, 31, 23, 59, 59, 999999),
            datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
            "-00:00:01",
            "23:59:59.999",
            None,
            None,
        ),
        (
            3,
            date(2024, 2, 29),
            datetime(2024, 2, 29, 12, 34, 56),
            datetime(2024, 2, 29, 12, 34, 56, 1),
            datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=UTC),
            "00:00:00",
            "12:00:00.500",
            date(2024, 2, 29),
            datetime(2024, 2, 29, 1, 2, 3),
        ),
        (4, None, None, None, None, None, None, None, None),
    ],  # fmt: skip
    "strs": [
        (
            1,
            "ab",
            "😀 ünïcödé",
            "long " * 1000,
            "café",
            "b c",
            '{"x","z"}',
            '{"a": [1, 2.50], "b": null}',
            "00101",
            "1" * 64,
            "123e4567-e89b-12d3-a456-426614174000",
            "2001:db8::1",
        ),
        (
            2,
            "",
            "",
            "",
            "",
            "d'e",
            "{}",
            "[]",
            "00000",
            "0" * 64,
            "00000000-0000-0000-0000-000000000000",
            "::ffff:1.2.3.4",
        ),
        (3, None, None, None, None, None, None, None, None, None, None, None),
    ],  # fmt: skip
    "bins": [
        (
            1,
            b"ab\x00\x00",
            b"\x00\xff\x00",
            b"\x00\x01\x02",
            b"\x00" * 70000,
            b"\x01\x01\x00\x00\x00" + struct.pack("<dd", 1.0, 2.0),
        ),
        (2, b"\x00\x00\x00\x00", b"", b"", b"", b"\x01\x01\x00\x00\x00" + struct.pack("<dd", -1.5, 0.0)),
        (3, None, None, None, None, None),
    ],  # fmt: skip
}
ARROW_TYPES = {
    "ints": ["int32", "int16", "int16", "int16", "int32", "int32", "int32", "int32", "int64", "int64",
             "decimal128(20, 0)", "int16"],
    "nums": ["int32", "decimal256(65, 30)", "decimal128(5, 2)", "decimal128(10, 2)", "float32", "float64"],
    "bools": ["int32", "bool"],
    "dates": ["int32", "date32", "timestamp[us]", "timestamp[us]", "timestamp[us, tz=UTC]", "string", "string",
              "date32", "timestamp[us]"],
    "strs": ["int32"] + ["string"] * 11,
    "bins": ["int32"] + ["binary"] * 5,
}  # fmt: skip


def endpoint(server: MariaDBServer, db: str, user: str | None = None, password: str | None = None) -> Endpoint:
    return Endpoint.parse(server.url(db, user), "source").with_password(password or server.password)


def catalog_of(server: MariaDBServer, db: str) -> Catalog:
    conn = my.connect(endpoint(server, db))
    try:
        return reflect(conn, db)
    finally:
        conn.close()


def planned(catalog: Catalog, name: str) -> Table:
    """The table as a plan has it: reflect's columns with the type map's read expressions (what
    conversion sets; here without conversion, to test the reader on its own)."""
    ct = catalog.table(name)
    table = copy.deepcopy(ct.table)
    for col, cc in zip(table.columns, ct.columns, strict=True):
        col.read_as = cc.mapping.read_as
    return table


def read_all(reader: source.Reader, table: Table, part: Partition | None = None) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    schema = arrow_schema(table)
    for batch in reader.batches(table, part):
        assert batch.schema.equals(schema), (batch.schema, schema)
        rows.extend(tuple(r.values()) for r in batch.to_pylist())
    return sorted(rows, key=lambda r: r[0])


@pytest.fixture
def typed_db(mariadb: MariaDBServer, mysql_db: str) -> str:
    mariadb.execute(mysql_db, SETUP)
    return mysql_db


def test_reader_round_trips_every_type_family(mariadb: MariaDBServer, typed_db: str) -> None:
    catalog = catalog_of(mariadb, typed_db)
    with source.Snapshot(endpoint(mariadb, typed_db), 1, batch_rows=2) as snap:
        reader = snap.readers[0]
        for name, expected in EXPECTED.items():
            table = planned(catalog, name)
            assert [c.arrow_type for c in table.columns] == ARROW_TYPES[name], name
            got = read_all(reader, table)
            assert len(got) == len(expected), name
            for row_got, row_want in zip(got, expected, strict=True):
                for col, g, w in zip(table.columns, row_got, row_want, strict=True):
                    assert g == w and type(g) is type(w), f"{name}.{col.name} id={row_want[0]}: {g!r} != {w!r}"
                    if isinstance(w, float):  # -0.0 == 0.0: the sign must survive too
                        assert struct.pack("d", g) == struct.pack("d", w)


def test_float_keeps_every_bit_of_the_stored_single(mariadb: MariaDBServer, mysql_db: str) -> None:
    """MySQL prints FLOAT with 6 digits; the reader must return the stored single, not its rounding."""
    values = [3.1415927, 1.0000001, 16777217.0, -3.40282346e38, 1.17549435e-38, 0.1]
    mariadb.execute(mysql_db, "CREATE TABLE f (id int PRIMARY KEY, f float)")
    for i, v in enumerate(values):
        mariadb.execute(mysql_db, "INSERT INTO f VALUES (%s, %s)", (i, v))
    table = planned(catalog_of(mariadb, mysql_db), "f")
    with source.Snapshot(endpoint(mariadb, mysql_db)) as snap:
        got = [r[1] for r in read_all(snap.readers[0], table)]
    assert got == [struct.unpack("f", struct.pack("f", v))[0] for v in values]


@pytest.mark.parametrize(
    ("ddl", "good", "bad", "said"),
    [
        ("b tinyint(1)", "1", "2", "holds '2': tinyint(1) maps to boolean"),
        ("b date NOT NULL", "'2020-01-01'", "'0000-00-00'", "holds '0000-00-00': a zero date"),
        ("b datetime NOT NULL", "'2020-01-01 00:00:00'", "'2020-00-01 00:00:00'", "a zero date"),
        ("b enum('x','y')", "'x'", "'nope'", "the empty string MySQL stores for an invalid ENUM value"),
    ],
)
def test_values_the_target_cannot_hold_stop_the_read_naming_the_row(
    mariadb: MariaDBServer, mysql_db: str, ddl: str, good: str, bad: str, said: str
) -> None:
    mariadb.execute(
        mysql_db,
        f"SET SESSION sql_mode = ''; CREATE TABLE bad (id int PRIMARY KEY, {ddl});"
        f"INSERT INTO bad (id, b) VALUES (1, {good}), (41, {bad})",
    )
    table = planned(catalog_of(mariadb, mysql_db), "bad")
    with source.Snapshot(endpoint(mariadb, mysql_db)) as snap, pytest.raises(SourceError) as err:
        read_all(snap.readers[0], table)
    assert f"{mysql_db}.bad" in str(err.value)
    assert "{'id': '41'}" in str(err.value)
    assert said in str(err.value)


def test_partitions_cover_every_row_once_with_open_ended_ranges(mariadb: MariaDBServer, mysql_db: str) -> None:
    mariadb.execute(
        mysql_db,
        "CREATE TABLE big (id bigint unsigned PRIMARY KEY, v varchar(10));"
        "INSERT INTO big SELECT seq, CONCAT('v', seq) FROM seq_100_to_1099",
    )
    table = planned(catalog_of(mariadb, mysql_db), "big")
    table.estimated_bytes = 64 * 1024 * 1024
    conn = my.connect(endpoint(mariadb, mysql_db))
    try:
        parts = source.partition_table(conn, table, max_part_bytes=16 * 1024 * 1024, workers=2)
    finally:
        conn.close()
    assert table.split == {"method": "key-range", "column": "id"}
    assert len(parts) == 4
    assert parts[0].bounds["lo"] is None and parts[-1].bounds["hi"] is None
    assert [p.bounds["hi"] for p in parts[:-1]] == [p.bounds["lo"] for p in parts[1:]]
    # Rows outside the plan-time bounds still belong to the first or last part.
    mariadb.execute(mysql_db, "INSERT INTO big VALUES (1, 'low'), (18446744073709551615, 'high')")
    with source.Snapshot(endpoint(mariadb, mysql_db)) as snap:
        seen = [r for p in parts for r in read_all(snap.readers[0], table, p)]
    ids = sorted(r[0] for r in seen)
    assert ids == [Decimal(1), *(Decimal(i) for i in range(100, 1100)), Decimal(2**64 - 1)]


def test_without_an_integer_key_a_table_is_one_whole_part(mariadb: MariaDBServer, mysql_db: str) -> None:
    mariadb.execute(mysql_db, "CREATE TABLE s (k varchar(10) PRIMARY KEY); INSERT INTO s VALUES ('a'), ('b')")
    table = planned(catalog_of(mariadb, mysql_db), "s")
    table.estimated_bytes = 10**9
    table.filter = "`k` <> 'a'"
    parts = source.partition_table(None, table, max_part_bytes=16 * 1024 * 1024, workers=2)
    assert [(p.where, p.bounds) for p in parts] == [("(`k` <> 'a')", {})]
    with source.Snapshot(endpoint(mariadb, mysql_db)) as snap:
        assert read_all(snap.readers[0], table, parts[0]) == [("b",)]


def test_readers_share_one_moment_while_a_writer_keeps_committing(mariadb: MariaDBServer, mysql_db: str) -> None:
    """Two tables updated together in every transaction: two readers, each reading one of them while the
    writer goes on, must see the same number of updates — and the binlog position of that moment."""
    mariadb.execute(
        mysql_db,
        "CREATE TABLE a (id int PRIMARY KEY, v bigint NOT NULL);"
        "CREATE TABLE b (id int PRIMARY KEY, v bigint NOT NULL);"
        "INSERT INTO a SELECT seq, 0 FROM seq_1_to_50; INSERT INTO b SELECT seq, 0 FROM seq_1_to_50",
    )
    catalog = catalog_of(mariadb, mysql_db)
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        conn = my.connect(endpoint(mariadb, mysql_db))
        cur = conn.cursor()
        try:
            while not stop.is_set():
                cur.execute("UPDATE a SET v = v + 1 WHERE id = %s", (commits[0] % 50 + 1,))
                cur.execute("UPDATE b SET v = v + 1 WHERE id = %s", (commits[0] % 50 + 1,))
                conn.commit()
                commits[0] += 1
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        sums = []
        for _ in range(3):
            while commits[0] < 20:
                time.sleep(0.01)
            with source.Snapshot(endpoint(mariadb, mysql_db), 2) as snap:
                before = commits[0]
                time.sleep(0.2)  # the writer commits on; the snapshot must not see it
                sum_a = sum(r[1] for r in read_all(snap.readers[0], planned(catalog, "a")))
                time.sleep(0.2)
                sum_b = sum(r[1] for r in read_all(snap.readers[1], planned(catalog, "b")))
                position = snap.position
            assert commits[0] > before + 5, "the writer must have committed during the reads"
            assert sum_a == sum_b
            sums.append(sum_a)
    finally:
        stop.set()
        writer.join()
    assert sums == sorted(sums) and sums[-1] > 0
    file, pos = position["binlog_file"], position["binlog_pos"]
    assert position["lsn"] == f"{file}:{pos}" and file and pos > 0
    assert position["server_id"] == 1 and position["exported_by"] == "flush-tables-read-lock"
    assert position["gtid_set"]  # MariaDB always has a GTID position once something was binlogged
    # The position is that of the snapshot: the binlog from there on holds the updates the readers missed.
    binlog = mariadb.execute(None, f"SHOW BINLOG EVENTS IN '{file}' FROM {pos} LIMIT 1")
    assert binlog, "no event after the snapshot's position although the writer kept committing"


def test_without_a_binlog_the_snapshot_has_no_position_and_cdc_is_refused() -> None:
    """A full load needs no binlog (the position is None, said in the plan); change capture does."""
    with MariaDBServer(name="nobinlog", settings={"log_bin": None}) as server:
        server.create_database("d")
        server.execute("d", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        ep = endpoint(server, "d")
        with source.Snapshot(ep) as snap:
            assert snap.position["lsn"] is None and snap.position["binlog_file"] is None
            assert snap.position["exported_by"] == "flush-tables-read-lock"
            assert snap.readers[0].snapshot_lsn is None
        with pytest.raises(SourceError, match="log_bin is OFF"):
            source.check_cdc_ready(SimpleNamespace(source=ep))


def test_no_reload_privilege_is_refused_with_the_grant_to_add(mariadb: MariaDBServer, mysql_db: str) -> None:
    user = f"noreload_{mysql_db[-8:]}"
    mariadb.execute(None, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")
    try:
        mariadb.execute(None, f"GRANT SELECT ON `{mysql_db}`.* TO '{user}'@'127.0.0.1'")
        with pytest.raises(SourceError) as err:
            source.Snapshot(endpoint(mariadb, mysql_db, user, "pw"))
        assert "FLUSH TABLES WITH READ LOCK" in err.value.message
        assert f"GRANT RELOAD ON *.* TO '{user}'" in err.value.hint
    finally:
        mariadb.execute(None, f"DROP USER '{user}'@'127.0.0.1'")


def test_connect_errors_name_the_login_and_the_fix(mariadb: MariaDBServer, mysql_db: str) -> None:
    with pytest.raises(ConnectError) as err:
        my.connect(endpoint(mariadb, mysql_db, password="wrong"))
    assert f"access denied for bulkmig@{mariadb.host}" in err.value.message
    assert "BULKMIG_SOURCE_PASSWORD" in err.value.hint and "wrong" not in str(err.value)
    with pytest.raises(ConnectError, match="database 'no_such_db' does not exist"):
        my.connect(endpoint(mariadb, "no_such_db"))
    with pytest.raises(ConnectError, match="cannot reach the server"):
        my.connect(Endpoint.parse("mysql://u@127.0.0.1:1/x?connect_timeout=2", "source"))
    with pytest.raises(ConnectError, match="accepted a plain-text session"):
        my.connect(
            Endpoint.parse(mariadb.url(mysql_db) + "?ssl_mode=REQUIRED", "source").with_password(mariadb.password)
        )
    with pytest.raises(ConfigError, match="unknown MySQL URL parameter 'sslca'"):
        my.connect(Endpoint.parse(mariadb.url(mysql_db) + "?sslca=/x", "source"))


def test_session_reads_timestamps_as_utc_whatever_the_server_zone(mariadb: MariaDBServer, mysql_db: str) -> None:
    conn = my.connect(endpoint(mariadb, mysql_db))
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@session.time_zone, @@session.sql_mode, @@autocommit, @@character_set_results")
        assert cur.fetchone() == ("+00:00", "NO_ENGINE_SUBSTITUTION", 0, "utf8mb4")
    finally:
        conn.close()


def test_literal_quotes_what_a_filter_may_hold() -> None:
    assert source.literal("it's a \\ path\0") == "'it''s a \\\\ path\\0'"
    assert source.literal(None) == "NULL" and source.literal(5) == "5" and source.literal(True) == "TRUE"
    assert source.set_literal("a,b c") == '{"a","b c"}' and source.set_literal("") == "{}"
    assert source.set_literal('q"\\') == '{"q\\"\\\\"}'


def test_arrow_conversion_refuses_non_utf8_text() -> None:
    col = planned_column("varchar(3)", "string")
    with pytest.raises(source.BadValue, match="not valid UTF-8"):
        source.to_arrow([b"ok", b"\xff"], col, pa.string())


def planned_column(source_type: str, arrow: str) -> Any:
    from bulkmig.core.model import Column

    return Column("c", source_type, "text", arrow)
