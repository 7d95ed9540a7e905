"""``python -m bench.mysql_target``: loading a MariaDB target (issue 18) — bulkmig vs the raw limits.

    python -m bench.mysql_target                 # 1M rows
    python -m bench.mysql_target --rows 3000000

Starts a throwaway MariaDB and moto S3, fills ``bench.mixed`` (bench.mysql_drivers' table of mixed types, plus a
secondary index) and moves it MySQL → MariaDB with the real CLI (plan, extract, seal, import untimed), then times
on the same server, each into an empty database:

- ``bulkmig load``: the whole load stage (download + sha256 check of each part, Parquet → LOAD DATA text, ``LOAD
  DATA LOCAL INFILE`` with the ledger row, secondary indexes after the data), as a subprocess;
- ``raw LOAD DATA``: one ``LOAD DATA LOCAL INFILE`` of the same rows (a file written beforehand, untimed) into the
  same table with its index in place — the server's own bulk path, nothing else;
- ``mysqldump | mysql``: the usual homogeneous move, end to end.

Ratios are what counts on a shared machine: bulkmig / raw (≥ 0.8 wanted) and bulkmig vs mysqldump | mysql.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.mysql_drivers import DB, TABLE, fill
from bulkmig.demo.servers import MariaDBServer, MotoS3Server


def _cli(env: dict[str, str], *args: str, lines: list[str] | None = None) -> float:
    """Seconds one ``bulkmig`` command took; ``lines``: collect its ``load: … (laps)`` summary line too."""
    start = time.perf_counter()
    quiet = [] if lines is not None else ["--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", *quiet, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bulkmig {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    if lines is not None:
        lines += [line for line in done.stderr.splitlines() if " rows loaded into " in line]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with MariaDBServer(name="bench-mytgt") as my, MotoS3Server() as s3, tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        fill(my, args.rows)
        my.execute(DB, f"ALTER TABLE {TABLE} ADD KEY by_name (name), ADD KEY by_day (day)")
        s3.create_bucket("bench")
        for db in ("bulkmig_dst", "raw_dst", "dump_dst"):
            my.create_database(db)
        task = tmp / "task.yaml"
        task.write_text(
            yaml.safe_dump(
                {
                    "source": my.url(DB),
                    "target": my.url("bulkmig_dst"),
                    "migration_type": "full-load",
                    "volume": str(tmp / "volume"),
                    "bucket": "s3://bench/mytgt",
                    "s3": {"endpoint_url": s3.endpoint_url, "region": "us-east-1"},
                    "settings": {"workers": args.workers},
                }
            )
        )
        env = {**os.environ, **s3.env(), "BULKMIG_SOURCE_PASSWORD": my.password, "BULKMIG_TARGET_PASSWORD": my.password}
        stages = {
            "plan": _cli(env, "plan", "--task", str(task)),
            "extract": _cli(env, "extract", "--task", str(task)),
            "seal": _cli(env, "volume", "seal", str(tmp / "volume")),
            "import": _cli(env, "volume", "import", "--task", str(task)),
        }
        summary: list[str] = []
        t_bulkmig = stages["load"] = _cli(env, "load", "--task", str(task), lines=summary)
        t_e2e = sum(stages.values())

        # The same rows as one LOAD DATA file, written by bulkmig's own encoder from the same parts (untimed).
        import pyarrow.parquet as pq

        from bulkmig.engines.mysql.target.writer import encode_batch

        text = tmp / "all.tsv"
        with text.open("wb") as out:
            for part in sorted((tmp / "volume" / "data").rglob("*.parquet")):
                table = pq.read_table(part)
                for batch in table.to_batches():
                    out.write(encode_batch(batch, batch.schema.names))
        create = my.execute(DB, f"SHOW CREATE TABLE {TABLE}")[0][1]
        my.execute("raw_dst", create)
        import MySQLdb

        conn = MySQLdb.connect(**my.connect_args("raw_dst"), local_infile=1)
        cur = conn.cursor()
        cur.execute("SET SESSION time_zone = '+00:00', foreign_key_checks = 0")
        start = time.perf_counter()
        cur.execute(
            f"LOAD DATA LOCAL INFILE '{text}' INTO TABLE {TABLE} CHARACTER SET binary FIELDS TERMINATED BY '\\t' "
            "ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
        )
        conn.commit()
        t_raw = time.perf_counter() - start
        conn.close()

        pw = {"MYSQL_PWD": my.password, "PATH": os.environ.get("PATH", "")}
        conn_args = ["-h", my.host, "-P", str(my.port), "-u", my.user]
        start = time.perf_counter()
        dump = subprocess.Popen(["mysqldump", *conn_args, "--single-transaction", DB], env=pw, stdout=subprocess.PIPE)
        subprocess.run(["mysql", *conn_args, "dump_dst"], env=pw, stdin=dump.stdout, check=True)
        dump.wait()
        t_dump = time.perf_counter() - start

        counts = [
            my.execute(db, f"SELECT COUNT(*) FROM {TABLE}")[0][0] for db in ("bulkmig_dst", "raw_dst", "dump_dst")
        ]
        assert counts == [args.rows] * 3, counts
    rate = args.rows / t_bulkmig
    print(f"MariaDB target, {args.rows:,} rows of mixed types with 2 secondary indexes, {args.workers} workers:")
    print(f"  bulkmig load           {t_bulkmig:7.2f} s  {rate:>10,.0f} rows/s")
    print(f"  raw LOAD DATA LOCAL    {t_raw:7.2f} s  {args.rows / t_raw:>10,.0f} rows/s")
    print(f"  mysqldump | mysql      {t_dump:7.2f} s  {args.rows / t_dump:>10,.0f} rows/s")
    print(f"  bulkmig end to end     {t_e2e:7.2f} s  (plan, extract, seal, import to S3, load; 5 processes)")
    print("    " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items()))
    for line in summary:  # the load's own laps: where its time went
        print(f"    {line[line.find('(') :]}" if "(" in line else f"    {line}")
    print(
        f"  load: bulkmig / raw = {t_raw / t_bulkmig:.2f}   load vs mysqldump|mysql = {t_dump / t_bulkmig:.2f}x   "
        f"end to end vs mysqldump|mysql = {t_dump / t_e2e:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
