"""``python -m bench.scaleout``: extraction on the local pool vs on a Dask cluster (issue 13), and 2 Dask
worker processes vs 1.

    python -m bench.scaleout                  # the wide table at 500k rows (quick), one round
    python -m bench.scaleout --rows 3000000   # a few million rows (or BENCH_SCALEOUT_ROWS=3000000)
    python -m bench.scaleout --rounds 3       # the median of three rounds, runs interleaved

Starts a throwaway PostgreSQL, fills bench.data's ``wide`` table (every common type, seeded random values),
plans it into parts of ``heap / --parts`` bytes, then times whole ``bulkmig extract`` processes over the
same plan, each into a fresh volume:

- ``local``: settings.executor local, ``--workers N`` threads in the extract process (today's default);
- ``dask N``: settings.executor dask on a cluster started beforehand (untimed, as extraction agents are
  already up when a migration starts): a ``dask scheduler`` and one ``dask worker --nworkers N
  --nthreads 1``, the way agents/bulkmig-agent@.service runs it, its worker processes warmed by importing
  what a part needs (long-running agents are warm when a migration starts);
- ``dask 1``: the same cluster shape with one worker process: the per-worker rate, and what a second
  process adds (the scale-out ratio).

The raw limit is ``COPY wide TO STDOUT (FORMAT binary)`` into /dev/null, in the same run; "ratio" is raw
seconds / run seconds (as in bench/report.py).  Every extract's row count (its own summary line) must
equal the table's.  The machine may be shared: compare the rows of one run, and read the load averages
printed with it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import proc
from bench.data import WIDE
from bench.methods import write_selection
from bulkmig.demo.servers import PostgresServer

DB = "bench_scaleout"
MB = 1_000_000
DASK_OVERHEAD_GOAL = 1.05  # dask N seconds / local seconds, same N
TB = 10**12

# The model's assumptions (bench/scaleout.py prints the model from this run's per-worker rate with them; the
# README's performance section explains each).  Rates are bytes per second.
WORKERS_PER_DEVICE = 8  # a 16-core agent host with two devices, one worker process per core
AGENT_NIC = 1.1e9  # 10 GbE into each agent host, usable
SOURCE_LIMIT = 2.0e9  # what the one source server can send while it serves production (disk array / 25 GbE)
DEVICE_WRITE = 0.5e9  # sustained write of one device, Parquet bytes
DEVICE_CAPACITY = 80 * TB  # usable, a Snowball-class device
MODEL_SIZES = (10 * TB, 100 * TB)  # heap bytes of the database
MODEL_SHAPES = ((1, 1), (2, 1), (2, 2), (4, 2), (8, 2))  # hosts x devices per host
_WROTE = re.compile(r"extract: wrote (\d+) parts, ([\d,]+) rows")


def log(message: str) -> None:
    print(f"bench.scaleout: {message}", flush=True)


@dataclass
class Run:
    label: str
    workers: int
    executor: str
    seconds: list[float] = field(default_factory=list)
    parts: int = 0
    out_bytes: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def write_task(pg: PostgresServer, work: Path, name: str, executor: str, scheduler: str | None, part: int) -> Path:
    """A task selecting only the wide table, its volume under ``work`` (S3 is never reached by extract)."""
    mappings = write_selection(work / "mappings.json", WIDE.name)
    settings: dict[str, object] = {"workers": 2, "max_part_bytes": part, "executor": executor}
    if scheduler:
        settings["scheduler"] = scheduler
    task = {
        "name": f"bench-scaleout-{name}",
        "source": pg.url(DB),
        "target": pg.url("postgres"),  # never connected to by extract
        "migration_type": "full-load",
        "volume": str(work / f"volume-{name}"),
        "bucket": "s3://bench-scaleout/unused",
        "s3": {"region": "us-east-1"},
        "table_mappings": str(mappings),
        "settings": settings,
    }
    path = work / f"task-{name}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def bulkmig(*args: str) -> list[str]:
    return [sys.executable, "-m", "bulkmig.cli", *args]


def _warm() -> None:
    """Import what an extract unit uses, in a worker: agents are long-running, so a migration's parts meet
    warm workers; the one-off imports of a fresh process are not what the comparison is about."""
    import importlib

    for module in ("bulkmig.fullload.extract", "adbc_driver_postgresql.dbapi", "pyarrow.parquet", "psycopg"):
        importlib.import_module(module)


class DaskCluster:
    """A ``dask scheduler`` and one ``dask worker --nworkers N --nthreads 1`` on loopback, up before timing."""

    def __init__(self, work: Path, nworkers: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        self.nworkers = nworkers
        self.logs = work / f"dask-{nworkers}"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.procs.append(self._start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"))
        self.procs.append(
            self._start(
                "worker", self.address, "--nworkers", str(nworkers), "--nthreads", "1", "--no-dashboard",
                "--local-directory", str(self.logs / "scratch"),
            )
        )  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(nworkers, timeout=120)
            client.run(_warm)

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{args[0]}.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def close(self) -> None:
        for p in self.procs:
            proc.kill_group(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_rows = int(os.environ.get("BENCH_SCALEOUT_ROWS", WIDE.quick_rows))
    parser.add_argument("--rows", type=int, default=default_rows, help=f"rows of the table (default {default_rows:,})")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local and dask N runs")
    parser.add_argument("--parts", type=int, default=24, help="about how many parts the table is planned into")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; each figure is the median (default 1)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with PostgresServer(name="bench-scaleout") as pg, tempfile.TemporaryDirectory() as tmpname:
        work = Path(tmpname)
        pg.create_database(DB)
        started = time.monotonic()
        pg.execute(DB, WIDE.create_sql(with_key=True))
        pg.execute(DB, WIDE.insert_sql(args.rows))
        pg.execute(DB, f"VACUUM ANALYZE public.{WIDE.name}")
        heap = int(pg.execute(DB, f"SELECT pg_relation_size('public.{WIDE.name}')")[0][0])
        log(f"{args.rows:,} rows, heap {heap / MB:,.0f} MB, filled in {time.monotonic() - started:.0f}s")
        part = max(1_000_000, heap // args.parts)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "BULKMIG_", "DASK_"))}
        env["BULKMIG_SOURCE_PASSWORD"] = env["BULKMIG_TARGET_PASSWORD"] = pg.password
        psql = [str(pg._exe("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        raw_argv = [*psql, "-c", f"COPY public.{WIDE.name} TO STDOUT (FORMAT binary)"]
        raw_env = {**env, **pg.env(), "PGDATABASE": DB}

        clusters = {n: DaskCluster(work, n) for n in dict.fromkeys([args.workers, 1])}
        raw = Run("raw read: COPY TO STDOUT binary > /dev/null", 1, "")
        runs = [
            Run(f"bulkmig extract, local pool ({args.workers} threads)", args.workers, "local"),
            Run(f"bulkmig extract, Dask ({args.workers} worker processes)", args.workers, "dask"),
            Run("bulkmig extract, Dask (1 worker process)", 1, "dask"),
        ]
        try:
            for rnd in range(args.rounds):
                m = proc.run(raw_argv, env=raw_env, cwd=work)
                if not m.ok:
                    raise SystemExit(f"bench.scaleout: raw read failed: {m.last_line()}")
                raw.seconds.append(m.seconds)
                for run in runs:
                    name = f"{run.executor}{run.workers}-{rnd}"
                    scheduler = clusters[run.workers].address if run.executor == "dask" else None
                    task = write_task(pg, work, name, run.executor, scheduler, part)
                    planned = proc.run(bulkmig("plan", "--task", str(task)), env=env, cwd=work)
                    if not planned.ok:
                        raise SystemExit(f"bench.scaleout: plan failed: {planned.last_line()}")
                    pg.execute("postgres", "CHECKPOINT")
                    m = proc.run(
                        bulkmig("extract", "--task", str(task), "--workers", str(run.workers)),
                        env=env,
                        cwd=work,
                    )
                    if not m.ok:
                        raise SystemExit(f"bench.scaleout: {run.label} failed: {m.last_line()}")
                    wrote = _WROTE.search(m.stderr)
                    rows = int(wrote.group(2).replace(",", "")) if wrote else -1
                    if rows != args.rows:
                        raise SystemExit(f"bench.scaleout: {run.label} wrote {rows:,} rows of {args.rows:,}")
                    run.parts = int(wrote.group(1)) if wrote else 0
                    run.seconds.append(m.seconds)
                    run.out_bytes = proc.dir_bytes(work / f"volume-{name}" / "data")
                    log(f"round {rnd + 1}: {run.label}: {m.seconds:.2f}s, {run.parts} parts")
                    shutil.rmtree(work / f"volume-{name}", ignore_errors=True)
        finally:
            for cluster in clusters.values():
                cluster.close()
        server = str(pg.execute("postgres", "SHOW server_version")[0][0])
    load_after = os.getloadavg()

    print()
    print(
        f"PostgreSQL {server}; table wide, {args.rows:,} rows, heap {heap / MB:,.0f} MB, parts of "
        f"{part / MB:.1f} MB; {os.cpu_count()} CPUs; load average before {load_before[0]:.2f}, after "
        f"{load_after[0]:.2f} (1 min); median of {args.rounds} round(s)"
    )
    print()
    print("| method | rows | s | rows/s | MB/s | MB/s per worker | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = raw.median
    for run in [raw, *runs]:
        s = run.median
        per_worker = f"{heap / MB / s / run.workers:.0f}" if run.executor else ""
        print(
            f"| {run.label} | {args.rows:,} | {s:.2f} | {args.rows / s:,.0f} | {heap / MB / s:.0f} | {per_worker} "
            f"| {ref / s:.2f} |"
        )
    local, dask_n, dask_1 = (r.median for r in runs)
    overhead = dask_n / local
    print()
    print("| target | measured | goal | result |")
    print("|---|---:|---:|---|")
    print(
        f"| Dask {args.workers} processes vs local pool {args.workers} threads (seconds) | {overhead:.3f}× "
        f"| <= {DASK_OVERHEAD_GOAL:.2f}× | {'PASS' if overhead <= DASK_OVERHEAD_GOAL else 'MISS'} |"
    )
    print(f"| Dask {args.workers} worker processes vs 1 (speed-up) | {dask_1 / dask_n:.2f}× | (report) | |")
    print()
    print(model(heap / dask_1, runs[2].out_bytes / heap))
    return 0


def model(per_worker: float, parquet_ratio: float) -> str:
    """Days of extraction and devices for N hosts x M devices, from a measured per-worker rate (heap bytes/s)
    and volume bytes / heap bytes, under the assumptions above: the slowest of the workers, the agents'
    NICs, the devices' writes and the source decides."""
    lines = [
        f"Model: {per_worker / MB:.0f} MB/s per worker process (the Dask 1-process run), volume "
        f"{parquet_ratio:.2f} × heap; {WORKERS_PER_DEVICE} workers per device, {AGENT_NIC / 1e9:.1f} GB/s per "
        f"agent host, {DEVICE_WRITE / 1e9:.1f} GB/s per device, source {SOURCE_LIMIT / 1e9:.1f} GB/s, "
        f"{DEVICE_CAPACITY / TB:.0f} TB per device",
        "",
        "| hosts × devices | workers | GB/s (limit) | " + " | ".join(f"{s // TB} TB: days" for s in MODEL_SIZES)
        + " | " + " | ".join(f"{s // TB} TB: devices (TB each)" for s in MODEL_SIZES) + " |",
        "|---|---:|---|" + "---:|" * (2 * len(MODEL_SIZES)),
    ]  # fmt: skip
    for hosts, devices in MODEL_SHAPES:
        n = hosts * devices
        limits = {
            "workers": n * WORKERS_PER_DEVICE * per_worker,
            "agent NICs": hosts * AGENT_NIC,
            "device writes": n * DEVICE_WRITE / parquet_ratio,
            "source": SOURCE_LIMIT,
        }
        bound = min(limits, key=lambda k: limits[k])
        rate = limits[bound]
        days = [f"{size / rate / 86400:.2f}" for size in MODEL_SIZES]
        need = [max(n, -(-int(size * parquet_ratio) // DEVICE_CAPACITY)) for size in MODEL_SIZES]
        fill = [f"{k} ({size * parquet_ratio / k / TB:.1f})" for k, size in zip(need, MODEL_SIZES, strict=True)]
        lines.append(
            f"| {hosts} × {devices} | {n * WORKERS_PER_DEVICE} | {rate / 1e9:.2f} ({bound}) | "
            + " | ".join(days + fill)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
