"""The SQLite → PostgreSQL type map row by row, SQLite's affinity rules checked against SQLite itself, and
the per-value conformance checks (what fits, what is refused and why; the fast SQL pre-check never
lets through what the check refuses)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED
from bulkmig.core.model import arrow_type
from bulkmig.engines.sqlite import types, values
from bulkmig.engines.sqlite.types import BY_SOURCE, RULES, TypeSettings, map_declared

# Every row of the map: rule → (declared type, blobs only, expected PostgreSQL type, expected Arrow type).
EXPECTED: dict[str, tuple[str, bool, str, str]] = {
    "integer": ("INTEGER", False, "bigint", "int64"),
    "text": ("TEXT", False, "text", "string"),
    "blob": ("BLOB", False, "bytea", "binary"),
    "real": ("DOUBLE", False, "double precision", "float64"),
    types.NUMERIC_AFFINITY: ("MONEY", False, "numeric", "string"),
    "varchar": ("NVARCHAR(160)", False, "varchar(160)", "string"),
    "char": ("NCHAR(3)", False, "varchar(3)", "string"),
    "decimal": ("NUMERIC(10,2)", False, "numeric(10,2)", "decimal128(10, 2)"),
    "numeric": ("DECIMAL", False, "numeric", "string"),
    "boolean": ("BOOLEAN", False, "boolean", "bool"),
    "date": ("DATE", False, "date", "date32"),
    "datetime": ("DATETIME", False, "timestamp", "timestamp[us]"),
    "timestamptz": ("TIMESTAMPTZ", False, "timestamptz", "timestamp[us, tz=UTC]"),
    "time": ("TIME", False, "time", "string"),
    "json": ("JSON", False, "jsonb", "string"),
    "uuid": ("UUID", False, "uuid", "string"),
    types.UNTYPED: ("", False, "text", "string"),
    types.UNTYPED_BLOB: ("", True, "bytea", "binary"),
}


def test_every_rule_is_tested() -> None:
    assert set(EXPECTED) == set(BY_SOURCE)
    assert len(BY_SOURCE) == len(RULES), "two rules share a key"


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_rule(key: str) -> None:
    declared, blobs_only, target, arrow = EXPECTED[key]
    rule = BY_SOURCE[key]
    assert rule.example == declared, "the rule's own example is the one tested"
    m = map_declared(declared, blobs_only=blobs_only)
    assert m.rule is rule
    assert (m.target_type, m.arrow_type, m.logical_type) == (target, arrow, rule.logical)
    assert m.transfer == rule.transfer
    assert m.status == rule.status
    assert rule.reason and "\n" not in rule.reason
    arrow_type(m.arrow_type)  # a name the plan can read back


@pytest.mark.parametrize(
    ("declared", "target"),
    [
        ("int", "bigint"),
        ("UNSIGNED BIG INT", "bigint"),
        ("FLOATING POINT", "bigint"),  # contains INT: SQLite's rule 1 wins, values are integers
        ("VARCHAR", "text"),  # no length: plain text
        ("CHARACTER VARYING(20)", "varchar(20)"),
        ("varchar( 7 )", "varchar(7)"),
        ("CLOB", "text"),
        ("DOUBLE PRECISION", "double precision"),
        ("FLOAT", "double precision"),
        ("DECIMAL(10, 5)", "numeric(10,5)"),
        ("NUMERIC(7)", "numeric(7,0)"),
        ("STRING", "numeric"),  # NUMERIC affinity, the classic surprise: reported per value
        ("TIMESTAMP", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
        ("ANY", "text"),
    ],
)
def test_declared_names(declared: str, target: str) -> None:
    assert map_declared(declared).target_type == target


def test_odd_precisions() -> None:
    wide = map_declared("NUMERIC(50,2)")
    assert (wide.target_type, wide.arrow_type) == ("numeric(50,2)", "decimal256(50, 2)")
    odd = map_declared("NUMERIC(5,7)")  # scale beyond precision: no Arrow decimal holds it
    assert (odd.target_type, odd.arrow_type, odd.transfer) == ("numeric", "string", "text")
    assert any("scale 7" in n.message for n in odd.notes)


@pytest.mark.parametrize(
    "declared",
    [
        "INT",
        "INTEGER",
        "TINYINT",
        "SMALLINT",
        "MEDIUMINT",
        "BIGINT",
        "UNSIGNED BIG INT",
        "INT2",
        "INT8",
        "CHARACTER(20)",
        "VARCHAR(255)",
        "VARYING CHARACTER(255)",
        "NCHAR(55)",
        "NATIVE CHARACTER(70)",
        "NVARCHAR(100)",
        "TEXT",
        "CLOB",
        "BLOB",
        "REAL",
        "DOUBLE",
        "DOUBLE PRECISION",
        "FLOAT",
        "NUMERIC",
        "DECIMAL(10,5)",
        "BOOLEAN",
        "DATE",
        "DATETIME",
        "FLOATING POINT",
        "STRING",
        "POINT",
        "JSON",
        "BLOBBY TEXT",
    ],
)
def test_affinity_agrees_with_sqlite(declared: str) -> None:
    """CAST to a type name applies that name's affinity: '1.5' and '2' tell the five apart."""
    conn = sqlite3.connect(":memory:")
    a = conn.execute(f"SELECT typeof(CAST('1.5' AS {declared})), typeof(CAST('2' AS {declared}))").fetchone()
    sqlite_says = {
        ("integer", "integer"): "INTEGER",
        ("text", "text"): "TEXT",
        ("blob", "blob"): "BLOB",
        ("real", "real"): "REAL",
        ("real", "integer"): "NUMERIC",
    }[a]
    assert types.affinity(declared) == sqlite_says


def test_parse_declared() -> None:
    assert types.parse_declared("NUMERIC( 10 , 2 )") == types.ParsedType("NUMERIC", [10, 2])
    assert types.parse_declared("unsigned  big int") == types.ParsedType("UNSIGNED BIG INT", [])
    assert types.parse_declared("") == types.ParsedType("", [])


def test_settings() -> None:
    with pytest.raises(ValueError, match="numeric_dates"):
        TypeSettings(numeric_dates="epoch")
    s = TypeSettings(column_types={"t.c": "TEXT"})
    assert s.declared("t", "c", "INTEGER") == "TEXT"
    assert s.declared("t", "d", "INTEGER") == "INTEGER"
    refuse = map_declared("DATE", settings=TypeSettings(numeric_dates="refuse"))
    assert refuse.read_as is None
    assert map_declared("DATE").read_as is not None


# --------------------------------------------------------------------------------------- numeric dates


@pytest.mark.parametrize(
    ("mode", "stored", "text"),
    [
        ("auto", 2460000.5, "2023-02-25 00:00:00.000"),  # in 0..5373484.5: a julian day
        ("auto", 1704067200, "2024-01-01 00:00:00.000"),  # beyond: unix epoch seconds
        ("auto", 1704067200.25, "2024-01-01 00:00:00.250"),
        ("auto", "2024-05-06", "2024-05-06"),  # text passes untouched
        ("auto", None, None),
        ("julianday", 2460000.75, "2023-02-25 06:00:00.000"),
        ("unixepoch", 86400, "1970-01-02 00:00:00.000"),
        ("unixepoch", 1e20, "invalid date number 1.0e+20"),  # never a silent NULL
        ("unixepoch_ms", 1700000000123, "2023-11-14 22:13:20.123"),
        ("auto", 1700000000123, "invalid date number 1700000000123"),  # ms read as seconds: out of range
        ("auto", -1e15, "invalid date number -1.0e+15"),
        ("refuse", 86400, 86400),
    ],
)
def test_date_read_as(mode: str, stored: object, text: object) -> None:
    template = types.date_read_as(mode) or "{col}"
    conn = sqlite3.connect(":memory:")
    got = conn.execute(f"SELECT {template.replace('{col}', 'v')} FROM (SELECT ? AS v)", (stored,)).fetchone()[0]
    assert got == text


# ------------------------------------------------------------------------------------------ values

K = values.Kind
GOOD = [
    (K("int"), 5, 5),
    (K("float"), 1.5, 1.5),
    (K("float"), 3, 3.0),
    (K("text"), "héllo", "héllo"),
    (K("text", n=3, target="varchar(3)"), "abc", "abc"),
    (K("text"), 12, "12"),
    (K("text"), 0.1, "0.1"),
    (K("binary"), b"\x00\xff", b"\x00\xff"),
    (K("bool"), 1, True),
    (K("bool"), 0, False),
    (K("decimal", p=10, s=2), 0.99, Decimal("0.99")),
    (K("decimal", p=10, s=2), 12, Decimal(12)),
    (K("decimal", p=10, s=2), "12345678.90", Decimal("12345678.90")),
    (K("decimal", p=10, s=2), 1.10, Decimal("1.1")),
    (K("decimal", p=4, s=0), 1e3, Decimal("1000")),
    (K("decimal", p=2, s=2), -0.5, Decimal("-0.5")),
    (K("timestamptz"), "2024-01-01 10:00:00", datetime(2024, 1, 1, 10, tzinfo=UTC)),
    (K("numeric"), 1e16, "1e+16"),
    (K("numeric"), "123456789012345678901234.5", "123456789012345678901234.5"),
    (K("numeric"), 7, "7"),
    (K("date"), "2024-02-29", date(2024, 2, 29)),
    (K("date"), "2024-02-29 00:00:00", date(2024, 2, 29)),
    (K("date"), "2023-02-24 00:00:00.000", date(2023, 2, 24)),
    (K("timestamp"), "2009-01-01 00:00:00", datetime(2009, 1, 1)),
    (K("timestamp"), "2024-01-01T10:20", datetime(2024, 1, 1, 10, 20)),
    (K("timestamp"), "2024-01-01 10:20:30.123456Z", datetime(2024, 1, 1, 10, 20, 30, 123456)),
    (K("timestamp"), "2024-01-01 10:20:30.1234560", datetime(2024, 1, 1, 10, 20, 30, 123456)),
    (K("timestamp"), "2024-01-01", datetime(2024, 1, 1)),
    (K("timestamptz"), "2024-01-01 10:00:00+02:00", datetime(2024, 1, 1, 8, tzinfo=UTC)),
    (K("timestamptz"), "2024-01-01 10:00:00", datetime(2024, 1, 1, 10, tzinfo=UTC)),
    (K("time"), "07:05", "07:05:00"),
    (K("time"), "23:59:59.5", "23:59:59.5"),
    (K("json"), '{"a": [1, 2]}', '{"a": [1, 2]}'),
    (K("json"), 5, "5"),
    (K("uuid"), "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
]
BAD = [
    (K("int"), "abc", "text 'abc' is not an integer"),
    (K("int"), 1.5, "real 1.5 is not an integer"),
    (K("int"), b"\x01", "blob x'01' (1 bytes) is not an integer"),
    (K("float"), "x", "text 'x' is not a real number"),
    (K("float"), 2**63 - 1, "is not a real number"),
    (K("text", n=3, target="varchar(3)"), "abcd", "has 4 characters, more than varchar(3)"),
    (K("text"), b"abc", "is not text"),
    (K("text"), "a\x00b", "NUL character"),
    (K("binary"), "abc", "text 'abc' is not a blob"),
    (K("bool"), 2, "integer 2 is not a boolean"),
    (K("bool"), "true", "is not a boolean"),
    (K("decimal", p=10, s=2), 1.234, "more than 2 decimal places"),
    (K("decimal", p=4, s=2), 123, "more than 2 digits before the point"),
    (K("decimal", p=4, s=2), 123.5, "more than 2 digits before the point"),
    (K("decimal", p=2, s=2), 1.5, "more than 0 digits before the point"),
    (K("decimal", p=10, s=2), "abc", "text 'abc' is not a number"),
    (K("decimal", p=10, s=2), "1_000", "is not a number"),
    (K("decimal", p=10, s=2), float("inf"), "not a finite number"),
    (K("numeric"), "12 apples", "is not a number"),
    (K("numeric"), b"1", "is not a number"),
    (K("date"), "2024-13-45", "is not a valid date/time"),
    (K("date"), "2023-02-29", "is not a valid date/time"),
    (K("date"), "2024-01-01 10:00:00", "has a time of day"),
    (K("date"), "01/02/2024", "is not an ISO 8601 date/time"),
    (K("date"), 19000, "date stored as a number (numeric_dates: refuse)"),
    (K("date"), "invalid date number 1e+20", "outside the range of dates"),
    (K("timestamp"), "2024-01-01 10:00:00+02:00", "declare the column TIMESTAMPTZ"),
    (K("timestamp"), "2024-01-01 25:00:00", "not a valid date/time"),
    (K("timestamp"), "2023-02-29 10:00:00", "not a valid date/time"),
    (K("timestamptz"), "2023-02-29 10:00:00", "not a valid date/time"),
    (K("timestamp"), "0000-01-01 00:00:00", "not a valid date/time"),
    (K("timestamp"), "2024-01-01 10:00:00.1234567", "more than microsecond precision"),
    (K("timestamp"), "now", "is not an ISO 8601 date/time"),
    (K("time"), "24:00", "not a valid time of day"),
    (K("time"), 700, "is not a time of day"),
    (K("json"), "{'a': 1}", "is not valid JSON"),
    (K("json"), "NaN", "is not valid JSON"),
    (K("json"), '"a\\u0000"', "\\u0000"),
    (K("json"), b"\x8c", "binary JSONB"),
    (K("uuid"), "not-a-uuid", "is not a UUID"),
]


@pytest.mark.parametrize(("kind", "stored", "expected"), GOOD)
def test_value_fits(kind: values.Kind, stored: object, expected: object) -> None:
    got = values.convert(kind, stored)
    assert got == expected and type(got) is type(expected)
    assert values.misfit(kind, stored) is None


@pytest.mark.parametrize(("kind", "stored", "why"), BAD)
def test_value_refused(kind: values.Kind, stored: object, why: str) -> None:
    with pytest.raises(values.Misfit) as exc:
        values.convert(kind, stored)
    assert why in exc.value.reason
    assert values.misfit(kind, stored) == exc.value.reason


# Near misses for the SQL pre-checks of the canonical date forms.
EDGES = [
    (K(name), text)
    for name in ("date", "timestamp", "timestamptz")
    for text in (
        "2024-02-29",
        "2023-02-29",
        "2024-04-31",
        "0000-01-01",
        "2024-01-01 24:00:00",
        "2024-01-01 23:59:59",
        "2024-12-31 23:59:60",
        "2024-00-10 10:00:00",
        "2024-1-01",
        "9999-12-31 23:59:59",
    )
]


@pytest.mark.parametrize(("kind", "stored"), [(k, v) for k, v, _ in GOOD] + [(k, v) for k, v, _ in BAD] + EDGES)
def test_sql_precheck_is_never_looser(kind: values.Kind, stored: object) -> None:
    """``ok_sql`` says "certainly fits" only for values the Python check also accepts."""
    conn = sqlite3.connect(":memory:")
    (ok,) = conn.execute(f"SELECT {values.ok_sql(kind, 'v')} FROM (SELECT ? AS v)", (stored,)).fetchone()
    if ok:
        assert values.misfit(kind, stored) is None


def test_sql_precheck_accepts_good_values_of_every_fast_kind() -> None:
    """The pre-check may leave a value to the Python check (dates, json, uuid … always are: only NULL passes
    it), but it must not be "never looser" by saying no to everything: for every kind it fast-paths, some
    plain good value passes it."""
    conn = sqlite3.connect(":memory:")
    fast = {"int", "float", "text", "binary", "bool", "decimal", "numeric"}
    accepted: dict[str, int] = {}
    for kind, stored, _ in GOOD:
        if kind.name in fast:
            (ok,) = conn.execute(f"SELECT {values.ok_sql(kind, 'v')} FROM (SELECT ? AS v)", (stored,)).fetchone()
            accepted[kind.name] = accepted.get(kind.name, 0) + int(bool(ok))
    assert set(accepted) >= {"int", "float", "text", "decimal"}
    assert all(n > 0 for n in accepted.values()), accepted


def test_kind_of_plan_columns() -> None:
    assert values.kind_of("text", "string", "varchar(160)") == K("text", n=160, target="varchar(160)")
    assert values.kind_of("decimal", "decimal128(10, 2)", "numeric(10,2)") == K(
        "decimal", p=10, s=2, target="numeric(10,2)"
    )
    assert values.kind_of("decimal", "string", "numeric").name == "numeric"
    assert values.kind_of("timestamptz", "timestamp[us, tz=UTC]", None).name == "timestamptz"


def test_statuses_are_the_report_words() -> None:
    assert {r.status for r in RULES} <= {CONVERTED, CHANGED, ACTION}
