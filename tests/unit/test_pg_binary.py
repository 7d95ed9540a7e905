"""The binary COPY encoder against a plain per-value reference encoder written here (no server needed).

The reference follows PostgreSQL's send functions one value at a time with ``struct`` and Python ints,
by a different route than the module (numeric: repeated divmod of the unscaled integer instead of
grouping the digit string), so a shared mistake is unlikely.  The integration test compares against
the server's own bytes.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bulkmig.core.model import Column
from bulkmig.engines.postgres import types
from bulkmig.engines.postgres.binary import (
    column_kind,
    encode_batch,
    encode_batch_view,
    header,
    numeric_value,
    plan_columns,
    trailer,
)

# PostgreSQL's epoch (2000-01-01) counted from Arrow's (1970-01-01).
EPOCH_DAYS = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
EPOCH_US = (dt.datetime(2000, 1, 1) - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


@pytest.fixture(autouse=True)
def long_ints() -> Iterator[None]:
    """The reference converts numerics of up to 20,000 digits with int(); lift Python's 4,300 cap."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(before)


# ------------------------------------------------------------------------------------------ reference


def ref_numeric(text: str) -> bytes:
    """numeric_send's bytes for a decimal string in PostgreSQL's output form (no exponent)."""
    low = text.lower()
    if low == "nan":
        return struct.pack(">hhHH", 0, 0, 0xC000, 0)
    if low in ("inf", "infinity"):
        return struct.pack(">hhHH", 0, 0, 0xD000, 32)
    if low in ("-inf", "-infinity"):
        return struct.pack(">hhHH", 0, 0, 0xF000, 32)
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    dscale = len(frac)
    unscaled = int(whole + frac)
    if unscaled == 0:
        return struct.pack(">hhHH", 0, 0, 0, dscale)
    pad = -dscale % 4  # align the decimal point on a base-10000 digit boundary
    value = unscaled * 10**pad
    digits = []  # least significant first
    while value:
        value, d = divmod(value, 10_000)
        digits.append(d)
    digits.reverse()
    weight = len(digits) - 1 - (dscale + pad) // 4
    while digits[-1] == 0:
        digits.pop()
    return struct.pack(f">hhHH{len(digits)}H", len(digits), weight, 0x4000 if negative else 0, dscale, *digits)


def ref_value(kind: str, arr: pa.Array, i: int) -> bytes | None:
    """One value's payload, or None for NULL, from the array's Python value (raw ints for temporals)."""
    if not arr[i].is_valid:
        return None
    if kind == "date":
        raw = arr.cast(pa.int32())[i].as_py()
        infinite = raw in (types.DATE_POS_INF, types.DATE_NEG_INF)
        return struct.pack(">i", raw if infinite else raw - EPOCH_DAYS)
    if kind in ("timestamp", "timestamptz"):
        raw = arr.cast(pa.int64())[i].as_py()
        infinite = raw in (types.TS_POS_INF, types.TS_NEG_INF)
        return struct.pack(">q", raw if infinite else raw - EPOCH_US)
    v = arr[i].as_py()
    simple: dict[str, Callable[[Any], bytes]] = {
        "int2": lambda x: struct.pack(">h", x),
        "int4": lambda x: struct.pack(">i", x),
        "int8": lambda x: struct.pack(">q", x),
        "float4": lambda x: struct.pack(">f", x),
        "float8": lambda x: struct.pack(">d", x),
        "bool": lambda x: b"\x01" if x else b"\x00",
        "bytea": bytes,
        "uuid": lambda x: x.bytes if isinstance(x, uuid.UUID) else bytes(x),
        "jsonb": lambda x: b"\x01" + x.encode(),
        "numeric": ref_numeric,
    }
    return simple[kind](v) if kind in simple else v.encode()


def ref_rows(batch: pa.RecordBatch, kinds: list[str]) -> bytes:
    out = bytearray()
    for i in range(batch.num_rows):
        out += struct.pack(">h", batch.num_columns)
        for arr, kind in zip(batch.columns, kinds, strict=True):
            payload = ref_value(kind, arr, i)
            out += struct.pack(">i", -1) if payload is None else struct.pack(">i", len(payload)) + payload
    return bytes(out)


# ------------------------------------------------------------------------------------------ data

LONG_FRACTION = "0." + "0" * 999 + "1"  # 1e-1000 as PostgreSQL prints it
NUMERIC_EDGES = [
    "0",
    "0.0000",
    "-0.0000",
    "1",
    "-1",
    "12.3400",
    "0.000100",
    "100000000000000000000",
    "12345678901234567890.123",
    "-9999999999.99",
    "6.75",
    "9999",
    "10000",
    "0.0001",
    "0.00001",
    "999999999999999999",
    "-999999999999999999",
    "9999999999999999999",
    "0.0000000000000001",
    "0.00000000000000001",
    "99999999999999999.9",
    "1.0000000000000000",
    "123456789.000000001",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    LONG_FRACTION,
    "9" * 1000 + "." + "1" * 1000,
    "-" + "1" * 20000,
    "0." + "0" * 16382 + "7",
]


def random_numeric(rng: random.Random) -> str:
    whole = str(rng.randrange(10 ** rng.randrange(0, 22)))
    scale = rng.choice([0, 0, 1, 2, 2, 3, 4, 5, 8, 12, 16, 17, 20])
    frac = "".join(rng.choice("0123456789") for _ in range(scale))
    sign = "-" if rng.random() < 0.3 and (whole.strip("0") or frac.strip("0")) else ""
    return sign + whole + ("." + frac if frac else "")


def every_kind_batch(n: int = 40, seed: int = 7) -> tuple[pa.RecordBatch, list[str]]:
    """n rows of every kind, edge values first, about a fifth NULL (column ``k`` never NULL)."""
    rng = random.Random(seed)

    def some(values: list[Any]) -> list[Any]:
        return [None if rng.random() < 0.2 else values[i % len(values)] for i in range(n)]

    ts_us = [0, 1, -1, 951_827_696_789_012, -62_135_596_800_000_000, 253_402_300_799_999_999]
    ts_us += [-210_866_803_200_000_000, 9_089_000_000_000_000_000, types.TS_POS_INF, types.TS_NEG_INF]
    days = [0, 1, -1, 10_957, 19_782, -719_162, -2_440_588, 2_145_000_000, types.DATE_POS_INF]
    days += [types.DATE_NEG_INF]
    texts = ["", "plain", "tab\there\nnew line\r\n", 'q"uo,te', "\\.", "\\N", "ünï😀ode", "x" * 300]
    columns: dict[str, tuple[pa.Array, str]] = {
        "k": (pa.array(range(n), pa.int32()), "int4"),
        "i2": (pa.array(some([0, 1, -1, -32768, 32767]), pa.int16()), "int2"),
        "i4": (pa.array(some([0, -(2**31), 2**31 - 1, 42]), pa.int32()), "int4"),
        "i8": (pa.array(some([0, -(2**63), 2**63 - 1, 7]), pa.int64()), "int8"),
        "f4": (
            pa.array(some([0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 3.4028234663852886e38]), pa.float32()),
            "float4",
        ),
        "f8": (
            pa.array(some([0.0, -0.0, 2.25, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308])),
            "float8",
        ),
        "bo": (pa.array(some([True, False])), "bool"),
        "t": (pa.array(some(texts)), "text"),
        "vc": (pa.array(some(texts), pa.large_string()), "varchar"),
        "c5": (pa.array(some(["ab   ", "     ", "é    ", "abcde"])), "bpchar"),
        "nm": (pa.array(some(["a name", "", "x" * 63])), "name"),
        "js": (pa.array(some(['{"b": 1,   "a": [1, 2.50, null]}', "[]", "null", '  { "s" :   true }  '])), "json"),
        "jsb": (pa.array(some(['{"a": [1, 2.50, null], "b": 1}', "{}", '"a string"', "1.0"])), "jsonb"),
        "b": (pa.array(some([b"", b"\x00\xff", bytes(range(256)), b"\\x"])), "bytea"),
        "u": (
            pa.array(
                some([uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes, bytes(16), b"\xff" * 16]), pa.binary(16)
            ).view(pa.uuid()),
            "uuid",
        ),
        "d": (pa.array(some(days), pa.int32()).view(pa.date32()), "date"),
        "ts": (pa.array(some(ts_us), pa.int64()).view(pa.timestamp("us")), "timestamp"),
        "tstz": (pa.array(some(ts_us), pa.int64()).view(pa.timestamp("us", tz="UTC")), "timestamptz"),
        "n": (pa.array(some(NUMERIC_EDGES[:-2] + [random_numeric(rng) for _ in range(20)])), "numeric"),
        "n122": (pa.array(some(["0.00", "-0.50", "1.10", "-9999999999.99", "12.00"])), "numeric"),
        "e": (pa.array(some(["sad", "ok", 'we\'ird "one"'])), "enum"),
    }
    batch = pa.record_batch({name: arr for name, (arr, _) in columns.items()})
    return batch, [kind for _, kind in columns.values()]


# ------------------------------------------------------------------------------------------ tests


def test_header_and_trailer_bytes() -> None:
    assert header() == b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    assert len(header()) == 19
    assert trailer() == b"\xff\xff"


def test_every_kind_matches_the_reference() -> None:
    batch, kinds = every_kind_batch()
    assert encode_batch(batch, kinds) == ref_rows(batch, kinds)


@pytest.mark.parametrize(("offset", "length"), [(0, 1), (3, 17), (13, 27), (39, 1), (5, 0)])
def test_sliced_batches_honour_offsets(offset: int, length: int) -> None:
    batch, kinds = every_kind_batch()
    part = batch.slice(offset, length)
    assert encode_batch(part, kinds) == ref_rows(part, kinds)


def test_sliced_arrays_inside_a_batch() -> None:
    """Columns that are slices of different parents (offsets differ per column)."""
    batch, kinds = every_kind_batch(60)
    columns = [arr.slice(i % 7, 40) for i, arr in enumerate(batch.columns)]
    part = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
    assert encode_batch(part, kinds) == ref_rows(part, kinds)


def test_columns_without_nulls_and_all_null() -> None:
    batch, kinds = every_kind_batch(30, seed=3)
    kept = [arr.drop_null() for arr in batch.columns]
    full = [arr.take(pa.array([i % len(arr) for i in range(30)])) for arr in kept]
    dense = pa.RecordBatch.from_arrays(full, names=batch.schema.names)
    assert all(arr.null_count == 0 for arr in dense.columns)
    assert encode_batch(dense, kinds) == ref_rows(dense, kinds)
    empty = pa.RecordBatch.from_arrays([pa.nulls(5, arr.type) for arr in batch.columns], names=batch.schema.names)
    assert encode_batch(empty, kinds) == ref_rows(empty, kinds)


def test_nulls_and_empty_strings_stay_apart() -> None:
    batch = pa.record_batch({"t": pa.array(["", None, "a"]), "b": pa.array([None, b"", b"z"])})
    out = encode_batch(batch, ["text", "bytea"])
    assert out == (
        b"\x00\x02" + b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff"
        b"\x00\x02" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x00"
        b"\x00\x02" + b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x01z"
    )


def test_fixed_width_only_batches() -> None:
    """No variable-length column and no NULL: one block, no join."""
    batch = pa.record_batch({"a": pa.array([1, 2**40], pa.int64()), "b": pa.array([True, False])})
    assert encode_batch(batch, ["int8", "bool"]) == ref_rows(batch, ["int8", "bool"])
    assert encode_batch(batch.slice(1), ["int8", "bool"]) == ref_rows(batch.slice(1), ["int8", "bool"])


def test_infinity_sentinels_are_postgres_infinities() -> None:
    batch = pa.record_batch(
        {
            "d": pa.array([types.DATE_POS_INF, types.DATE_NEG_INF, 0], pa.int32()).view(pa.date32()),
            "ts": pa.array([types.TS_POS_INF, types.TS_NEG_INF, 0], pa.int64()).view(pa.timestamp("us", "UTC")),
        }
    )
    out = encode_batch(batch, ["date", "timestamptz"])
    rows = [out[i : i + 22] for i in range(0, len(out), 22)]
    assert rows[0] == b"\x00\x02" + b"\x00\x00\x00\x04\x7f\xff\xff\xff" + b"\x00\x00\x00\x08\x7f" + b"\xff" * 7
    assert rows[1] == b"\x00\x02" + b"\x00\x00\x00\x04\x80\x00\x00\x00" + b"\x00\x00\x00\x08\x80" + b"\x00" * 7
    # 1970-01-01 is 10957 days / 946684800 s before PostgreSQL's epoch.
    assert rows[2][6:10] == struct.pack(">i", -10_957)
    assert rows[2][14:] == struct.pack(">q", -946_684_800_000_000)


def test_floats_keep_their_bits() -> None:
    bits = [0x80000000_00000000, 0x7FF80000_00000000, 0x7FF00000_00000001, 0xFFF00000_00000000, 1]
    arr = pa.Array.from_buffers(pa.float64(), 5, [None, pa.py_buffer(np.array(bits, np.uint64).tobytes())])
    out = encode_batch(pa.record_batch({"f": arr}), ["float8"])
    assert [out[i + 6 : i + 14] for i in range(0, len(out), 14)] == [struct.pack(">Q", b) for b in bits]


@pytest.mark.parametrize("text", NUMERIC_EDGES)
def test_numeric_edge_values(text: str) -> None:
    assert numeric_value(text) == ref_numeric(text)
    batch = pa.record_batch({"n": pa.array([text, None, "1.5"])})
    assert encode_batch(batch, ["numeric"]) == ref_rows(batch, ["numeric"])


def test_numeric_known_bytes() -> None:
    """Bytes as PostgreSQL 15's numeric_send printed them."""
    assert numeric_value("12.3400").hex() == "0002000000000004000c0d48"
    assert numeric_value("0.000100").hex() == "0001ffff000000060001"
    assert numeric_value("100000000000000000000").hex() == "00010005000000000001"
    assert numeric_value("-5").hex() == "00010000400000000005"
    assert numeric_value("0.0000").hex() == "0000000000000004"
    assert numeric_value("-0.0000") == numeric_value("0.0000")  # numeric has no negative zero
    assert numeric_value("nan").hex() == "00000000c0000000"
    assert numeric_value("inf").hex() == "00000000d0000020"
    assert numeric_value("-inf").hex() == "00000000f0000020"
    assert numeric_value(LONG_FRACTION) == struct.pack(">hhHHH", 1, -250, 0, 1000, 1)


def test_numeric_random_values_fast_and_slow_mixed() -> None:
    rng = random.Random(11)
    values = [None if rng.random() < 0.1 else random_numeric(rng) for _ in range(3000)]
    values[::97] = ["nan"] * len(values[::97])
    batch = pa.record_batch({"n": pa.array(values)})
    assert encode_batch(batch, ["numeric"]) == ref_rows(batch, ["numeric"])
    large = pa.record_batch({"n": pa.array(values, pa.large_string())}).slice(17, 2000)
    assert encode_batch(large, ["numeric"]) == ref_rows(large, ["numeric"])


def test_numeric_exponent_forms_on_the_slow_path() -> None:
    """Never produced by the reader, but PostgreSQL's input rules if they ever are: scale from the digits."""
    assert numeric_value("1.50e1") == ref_numeric("15.0")
    assert numeric_value("1e-3") == ref_numeric("0.001")
    assert numeric_value("-2E2") == ref_numeric("-200")
    for bad in ("12abc", "0x10", "١٢", "1.5\n", " 1", "1_000", "", "-"):
        with pytest.raises(ValueError):
            numeric_value(bad)
    with pytest.raises(ValueError):
        numeric_value("0." + "0" * 16384 + "1")  # display scale beyond PostgreSQL's 16383
    batch = pa.record_batch({"n": pa.array(["1e5", " 1"])})
    with pytest.raises(ValueError):
        encode_batch(batch, ["numeric"])


def test_empty_batch_and_kind_mismatch() -> None:
    batch, kinds = every_kind_batch()
    assert encode_batch(batch.slice(0, 0), kinds) == b""
    with pytest.raises(ValueError):
        encode_batch(pa.record_batch({"a": pa.array([1], pa.int32())}), ["int8"])
    with pytest.raises(ValueError):
        encode_batch(pa.record_batch({"a": pa.array([1], pa.int32())}), ["interval"])
    with pytest.raises(ValueError):
        encode_batch(pa.record_batch({"a": pa.array([1], pa.int32())}), ["int4", "int4"])


def test_the_view_holds_the_same_bytes() -> None:
    batch, kinds = every_kind_batch()
    view = encode_batch_view(batch.slice(3), kinds)
    assert view.readonly and view.format == "B" and bytes(view) == encode_batch(batch.slice(3), kinds)
    fixed = pa.record_batch({"a": pa.array([1, 2, 3], pa.int64())}).slice(1)
    assert bytes(encode_batch_view(fixed, ["int8"])) == ref_rows(fixed, ["int8"])


def test_other_arrow_layouts_of_the_same_kinds() -> None:
    """Large and view strings, large binary and plain 16-byte binary for uuid encode like the usual ones."""
    texts = ["a", None, "", "ünï"]
    blobs = [b"\x00", b"", None, b"zz"]
    ids = [bytes(range(16)), None, b"\xff" * 16, bytes(16)]
    usual = pa.record_batch(
        {"t": pa.array(texts), "b": pa.array(blobs), "u": pa.array(ids, pa.binary(16)).view(pa.uuid())}
    )
    other = pa.record_batch(
        {
            "t": pa.array(texts, pa.string_view()),
            "b": pa.array(blobs, pa.large_binary()),
            "u": pa.array(ids, pa.binary(16)),
        }
    )
    kinds = ["text", "bytea", "uuid"]
    assert encode_batch(other, kinds) == encode_batch(usual, kinds) == ref_rows(usual, kinds)


def test_dictionary_columns_are_decoded() -> None:
    arr = pa.array(["a", None, "bb", "a"]).dictionary_encode()
    batch = pa.record_batch({"t": arr})
    assert encode_batch(batch, ["text"]) == ref_rows(pa.record_batch({"t": arr.dictionary_decode()}), ["text"])


# ------------------------------------------------------------------------------------------ planning


def field(name: str, t: pa.DataType, source_type: str, transfer: str = "native") -> pa.Field:
    return pa.field(name, t, metadata={"source_type": source_type, "transfer": transfer})


def test_plan_columns_for_the_native_types() -> None:
    schema = pa.schema(
        [
            field("a", pa.int16(), "smallint"),
            field("b", pa.int32(), "integer"),
            field("c", pa.int64(), "bigint"),
            field("d", pa.float32(), "real"),
            field("e", pa.float64(), "double precision"),
            field("f", pa.bool_(), "boolean"),
            field("g", pa.string(), "text"),
            field("h", pa.string(), "character varying(20)"),
            field("i", pa.string(), "character(5)"),
            field("j", pa.string(), "name"),
            field("k", pa.string(), "json"),
            field("l", pa.string(), "jsonb"),
            field("m", pa.binary(), "bytea"),
            field("n", pa.uuid(), "uuid"),
            field("o", pa.date32(), "date"),
            field("p", pa.timestamp("us"), "timestamp(3) without time zone"),
            field("q", pa.timestamp("us", tz="UTC"), "timestamp with time zone"),
            field("r", pa.string(), "numeric(12,2)"),
            field("s", pa.string(), "numeric"),
            field("t", pa.int32(), "posint"),  # a domain over integer: the Arrow type says int4
            field("u", pa.string(), "character varying"),
        ]
    )
    assert plan_columns(schema) == [
        "int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "bpchar", "name", "json", "jsonb",
        "bytea", "uuid", "date", "timestamp", "timestamptz", "numeric", "numeric", "int4", "varchar",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        field("iv", pa.string(), "interval", "text"),
        field("tm", pa.string(), "time without time zone", "text"),
        field("ai", pa.string(), "integer[]", "text"),
        field("m", pa.string(), "money", "text"),
        field("r", pa.string(), "int4range", "text"),
        field("d", pa.string(), "date", "text"),  # a far date that fell back to text
        field("e", pa.string(), "public.mood", "text"),  # an enum, but nothing says so
        field("dom", pa.string(), "public.email", "native"),  # a domain over text, base unknown
        field("x", pa.int64(), "integer"),  # Arrow type and source type disagree
        field("y", pa.string(), "bigint"),
        field("z", pa.timestamp("ns"), "timestamp without time zone"),
        field("w", pa.timestamp("us", tz="Europe/Paris"), "timestamp with time zone"),
    ],
)
def test_plan_columns_refuses_what_binary_cannot_carry_exactly(bad: pa.Field) -> None:
    schema = pa.schema([field("id", pa.int64(), "bigint"), bad])
    assert plan_columns(schema) is None


def test_plan_columns_with_the_plan_columns() -> None:
    """The plan's columns tell enums and domains over text-like types apart."""
    schema = pa.schema(
        [
            field("e", pa.string(), "public.mood", "text"),
            field("dom", pa.string(), "public.email", "native"),
            field("iv", pa.string(), "interval", "text"),
        ]
    )
    columns = [
        Column("e", "public.mood", "enum", "string", "text"),
        Column("dom", "public.email", "text", "string", "native", read_as="character varying(200)"),
        Column("iv", "interval", "interval", "string", "text"),
    ]
    assert plan_columns(schema, columns) is None
    assert plan_columns(schema.remove(2), columns) == ["enum", "varchar"]
    assert column_kind(schema.field("iv"), columns[2]) is None
