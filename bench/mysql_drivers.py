"""``python -m bench.mysql_drivers``: which driver reads MySQL/MariaDB into Arrow fastest (issue 5).

    python -m bench.mysql_drivers               # 500k rows, best of 2 runs per method
    python -m bench.mysql_drivers --rows 1000000 --runs 3

Starts a throwaway MariaDB, fills one table of mixed types (integer key, varchar, decimal, double, datetime,
date, text, nullable int) from the SEQUENCE engine, and reads all of it into Arrow record batches of the
exact plan types with each candidate, printing rows/s:

- ``pymysql typed``: PyMySQL streaming cursor, the driver's Python values → ``pa.array``.
- ``pymysql text``: PyMySQL with no converters (values as the server's text) → Arrow casts.
- ``mysqlclient typed`` / ``mysqlclient text``: the same with mysqlclient (the C client).
- ``bulkmig reader``: ``engines.mysql.source.Reader`` (mysqlclient text + casts, what extract runs).
- ``connectorx``: ``cx.read_sql(..., return_type="arrow")`` on one connection.  Fastest, but it opens
  its own connections: it cannot read inside the ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` each worker
  opens under one ``FLUSH TABLES WITH READ LOCK`` (DESIGN §5), so a multi-table extract would not be one
  consistent snapshot.

The driver choice (mysqlclient) and its reason live in ``bulkmig/engines/mysql/connect.py``.
"""

from __future__ import annotations

import argparse
import decimal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from bulkmig.demo.servers import MariaDBServer

DB = "bench"
TABLE = "mixed"
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("ratio", pa.float64()),
        ("created", pa.timestamp("us")),
        ("day", pa.date32()),
        ("note", pa.string()),
        ("maybe", pa.int32()),
    ]
)
QUERY = f"SELECT id, name, amount, ratio, created, day, note, maybe FROM {TABLE}"
BATCH = 65536


def fill(my: MariaDBServer, rows: int) -> None:
    my.create_database(DB)
    my.execute(
        DB,
        f"""CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name varchar(60) NOT NULL, amount decimal(12,2),
        ratio double, created datetime(6), day date, note text, maybe int)""",
    )
    step = 100_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        my.execute(
            DB,
            f"""INSERT INTO {TABLE} SELECT seq, CONCAT('name-', seq, '-', MD5(seq)), seq * 1.37 / 100, seq / 7,
            TIMESTAMPADD(MICROSECOND, seq * 1234567, '2001-01-01'), DATE_ADD('1990-01-01', INTERVAL seq % 20000 DAY),
            IF(seq % 3 = 0, NULL, REPEAT('x', seq % 50)), IF(seq % 5 = 0, NULL, seq % 1000)
            FROM seq_{start + 1}_to_{start + n}""",
        )


def _typed_batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[pa.RecordBatch]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == BATCH:
            yield _typed(chunk)
            chunk = []
    if chunk:
        yield _typed(chunk)


def _typed(chunk: list[tuple[Any, ...]]) -> pa.RecordBatch:
    cols = list(zip(*chunk, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA, strict=True)], schema=SCHEMA
    )


def _text(chunk: list[tuple[Any, ...]]) -> pa.RecordBatch:
    arrays = []
    for col, f in zip(zip(*chunk, strict=True), SCHEMA, strict=True):
        raw = pa.array([v.decode() if isinstance(v, bytes) else v for v in col], pa.string())
        arrays.append(raw if f.type == pa.string() else raw.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _text_batches(cur: Any) -> Iterator[pa.RecordBatch]:
    while True:
        chunk = cur.fetchmany(BATCH)
        if not chunk:
            return
        yield _text(chunk)


def pymysql_read(my: MariaDBServer, text: bool) -> int:
    import pymysql
    import pymysql.converters
    import pymysql.cursors

    encoders = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}
    kwargs: dict[str, Any] = {"conv": encoders} if text else {}
    conn = pymysql.connect(**my.connect_args(DB), cursorclass=pymysql.cursors.SSCursor, **kwargs)
    try:
        cur = conn.cursor()
        cur.execute(QUERY)
        batches = _text_batches(cur) if text else _typed_batches(iter(cur.fetchone, None))
        return sum(b.num_rows for b in batches)
    finally:
        conn.close()


def mysqlclient_read(my: MariaDBServer, text: bool) -> int:
    import MySQLdb
    import MySQLdb.converters
    import MySQLdb.cursors

    args = my.connect_args(DB)
    args["database"] = args.pop("database")
    kwargs: dict[str, Any] = {}
    if text:
        kwargs["conv"] = {k: v for k, v in MySQLdb.converters.conversions.items() if not isinstance(k, int)}
    conn = MySQLdb.connect(**args, cursorclass=MySQLdb.cursors.SSCursor, **kwargs)
    try:
        cur = conn.cursor()
        cur.execute(QUERY)
        if text:
            return sum(b.num_rows for b in _text_batches(cur))

        def rows() -> Iterator[tuple[Any, ...]]:
            while chunk := cur.fetchmany(BATCH):
                yield from chunk

        return sum(b.num_rows for b in _typed_batches(rows()))
    finally:
        conn.close()


def reader_read(my: MariaDBServer) -> int:
    from bulkmig.config.task import Endpoint
    from bulkmig.core.model import Column, Table
    from bulkmig.engines.mysql import source

    endpoint = Endpoint.parse(my.url(DB), "source").with_password(my.password)
    types = {
        "id": ("bigint", "int64"),
        "name": ("varchar(60)", "string"),
        "amount": ("decimal(12,2)", "decimal128(12, 2)"),
        "ratio": ("double", "float64"),
        "created": ("datetime(6)", "timestamp[us]"),
        "day": ("date", "date32"),
        "note": ("text", "string"),
        "maybe": ("int", "int32"),
    }
    columns = [
        Column(name, source_type=t, logical_type="", arrow_type=a, nullable=name != "id", read_as="{col}")
        for name, (t, a) in types.items()
    ]
    table = Table(DB, TABLE, columns, primary_key=["id"])
    with source.Snapshot(endpoint, workers=1) as snap:
        reader = snap.readers[0]
        return sum(b.num_rows for b in reader.batches(table, None, set()))


def connectorx_read(my: MariaDBServer) -> int:
    from urllib.parse import quote

    try:
        import connectorx as cx
    except ModuleNotFoundError:
        raise SystemExit("bench.mysql_drivers: connectorx is missing; pip install -e '.[bench]'") from None

    url = f"mysql://{my.user}:{quote(my.password, safe='')}@{my.host}:{my.port}/{DB}"
    result = cx.read_sql(url, QUERY, return_type="arrow")
    return result.num_rows


def measure(fn: Callable[[], int], runs: int) -> tuple[int, float]:
    best = float("inf")
    rows = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - t0)
    return rows, best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mysql_drivers", description=__doc__)
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--only", nargs="+", help="method names starting with these")
    args = p.parse_args(argv)
    decimal.getcontext().prec = 65
    with MariaDBServer(name="bench-mysql", settings={"innodb_buffer_pool_size": "1G"}) as my:
        t0 = time.perf_counter()
        fill(my, args.rows)
        print(f"filled {args.rows} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        methods: dict[str, Callable[[], int]] = {
            "pymysql typed": lambda: pymysql_read(my, False),
            "pymysql text": lambda: pymysql_read(my, True),
            "mysqlclient typed": lambda: mysqlclient_read(my, False),
            "mysqlclient text": lambda: mysqlclient_read(my, True),
            "bulkmig reader": lambda: reader_read(my),
            "connectorx": lambda: connectorx_read(my),
        }
        print("| method | rows | seconds | rows/s |\n|---|---:|---:|---:|")
        for name, fn in methods.items():
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            rows, seconds = measure(fn, args.runs)
            print(f"| {name} | {rows} | {seconds:.2f} | {rows / seconds:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
