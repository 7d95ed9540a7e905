"""``python -m bench.capture``: PostgreSQL capture throughput (issue 16), the replication stream vs SQL peeks.

    python -m bench.capture                       # ~300k changes over three tables, both read paths
    python -m bench.capture --changes 100000      # smaller
    python -m bench.capture --open-transaction    # the same, while a transaction stays open on the source
    python -m bench.capture --store local         # batches to a local directory: capture without moto's S3

Starts a throwaway PostgreSQL (durability on) and moto S3, creates three tables (narrow ints, an orders
table with numeric and text, jsonb events), starts one change stream per read path at the same position
(each its own slot and publication), then commits the workload: inserts, updates and deletes in
transactions of ``--txn-rows`` changes.  The raw limit is pg_recvlogical streaming a third slot over the
same WAL to /dev/null (the server's decoding alone).  Each stream is then captured once
(``capture(follow=False)``, the real stage: decode, batch, Parquet, S3, progress.json, confirm), timed as
wall seconds of that call together with the CPU seconds of this process, and its batches are counted back
from the bucket (every change must be there).  ``--open-transaction`` keeps a transaction open from
before the workload until both captures are done: the slot's restart point cannot pass it, which is what
makes every peek re-decode from there (quadratic); the stream decodes once.
The machine is shared: compare the rows of one run, not runs with each other.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bulkmig.capture import capture
from bulkmig.cdc.batch import list_batches, read_manifest
from bulkmig.cdc.stream import bucket_store, stream_prefix
from bulkmig.config.task import Task
from bulkmig.demo.servers import MotoS3Server, PostgresServer
from bulkmig.engines.postgres.capture import start_stream_now

DB = "bench_capture"
BUCKET = "bench-capture"
SCHEMA = """
CREATE TABLE narrow (id bigint PRIMARY KEY, a int, b int, c int);
CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), status text,
                     note text, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload jsonb);
CREATE TABLE held (id int);
"""
TABLES = [("public", "narrow"), ("public", "orders"), ("public", "events")]
# PostgreSQL as a default server has it (durability on), with room for the WAL of the workload.
PG_SETTINGS: dict[str, str | int | bool] = {
    "fsync": True,
    "synchronous_commit": True,
    "full_page_writes": True,
    "max_wal_size": "4GB",
    "shared_buffers": "512MB",
}


def log(message: str) -> None:
    print(f"bench.capture: {message}", flush=True)


def task_for(pg: PostgresServer, s3: MotoS3Server, work: Path, slot: str, read: str, store: str) -> Task:
    doc = {
        "name": f"bench capture {read}",
        "source": pg.url(DB),
        "target": pg.url("postgres"),  # never connected to
        "migration_type": "cdc",
        "volume": str(work / "volume"),
        "bucket": f"s3://{BUCKET}/{read}",
        "s3": {"endpoint_url": s3.endpoint_url, "region": s3.region},
        "settings": {"slot_name": slot, "publication_name": f"bench_{read}", "capture_read": read},
    }
    task = Task.from_dict(doc, work, env={"BULKMIG_SOURCE_PASSWORD": pg.password})
    if store == "local":  # not a task a file can say: the bench's way to take the S3 mock out of the figures
        task = dataclasses.replace(task, bucket=str(work / "bucket" / read))
    return task


def workload(conn: psycopg.Connection, changes: int, txn_rows: int) -> tuple[int, int]:
    """Commit about ``changes`` row changes in transactions of ``txn_rows``: per transaction 70% inserts
    spread over the three tables, 20% updates and 10% deletes of rows inserted before (the first
    transaction inserts only).  Returns (changes, transactions), counted from the statements' row counts."""
    done, next_id, txns = 0, 1, 0
    while done < changes:
        n = min(txn_rows, changes - done)
        ins = n if txns == 0 else max(3, int(n * 0.7))
        upd = 0 if txns == 0 else int(n * 0.2)
        dele = n - ins - upd
        lo, hi = next_id, next_id + ins - 1
        third = ins // 3
        statements: list[tuple[str, tuple[int, ...]]] = [
            (
                "INSERT INTO narrow SELECT g, g %% 97, g %% 89, g FROM generate_series(%s::bigint, %s::bigint) g",
                (lo, lo + third - 1),
            ),
            (
                "INSERT INTO orders (id, customer, amount, status, note) SELECT g, g %% 1000, (g %% 10000) / 100.0, "
                "'new', 'order ' || g || ' ' || md5(g::text) FROM generate_series(%s::bigint, %s::bigint) g",
                (lo + third, lo + 2 * third - 1),
            ),
            (
                "INSERT INTO events SELECT g, 'k' || (g %% 7), jsonb_build_object('n', g, 's', md5(g::text)) "
                "FROM generate_series(%s::bigint, %s::bigint) g",
                (lo + 2 * third, hi),
            ),
        ]
        if upd:
            statements.append(
                (
                    "UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id IN "
                    "(SELECT id FROM orders WHERE status = 'new' ORDER BY id LIMIT %s)",
                    (upd,),
                )
            )
        if dele:
            statements.append(("DELETE FROM narrow WHERE id IN (SELECT id FROM narrow ORDER BY id LIMIT %s)", (dele,)))
        with conn.transaction():
            for sql, params in statements:
                done += conn.execute(sql, params).rowcount
        next_id = hi + 1
        txns += 1
    return done, txns


def raw_limit(pg: PostgresServer, slot: str, publication: str, endpos: str) -> float:
    """Wall seconds of pg_recvlogical streaming the slot to /dev/null up to ``endpos``: the server's own
    decoding and sending, with no client work at all (the ceiling any capture can reach here)."""
    exe = pg._exe("pg_recvlogical")
    argv = [exe, "-d", pg.conninfo(DB), "--slot", slot, "--start", "--no-loop", "-o", "proto_version=1"]
    argv += ["-o", f"publication_names={publication}", "-f", "/dev/null", "-E", endpos, "-s", "1"]
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - began


def counted(task: Task) -> tuple[int, int]:
    """(batches, changes) of the task's stream, from the bucket."""
    store = bucket_store(task)
    prefix = stream_prefix(f"pg-{task.settings.slot_name}")
    seqs = list_batches(store, prefix)
    return len(seqs), sum(int(read_manifest(store, prefix, s)["rows"]) for s in seqs)  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300_000, help="row changes in the workload (default 300k)")
    parser.add_argument("--txn-rows", type=int, default=1000, help="changes per source transaction (default 1000)")
    parser.add_argument("--max-changes", type=int, default=10_000, help="capture's batch size (default 10000)")
    parser.add_argument("--only", choices=("stream", "peek"), help="one read path only")
    parser.add_argument("--open-transaction", action="store_true", help="keep a transaction open meanwhile")
    parser.add_argument("--profile", metavar="FILE", help="cProfile each capture into FILE.<path>")
    parser.add_argument(
        "--store", choices=("s3", "local"), default="s3", help="where batches go: moto's S3 (default) or a directory"
    )
    args = parser.parse_args(argv)
    reads = [args.only] if args.only else ["stream", "peek"]
    with (
        PostgresServer(name="bench-capture", settings=PG_SETTINGS) as pg,
        MotoS3Server() as s3,
        tempfile.TemporaryDirectory() as tmpname,
    ):
        work = Path(tmpname)
        for name, value in s3.env().items():
            os.environ[name] = value
        pg.create_database(DB)
        s3.create_bucket(BUCKET)
        info = pg.conninfo(DB)
        results: list[tuple[str, int, int, float, float]] = []
        with psycopg.connect(info, autocommit=True) as conn, psycopg.connect(info, autocommit=True) as holder:
            conn.execute(SCHEMA)
            tasks = {}
            conn.execute("CREATE PUBLICATION bench_raw FOR TABLE narrow, orders, events")
            raw_slot = f"bench_raw_{uuid.uuid4().hex[:6]}"
            conn.execute("SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')", (raw_slot,))
            for read in reads:
                tasks[read] = task_for(pg, s3, work, f"bench_{read}_{uuid.uuid4().hex[:6]}", read, args.store)
                start_stream_now(tasks[read], conn, TABLES, allow_replica_identity_full=False)
            if args.open_transaction:
                holder.execute("BEGIN")
                # A row written (not just an xid): the oldest transaction with WAL is what pins the restart point.
                holder.execute("INSERT INTO held VALUES (1)")
            started = time.monotonic()
            done, txns = workload(conn, args.changes, args.txn_rows)
            log(f"workload: {done:,} changes in {txns:,} transactions, {time.monotonic() - started:.1f}s")
            endpos = str(conn.execute("SELECT pg_catalog.pg_current_wal_flush_lsn()::text").fetchone()[0])
            raw = raw_limit(pg, raw_slot, "bench_raw", endpos)
            log(f"raw limit: pg_recvlogical read the same WAL in {raw:.2f}s = {done / raw:,.0f} changes/s")
            for read in reads:
                profiler = cProfile.Profile() if args.profile else None
                began, cpu = time.perf_counter(), time.process_time()
                if profiler is not None:
                    profiler.enable()
                report = capture(tasks[read], follow=False, max_changes=args.max_changes)
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(f"{args.profile}.{read}")
                seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
                batches, rows = counted(tasks[read])
                if rows != done or report.changes != done:
                    raise SystemExit(f"bench.capture: {read} captured {rows:,} changes of {done:,}")
                results.append((read, rows, batches, seconds, cpu))
                log(
                    f"{read}: {rows:,} changes in {batches} batches, {seconds:.2f}s = {rows / seconds:,.0f} changes/s "
                    f"(capture's own CPU {cpu:.2f}s)"
                )
            if args.open_transaction:
                holder.execute("ROLLBACK")
        server = str(pg.execute("postgres", "SHOW server_version")[0][0])
    print()
    print(
        f"PostgreSQL {server}; {done:,} changes over 3 tables in transactions of {args.txn_rows:,}; "
        f"batches of {args.max_changes:,}"
        + ("; a transaction open on the source throughout" if args.open_transaction else "")
        + ("; batches to a local directory" if args.store == "local" else "; batches to moto's S3 over HTTP")
    )
    print()
    print("| read path | changes | batches | wall s | changes/s | capture CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| raw limit: pg_recvlogical > /dev/null | {done:,} | | {raw:.2f} | {done / raw:,.0f} | |")
    for read, rows, batches, seconds, cpu in results:
        label = "START_REPLICATION (stream)" if read == "stream" else "pg_logical_slot_peek_binary_changes (peek)"
        print(f"| {label} | {rows:,} | {batches} | {seconds:.2f} | {rows / seconds:,.0f} | {cpu:.2f} |")
    if args.profile:
        for read in reads:
            print(f"\nprofile of {read}:")
            pstats.Stats(f"{args.profile}.{read}").sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
