"""The Arrow -> PostgreSQL CSV COPY conversion, checked value by value without a server."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pyarrow as pa

from bulkmig.engines.postgres import types
from bulkmig.engines.postgres.writer import format_date, format_timestamp, hex_encode, to_copy_csv

EPOCH = dt.datetime(1970, 1, 1)


def test_hex_encode_all_bytes_nulls_and_slices() -> None:
    values = [b"", None, bytes(range(256)), b"\x00\xff", b"A"]
    arr = pa.array(values, pa.binary())
    want = [None if v is None else "\\x" + v.hex() for v in values]
    assert hex_encode(arr, b"\\x").to_pylist() == want
    assert hex_encode(arr.slice(2), b"\\x").to_pylist() == want[2:]
    assert hex_encode(arr.slice(1, 2), b"\\x").to_pylist() == want[1:3]


def test_hex_encode_uuid_without_prefix() -> None:
    u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    arr = pa.array([u.bytes, None], pa.uuid())
    assert hex_encode(arr, b"").to_pylist() == [u.hex, None]


def test_format_matches_python_in_the_common_range() -> None:
    rng = random.Random(42)
    for _ in range(2000):
        us = rng.randrange(-62_135_596_800_000_000, 253_402_300_799_999_999)
        want = EPOCH + dt.timedelta(microseconds=us)
        assert format_timestamp(us, False) == want.strftime("%Y-%m-%d %H:%M:%S.%f").rjust(26, "0")
        days = us // 86_400_000_000
        assert format_date(days) == (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()


def test_format_infinities_and_bc() -> None:
    assert format_date(types.DATE_POS_INF) == "infinity"
    assert format_date(types.DATE_NEG_INF) == "-infinity"
    assert format_timestamp(types.TS_POS_INF, True) == "infinity"
    assert format_timestamp(types.TS_NEG_INF, False) == "-infinity"
    # 0001-01-01 minus one day is 1 BC (astronomical year 0), 31 December.
    assert format_date(-719_163) == "0001-12-31 BC"
    assert format_timestamp(-62_135_596_800_000_001, True) == "0001-12-31 23:59:59.999999+00 BC"


def test_csv_keeps_null_and_empty_string_apart() -> None:
    batch = pa.record_batch(
        [pa.array(["", None, 'a"b', "x\ny", "\\.", "NULL"]), pa.array([1, None, 3, 4, 5, 6], pa.int64())],
        names=["t", "n"],
    )
    lines = to_copy_csv(batch).decode()
    assert lines == '"",1\n,\n"a""b",3\n"x\ny",4\n"\\.",5\n"NULL",6\n'


def test_csv_temporal_edges() -> None:
    ts = pa.array([types.TS_POS_INF, 0, None, -62_135_596_800_000_001], pa.timestamp("us", tz="UTC"))
    d = pa.array([types.DATE_NEG_INF, 0, None, 100_000_000], pa.date32())
    out = to_copy_csv(pa.record_batch([ts, d], names=["ts", "d"])).decode().splitlines()
    assert out == [
        '"infinity","-infinity"',
        '"1970-01-01 00:00:00.000000","1970-01-01"',  # naive UTC: the loading session's TimeZone is UTC
        ",",
        '"0001-12-31 23:59:59.999999+00 BC","275760-09-13"',
    ]
