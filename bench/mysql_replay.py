"""``python -m bench.mysql_replay``: change data capture replay MariaDB → MariaDB (issue 18) — bulkmig vs the raw limit.

    python -m bench.mysql_replay                  # 100k changes
    python -m bench.mysql_replay --changes 300000

Starts a throwaway MariaDB and moto S3, fills ``bench.mixed`` (bench.mysql_drivers' table of mixed types), moves
it with the real CLI as full-load-and-cdc into another database of the same server (untimed), then writes
``--changes`` changes on the source in transactions of 100 (a third each inserts, updates, deletes; untimed),
captures them (``capture --once``, untimed) and times:

- ``bulkmig replay``: the whole stage as a subprocess (batches read from S3, compacted per key, applied set-based,
  one InnoDB transaction per batch with its position);
- ``mysqlbinlog | mysql``: the same binlog range replayed by the server's own row-event code (``--rewrite-db`` into a
  copy of the loaded database) — what MySQL replication itself does with those changes, nothing else.

Both targets end equal to the source (``CHECKSUM TABLE``).  The ratio is what counts on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.mysql_drivers import DB, TABLE, fill
from bulkmig.demo.servers import MariaDBServer, MotoS3Server


def _cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Seconds the command took, and its last status line."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bulkmig {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith(args[0] + ":")]
    return time.perf_counter() - start, lines[-1] if lines else ""


def _binlog(my: MariaDBServer) -> tuple[str, int]:
    row = my.execute(None, "SHOW MASTER STATUS")[0]
    return str(row[0]), int(row[1])


def _workload(my: MariaDBServer, rows: int, changes: int) -> int:
    """About ``changes`` changes on the source, 100 statements per transaction: inserts of new keys, updates and
    deletes of random ones; returns how many rows they changed."""
    import pymysql

    rng = random.Random(7)
    conn = pymysql.connect(**my.connect_args(DB), autocommit=False)
    top, changed = rows, 0
    try:
        with conn.cursor() as cur:
            for done in range(0, changes, 100):
                for _ in range(100):
                    r = rng.random()
                    if r < 1 / 3:
                        top += 1
                        cur.execute(
                            f"INSERT INTO {TABLE} VALUES (%s, %s, 12.5, 0.25, NOW(6), CURDATE(), 'new', NULL)",
                            (top, f"new-{top}"),
                        )
                    elif r < 2 / 3:
                        cur.execute(f"UPDATE {TABLE} SET name = %s WHERE id = %s", (f"u{done}", rng.randrange(1, top)))
                    else:
                        cur.execute(f"DELETE FROM {TABLE} WHERE id = %s", (rng.randrange(1, top),))
                    changed += cur.rowcount
                conn.commit()
    finally:
        conn.close()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=100_000)
    args = parser.parse_args(argv)
    with MariaDBServer(name="bench-myrep") as my, MotoS3Server() as s3, tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        fill(my, args.rows)
        s3.create_bucket("bench")
        for db in ("bulkmig_dst", "binlog_dst"):
            my.create_database(db)
        task = tmp / "task.yaml"
        task.write_text(
            yaml.safe_dump(
                {
                    "source": my.url(DB),
                    "target": my.url("bulkmig_dst"),
                    "migration_type": "full-load-and-cdc",
                    "volume": str(tmp / "volume"),
                    "bucket": "s3://bench/myrep",
                    "s3": {"endpoint_url": s3.endpoint_url, "region": "us-east-1"},
                    "settings": {"workers": 2},
                }
            )
        )
        env = {**os.environ, **s3.env(), "BULKMIG_SOURCE_PASSWORD": my.password, "BULKMIG_TARGET_PASSWORD": my.password}
        for step in (("plan",), ("extract",)):
            _cli(env, *step, "--task", str(task))
        _cli(env, "volume", "seal", str(tmp / "volume"))
        for step in (("volume", "import"), ("load",), ("capture", "--once"), ("replay",)):
            _cli(env, *step, "--task", str(task))
        pw = {"MYSQL_PWD": my.password, "PATH": os.environ.get("PATH", "")}
        conn_args = ["-h", my.host, "-P", str(my.port), "-u", my.user]
        # The raw side starts from the same rows: a copy of the loaded database.
        dump = subprocess.Popen(["mysqldump", *conn_args, "bulkmig_dst", TABLE], env=pw, stdout=subprocess.PIPE)
        subprocess.run(["mysql", *conn_args, "binlog_dst"], env=pw, stdin=dump.stdout, check=True)
        dump.wait()

        start_file, start_pos = _binlog(my)
        changes = _workload(my, args.rows, args.changes)
        stop_file, stop_pos = _binlog(my)
        assert start_file == stop_file, "the binlog rotated during the workload: rerun with fewer --changes"
        _cli(env, "capture", "--once", "--task", str(task))
        t_bulkmig, summary = _cli(env, "replay", "--task", str(task))

        binlog = Path(my.execute(None, "SELECT @@log_bin_basename")[0][0]).parent / start_file
        start = time.perf_counter()
        events = subprocess.Popen(
            [
                "mysqlbinlog",
                f"--start-position={start_pos}",
                f"--stop-position={stop_pos}",
                f"--rewrite-db={DB}->binlog_dst",
                str(binlog),
            ],
            stdout=subprocess.PIPE,
        )
        subprocess.run(["mysql", *conn_args, "binlog_dst"], env=pw, stdin=events.stdout, check=True)
        events.wait()
        t_raw = time.perf_counter() - start

        sums = [my.execute(db, f"CHECKSUM TABLE {TABLE}")[0][1] for db in (DB, "bulkmig_dst", "binlog_dst")]
        assert sums[0] == sums[1] == sums[2], sums
    print(
        f"MariaDB → MariaDB replay, {changes:,} changes (about 1/3 each insert, update, delete; 100 per transaction):"
    )
    print(f"  bulkmig replay         {t_bulkmig:7.2f} s  {changes / t_bulkmig:>10,.0f} changes/s")
    print(f"  mysqlbinlog | mysql    {t_raw:7.2f} s  {changes / t_raw:>10,.0f} changes/s")
    print(f"  bulkmig / raw = {t_raw / t_bulkmig:.2f}   ({summary})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
