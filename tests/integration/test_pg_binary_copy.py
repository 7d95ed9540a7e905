"""The binary COPY encoder against a real server: the server's own bytes, and values read back exactly.

Data takes bulkmig's real path (ADBC read -> Parquet part -> Arrow batches), is encoded by
``engines/postgres/binary.py`` and compared twice: byte for byte with what the source server itself
writes for ``COPY … TO STDOUT (FORMAT binary)`` (its send functions), and, after a binary
``COPY … FROM STDIN`` into a second server, as every column's canonical text on both sides.

``test_binary_copy_speed_against_csv`` times encode + COPY of a table like issue 3's ``wide`` both ways
in one run and prints the figures (``-s`` shows them; ``BULKMIG_BINARY_BENCH_ROWS`` sets the size).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.copy import QueuedLibpqWriter

from bench.data import WIDE
from bulkmig.config.task import Endpoint
from bulkmig.core.model import Partition, Table
from bulkmig.core.parquet import write_parquet
from bulkmig.engines.postgres import reflect
from bulkmig.engines.postgres.binary import encode_batch, encode_batch_view, header, plan_columns, trailer
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.reader import FarValue, SnapshotReader, arrow_schema
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.postgres.writer import to_copy_csv

KINDS_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'we''ird "one"');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN email AS varchar(200) CHECK (VALUE LIKE '%@%');
CREATE DOMAIN amount3 AS numeric(8,3);
CREATE DOMAIN good_mood AS mood CHECK (VALUE <> 'sad');
CREATE TABLE kinds (
    id integer PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, bo boolean,
    t text, vc varchar(10), c5 char(5), nm name, js json, jsb jsonb, b bytea, u uuid,
    d date, ts timestamp, tstz timestamptz, ts3 timestamp(3) with time zone,
    n numeric, n122 numeric(12,2), n_big numeric(60,30),
    e mood, dom_i posint, dom_t email, dom_n amount3, dom_e good_mood
);
INSERT INTO kinds (id) VALUES (0);
INSERT INTO kinds VALUES
 (1, 1, 2, 3, 1.5, 2.25, true, 'plain', 'v', 'ab', 'a name', '{"b": 1,   "a": [1, 2.50, null]}',
  '{"b": 1, "a": [1, 2.50, null]}', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+05:30', '2024-02-29 12:34:56.789+05:30',
  4.5, 6.75, 0.000000000000000000000000000001, 'happy', 7, 'a@b.c', 12345.678, 'ok'),
 (2, -32768, -2147483648, -9223372036854775808, 'NaN', 'NaN', false, '', '', '', '', '"a string"', '[]', '',
  '00000000-0000-0000-0000-000000000000', 'infinity', 'infinity', 'infinity', 'infinity',
  'NaN', -9999999999.99, -123456789012345678901234567890.123456789012345678901234567890,
  'sad', 1, '@', -99999.999, 'happy'),
 (3, 32767, 2147483647, 9223372036854775807, '-0', '-0',
  NULL, E'tab\\there\\nnew line\\r\\nCR "quotes" \\'single\\' \\\\backslash \\\\. ,comma', 'ünï😀ode', 'é', 'ünï😀',
  '{}', '{"\\u00e9": "\\\\u0000 not a nul"}', '\\x'::bytea, 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '-infinity', '-infinity', '-infinity', '-infinity', '1e-1000', 0, 0, 'we''ird "one"', 2147483647,
  'ü@😀', 0.001, 'we''ird "one"'),
 (4, 0, 0, 0, 'Infinity', 'Infinity', true, '\\.', '\\N', '     ', 'x', 'null', 'null', '\\x5c2e', NULL,
  '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC', '4713-01-01 00:00:00.001+00 BC',
  '-0.0000', 0.01, 1, 'ok', 3, 'x@y', 0, NULL),
 (5, 1, 1, 1, '-Infinity', '-Infinity', false, 'NULL', 'null', 'NULL', repeat('n', 63), '1', '1.0', '\\x00',
  NULL, '5873999-12-31', '289999-12-31 23:59:59.999999', '289999-12-31 23:59:59.999999+00',
  '289999-12-31 23:59:59.999+00', (repeat('9', 1000) || '.' || repeat('1', 1000))::numeric, 1.1, 1.1,
  NULL, NULL, NULL, NULL, NULL),
 (6, 2, 2, 2, 3.4028235e38, 1.7976931348623157e308, true, '🙂', 'x', 'abcde', 'x', '  { "s" :   true }  ',
  '{"nested": {"a": [1, {"b": null}]}}', '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
  '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '0001-01-01 00:00:00+00',
  '3.14159265358979323846264338327950288', 3.14, 2.71828, 'happy', 4, 'q@q', 1.5, 'happy'),
 (7, 3, 3, 3, 1.4e-45, 5e-324, false, repeat('long text ', 10), 'y', 'z', 'z', '{"big": 12345678901234567890123456789}',
  '{"big": 12345678901234567890123456789}', '\\x01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13',
  '1999-12-31', '2038-01-19 03:14:08', '1969-12-31 23:59:59.999999+00', '1969-12-31 23:59:59.999+00',
  '1e20', 0.5, 0.5, 'sad', 5, 'r@r', -0.5, 'ok'),
 (8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', NULL, 'Infinity', NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (9, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', NULL, '-Infinity', NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (10, NULL, NULL, NULL, NULL, NULL, NULL, repeat('0123456789abcdefghij', 300000), NULL, NULL, NULL,
  ('"' || repeat('x', 3000000) || '"')::json, ('"' || repeat('y', 3000000) || '"')::jsonb,
  decode(repeat('00ff10', 1500000), 'hex'), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (11, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  (SELECT string_agg(set_byte('\\x00'::bytea, 0, g), ''::bytea ORDER BY g) FROM generate_series(0, 255) g),
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- Many generated values: numerics of every scale and length (the fast path and the slow one mixed in
-- the same batches), floats, times around the epochs, text of many lengths.
SELECT setseed(0.17);
INSERT INTO kinds
SELECT g, (g % 65536 - 32768)::int2, (g * 7919)::int, g::bigint * 1000003 * (1 - 2 * (g % 2)),
       (random() * 1e6 - 5e5)::real, random() * 10 ^ (g % 40 - 20), g % 3 = 0,
       repeat('é', g % 17), left(md5(g::text), g % 11), left(md5(g::text), g % 6), md5(g::text),
       ('{"g": ' || g || '}')::json, ('{"g": ' || g || ', "r": ' || random() || '}')::jsonb,
       decode(repeat(md5(g::text), g % 5), 'hex'), md5('u' || g)::uuid,
       date '2000-01-01' + (g * 37 % 200000 - 100000),
       timestamp '2000-01-01' + (g::bigint * 7654321 % 2000000000 - 1000000000) * interval '1 second'
         + (g % 1000000) * interval '1 microsecond',
       timestamptz '1970-01-01 00:00:00+00' + (g::bigint * 1234567 % 2000000000 - 1000000000) * interval '1 second'
         + (g % 999983) * interval '1 microsecond',
       timestamptz '2020-01-01 00:00:00+00' + g * interval '1.001 second',
       CASE WHEN g % 50 = 0 THEN NULL
            WHEN g % 97 = 0 THEN 'NaN'
            ELSE round(((random() - 0.3) * 10 ^ (g % 30 - 8))::numeric, g % 23) END,
       round(((random() - 0.5) * 10 ^ (g % 11))::numeric, 2),
       round(((random() - 0.5) * 10 ^ (g % 31))::numeric, 30),
       (enum_range(NULL::mood))[1 + g % 4], 1 + g % 1000, 'u' || g || '@x', round((random() * 99999)::numeric, 3),
       (enum_range(NULL::mood))[2 + g % 3]
FROM generate_series(12, 3011) AS g;
"""


def endpoint(server: Any, db: str, role: str) -> Endpoint:
    return Endpoint.parse(server.url(db), role).with_password(server.password)


def copy_schema(pg_source: Any, source_db: str, pg_target: Any, target_db: str, tmp_path: Path) -> None:
    """The target gets the source's table definitions from the source's own pg_dump."""
    dump = subprocess.run(
        [str(Path(pg_source.bindir) / "pg_dump"), "--schema-only", "-d", source_db],
        env=pg_source.env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (tmp_path / "schema.sql").write_text(dump)
    pg_target.psql_file(target_db, tmp_path / "schema.sql")


def extract(src: Endpoint, table: Table, path: Path, max_rows: int = 65536) -> pq.ParquetFile:
    """The table through bulkmig's reader into one Parquet part (far values fall back to text)."""
    reader = SnapshotReader(src, None)
    as_text: frozenset[str] = frozenset()
    try:
        while True:
            try:
                batches = reader.batches(table, Partition(0, None), as_text)
                write_parquet(batches, arrow_schema(table, as_text), path, max_rows)
                break
            except FarValue as far:
                as_text = as_text | {far.column}
    finally:
        reader.close()
    return pq.ParquetFile(path)


def batches_of(parquet: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    for group in range(parquet.num_row_groups):
        yield from parquet.read_row_group(group).to_batches()


def reflected(conn: Any, name: str) -> Table:
    return next(t.table for t in reflect.list_tables(conn) if t.table.name == name)


def column_texts(conn: Any, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    sql = "SELECT id AS k__, " + ", ".join(f"{ident(c)}::text" for c in columns) + f" FROM {table} ORDER BY k__"
    return conn.execute(sql).fetchall()


def server_copy_bytes(conn: Any, sql: str) -> bytes:
    """What the server writes for ``COPY (sql) TO STDOUT (FORMAT binary)``: its send functions' bytes."""
    out = bytearray()
    with conn.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)") as copy:
        for block in copy:
            out += block
    return bytes(out)


def test_every_kind_matches_the_server_and_round_trips(pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    pg_source.execute(source_db, KINDS_SQL)
    copy_schema(pg_source, source_db, pg_target, target_db, tmp_path)
    src, dst = endpoint(pg_source, source_db, "source"), endpoint(pg_target, target_db, "target")
    src_conn = connect(src, autocommit=True)
    table = reflected(src_conn, "kinds")
    parquet = extract(src, table, tmp_path / "kinds.parquet", max_rows=1000)
    assert parquet.num_row_groups > 1  # several batches, so sliced and chunked columns are exercised

    # Without the plan's columns the enum and the domain over varchar are not recognisable: CSV.
    assert plan_columns(parquet.schema_arrow) is None
    kinds = plan_columns(parquet.schema_arrow, table.copied_columns)
    assert kinds is not None
    by_name = dict(zip(parquet.schema_arrow.names, kinds, strict=True))
    assert by_name["e"] == by_name["dom_e"] == "enum"
    assert (by_name["dom_i"], by_name["dom_t"], by_name["dom_n"]) == ("int4", "varchar", "numeric")
    assert (by_name["c5"], by_name["nm"], by_name["js"], by_name["jsb"]) == ("bpchar", "name", "json", "jsonb")

    # 1. Byte for byte what the server's send functions write, in the same row order (the reader's
    #    sequential scan of a table never updated: ctid order).
    ids = [v for batch in batches_of(parquet) for v in batch.column(0).to_pylist()]
    assert ids == [r[0] for r in src_conn.execute("SELECT id FROM kinds ORDER BY ctid")] and len(ids) == 3012
    encoded = b"".join(encode_batch(batch, kinds) for batch in batches_of(parquet))
    cols = ", ".join(ident(c.name) for c in table.copied_columns)
    server = server_copy_bytes(src_conn, f"SELECT {cols} FROM kinds ORDER BY ctid")
    assert server[:19] == header() and server[-2:] == trailer()
    assert encoded == server[19:-2]

    # 2. Loaded with binary COPY, every value reads back as the same canonical text.
    dst_conn = connect(dst, autocommit=True)
    with dst_conn.cursor().copy(f"COPY kinds ({cols}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(header())
        for batch in batches_of(parquet):
            copy.write(encode_batch_view(batch, kinds))
        copy.write(trailer())
    names = [c.name for c in table.columns]
    want, got = column_texts(src_conn, "kinds", names), column_texts(dst_conn, "kinds", names)
    assert len(want) == len(got) == 3012
    diffs = [
        (w[0], name, str(a)[:60], str(b)[:60])
        for w, g in zip(want, got, strict=True)
        for name, a, b in zip(["id", *names], w, g, strict=True)
        if a != b
    ]
    assert diffs == []
    # numeric's display scale (trailing zeros) and special values survive, not only its value.
    assert dst_conn.execute("SELECT n::text FROM kinds WHERE id IN (3, 4, 8, 9) ORDER BY id").fetchall() == [
        ("0." + "0" * 999 + "1",),
        ("0.0000",),
        ("Infinity",),
        ("-Infinity",),
    ]
    assert dst_conn.execute("SELECT length(t), length(b), length(jsb::text) FROM kinds WHERE id = 10").fetchone() == (
        6_000_000,
        4_500_000,
        3_000_002,
    )


def test_plan_columns_refuses_what_binary_cannot_carry(pg_source, source_db, tmp_path) -> None:  # noqa: ANN001
    """An interval column, and a date beyond Arrow's range (it travels as text), keep the part on CSV."""
    pg_source.execute(
        source_db,
        "CREATE TABLE iv (id int PRIMARY KEY, v interval, n numeric);"
        "INSERT INTO iv VALUES (1, '1 year 2 mons 3 days 04:05:06.789012', 1.5);"
        "CREATE TABLE far (id int PRIMARY KEY, d date); INSERT INTO far VALUES (1, '5874897-12-31');",
    )
    src = endpoint(pg_source, source_db, "source")
    conn = connect(src, autocommit=True)
    interval_table = reflected(conn, "iv")
    assert plan_columns(arrow_schema(interval_table), interval_table.copied_columns) is None
    parquet = extract(src, interval_table, tmp_path / "iv.parquet")
    assert plan_columns(parquet.schema_arrow, interval_table.copied_columns) is None
    assert plan_columns(parquet.schema_arrow.remove(1), interval_table.copied_columns) == ["int4", "numeric"]

    far_table = reflected(conn, "far")
    assert plan_columns(arrow_schema(far_table), far_table.copied_columns) == ["int4", "date"]
    parquet = extract(src, far_table, tmp_path / "far.parquet")
    assert parquet.schema_arrow.field("d").metadata[b"transfer"] == b"text"
    assert plan_columns(parquet.schema_arrow, far_table.copied_columns) is None


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.slow
def test_binary_copy_speed_against_csv(pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    """Encode + COPY of a `wide`-like table, binary against CSV, in one run.  Figures are printed, not asserted."""
    rows = int(os.environ.get("BULKMIG_BINARY_BENCH_ROWS", "100000"))
    repeats = int(os.environ.get("BULKMIG_BINARY_BENCH_REPEATS", "1"))
    # Issue 3's `wide` table, generated as the benchmark generates it.
    pg_source.execute(source_db, WIDE.create_sql(with_key=False) + ";" + WIDE.insert_sql(rows))
    pg_target.execute(target_db, WIDE.create_sql(with_key=False))
    src = endpoint(pg_source, source_db, "source")
    table = reflected(connect(src, autocommit=True), "wide")
    parquet = extract(src, table, tmp_path / "wide.parquet")
    batches = list(batches_of(parquet))  # in memory first: the timings below are encoding and COPY only
    kinds = plan_columns(parquet.schema_arrow, table.copied_columns)
    assert kinds is not None
    conn = connect(endpoint(pg_target, target_db, "target"), autocommit=True)
    cols = ", ".join(ident(c.name) for c in table.copied_columns)

    def encode_binary() -> None:
        for batch in batches:
            encode_batch_view(batch, kinds)

    def encode_csv() -> None:
        for batch in batches:
            to_copy_csv(batch)

    def load_binary(queued: bool = False) -> None:
        cur = conn.cursor()
        # QueuedLibpqWriter sends from a thread, so encoding the next batch overlaps the server's work.
        writer = QueuedLibpqWriter(cur) if queued else None
        with cur.copy(f"COPY wide ({cols}) FROM STDIN (FORMAT binary)", writer=writer) as copy:
            copy.write(header())
            for batch in batches:
                copy.write(encode_batch_view(batch, kinds))
            copy.write(trailer())

    def load_csv() -> None:
        with conn.cursor().copy(f"COPY wide ({cols}) FROM STDIN (FORMAT csv)") as copy:
            for batch in batches:
                copy.write(to_copy_csv(batch))

    encoded = [encode_batch(batch, kinds) for batch in batches]

    def load_encoded() -> None:
        with conn.cursor().copy(f"COPY wide ({cols}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(header())
            for data in encoded:
                copy.write(data)
            copy.write(trailer())

    loads: dict[str, Callable[[], None]] = {
        "COPY binary, pre-encoded": load_encoded,  # the server's share alone: the limit for this client
        "COPY binary": load_binary,
        "COPY binary, queued writer": lambda: load_binary(queued=True),
        "COPY csv": load_csv,
    }
    times: dict[str, list[float]] = {"encode binary": [], "encode csv": [], **{name: [] for name in loads}}
    for _ in range(repeats):
        times["encode binary"].append(_timed(encode_binary))
        times["encode csv"].append(_timed(encode_csv))
        for name, load in loads.items():
            conn.execute("TRUNCATE wide")
            conn.execute("CHECKPOINT")
            times[name].append(_timed(load))
            assert conn.execute("SELECT count(*) FROM wide").fetchone() == (rows,)
    # Both loads hold the same values (the last one is CSV; compare it with the source).
    sample = (
        "SELECT id, amount::text, created_at::text, attrs::text, digest::text FROM wide WHERE id % 9973 = 1 ORDER BY id"
    )
    assert conn.execute(sample).fetchall() == connect(src, autocommit=True).execute(sample).fetchall()
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nbinary vs CSV, {rows:,} rows of `wide` in {len(batches)} batches, median of {repeats}:")
    for name, seconds in med.items():
        print(f"  {name:26s} {seconds:7.2f} s  {rows / seconds / 1e6:6.2f} Mrows/s")
    print(f"  COPY csv / COPY binary = {med['COPY csv'] / med['COPY binary']:.2f}")
