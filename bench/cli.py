"""``python -m bench``: measure bulkmig against the raw limits and its peers, in one run, on one cluster.

    python -m bench                     # 5M-row wide, 20M-row narrow, one run of every method
    python -m bench --quick             # 500k / 2M rows: a developer's loop, under about two minutes
    python -m bench --runs 3            # the median of three, for the record
    python -m bench --only raw extract  # methods whose key starts with one of these (see --list)

Starts a throwaway PostgreSQL tuned as ``reference/bench.md`` measured it (shared_buffers 2GB,
max_wal_size 4GB, durability on as in a default server) and a moto S3 server, generates the tables,
runs every method as a whole process (wall time, peak RSS of its process tree), prints one Markdown
table and the targets of issue 3, and writes the same to ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from bench import methods, report
from bench.data import TABLES, TableSpec
from bench.methods import SOURCE_DB, BenchError, Env, Method, Sample
from bulkmig.demo.servers import MotoS3Server, PostgresServer

RESULTS = Path(__file__).with_name("results") / "latest.md"

# What bench.md measured with: wal_level=logical, shared_buffers=2GB, max_wal_size=4GB, everything else
# at PostgreSQL's defaults, which means undoing the test defaults (fsync etc. off) of devservers.
PG_SETTINGS: dict[str, str | int | bool] = {
    "shared_buffers": "2GB",
    "max_wal_size": "4GB",
    "wal_level": "logical",
    "fsync": True,
    "synchronous_commit": True,
    "full_page_writes": True,
}
SHOWN_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_wal_size",
    "wal_level",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "work_mem",
    "maintenance_work_mem",
    "checkpoint_timeout",
    "max_parallel_workers_per_gather",
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    keys = [m.key for m in methods.METHODS]
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small tables (500k / 2M rows)")
    p.add_argument("--runs", type=int, default=1, help="runs per method; the table shows the median (default 1)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"methods whose key starts with NAME: {', '.join(keys)}")
    p.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES), help="tables (default: both)")
    p.add_argument("--rows", type=int, help="rows of every table (overrides the sizes; for trying the harness)")
    p.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.parent.name}/{RESULTS.name}")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def selected(only: list[str] | None) -> list[Method]:
    if not only:
        return list(methods.METHODS)
    return [m for m in methods.METHODS if any(m.key.startswith(o) for o in only)]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def generate(env: Env, specs: list[TableSpec], sizes: dict[str, int]) -> dict[str, int]:
    """Create and fill the tables (in parallel, one connection each); returns heap bytes per table."""
    errors: list[BaseException] = []

    def fill(t: TableSpec) -> None:
        try:
            env.sql(
                "SET maintenance_work_mem = '1GB'; "
                f"{t.create_sql(with_key=False)}; {t.insert_sql(sizes[t.name])}; {t.add_key_sql()}"
            )
            env.sql(f"VACUUM (FREEZE, ANALYZE) public.{t.name}")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(t,), name=f"gen-{t.name}", daemon=True) for t in specs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    env.checkpoint()
    return {t.name: int(str(env.sql(f"SELECT pg_relation_size('public.{t.name}')")[0][0])) for t in specs}


def machine(env: Env) -> dict[str, str]:
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    rev = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "bulkmig"], capture_output=True, text=True)
        rev = head.stdout.strip() + (" + uncommitted changes in bulkmig/" if dirty.stdout.strip() else "")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "PostgreSQL": str(env.sql("SELECT version()")[0][0]),
        "Python": platform.python_version(),
        "bulkmig commit": rev,
    }


def run_bench(args: argparse.Namespace, work: Path, pg: PostgresServer, s3: MotoS3Server) -> str:
    env = Env(pg=pg, s3=s3, work=work)
    chosen = selected(args.only)
    if not chosen:
        raise SystemExit(f"bench: --only {' '.join(args.only)} selects no method (see --list)")
    duckdb_setup = methods.start_duckdb_setup(env) if any(m.key == "duckdb" for m in chosen) else None

    specs = [TABLES[name] for name in args.tables]
    sizes = {t.name: args.rows or (t.quick_rows if args.quick else t.full_rows) for t in specs}
    settings = {name: str(pg.execute("postgres", f"SHOW {name}")[0][0]) for name in SHOWN_SETTINGS}
    log("PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    pg.create_database(SOURCE_DB)
    s3.create_bucket(methods.BUCKET)
    log("generating " + ", ".join(f"{t.name} ({sizes[t.name]:,} rows)" for t in specs) + " …")
    started = time.monotonic()
    heap = generate(env, specs, sizes)
    log(
        f"generated in {time.monotonic() - started:.0f}s: "
        + ", ".join(f"{t.name} {heap[t.name] / 1e6:,.0f} MB heap" for t in specs)
    )
    if duckdb_setup is not None:
        duckdb_setup.join()
        log(f"duckdb: {'ready' if env.duckdb_python else env.duckdb_skip}")

    results = report.Results()
    for t in specs:
        env.sql(f"SELECT count(*) FROM public.{t.name}")  # warm the cache before the first timed read
        for r in range(args.runs):
            env.round = r
            for m in chosen:
                assert m.run is not None
                row = results.row(t.name, sizes[t.name], heap[t.name], m)
                try:
                    sample = m.run(env, t)
                except BenchError as exc:
                    sample = Sample(None, error=str(exc))
                except Exception as exc:  # noqa: BLE001 - one broken method must not cost the others' rows
                    sample = Sample(None, error=f"harness: {type(exc).__name__}: {str(exc).strip()[:300]}")
                if sample.error:
                    sample.error = report.scrub(sample.error, str(work), str(pg.tmpdir), str(Path.home()))
                row.samples.append(sample)
                shown = f"{sample.seconds:.2f}s" if sample.seconds is not None else f"FAILED: {sample.error}"
                rss = f", peak RSS {sample.peak_rss / 2**20:.0f} MB" if sample.peak_rss else ""
                log(f"{t.name} run {r + 1}/{args.runs} {m.label}: {shown}{rss}")
            for path in env.state.values():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            env.state.clear()
            env.failed.clear()
        (work / f"{t.name}.copy").unlink(missing_ok=True)
    results.add_derived()

    info = machine(env)
    scale = "quick" if args.quick else "full"
    if args.rows:
        scale = f"{args.rows:,} rows per table"
    lines = [
        "# bulkmig bench: latest results",
        "",
        ", ".join(f"{k}: {v}" for k, v in info.items() if v),
        "",
        f"Scale: {scale}; {args.runs} run(s) per method, median shown; {methods.WORKERS} workers/jobs everywhere.",
        "PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "server_version") + ".",
        f"DuckDB: {'duckdb ' + methods.DUCKDB_PINS[0].split('==')[1] if env.duckdb_python else env.duckdb_skip}.",
        "",
        "ratio = raw limit's seconds / method's seconds (read methods vs raw read, load methods vs raw load,",
        "end-to-end vs their sum); MB/s = heap bytes / wall seconds; peak RSS = whole process tree of the",
        "command (server processes not counted); out/heap = bytes written / heap bytes.",
        *(
            [
                "At this scale fixed costs (starting Python and importing pyarrow takes ~0.4 s per bulkmig command,",
                "DuckDB's start likewise) weigh on the ratios: judge the targets on a full-scale run.",
            ]
            if args.quick or args.rows
            else []
        ),
        "",
        report.method_table(results),
        "",
        "## Targets (issue 3)",
        "",
        report.target_table(report.targets(results)),
    ]
    if extra := report.notes(results):
        lines += ["", *extra]
    return report.scrub("\n".join(lines) + "\n", str(work), str(pg.tmpdir), str(Path.home()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for m in methods.METHODS:
            print(f"{m.key:15} {m.label}")
        return 0
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="bulkmig-bench-"))
        stack.callback(shutil.rmtree, work, True)
        try:
            log("starting PostgreSQL and moto S3 on 127.0.0.1 …")
            pg = stack.enter_context(PostgresServer(settings=PG_SETTINGS, name="bench"))
            s3 = stack.enter_context(MotoS3Server())
            text = run_bench(args, work, pg, s3)
        except KeyboardInterrupt:
            log("interrupted; stopping the servers and removing the temp dirs")
            return 130
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text)
        log(f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS.name}")
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
