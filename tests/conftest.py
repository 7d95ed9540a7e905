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
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkmig.devservers import MariaDBServer, MotoS3Server, PostgresServer, datasets_dir, find_pg_bindir

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
