"""``python -m bench.dms``: leaving AWS DMS — a DMS S3 target folder loaded into PostgreSQL, vs the raw limit.

    python -m bench.dms                      # 500k rows in 10 LOAD files, 20 CDC files of 5,000 changes
    python -m bench.dms --rows 2000000

Starts a throwaway PostgreSQL and moto S3, writes a DMS-style Parquet folder (``Op`` and a timestamp column in
every file, as with IncludeOpForFullLoad and TimestampColumnName), then times with the real CLI:

- ``bulkmig load`` of the ``dms-s3://`` folder (download, sha256, Parquet -> COPY CSV, the ledger row per file);
- raw ``COPY``: the same rows from one local CSV file into the same empty table (the server's bulk path alone);
- ``bulkmig replay`` of the CDC files (each file one batch: compaction, temp-table COPY, upserts and deletes).

The ratio bulkmig / raw is what counts on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from bulkmig.demo.servers import MotoS3Server, PostgresServer

DDL = "CREATE TABLE bench.t (id bigint PRIMARY KEY, name text, amount numeric(12,2), seen timestamptz, flag boolean)"


def _rows(start: int, n: int) -> pa.Table:
    ids = pa.array(range(start, start + n), pa.int64())
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"name {i}" for i in range(start, start + n)]),
            "amount": pa.array([str(i % 100_000) + ".25" for i in range(start, start + n)]).cast(pa.decimal128(12, 2)),
            "seen": pa.array([1_700_000_000_000_000 + i for i in range(start, start + n)], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "flag": pa.array([i % 2 == 0 for i in range(start, start + n)]),
        }
    )


def _dms_file(table: pa.Table, ops: list[str]) -> bytes:
    n = table.num_rows
    full = pa.table({"Op": ops, "ts": ["2024-01-01 00:00:00.000000"] * n, **{c: table[c] for c in table.column_names}})
    sink = io.BytesIO()
    pq.write_table(full, sink, version="1.0", compression="NONE", store_schema=False)
    return sink.getvalue()


def _cli(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", "--quiet", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"bulkmig {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--cdc-files", type=int, default=20)
    parser.add_argument("--cdc-rows", type=int, default=5_000)
    args = parser.parse_args(argv)
    with PostgresServer(name="bench-dms") as pg, MotoS3Server() as s3, tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        s3.create_bucket("bench")
        client = s3.client()
        per = args.rows // args.files
        for f in range(args.files):
            body = _dms_file(_rows(f * per, per), ["I"] * per)
            client.put_object(Bucket="bench", Key=f"dms/bench/t/LOAD{f + 1:08X}.parquet", Body=body)
        for f in range(args.cdc_files):  # updates of existing rows, new rows, deletes
            start = (f * args.cdc_rows) % max(args.rows - args.cdc_rows, 1)
            ops = ["U" if i % 3 else "D" for i in range(args.cdc_rows)]
            body = _dms_file(_rows(start, args.cdc_rows), ops)
            client.put_object(Bucket="bench", Key=f"dms/bench/t/20240101-00{f:04d}000.parquet", Body=body)
        for db in ("bulkmig_dst", "raw_dst"):
            pg.create_database(db)
            pg.execute(db, "CREATE SCHEMA bench; " + DDL)
        settings = tmp / "s3.json"
        settings.write_text('{"DataFormat": "parquet", "TimestampColumnName": "ts", "IncludeOpForFullLoad": true}')
        task = tmp / "task.yaml"
        task.write_text(
            yaml.safe_dump(
                {
                    "source": "dms-s3://bench/dms",
                    "target": pg.url("bulkmig_dst"),
                    "migration_type": "full-load-and-cdc",
                    "s3": {"endpoint_url": s3.endpoint_url, "region": s3.region},
                    "settings": {"dms": {"endpoint_settings": str(settings)}},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
        env.update({**s3.env(), "BULKMIG_TARGET_PASSWORD": pg.password})
        load = _cli(env, "load", "--task", str(task))
        csv = tmp / "rows.csv"
        with csv.open("wb") as out:
            for f in range(args.files):
                pacsv.write_csv(_rows(f * per, per), out, pacsv.WriteOptions(include_header=False))
        started = time.perf_counter()
        with (
            psycopg.connect(pg.conninfo("raw_dst")) as conn,
            conn.cursor().copy("COPY bench.t FROM STDIN (FORMAT csv)") as copy,
            csv.open("rb") as src,
        ):
            while chunk := src.read(1 << 20):
                copy.write(chunk)
        raw = time.perf_counter() - started
        replay = _cli(env, "replay", "--task", str(task))
        changes = args.cdc_files * args.cdc_rows
        print(f"{per * args.files:,} rows, {args.files} LOAD files; {changes:,} changes, {args.cdc_files} CDC files")
        print(f"bulkmig load (dms-s3://, subprocess)  {load:6.2f} s  {per * args.files / load:10,.0f} rows/s")
        print(f"raw COPY of the same rows            {raw:6.2f} s  {per * args.files / raw:10,.0f} rows/s")
        print(f"ratio load / raw                      {load / raw:6.2f}")
        print(f"bulkmig replay (CDC files)            {replay:6.2f} s  {changes / replay:10,.0f} changes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
