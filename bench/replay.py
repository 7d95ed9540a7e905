"""``python -m bench.replay``: replaying change batches into PostgreSQL (issue 16) — set-based vs one by one.

    python -m bench.replay                         # 200k changes of pgbench's TPC-B mix, 10k per batch
    python -m bench.replay --changes 50000 --accounts 20000

Starts a throwaway PostgreSQL (durability on, as ``python -m bench`` runs it) and moto S3, creates the
pgbench tables (``pgbench_accounts`` with ``--accounts`` rows, 100 tellers, 10 branches, and the key-less
``pgbench_history``) in two databases, and writes the change stream pgbench's default script makes on a
source, as capture writes it (pgoutput text values, whole new rows, ``--batch`` changes per batch), to S3;
untimed.  Then it times ``bulkmig.replay.replay`` into each database from the same batches: set-based,
and change by change (``set_based=False``, the reference), reading the batches from S3 included, and checks
that both databases end with the same rows.  Per TPC-B transaction: an update of one account, one
teller and one branch, and an insert into the history (4 changes).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.cli import PG_SETTINGS
from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, write_batch
from bulkmig.cdc.position import format_lsn
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.store import S3Options, open_store
from bulkmig.demo.servers import MotoS3Server, PostgresServer, free_port
from bulkmig.replay import replay

STREAM = "pg-slot-bench_replay"
TELLERS, BRANCHES = 100, 10
DDL = """
CREATE TABLE pgbench_accounts (aid integer PRIMARY KEY, bid integer, abalance integer, filler character(84));
CREATE TABLE pgbench_tellers (tid integer PRIMARY KEY, bid integer, tbalance integer, filler character(84));
CREATE TABLE pgbench_branches (bid integer PRIMARY KEY, bbalance integer, filler character(88));
CREATE TABLE pgbench_history (tid integer, bid integer, aid integer, delta integer, mtime timestamp,
                              filler character(22));
"""
COLUMNS = {
    "pgbench_accounts": (["aid", "bid", "abalance", "filler"], ["integer", "integer", "integer", "character(84)"]),
    "pgbench_tellers": (["tid", "bid", "tbalance", "filler"], ["integer", "integer", "integer", "character(84)"]),
    "pgbench_branches": (["bid", "bbalance", "filler"], ["integer", "integer", "character(88)"]),
    "pgbench_history": (
        ["tid", "bid", "aid", "delta", "mtime", "filler"],
        ["integer", "integer", "integer", "integer", "timestamp without time zone", "character(22)"],
    ),
}
KEYS = {"pgbench_accounts": ["aid"], "pgbench_tellers": ["tid"], "pgbench_branches": ["bid"], "pgbench_history": []}


def log(message: str) -> None:
    print(f"bench.replay: {message}", file=sys.stderr, flush=True)


def fill(pg: PostgresServer, db: str, accounts: int) -> None:
    pg.execute(db, DDL)
    pg.execute(
        db,
        f"INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, {BRANCHES}) b; "
        f"INSERT INTO pgbench_tellers SELECT t, (t - 1) / {TELLERS // BRANCHES} + 1, 0, '' "
        f"FROM generate_series(1, {TELLERS}) t; "
        f"INSERT INTO pgbench_accounts SELECT a, (a - 1) * {BRANCHES} / {accounts} + 1, 0, '' "
        f"FROM generate_series(1, {accounts}) a",
    )
    pg.execute(db, "VACUUM ANALYZE")


def stream(changes: int, per_batch: int, accounts: int, seed: int = 1) -> list[Batch]:
    """The batches pgbench's TPC-B script makes on a source whose tables ``fill`` made."""
    rng = random.Random(seed)
    balance = {"pgbench_accounts": [0] * (accounts + 1), "pgbench_tellers": [0] * (TELLERS + 1)}
    branches = [0] * (BRANCHES + 1)
    pad84, pad88 = " " * 84, " " * 88
    lsn, seq, batches = 0x5000000, 0, []
    t0 = datetime(2026, 11, 27, tzinfo=UTC)
    while seq < changes:
        rows: dict[str, list[ChangeRow]] = {name: [] for name in COLUMNS}
        first, txns = lsn, 0
        while sum(len(r) for r in rows.values()) + 4 <= per_batch and seq < changes:
            aid, tid, bid = rng.randint(1, accounts), rng.randint(1, TELLERS), rng.randint(1, BRANCHES)
            delta = rng.randint(-5000, 5000)
            lsn += 0x200
            pos, ts = format_lsn(lsn), t0 + timedelta(microseconds=seq)
            balance["pgbench_accounts"][aid] += delta
            balance["pgbench_tellers"][tid] += delta
            branches[bid] += delta
            abid = (aid - 1) * BRANCHES // accounts + 1
            tbid = (tid - 1) // (TELLERS // BRANCHES) + 1
            mtime = ts.replace(tzinfo=None).isoformat(sep=" ")
            for name, values in (
                ("pgbench_accounts", [str(aid), str(abid), str(balance["pgbench_accounts"][aid]), pad84]),
                ("pgbench_tellers", [str(tid), str(tbid), str(balance["pgbench_tellers"][tid]), pad84]),
                ("pgbench_branches", [str(bid), str(branches[bid]), pad88]),
                ("pgbench_history", [str(tid), str(bid), str(aid), str(delta), mtime, None]),
            ):
                op = "I" if name == "pgbench_history" else "U"
                rows[name].append(ChangeRow(op, pos, seq, 1000 + txns, ts, values))
                seq += 1
            txns += 1
        lsn += 0x100
        tables = [
            TableChanges("public", name, *COLUMNS[name], KEYS[name], "d" if KEYS[name] else "f", r)
            for name, r in rows.items()
            if r
        ]
        batches.append(Batch(STREAM, len(batches) + 1, format_lsn(first), format_lsn(lsn), txns, tables))
    return batches


def digest(pg: PostgresServer, db: str) -> list[tuple[object, ...]]:
    return pg.execute(
        db,
        " UNION ALL ".join(
            f"SELECT '{name}', count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {name} t"
            for name in COLUMNS
        )
        + " ORDER BY 1",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="changes per batch (capture's default)")
    parser.add_argument("--accounts", type=int, default=100_000, help="rows of pgbench_accounts")
    args = parser.parse_args(argv)
    with (
        PostgresServer(settings=PG_SETTINGS, name="bench-replay") as pg,
        MotoS3Server() as s3,
        tempfile.TemporaryDirectory() as tmp,
    ):
        os.environ.update(s3.env())
        s3.create_bucket("bench")
        log(f"generating {args.changes:,} changes in batches of {args.batch:,}; filling two targets …")
        batches = stream(args.changes, args.batch, args.accounts)
        store = open_store("s3://bench/replay", S3Options(endpoint_url=s3.endpoint_url, region=s3.region))
        for b in batches:
            write_batch(store, layout.join("cdc", STREAM), b)
        results = {}
        for db, set_based in (("set_based", True), ("one_by_one", False)):
            pg.create_database(db)
            fill(pg, db, args.accounts)
            pg.execute(db, "CHECKPOINT")
            doc = {
                "source": f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere",  # read only for the lag figure
                "target": pg.url(db),
                "migration_type": "cdc",
                "volume": "./volume",
                "bucket": "s3://bench/replay",
                "s3": {"endpoint_url": s3.endpoint_url, "region": s3.region},
            }
            task = Task.from_dict(doc, Path(tmp), env={"BULKMIG_TARGET_PASSWORD": pg.password})
            log(f"replaying {'set-based' if set_based else 'change by change'} …")
            started = time.perf_counter()
            report = replay(task, set_based=set_based)
            wall = time.perf_counter() - started
            assert report.changes == sum(b.rows for b in batches) and report.exact_batches == 0, report
            results[db] = (report.changes, report.seconds, wall)
        fast_rows, slow_rows = digest(pg, "set_based"), digest(pg, "one_by_one")
        same = fast_rows == slow_rows
        for a, b in zip(fast_rows, slow_rows, strict=True):
            if a != b:
                log(f"{a[0]} differs: set-based {a[1:]}, one by one {b[1:]}")
    print(
        f"replay into PostgreSQL, pgbench TPC-B mix: {args.changes:,} changes in {len(batches)} batches of "
        f"<= {args.batch:,} ({args.accounts:,} accounts, {TELLERS} tellers, {BRANCHES} branches, history key-less):"
    )
    for db, (changes, seconds, wall) in results.items():
        label = "set-based" if db == "set_based" else "one by one"
        print(f"  {label:11} {seconds:7.2f} s  {changes / seconds:>10,.0f} changes/s   ({wall:.2f} s wall)")
    fast, slow = results["set_based"][1], results["one_by_one"][1]
    print(f"  set-based / one by one: {slow / fast:.1f}x; both targets hold the same rows: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
