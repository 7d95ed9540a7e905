"""Shared fixtures: real throwaway servers (DESIGN §7), started once per session and only when asked for.

Session scope because initdb + start costs about half a second per cluster; isolation comes from a fresh
database (``source_db`` / ``target_db``) and a fresh bucket (``bucket``) per test instead.  Unit tests never
touch a fixture here, so they run without PostgreSQL or moto.

``BULKMIG_KEEP_SERVERS=1`` keeps the clusters' temp dirs (data + server.log) and moto's log after the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkmig.demo.servers import MariaDBServer, MotoS3Server, PostgresServer, datasets_dir, find_pg_bindir

KEEP = os.environ.get("BULKMIG_KEEP_SERVERS") == "1"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which PostgreSQL and datasets this run uses, so a CI log answers "which binaries?" at once."""
    try:
        bindir = str(find_pg_bindir())
    except Exception as exc:  # a header must never break collection; the fixtures report it properly
        bindir = f"not found ({exc})"
    return [f"bulkmig: PostgreSQL bindir {bindir}; datasets {datasets_dir() or 'absent'}"]


def _unique_name(request: pytest.FixtureRequest, prefix: str) -> str:
    """A name that says which test made it (handy in server logs) and never collides (63-byte limit)."""
    base = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"{prefix}_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_source() -> Iterator[PostgresServer]:
    """The source cluster: PostgreSQL with wal_level=logical, superuser ``postgres``, scram over TCP."""
    with PostgresServer(name="source", keep=KEEP) as server:
        yield server


@pytest.fixture(scope="session")
def pg_target() -> Iterator[PostgresServer]:
    """A second, separate cluster, so source and target never share a catalog by accident."""
    with PostgresServer(name="target", keep=KEEP) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """moto's S3 server over real HTTP on loopback; ``s3_server.env()`` points subprocesses at it."""
    with MotoS3Server(keep_log=KEEP) as server:
        yield server


@pytest.fixture
def bucket(s3_server: MotoS3Server) -> Iterator[str]:
    """A fresh, empty bucket on ``s3_server``; emptied and deleted afterwards to keep moto's memory small."""
    name = f"bulkmig-test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    yield name
    client = s3_server.client()
    with contextlib.suppress(Exception):  # best effort: a test may have enabled versioning or deleted it
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)


@pytest.fixture
def source_db(pg_source: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a fresh empty database on ``pg_source``; dropped afterwards (with its replication slots)."""
    name = _unique_name(request, "src")
    pg_source.create_database(name)
    yield name
    pg_source.drop_database(name)


@pytest.fixture
def target_db(pg_target: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a fresh empty database on ``pg_target``; dropped afterwards."""
    name = _unique_name(request, "tgt")
    pg_target.create_database(name)
    yield name
    pg_target.drop_database(name)


def missing_part(reason: str) -> None:
    """A real part a test needs is not there (root, a mount, a dataset): skip on a developer's machine, but
    fail in CI, where the setup provides it and a silent skip would hide the test on every run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@pytest.fixture
def unavailable() -> Callable[[str], None]:
    """:func:`missing_part`, for tests to call."""
    return missing_part


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared sample datasets folder (with load.sh).

    Outside CI a checkout without it skips the tests that need it (and ``-ra`` lists them); in CI the
    folder is part of the setup, so its absence is a failure, not a silent skip.
    """
    path = datasets_dir()
    if path is None:
        where = "set BULKMIG_DATASETS or provide ../shared/datasets next to the repository"
        if os.environ.get("CI"):
            pytest.fail(f"shared sample datasets missing in CI: {where}")
        pytest.skip(f"shared sample datasets not found: {where}")
    return path


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A throwaway MariaDB with row-based binlog (``log_bin``, ROW, FULL, server_id=1), password user over TCP."""
    with MariaDBServer(name="mariadb", keep=KEEP) as server:
        yield server


@pytest.fixture
def mysql_db(mariadb: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a fresh empty database on ``mariadb``; dropped afterwards (MySQL names stop at 64 chars)."""
    name = _unique_name(request, "my")
    mariadb.create_database(name)
    yield name
    mariadb.drop_database(name)


# ---------------------------------------------------------------------------------------- whole flows


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Flow:
    """One migration's task file and the environment its commands run in (tests/e2e, tests/faults)."""

    task: Path
    env: dict[str, str]
    volume: Path
    bucket: str
    secrets: list[str]

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bulkmig.cli", *args]

    def run(self, *args: str, timeout: int = 300) -> Run:
        """The CLI's exit code and output; a command still running after ``timeout`` is killed and
        reported as exit -9 with what it printed, so a hang fails the test with its evidence."""
        try:
            proc = subprocess.run(
                self.argv(*args),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:

            def text(value: str | bytes | None) -> str:
                return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

            return Run(-9, text(exc.stdout), text(exc.stderr) + f"\n[killed after {timeout}s]")
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def bulkmig(self, command: str, *args: str, timeout: int = 300) -> Run:
        """``bulkmig <command> --task <task> ...`` (``command`` may be ``volume import``)."""
        return self.run(*command.split(), "--task", str(self.task), *args, timeout=timeout)

    def start(
        self, command: str, *args: str, log: Path, task: bool = True, quiet: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start ``bulkmig <command> --task <task> ...`` in its own process group, output to ``log``
        (``task=False``: without ``--task``, for ``volume seal`` and ``volume verify``; ``quiet=False``
        keeps the status lines, for tests that read them).

        Its own group, so a kill takes the stage's helpers (pg_dump, psql) down with it, as a crash of
        the machine or the container would.
        """
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(
                    *(("--quiet",) if quiet else ()),
                    *command.split(),
                    *(("--task", str(self.task)) if task else ()),
                    *args,
                ),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture
def make_flow(pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path) -> Callable[..., Flow]:  # noqa: ANN001
    """``make_flow(endpoint_url=..., **task_overrides)``: a task file wired to this test's databases and
    bucket.  A dict override merges into the default section; ``None`` removes a key."""

    def make(endpoint_url: str | None = None, **overrides: Any) -> Flow:
        doc: dict[str, Any] = {
            "source": pg_source.url(source_db),
            "target": pg_target.url(target_db),
            "migration_type": "full-load",
            "volume": "./volume",
            "bucket": f"s3://{bucket}/shop",
            "s3": {"endpoint_url": endpoint_url or s3_server.endpoint_url, "region": "us-east-1"},
            "settings": {"workers": 2},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            elif value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        task = tmp_path / "task.yaml"
        task.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
        env.update(s3_server.env())
        env["AWS_ENDPOINT_URL_S3"] = doc["s3"]["endpoint_url"]  # a fault proxy, when given: no path around it
        env["BULKMIG_SOURCE_PASSWORD"] = pg_source.password
        env["BULKMIG_TARGET_PASSWORD"] = pg_target.password
        return Flow(task, env, tmp_path / "volume", doc["bucket"], [pg_source.password, pg_target.password])

    return make


@pytest.fixture
def make_mysql_flow(make_flow, mariadb, mysql_db) -> Callable[..., Flow]:  # noqa: ANN001
    """``make_flow`` with a MariaDB database as the source (a MySQL → PostgreSQL task): ``mysql_db``, or
    ``database=`` (a dataset's own database, e.g. ``sakila``, which load.sh always creates)."""

    def make(database: str | None = None, **overrides: Any) -> Flow:
        flow = make_flow(source=mariadb.url(database or mysql_db), **overrides)
        flow.env["BULKMIG_SOURCE_PASSWORD"] = mariadb.password
        flow.secrets.append(mariadb.password)
        return flow

    return make
