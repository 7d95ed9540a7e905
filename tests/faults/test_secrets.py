"""Secrets (issue 7, item 7): no password or key in anything bulkmig writes or shows, and TLS settings
reach the drivers.

The first test runs a whole full load with distinctive passwords (quotes, spaces and URL delimiters in
them, so every escaping path is exercised) and an encryption key, plus failing commands, then greps every
byte bulkmig wrote or showed — stdout/stderr (with ``--debug`` tracebacks), the volume tree, every object
and its metadata in the bucket, bulkmig's tables on the target — and the command line and name of every
process of the running stages (bulkmig and the pg_dump/psql it starts), sampled from /proc while they run.
Their environment is the operating system's business (that is where the passwords are handed over).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from psycopg import sql

from bulkmig.core.errors import EXIT_CONFIG, EXIT_CONNECT
from bulkmig.demo.servers import MariaDBServer, PostgresServer
from bulkmig.testing import pki

# ------------------------------------------------------------------------------------------- no leaks


@dataclass
class Login:
    user: str
    password: str


def _role(server: PostgresServer, password: str) -> Login:
    user = f"mig_{uuid.uuid4().hex[:10]}"
    server.execute(
        "postgres", sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(user), password)
    )
    return Login(user, password)


def _drop_role(server: PostgresServer, database: str, login: Login) -> None:
    server.execute(database, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login.user)))
    server.execute("postgres", sql.SQL("DROP ROLE {}").format(sql.Identifier(login.user)))


@pytest.fixture
def logins(pg_source, pg_target, source_db, target_db) -> Iterator[tuple[Login, Login]]:  # noqa: ANN001
    """A source and a target login whose passwords are distinctive and hard to escape."""
    tag = secrets.token_hex(6)
    source = _role(pg_source, f'Src\'Pw "{tag}" %40:/?#&=\\x')
    target = _role(pg_target, f"Tgt Pw'{tag}'@host:5432/db?sslmode=disable")
    yield source, target
    _drop_role(pg_source, source_db, source)
    _drop_role(pg_target, target_db, target)


def _forms(secret: str) -> list[bytes]:
    """The secret as it could end up in bytes: as is, URL-encoded, and libpq-conninfo-escaped."""
    forms = {secret, quote(secret, safe=""), secret.replace("\\", "\\\\").replace("'", "\\'")}
    return [f.encode() for f in forms]


def _session_processes(proc: subprocess.Popen[bytes]) -> set[bytes]:
    """Until ``proc`` ends: the command line and name of every process in its session (it and its children)."""
    seen: set[bytes] = set()
    while proc.poll() is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) != proc.pid:  # the session id: the stage's process group leader
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ")
                with open(f"/proc/{pid}/comm", "rb") as f:
                    comm = f.read().strip()
            except (OSError, IndexError, ValueError):
                continue  # it ended meanwhile
            seen.add(comm + b": " + cmdline)
        time.sleep(0.005)
    return seen


def test_no_secret_in_anything_written_or_shown(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server, bucket, logins, tmp_path: Path
) -> None:  # noqa: ANN001
    source, target = logins
    pg_source.execute(
        source_db,
        "CREATE TABLE people (id int PRIMARY KEY, email text, born date);"
        "INSERT INTO people SELECT g, 'p' || g || '@example.org', date '1970-01-01' + g"
        " FROM generate_series(1, 3000) g;"
        "CREATE SEQUENCE tickets; SELECT nextval('tickets');",
    )
    private = tmp_path / "private"  # the operator's files: never part of what bulkmig writes
    private.mkdir()
    key_hex = secrets.token_hex(32)
    (private / "volume.key").write_text(key_hex)
    (private / "volume.key").chmod(0o600)
    (private / "target.pw").write_text(target.password + "\n")
    flow = make_flow(
        source=pg_source.url(source_db, user=source.user),
        target=pg_target.url(target_db, user=target.user),
        target_password_file=str(private / "target.pw"),
        settings={"workers": 2, "max_part_bytes": "64kB", "encryption": {"key_file": str(private / "volume.key")}},
    )
    flow.env["BULKMIG_SOURCE_PASSWORD"] = source.password
    del flow.env["BULKMIG_TARGET_PASSWORD"]  # the target's comes from its password file
    wrong = f"Wrong'Pw {secrets.token_hex(6)}"
    shown: list[bytes] = []
    processes: set[bytes] = set()

    def staged(command: str) -> None:
        log = tmp_path / f"{command.replace(' ', '-')}.log"
        proc = flow.start(command, log=log)
        processes.update(_session_processes(proc))
        assert proc.wait(60) == 0, log.read_text()
        shown.append(log.read_bytes())

    def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> None:
        saved = dict(flow.env)
        flow.env.update(env or {})
        result = flow.run(*args)
        flow.env = saved
        assert result.code == code, (args, result.text)
        assert "Traceback" not in result.text or "--debug" in args
        shown.append(result.text.encode())

    task = ("--task", str(flow.task))
    staged("plan")
    staged("extract")
    run("volume", "seal", str(flow.volume))
    run("volume", "verify", str(flow.volume))
    run("volume", "import", *task)
    staged("load")
    run("validate", "--json", *task)
    run("status", *task)
    run("status", "--json", *task)
    # Failing commands: a wrong password, with and without --debug (tracebacks are shown then).
    run("load", *task, code=EXIT_CONNECT, env={"BULKMIG_TARGET_PASSWORD": wrong})
    run("--debug", "load", *task, code=EXIT_CONNECT, env={"BULKMIG_TARGET_PASSWORD": wrong})
    run("--debug", "validate", *task, code=EXIT_CONNECT, env={"BULKMIG_SOURCE_PASSWORD": wrong})
    # A task file that holds a password is refused without echoing it.
    leaky = yaml.safe_load(flow.task.read_text())
    leaky["source"] = f"postgresql://{source.user}:{quote(source.password, safe='')}@127.0.0.1:{pg_source.port}/x"
    leaky["target"] = f"{pg_target.url(target_db)}?sslpassword={quote(wrong, safe='')}"
    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(leaky))
    run("plan", "--task", str(tmp_path / "leaky.yaml"), code=EXIT_CONFIG)

    written: dict[str, bytes] = {}
    for path in flow.volume.rglob("*"):
        if path.is_file():
            written[f"volume:{path.relative_to(flow.volume)}"] = path.read_bytes()
    client = s3_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=obj["Key"])
            written[f"s3:{obj['Key']}"] = body["Body"].read() + repr(body["Metadata"]).encode()
    for (table,) in pg_target.execute(target_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'bulkmig'"):
        rows = pg_target.execute(target_db, sql.SQL("SELECT t::text FROM bulkmig.{} t").format(sql.Identifier(table)))
        written[f"target:bulkmig.{table}"] = "\n".join(r[0] for r in rows).encode()
    for n, blob in enumerate(shown):
        written[f"shown:{n}"] = blob
    for n, line in enumerate(sorted(processes)):
        written[f"process:{n}"] = line

    # The run really happened and really was looked at.
    assert (
        any(k.endswith(".parquet") for k in written if k.startswith("s3:")) and "target:bulkmig.loaded_parts" in written
    )
    assert any(b"bulkmig.cli" in line for line in processes) and any(b"pg_dump" in line for line in processes)
    assert b"refused the password" in b"".join(shown) and b"the URL contains a password" in b"".join(shown)
    for name, secret in (("source", source.password), ("target", target.password), ("wrong", wrong), ("key", key_hex)):
        for form in _forms(secret):
            leaks = [where for where, blob in written.items() if form in blob]
            assert not leaks, f"the {name} secret ({form!r}) appears in {leaks}"


# ------------------------------------------------------------------------------------ TLS pass-through


def _flow(make_flow, source: str, password: str):  # noqa: ANN001, ANN202 - a tests/conftest.py Flow
    """A flow whose source is ``source`` (a URL with TLS options), logging in with ``password``."""
    flow = make_flow(source=source)
    flow.env["BULKMIG_SOURCE_PASSWORD"] = password
    return flow


def test_sslmode_require_against_a_server_without_ssl(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    flow = make_flow(source=pg_source.url(source_db) + "?sslmode=require")
    one_error(
        flow.bulkmig("plan"),
        EXIT_CONNECT,
        "?sslmode=require: the server does not support SSL, but sslmode=require requires it",
        "enable ssl on the server",
    )


def _write_pki(directory: Path) -> list[Path]:
    """Write ca.pem (a CA), other-ca.pem (a CA that signed nothing here) and server.crt / server.key (signed
    by ca.pem for 127.0.0.1) into ``directory``; returns their paths."""
    ca_key, other_key, server_key = (pki.new_key() for _ in range(3))
    ca = pki.certificate("bulkmig test CA", ca_key)
    other = pki.certificate("another CA", other_key)
    leaf = pki.certificate("127.0.0.1", server_key, ca, ca_key)
    files = {
        "ca.pem": pki.pem(ca),
        "other-ca.pem": pki.pem(other),
        "server.crt": pki.pem(leaf),
        "server.key": pki.key_pem(server_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return [directory / name for name in files]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[PostgresServer, Path, Path]]:
    """A PostgreSQL that accepts TLS connections only (hostssl; plain TCP is rejected), its CA file, and
    another CA's file that did not sign its certificate."""
    _write_pki(tmp_path)
    with PostgresServer(name="tls") as server:
        owner = server.datadir.stat()
        for name in ("server.crt", "server.key"):
            path = server.datadir / name
            shutil.copyfile(tmp_path / name, path)
            path.chmod(0o600)
            os.chown(path, owner.st_uid, owner.st_gid)
        hba = server.datadir / "pg_hba.conf"
        hba.write_text(
            hba.read_text().replace("host    all", "hostssl all").replace("host    replication", "hostssl replication")
        )
        server.execute("postgres", "ALTER SYSTEM SET ssl = on")
        server.execute("postgres", "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while server.execute("postgres", "SHOW ssl")[0][0] != "on" and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server, tmp_path / "ca.pem", tmp_path / "other-ca.pem"


def test_sslrootcert_reaches_every_connection(make_flow, tls_server, tmp_path: Path, one_error) -> None:  # noqa: ANN001
    server, ca, other_ca = tls_server
    server.execute("postgres", "CREATE DATABASE shop")
    server.execute("shop", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    base = server.url("shop")

    # Without TLS the server refuses us (so a success below used TLS on every connection).
    plain = _flow(make_flow, base + "?sslmode=disable", server.password)
    one_error(plain.bulkmig("plan"), EXIT_CONNECT, "accepts only encrypted connections", "sslmode=verify-full")

    # Another CA: libpq's verification fails, cleanly, because sslrootcert reached it.
    wrong = _flow(make_flow, f"{base}?sslmode=verify-full&sslrootcert={other_ca}", server.password)
    one_error(
        wrong.bulkmig("plan"), EXIT_CONNECT, "the TLS handshake failed", "certificate verify failed", "sslrootcert"
    )

    # The right CA, full verification of the certificate and the host: psycopg, pg_dump (plan) and the
    # Arrow readers (extract) all connect.
    flow = _flow(make_flow, f"{base}?sslmode=verify-full&sslrootcert={ca}", server.password)
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    assert len(list(flow.volume.glob("data/public/t/part-*.parquet"))) == 1


# ------------------------------------------------------------------------------------- MySQL TLS options


def test_mysql_ssl_options_reach_the_driver(make_flow, mariadb, mysql_db, tmp_path: Path, one_error) -> None:  # noqa: ANN001
    """The throwaway MariaDB has no TLS: asking for it must fail by name, not fall back to plain text."""
    pytest.importorskip("bulkmig.engines.mysql.source", reason="the MySQL source engine (issue 5) is not there yet")
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY)")
    for query, needle in (
        ("ssl_mode=REQUIRED", "TLS"),
        (f"ssl_mode=VERIFY_CA&ssl_ca={tmp_path / 'missing-ca.pem'}", "TLS"),
    ):
        flow = _flow(make_flow, f"{mariadb.url(mysql_db)}?{query}", mariadb.password)
        one_error(flow.bulkmig("plan"), EXIT_CONNECT, needle)
        assert not (flow.volume / "plan.json").exists()


@pytest.fixture
def tls_mariadb() -> Iterator[tuple[MariaDBServer, Path, Path]]:
    """A MariaDB with TLS (certificate for 127.0.0.1), its CA file, and another CA's file."""
    # The server runs as its own user: the files live in a directory it can read, removed afterwards.
    files = Path(tempfile.mkdtemp(prefix="bulkmig-tls-"))
    try:
        files.chmod(0o755)
        for path in _write_pki(files):
            path.chmod(0o644)
        settings = {"ssl_cert": str(files / "server.crt"), "ssl_key": str(files / "server.key")}
        with MariaDBServer(name="mariadb-tls", settings=settings) as server:
            yield server, files / "ca.pem", files / "other-ca.pem"
    finally:
        shutil.rmtree(files, ignore_errors=True)


def test_mysql_ssl_ca_reaches_the_driver(make_flow, tls_mariadb, one_error) -> None:  # noqa: ANN001
    pytest.importorskip("bulkmig.engines.mysql.source", reason="the MySQL source engine (issue 5) is not there yet")
    server, ca, other_ca = tls_mariadb
    server.create_database("shop")
    server.execute("shop", "CREATE TABLE t (id int PRIMARY KEY, v varchar(10)); INSERT INTO t VALUES (1, 'one')")
    base = server.url("shop")

    wrong = _flow(make_flow, f"{base}?ssl_mode=VERIFY_IDENTITY&ssl_ca={other_ca}", server.password)
    one_error(wrong.bulkmig("plan"), EXIT_CONNECT, "the TLS handshake failed", "ssl_ca")

    # The right CA with full verification: every connection is TLS (the engine refuses a plain-text
    # session when ssl_mode asks for TLS), and plan and extract go through.
    flow = _flow(make_flow, f"{base}?ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}", server.password)
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    assert len(list(flow.volume.glob("data/shop/t/part-*.parquet"))) == 1
