"""DMS ``table-settings`` rules: what is accepted, what is refused and why, and the ``ranges`` parts, which must
hold every row exactly once whatever the boundaries and NULLs are (checked with SQLite over real rows)."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest

from bulkmig.config.mappings import Mappings
from bulkmig.core import partitions
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Column, Table

INCLUDE = {
    "rule-type": "selection",
    "rule-id": "1",
    "rule-name": "1",
    "object-locator": {"schema-name": "%", "table-name": "%"},
    "rule-action": "include",
}


def settings(**body: Any) -> dict[str, Any]:
    return {
        "rule-type": "table-settings",
        "rule-id": "2",
        "rule-name": "2",
        "object-locator": {"schema-name": "HR", "table-name": "SALES"},
        **body,
    }


def refused(*rules: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        Mappings.from_doc({"rules": [INCLUDE, *rules]})
    return str(info.value)


def test_documented_lob_settings() -> None:
    # The DMS examples: limited (the default mode) with bulk-max-size, unlimited, and none (the task's settings).
    m = Mappings.from_doc({"rules": [INCLUDE, settings(**{"lob-settings": {"bulk-max-size": "100000"}})]})
    rule = m.table_settings_for("HR", "SALES")
    assert rule is not None and rule.lob is not None
    assert (rule.lob.mode, rule.lob.max_bytes) == ("limited", 100000 * 1024)
    m = Mappings.from_doc({"rules": [INCLUDE, settings(**{"lob-settings": {"mode": "none", "bulk-max-size": "100"}})]})
    assert m.table_settings_for("HR", "SALES").lob is None  # type: ignore[union-attr]


def test_bad_table_settings_are_refused_with_the_allowed_values() -> None:
    msg = refused(
        settings(**{"parallel-load": {"type": "partition-auto"}}),
        {**settings(**{"lob-settings": {"mode": "limited"}}), "rule-id": "3", "rule-name": "3"},
        {
            **settings(**{"parallel-load": {"type": "ranges", "columns": ["A", "B"], "boundaries": [["1"]]}}),
            "rule-id": "4",
            "rule-name": "4",
            "object-locator": {"schema-name": "HR", "table-name": "%"},
        },
        {
            **settings(**{"parallel-load": {"type": "partitions-auto", "number-of-partitions": 16}}),
            "rule-id": "5",
            "rule-name": "5",
            "object-locator": {"schema-name": "HR", "table-name": "T5"},
        },
        {
            **settings(**{"parallel-load": {"type": "ranges", "columns": ["A"], "boundaries": [["1", "2"]]}}),
            "rule-id": "6",
            "rule-name": "6",
            "object-locator": {"schema-name": "HR", "table-name": "T6"},
        },
    )
    assert (
        "rule '2', parallel-load: type 'partition-auto' is not one of partitions-auto, subpartitions-auto, "
        "partitions-list, ranges, none" in msg
    )
    assert "rule '3', lob-settings: mode limited needs a non-zero bulk-max-size" in msg
    assert "rule '4': a table-settings rule names one table exactly; '%' is not allowed" in msg
    assert "number-of-partitions: for MongoDB and DocumentDB sources only" in msg
    assert "rule '6', parallel-load: boundary 1 must be a list of 1 values" in msg


def test_two_parallel_loads_for_one_table_are_refused() -> None:
    msg = refused(
        settings(**{"parallel-load": {"type": "none"}}),
        {**settings(**{"parallel-load": {"type": "partitions-auto"}}), "rule-id": "3", "rule-name": "3"},
    )
    assert "parallel-load for HR.SALES is also set by rule '2'; keep one" in msg


def test_parallel_load_is_in_the_fingerprint_the_lob_limit_is_not() -> None:
    base = Mappings.from_doc({"rules": [INCLUDE]}).canonical()
    ranges = {"type": "ranges", "columns": ["A"], "boundaries": [["1"]]}
    with_parts = Mappings.from_doc({"rules": [INCLUDE, settings(**{"parallel-load": ranges})]}).canonical()
    with_lob = Mappings.from_doc({"rules": [INCLUDE, settings(**{"lob-settings": {"bulk-max-size": "9"}})]})
    assert with_parts != base and with_lob.canonical() == base


def rows_per_part(boundaries: list[list[Any]]) -> list[list[tuple[Any, Any]]]:
    """The rows of a two-column table with NULLs, read part by part with the planned WHERE clauses."""
    values = [None, 1, 2, 3, 4]
    rows = list(itertools.product(values, ["a", "b", None, "c"]))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (c1 int, c2 text)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    table = Table("main", "t", [Column("c1", "int", "integer", "int64"), Column("c2", "text", "text", "string")])
    parts = partitions.value_ranges(
        table, ["c1", "c2"], boundaries, quote_ident=lambda n: f'"{n}"', literal=lambda v: repr(v)
    )
    assert len(parts) == len(boundaries) + 1
    return [conn.execute(f"SELECT c1, c2 FROM t WHERE {p.where}").fetchall() for p in parts]


@pytest.mark.parametrize(
    "boundaries",
    [[[2, "b"], [3, "a"]], [[3, "a"], [2, "b"]], [[1, "c"]], [[2, "b"], [2, "b"]], [[4, "z"], [1, "a"], [3, "b"]]],
)
def test_ranges_hold_every_row_exactly_once(boundaries: list[list[Any]]) -> None:
    got = rows_per_part(boundaries)
    every = sorted((r for part in got for r in part), key=repr)
    assert len(every) == 20 and len(set(every)) == 20  # 5 x 4 rows, none lost, none twice


def test_ranges_are_the_documented_segments() -> None:
    # DMS: segment 1 is (c1, c2) < (2, 'b') in row order; segment 2 the rest below (3, 'a'); segment 3 the rest.
    first, second, last = rows_per_part([[2, "b"], [3, "a"]])
    assert sorted(first, key=repr) == sorted([(1, "a"), (1, "b"), (1, "c"), (1, None), (2, "a")], key=repr)
    assert sorted(second, key=repr) == sorted([(2, "b"), (2, "c"), (2, None)], key=repr)
    # Rows DMS would leave out (a NULL in c1, or a NULL where it decides) are in the last part.
    assert (None, "a") in last and (None, None) in last and (3, None) in last
