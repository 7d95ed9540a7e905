"""The cross-engine comparison's pure parts: canonical values, key text, and the three ways rows are paired."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from bulkmig.core.canonical import (
    Converted,
    canonical_decimal,
    canonical_float,
    canonical_json,
    key_text,
    parse_duration,
)
from bulkmig.engines import pairing as compare
from bulkmig.engines.pairing import Tally, hash_join, merge


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.50", "1.5"),
        ("-0.000", "0"),
        ("100", "100"),
        ("1E+2", "100"),
        ("0.1000", "0.1"),
        ("12345678901234567890123456789012345678901234567890.123456789", None),  # 60 digits: not rounded
    ],
)
def test_canonical_decimal(value: str, expected: str | None) -> None:
    assert str(canonical_decimal(Decimal(value))) == (expected or value)


def test_canonical_float_is_exact_and_float32_aware() -> None:
    assert canonical_float(0.1) == "0.1" and canonical_float(0.1, single=True) == "0.10000000149011612"
    assert canonical_float(16777217.0, single=True) == canonical_float(16777216.0, single=True)
    assert canonical_float(16777217.0) != canonical_float(16777216.0)
    assert canonical_float(float("nan")) == canonical_float(float("nan")) == "NaN"
    assert canonical_float(-0.0) != canonical_float(0.0)
    assert repr(canonical_float(2.5)) == "2.5"


def test_parse_duration_takes_mysql_time_text() -> None:
    assert parse_duration("838:59:59") == dt.timedelta(hours=838, minutes=59, seconds=59)
    assert parse_duration("-01:02:03.5") == -dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=500000)
    assert parse_duration("00:00:00") == dt.timedelta(0)
    assert parse_duration("1 day") is None


def test_canonical_json_ignores_order_spacing_and_number_spelling_only() -> None:
    assert canonical_json('{"b": 1, "a": [1.50, {"z": null}]}') == canonical_json('{"a":[1.5,{"z":null}],"b":1.0}')
    assert canonical_json('{"a": 1}') != canonical_json('{"a": "1"}')
    assert canonical_json('{"a": [1, 2]}') != canonical_json('{"a": [2, 1]}')
    assert canonical_json('{"a": 1, "a": 2}') == canonical_json('{"a": 2}')  # jsonb keeps the last
    assert canonical_json("not json") == "not json"


def test_key_text_reads_like_postgres_row_text() -> None:
    assert key_text((17,)) == "(17)"
    assert key_text((1, "abc")) == "(1,abc)"
    assert key_text(("a b", 'q"', "")) == '("a b","q""","")'
    assert key_text((Decimal("1.5"), dt.date(2020, 1, 2))) == "(1.5,2020-01-02)"


COLUMNS = ["id", "v"]


def rows(*pairs: tuple[object, object]) -> list[tuple[object, ...]]:
    return [tuple(p) for p in pairs]


def test_merge_finds_missing_extra_and_differing_rows() -> None:
    tally = Tally(COLUMNS)
    source = rows((1, "a"), (2, "b"), (3, "c"), (5, "e"))
    target = rows((1, "a"), (3, "C"), (4, "d"), (5, "e"), (6, "f"))
    merge(source, target, [0], tally)
    assert (tally.source_rows, tally.target_rows) == (4, 5)
    assert (tally.missing, tally.extra, tally.differing) == (1, 2, 1)
    assert tally.differing_keys == ["(2)", "(3)", "(4)", "(6)"]
    assert tally.differences[1] == {
        "key": "(3)",
        "kind": "differs",
        "columns": [{"column": "v", "source": "'c'", "target": "'C'"}],
    }


def test_merge_refuses_keys_out_of_order() -> None:
    with pytest.raises(compare._OutOfOrder):
        merge(rows((2, "b"), (1, "a")), rows((1, "a"), (2, "b")), [0], Tally(COLUMNS))
    with pytest.raises(compare._OutOfOrder):
        merge(rows((None, "b"), (1, "a")), rows((1, "a")), [0], Tally(COLUMNS))
    with pytest.raises(compare._OutOfOrder):
        merge(rows((1, "b")), rows(("1", "b")), [0], Tally(COLUMNS))


def test_converted_values_are_counted_not_mismatched() -> None:
    zero = Converted(None, "0000-00-00", "zero date")
    tally = Tally(COLUMNS)
    merge(rows((1, zero), (2, zero)), rows((1, None), (2, dt.date(2000, 1, 1))), [0], tally)
    assert tally.converted == 1 and tally.differing == 1
    assert tally.conversions == {"v": {"column": "v", "why": "zero date", "count": 1, "keys": ["(1)"]}}
    assert tally.differences[0]["columns"] == [
        {"column": "v", "source": "0000-00-00 (zero date)", "target": "2000-01-01"}
    ]


@pytest.mark.parametrize("bucket_rows", [1000, 1])
def test_hash_join_pairs_in_any_order_and_spills(monkeypatch: pytest.MonkeyPatch, bucket_rows: int) -> None:
    monkeypatch.setattr(compare, "BUCKET_ROWS", bucket_rows)
    monkeypatch.setattr(compare, "SPILL_BATCH", 3)  # several pickled batches per bucket file, plus a rest
    source = rows(*((f"k{i}", i) for i in range(50)))
    target = list(reversed(source))
    target[10] = ("k39", -1)
    del target[20]  # k29
    target.append(("new", 0))
    tally = Tally(COLUMNS)
    hash_join(source, target, [0], tally, expected_rows=50)
    assert (tally.missing, tally.extra, tally.differing) == (1, 1, 1)
    assert sorted(tally.differing_keys) == ["(k29)", "(k39)", "(new)"]


def test_hash_join_without_a_key_counts_duplicates() -> None:
    zero = Converted(None, "0000-00-00", "zero date")
    tally = Tally(COLUMNS)
    source = rows((1, "a"), (1, "a"), (2, zero))
    hash_join(source, rows((2, None), (1, "a"), (1, "a")), None, tally, expected_rows=3)
    assert tally.equal and tally.converted == 1
    tally = Tally(COLUMNS)
    hash_join(source, rows((2, None), (1, "a"), (3, "x")), None, tally, expected_rows=3)
    assert (tally.missing, tally.extra) == (1, 1)
    assert [d["kind"] for d in tally.differences] == ["extra on target", "missing on target"]
