"""DMS add-column expressions: every supported construct gives, row for row, exactly what SQLite gives.

Each expression is evaluated over the same random rows twice: by bulkmig's Arrow evaluator and by Python's
``sqlite3`` (DMS evaluates its expressions in SQLite).  Values are compared with their type (an INTEGER 3 is
not a REAL 3.0), NULLs included.  The rows mix NULLs, zero and negative integers, halves and thirds, text
with spaces, digits and non-ASCII letters, dates and timestamps with and without a fraction.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from bulkmig.core.errors import ConfigError
from bulkmig.transform.expressions import compile_expression, evaluate

ROWS = 400
TYPES = {"i": "int64", "j": "int32", "f": "float64", "t": "string", "u": "string", "d": "date32", "ts": "timestamp[us]"}
ALPHABET = ["a", "b", "A", "z", " ", "1", "9", "0", "é", "ß", "中", "-", "x"]
TEXTS = ["", " ", "  12x", "+5", "-3", "abc", "ABC", "a b", "Ünïcode", "0042", " a ", "bab"]


def _rows(seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)

    def maybe(v: Any) -> Any:
        return None if rnd.random() < 0.12 else v

    rows = []
    for _ in range(ROWS):
        text = rnd.choice(TEXTS) if rnd.random() < 0.3 else "".join(rnd.choices(ALPHABET, k=rnd.randint(0, 8)))
        ts = datetime(2000, 1, 1) + timedelta(seconds=rnd.randint(0, 10**9))
        if rnd.random() < 0.5:
            ts = ts.replace(microsecond=rnd.choice([0, 1000, 500000, 123456, 999600]))
        rows.append(
            {
                "i": maybe(rnd.randint(-20, 20)),
                "j": maybe(rnd.choice([0, 1, 2, 3, -2, -7, 7, rnd.randint(-1000, 1000)])),
                "f": maybe(rnd.choice([rnd.randint(-40, 40) / 4, rnd.randint(-9999, 9999) / 1000, 0.0, 2.5, -2.5])),
                "t": maybe(text),
                "u": maybe("".join(rnd.choices(ALPHABET, k=rnd.randint(0, 4)))),
                "d": maybe(date(1990, 1, 1) + timedelta(days=rnd.randint(0, 20000))),
                "ts": maybe(ts),
            }
        )
    return rows


def _batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    arrays = {
        "i": pa.array([r["i"] for r in rows], pa.int64()),
        "j": pa.array([r["j"] for r in rows], pa.int32()),
        "f": pa.array([r["f"] for r in rows], pa.float64()),
        "t": pa.array([r["t"] for r in rows], pa.string()),
        "u": pa.array([r["u"] for r in rows], pa.string()),
        "d": pa.array([r["d"] for r in rows], pa.date32()),
        "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us")),
    }
    return pa.RecordBatch.from_pydict(arrays)


def _sqlite(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    """The rows in a SQLite table without declared types, so each value keeps its own class (as bound)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (i, j, f, t, u, d, ts)")

    def as_sqlite(r: dict[str, Any]) -> tuple[Any, ...]:
        d = r["d"].isoformat() if r["d"] else None
        ts = str(r["ts"]) if r["ts"] else None  # 'YYYY-MM-DD HH:MM:SS[.ffffff]', the text bulkmig shows
        return (r["i"], r["j"], r["f"], r["t"], r["u"], d, ts)

    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", [as_sqlite(r) for r in rows])
    return db


SUBSTR = [f"substr($t, {s})" for s in range(-6, 7)] + [
    f"substr($t, {s}, {n})" for s in range(-6, 7) for n in range(-4, 7)
]
EXPRESSIONS = [
    "$t || '_' || $u",
    "$i || $t",
    "$i || '-' || $j",
    "$i + $j",
    "$i - $j",
    "$i * $j",
    "$i / $j",
    "$i % $j",
    "$j / 2",
    "$j % 3",
    "$f + $i",
    "$f * 2",
    "$f - 0.5",
    "$f / $j",
    "$f % $j",
    "$i / 2.0",
    "-$i",
    "-$f",
    "($i + 1) * ($j - 2)",
    "$i > $j",
    "$i = $j",
    "$i <> 3",
    "$t < $u",
    "$t = 'abc'",
    "$t >= $u",
    "$f >= $i",
    "$f < 1",
    "$i > 0 AND $j > 0",
    "$i > 0 OR $j IS NULL",
    "NOT $i",
    "NOT ($i > $j)",
    "$i IS NULL",
    "$t IS NOT NULL",
    "$i BETWEEN -5 AND 5",
    "$i NOT BETWEEN -5 AND 5",
    "$i IN (1, 2, NULL)",
    "$i NOT IN (1, 2)",
    "$t IN ('abc', 'a b')",
    "CASE WHEN $i > 0 THEN 'pos' WHEN $i < 0 THEN 'neg' ELSE 'zero' END",
    "CASE $j WHEN 0 THEN 'z' WHEN 1 THEN 'one' END",
    "CASE WHEN $f > 1 THEN $f END",
    "CASE WHEN $t IS NULL THEN $u ELSE $t || $u END",
    "upper($t)",
    "lower($t)",
    "upper($i)",
    "length($t)",
    "length($i)",
    "trim($t)",
    "ltrim($t)",
    "rtrim($t)",
    "trim($t, 'ab ')",
    "replace($t, 'a', 'XY')",
    "replace($t, '', 'x')",
    "replace($t, ' ', '')",
    "round($f)",
    "round($f, 1)",
    "round($f, 2)",
    "round($i)",
    "round($f, 3)",
    "round($f, -1)",
    "abs($i)",
    "abs($f)",
    "coalesce($i, $j, 0)",
    "ifnull($t, 'none')",
    "nullif($i, 0)",
    "max($i, $j)",
    "min($i, $j, 0)",
    "max($t, $u)",
    "CAST($t AS INTEGER)",
    "CAST($i AS TEXT)",
    "CAST($f AS INTEGER)",
    "CAST($i AS REAL)",
    "$d",
    "$ts",
    "$ts || ''",
    "date($ts)",
    "datetime($ts)",
    "time($ts)",
    "date($d)",
    "datetime($d)",
    "datetime($ts, '+1 day')",
    "date($d, '+3 days')",
    "date($d, '-40 days')",
    "datetime($ts, 'start of month')",
    "datetime($ts, '-2 hours', '+30 minutes')",
    "date($d, 'start of year')",
    "datetime($ts, 'start of day', '+5 seconds')",
    "strftime('%Y-%m %j %w', $ts)",
    "strftime('%H:%M:%S', $d)",
    "strftime('%d/%m/%Y %%', $ts)",
    "julianday($d)",
    "julianday($ts)",
    "$AR_M_SOURCE_SCHEMA || '.' || $AR_M_SOURCE_TABLE_NAME || ':' || $i",
    "substr($i, 2)",
    *SUBSTR,
]
CONSTANTS = {"AR_M_SOURCE_SCHEMA": "public", "AR_M_SOURCE_TABLE_NAME": "films"}


def _sqlite_text(expression: str) -> str:
    out = expression
    for name, value in CONSTANTS.items():
        out = out.replace(f"${name}", "'" + value + "'")
    return out.replace("$", "")


@pytest.fixture(scope="module")
def data() -> tuple[pa.RecordBatch, sqlite3.Connection]:
    rows = _rows(20261207)
    return _batch(rows), _sqlite(rows)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_equals_sqlite(expression: str, data: tuple[pa.RecordBatch, sqlite3.Connection]) -> None:
    batch, db = data
    compiled = compile_expression(expression, "r1", TYPES, CONSTANTS)
    ours = evaluate(compiled, batch, TYPES).arr.to_pylist()
    theirs = [r[0] for r in db.execute(f"SELECT {_sqlite_text(expression)} FROM t ORDER BY rowid")]
    assert len(ours) == len(theirs) == ROWS
    bad = [(n, o, t) for n, (o, t) in enumerate(zip(ours, theirs, strict=True)) if o != t or type(o) is not type(t)]
    assert not bad, f"{expression}: first differences (row, bulkmig, sqlite): {bad[:5]}"


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("$t + 1", "+ on a TEXT value"),
        ("CASE WHEN $i > 0 THEN 'x' ELSE 1 END", "CASE arms of different types"),
        ("$f || 'x'", "|| on a REAL value"),
        ("$t = 1", "= between TEXT and INTEGER"),
        ("random()", "function random() is not supported"),
        ("$nope || 'x'", "$nope is not a column of the table"),
        ("datetime('now')", "'now'"),
        ("substr($t, $i)", "substr() needs a literal"),
        ("$AR_H_NOPE", "$AR_H_NOPE is not a header"),
        ("strftime('%f', $ts)", "specifier %f"),
        ("$t ||", "expression"),
    ],
)
def test_refused_in_one_line(expression: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_expression(expression, "add-col-7", TYPES, CONSTANTS)
    text = str(err.value)
    assert named in text and "add-col-7" in text and "\n" not in text


def test_hash_sha256_and_header_constants() -> None:
    import hashlib

    batch = _batch(_rows(1))
    compiled = compile_expression("hash_sha256($t)", "r", TYPES)
    got = evaluate(compiled, batch, TYPES).arr.to_pylist()
    want = [
        None if v is None else hashlib.sha256(v.encode()).hexdigest().upper() for v in batch.column("t").to_pylist()
    ]
    assert got == want
    op = compile_expression(
        "operation_indicator('D', 'U', 'I') || $AR_H_OPERATION", "r", TYPES, {"AR_H_OPERATION": "INSERT"}
    )
    assert set(evaluate(op, batch, TYPES).arr.to_pylist()) == {"IINSERT"}


def test_zoned_timestamps_show_in_utc() -> None:
    from datetime import UTC

    arr = pa.array([datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    types = {"z": "timestamp[us, tz=UTC]"}
    batch = pa.RecordBatch.from_pydict({"z": arr})
    assert evaluate(compile_expression("datetime($z, '+1 hour')", "r", types), batch, types).arr.to_pylist() == [
        "2021-03-04 06:06:07"
    ]
