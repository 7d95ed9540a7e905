"""Key-range partitions and the row-hash forms of PG → PG validation: pure logic, no server."""

from __future__ import annotations

import re

import pytest

from bulkmig.engines.postgres.rowhash import ColumnType, canonical, row_hash
from bulkmig.validation.partitions import (
    FANOUT,
    IntegerRanges,
    KeyBoundaries,
    boundary_step,
    plan_integer,
)
from bulkmig.validation.pgdiff import Failure, text_array


def bucket_of(r: IntegerRanges, key: int, level: int) -> int:
    """What bucket_sql computes, in Python (clamped, then integer division)."""
    return (min(max(key, r.lo), r.hi) - r.lo) // r.width(level)


def inside(r: IntegerRanges, level: int, bucket: int, key: int) -> bool:
    low, high = r.bounds(level, bucket)
    return (low is None or key >= low) and (high is None or key < high)


def test_dense_keys_are_cut_arithmetically_and_every_key_has_one_range_per_level() -> None:
    r = plan_integer(1, 1_000_000, 1_000_000, 10_000)
    assert r is not None and r.depth == 2 and r.width(0) == r.leaf_width * FANOUT**2
    assert 90 <= r.partitions <= 100
    for level in range(r.depth + 1):
        top = (r.hi - r.lo) // r.width(level)
        for key in (-5, 0, 1, 2, 999, 10_240, 10_241, 654_321, 1_000_000, 1_000_001, 10**12):
            b = bucket_of(r, key, level)
            assert inside(r, level, b, key), (level, key)
            assert [x for x in range(top + 1) if inside(r, level, x, key)] == [b]  # exactly one range
    # Children are aligned: a key's level-1 range is one of its level-0 range's children.
    assert bucket_of(r, 654_321, 1) in r.children(bucket_of(r, 654_321, 0))


def test_sparse_or_huge_spans_fall_back_to_boundaries() -> None:
    assert plan_integer(1, 10**9, 1_000, 10_000) is None  # sparse: 1,000 rows over a billion values
    assert plan_integer(-(2**63), 2**63 - 1, 2**64, 10_000) is None  # bigint arithmetic would overflow
    small = plan_integer(1, 50, 50, 100)
    assert small is not None and small.depth == 0 and small.partitions == 1


def test_predicates_merge_adjacent_ranges_and_leave_the_ends_open() -> None:
    r = IntegerRanges(lo=100, hi=999, leaf_width=10, depth=1, fanout=4)  # level 0 ranges are 40 wide
    assert r.predicate("k", 0, [0]) == "((k < 140))"
    assert r.predicate("k", 0, [1, 2, 5]) == "((k >= 140 AND k < 220) OR (k >= 300 AND k < 340))"
    assert r.predicate("k", 0, [22]) == "((k >= 980))"  # the last range: no upper end
    assert r.predicate("k", 0, []) == "FALSE"
    assert r.bucket_sql('"id"', 1) == '((least(greatest("id"::bigint, 100), 999) - 100) / 10)'


def test_boundaries_quote_key_values_as_literals() -> None:
    parts = KeyBoundaries((("a'b", "1"), ("m", "2")))
    assert parts.partitions == 3
    assert parts.range_sql(["k1", "k2"], ["text", "int"], 0) == "(k1, k2) < ('a''b'::text, '1'::int)"
    assert parts.range_sql(["k1", "k2"], ["text", "int"], 2) == "(k1, k2) >= ('m'::text, '2'::int)"
    single = KeyBoundaries((("a'b",), ("m",)))
    assert single.predicate(["k"], ["text"], [1]) == "((k >= 'a''b'::text AND k < 'm'::text))"
    assert KeyBoundaries(()).range_sql(["k"], ["text"], 0) == "TRUE"


def test_boundary_sampling() -> None:
    assert boundary_step(50_000, 10_000) == (None, 10_000)  # small: every row, every 10,000th key
    percent, step = boundary_step(1_000_000_000, 10_000)
    assert percent is not None and 0 < percent < 1 and step >= 1


def test_text_array_literal_escapes_quotes_and_backslashes() -> None:
    assert text_array(['a"b', "c\\d", "it's"]) == """'{"a\\"b","c\\\\d","it''s"}'::text[]"""


INT8, FLOAT8, NUMERIC, TEXT, JSONB, INTERVAL = (
    ColumnType("c", 20, "bigint"),
    ColumnType("c", 701, "double precision"),
    ColumnType("c", 1700, "numeric(12,2)"),
    ColumnType("c", 25, "text"),
    ColumnType("c", 3802, "jsonb"),
    ColumnType("c", 1186, "interval"),
)


@pytest.mark.parametrize(
    ("ctype", "form"),
    [
        (INT8, "c"),  # exact native hash
        (FLOAT8, "float8send(c)"),  # -0.0 and 0.0 differ
        (NUMERIC, "numeric_send(c)"),  # 1.5 and 1.50 differ
        (INTERVAL, "interval_send(c)"),  # 1 day and 24 hours differ
        (TEXT, '(c COLLATE "C")'),  # bytes, whatever the column's collation
        (JSONB, '(c::text COLLATE "C")'),  # its hash ignores numeric scale: its text
        (ColumnType("c", 91234, "public.mood"), '(c::text COLLATE "C")'),  # an enum: the label, not its OID
    ],
)
def test_each_type_is_hashed_in_a_form_as_fine_as_its_text(ctype: ColumnType, form: str) -> None:
    assert canonical("c", ctype, ctype) == form


def test_a_column_whose_type_differs_between_the_sides_is_hashed_as_text() -> None:
    assert canonical("c", NUMERIC, ColumnType("c", 1700, "numeric")) == '(c::text COLLATE "C")'


def test_row_hash_mixes_the_record_hash_and_falls_back_to_text_before_pg14() -> None:
    cols = [('"a"', INT8, INT8), ('"b"', FLOAT8, FLOAT8)]
    assert row_hash(cols, 150000) == 'hashint8extended(hash_record_extended(ROW("a", float8send("b")), 0), 0)'
    assert row_hash(cols, 130000) == 'hashtextextended(ROW("a", "b")::text, 0)'


def test_failure_keys_and_details_as_dms_writes_them() -> None:
    f = Failure("RECORD_DIFF", "(17)", ["17"], details=[[{"v": "a" * 10_000}, {"v": "b"}]])
    assert f.key_type == "Row" and f.key_json() == '{"key": ["17"]}'
    assert len(f.details_json()) <= 8000 and f.details_json().startswith('[[{"v": "aaa')
    keyless = Failure("MISSING_TARGET", "-42", None, copies=2)
    assert keyless.key_type == "RowHash" and keyless.key_json() == '{"row_hash": "-42", "copies": 2}'
    assert re.fullmatch(r"\[\]", keyless.details_json())


def test_repair_is_refused_unless_both_ends_are_postgresql(tmp_path) -> None:  # noqa: ANN001
    from bulkmig.config.task import Task
    from bulkmig.core.errors import ConfigError
    from bulkmig.validation.validate import validate

    (tmp_path / "shop.db").write_bytes(b"")
    doc = {
        "source": "sqlite:///shop.db",
        "target": "postgresql://u@127.0.0.1:1/db",
        "migration_type": "full-load",
        "volume": str(tmp_path / "volume"),
        "bucket": "s3://unused/x",
    }
    task = Task.from_dict(doc, tmp_path, env={"BULKMIG_TARGET_PASSWORD": "x"})
    with pytest.raises(ConfigError, match="--repair needs a PostgreSQL source and a PostgreSQL target"):
        validate(task, repair=True, progress=False)
