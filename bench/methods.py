"""Every measured method, each a function that runs one command (or one short chain) as a whole process.

Setup that a method needs but that is not what it measures (a dump for pg_restore, a planned volume for
extract, a sealed and imported volume for load, a binary COPY file for the raw load) runs untimed before
the clock starts.  Every target is a fresh database in the same cluster, dropped afterwards, and a
CHECKPOINT runs before each timed command so no method pays for the dirty buffers of the one before.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from bench import proc
from bench.data import TableSpec
from bulkmig.demo.servers import MotoS3Server, PostgresServer

SOURCE_DB = "bench"
BUCKET = "bench"
WORKERS = 2
DUCKDB_PINS = ("duckdb==1.5.5", "duckdb-extension-postgres-scanner==1.5.5")
DUCKDB_JOB = Path(__file__).with_name("duckdb_job.py")
_MIGRATE_DONE = re.compile(r"migrate: done in \S+ \((?P<steps>[^)]*)\)")
# load's last line: "load: 2 parts, 4,000,000 rows loaded into … (find volume 0.4s, pre-data 0.1s, …)"
_LOAD_DONE = re.compile(r"^load: \d+ parts, .* rows loaded into .* \((?P<steps>[^)]*)\)$", re.MULTILINE)


@dataclass
class Sample:
    """One timed run of one method on one table."""

    seconds: float | None
    peak_rss: int = 0
    peak_rss_one: int = 0
    out_bytes: int | None = None
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


class BenchError(Exception):
    """An untimed setup step failed; the method's row shows the message."""


@dataclass
class Env:
    """The running servers and everything a method needs to start commands against them."""

    pg: PostgresServer
    s3: MotoS3Server
    work: Path
    duckdb_python: Path | None = None
    duckdb_skip: str | None = "not set up"
    round: int = 0
    state: dict[str, Path] = field(default_factory=dict)  # per (table, round): dumps, volumes, files
    failed: dict[str, str] = field(default_factory=dict)  # per (table, round): a prerequisite that failed

    def tool(self, name: str) -> str:
        local = self.pg.bindir / name
        found = str(local) if local.is_file() else shutil.which(name)
        if not found:
            raise BenchError(f"{name} not found")
        return found

    def base_env(self) -> dict[str, str]:
        """Our environment without libpq or AWS variables, so nothing leaks into a measured command."""
        return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "BULKMIG_"))}

    def pg_env(self, dbname: str = SOURCE_DB) -> dict[str, str]:
        return {**self.base_env(), **self.pg.env(), "PGDATABASE": dbname}

    def bulkmig_env(self) -> dict[str, str]:
        return {
            **self.base_env(),
            **self.s3.env(),
            "BULKMIG_SOURCE_PASSWORD": self.pg.password,
            "BULKMIG_TARGET_PASSWORD": self.pg.password,
        }

    def sql(self, query: str, dbname: str = SOURCE_DB) -> list[tuple[object, ...]]:
        return self.pg.execute(dbname, query)

    def checkpoint(self) -> None:
        self.sql("CHECKPOINT", "postgres")

    def fresh_db(self, name: str) -> str:
        self.pg.drop_database(name)
        self.pg.create_database(name)
        return name

    def scratch(self, name: str) -> Path:
        """A path under the work dir, emptied first."""
        path = self.work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return path

    def psql(self, *commands: str) -> list[str]:
        """psql running ``commands`` in order (each its own transaction); the database comes from PGDATABASE."""
        argv = [self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        for c in commands:
            argv += ["-c", c]
        return argv


def _measured(m: proc.Measured, out: Path | None = None) -> Sample:
    if not m.ok:
        return Sample(None, m.peak_rss, m.peak_rss_one, error=m.last_line())
    sample = Sample(m.seconds, m.peak_rss, m.peak_rss_one, proc.dir_bytes(out) if out else None)
    if m.argv[:3] == _bulkmig():  # where a bulkmig command's CPU goes, against the server's
        sample.extra["cpu s"] = m.cpu_seconds
    return sample


def _setup(env: Env, argv: list[str], cmd_env: Mapping[str, str], what: str, stdout: IO[bytes] | None = None) -> None:
    """Run an untimed setup command; raise BenchError with its last stderr line when it fails."""
    m = proc.run(argv, env=cmd_env, cwd=env.work, stdout=stdout if stdout is not None else subprocess.DEVNULL)
    if not m.ok:
        raise BenchError(f"{what} failed: {m.last_line()}")


# ------------------------------------------------------------------------------------------ raw limits


def raw_read(env: Env, t: TableSpec) -> Sample:
    argv = env.psql(f"COPY public.{t.name} TO STDOUT (FORMAT binary)")
    env.checkpoint()
    return _measured(proc.run(argv, env=env.pg_env(), cwd=env.work))


def _binary_file(env: Env, t: TableSpec) -> Path:
    """The table as one binary COPY file, written once per table (untimed)."""
    path = env.work / f"{t.name}.copy"
    if not path.exists():
        partial = env.scratch(f"{t.name}.copy.partial")
        with partial.open("wb") as out:
            argv = env.psql(f"COPY public.{t.name} TO STDOUT (FORMAT binary)")
            _setup(env, argv, env.pg_env(), "binary COPY to a file", stdout=out)
        partial.rename(path)
    return path


def raw_load(env: Env, t: TableSpec) -> Sample:
    source = _binary_file(env, t)
    db = env.fresh_db(f"raw_{t.name}")
    env.sql(t.create_sql(with_key=False), db)
    argv = env.psql(f"COPY public.{t.name} FROM STDIN (FORMAT binary)", t.add_key_sql())
    env.checkpoint()
    try:
        with source.open("rb") as data:
            return _measured(proc.run(argv, env=env.pg_env(db), cwd=env.work, stdin=data))
    finally:
        env.pg.drop_database(db)


# ---------------------------------------------------------------------------------- pg_dump, pg_restore


def _dump(env: Env, t: TableSpec, z0: bool, timed: bool) -> Sample:
    key = f"dump-{t.name}-{'z0' if z0 else 'default'}"
    out = env.scratch(f"{key}-{env.round}")
    argv = [env.tool("pg_dump"), "-Fd", "-j", str(WORKERS), "-t", f"public.{t.name}", "-f", str(out)]
    if z0:
        argv.append("-Z0")
    env.checkpoint()
    sample = _measured(proc.run(argv, env=env.pg_env(), cwd=env.work), out)
    if sample.error is None:
        env.state[key] = out
    elif not timed:
        raise BenchError(f"pg_dump failed: {sample.error}")
    return sample


def pg_dump(env: Env, t: TableSpec) -> Sample:
    return _dump(env, t, z0=False, timed=True)


def pg_dump_z0(env: Env, t: TableSpec) -> Sample:
    return _dump(env, t, z0=True, timed=True)


def _restore(env: Env, t: TableSpec, z0: bool) -> Sample:
    key = f"dump-{t.name}-{'z0' if z0 else 'default'}"
    if key not in env.state:
        _dump(env, t, z0=z0, timed=False)
    db = env.fresh_db(f"restore_{t.name}")
    argv = [env.tool("pg_restore"), "-j", str(WORKERS), "-d", db, str(env.state[key])]
    env.checkpoint()
    try:
        return _measured(proc.run(argv, env=env.pg_env(db), cwd=env.work))
    finally:
        env.pg.drop_database(db)


def pg_restore(env: Env, t: TableSpec) -> Sample:
    return _restore(env, t, z0=False)


def pg_restore_z0(env: Env, t: TableSpec) -> Sample:
    return _restore(env, t, z0=True)


# ---------------------------------------------------------------------------------------------- duckdb


def setup_duckdb(env: Env) -> None:
    """A virtual environment under the work dir with the pinned DuckDB and its postgres extension wheel.

    Sets ``env.duckdb_python`` or, when anything fails, ``env.duckdb_skip`` to the reason."""
    venv = env.work / "duckdb-venv"
    python = venv / "bin" / "python"
    steps = [
        ("venv", [sys.executable, "-m", "venv", str(venv)]),
        ("pip install", [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *DUCKDB_PINS]),
        ("import", [str(python), "-c", "import duckdb, duckdb_extension_postgres_scanner"]),
    ]
    for what, argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=env.work, check=False, timeout=600)
        except subprocess.TimeoutExpired:
            env.duckdb_skip = f"{what} did not finish in 600s"
            return
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            env.duckdb_skip = f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}"
            return
    env.duckdb_python, env.duckdb_skip = python, None


def start_duckdb_setup(env: Env) -> threading.Thread:
    """pip runs while the tables are generated."""
    thread = threading.Thread(target=setup_duckdb, args=(env,), name="duckdb-setup", daemon=True)
    thread.start()
    return thread


def duckdb(env: Env, t: TableSpec) -> Sample:
    if env.duckdb_python is None:
        return Sample(None, error=f"skipped: {env.duckdb_skip}")
    out = env.scratch(f"duckdb-{t.name}.parquet")
    argv = [str(env.duckdb_python), str(DUCKDB_JOB), t.name, str(out)]
    env.checkpoint()
    try:
        return _measured(proc.run(argv, env=env.pg_env(), cwd=env.work), out)
    finally:
        out.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- bulkmig


def _bulkmig(*args: str) -> list[str]:
    return [sys.executable, "-m", "bulkmig.cli", *args]


def write_selection(path: Path, table: str) -> Path:
    """Table mappings (DMS JSON) that select only ``public.<table>``; returns ``path``."""
    rule = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "object-locator": {"schema-name": "public", "table-name": table},
        "rule-action": "include",
    }
    path.write_text(json.dumps({"rules": [rule]}, indent=2))
    return path


def write_task(env: Env, t: TableSpec, name: str, target_db: str) -> tuple[Path, Path]:
    """A task file (and its table mappings) selecting only ``t``; returns (task, volume dir)."""
    volume = env.scratch(f"volume-{name}")
    mappings = write_selection(env.work / f"mappings-{t.name}.json", t.name)
    task = {
        "name": f"bench-{name}",
        "source": env.pg.url(SOURCE_DB),
        "target": env.pg.url(target_db),
        "migration_type": "full-load",
        "volume": str(volume),
        "bucket": f"s3://{BUCKET}/{name}",
        "s3": {"endpoint_url": env.s3.endpoint_url, "region": env.s3.region},
        "table_mappings": str(mappings),
        "settings": {"workers": WORKERS},
    }
    path = env.work / f"task-{name}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path, volume


def _drop_prefix(env: Env, prefix: str) -> None:
    """Free moto's copy of a bucket prefix once a method is done with it."""
    with contextlib.suppress(Exception):
        client = env.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def extract(env: Env, t: TableSpec) -> Sample:
    name = f"extract-{t.name}-{env.round}"
    task, volume = write_task(env, t, name, f"load_{t.name}")
    try:
        _setup(env, _bulkmig("plan", "--task", str(task)), env.bulkmig_env(), "bulkmig plan")
    except BenchError as exc:
        env.failed[f"task-{t.name}"] = str(exc)
        raise
    env.checkpoint()
    m = proc.run(
        _bulkmig("extract", "--task", str(task), "--workers", str(WORKERS)), env=env.bulkmig_env(), cwd=env.work
    )
    sample = _measured(m, volume)
    env.state[f"volume-{t.name}"] = volume  # removed at the end of the round if load does not take it
    if sample.error is None:
        env.state[f"task-{t.name}"] = task
    else:
        env.failed[f"task-{t.name}"] = f"bulkmig extract failed: {sample.error}"
    return sample


def load(env: Env, t: TableSpec) -> Sample:
    key = f"task-{t.name}"
    if key in env.failed:
        raise BenchError(f"not run: {env.failed[key]}")
    if key not in env.state:
        done = extract(env, t)
        if done.error:
            raise BenchError(f"bulkmig extract failed: {done.error}")
    task = env.state.pop(key)
    name = task.stem.removeprefix("task-")
    volume = env.work / f"volume-{name}"
    db = env.fresh_db(f"load_{t.name}")
    try:
        _setup(env, _bulkmig("volume", "seal", str(volume)), env.bulkmig_env(), "bulkmig volume seal")
        _setup(env, _bulkmig("volume", "import", "--task", str(task)), env.bulkmig_env(), "bulkmig volume import")
        env.checkpoint()
        argv = _bulkmig("load", "--task", str(task), "--workers", str(WORKERS))
        m = proc.run(argv, env=env.bulkmig_env(), cwd=env.work)
        sample = _measured(m)
        steps = parse_migrate_steps(m.stderr, _LOAD_DONE)
        if steps and sample.seconds is not None:  # the rest of the wall time: Python, imports, the task file
            steps = {"start-up": max(0.0, sample.seconds - sum(steps.values())), **steps}
        sample.extra.update({f"{k} s": v for k, v in steps.items()})
        return sample
    finally:
        env.pg.drop_database(db)
        shutil.rmtree(volume, ignore_errors=True)
        _drop_prefix(env, name)


def parse_migrate_steps(stderr: str, done: re.Pattern[str] = _MIGRATE_DONE) -> dict[str, float]:
    """``migrate: done in 1m02s (plan 0.4s, extract 20.1s, …, validate 3.0s); …`` -> {step: seconds} (``done``:
    another command's closing line with its steps in brackets, as ``_LOAD_DONE``)."""
    found = done.search(stderr)
    if not found:
        return {}
    steps: dict[str, float] = {}
    for item in found.group("steps").split(","):
        parts = item.strip().rsplit(" ", 1)
        if len(parts) == 2 and parts[1].endswith("s"):
            with contextlib.suppress(ValueError):
                steps[parts[0]] = float(parts[1][:-1])
    return steps


def migrate(env: Env, t: TableSpec) -> Sample:
    name = f"migrate-{t.name}-{env.round}"
    db = env.fresh_db(f"migrate_{t.name}")
    task, volume = write_task(env, t, name, db)
    env.checkpoint()
    try:
        argv = _bulkmig("migrate", "--task", str(task), "--workers", str(WORKERS))
        m = proc.run(argv, env=env.bulkmig_env(), cwd=env.work)
        sample = _measured(m, volume)
        sample.extra.update({f"{k} s": v for k, v in parse_migrate_steps(m.stderr).items()})
        return sample
    finally:
        env.pg.drop_database(db)
        shutil.rmtree(volume, ignore_errors=True)
        _drop_prefix(env, name)


# ------------------------------------------------------------------------------------------ the catalog


@dataclass(frozen=True)
class Method:
    key: str  # what --only matches (by prefix)
    label: str
    direction: str  # read | load | both: which raw limit the ratio is taken against
    run: Callable[[Env, TableSpec], Sample] | None  # None: derived from other rows
    writes: bool = False  # has an out/heap figure


METHODS: list[Method] = [
    Method("raw-read", "raw read: COPY TO STDOUT binary", "read", raw_read),
    Method("raw-load", "raw load: COPY FROM STDIN binary + PK", "load", raw_load),
    Method("pg_dump", "pg_dump -Fd -j2", "read", pg_dump, writes=True),
    Method("pg_dump-z0", "pg_dump -Fd -j2 -Z0", "read", pg_dump_z0, writes=True),
    Method("pg_restore", "pg_restore -j2", "load", pg_restore),
    Method("pg_restore-z0", "pg_restore -j2 (-Z0 dump)", "load", pg_restore_z0),
    Method("duckdb", "DuckDB postgres ext -> Parquet", "read", duckdb, writes=True),
    Method("extract", "bulkmig extract", "read", extract, writes=True),
    Method("load", "bulkmig load", "load", load),
    Method("migrate", "bulkmig migrate", "both", migrate, writes=True),
]
# Derived, not run: the sum of two measured rows.
DUMP_RESTORE = Method("pg_dump+pg_restore", "pg_dump -j2 + pg_restore -j2", "both", None)
