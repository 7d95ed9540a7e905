"""Throwaway real servers for the tests, ``make demo`` and ``make bench``.

bulkmig is tested against real parts (DESIGN §7), never against mocks of a driver: a PostgreSQL cluster
started with ``initdb``/``pg_ctl`` in a temp directory, and moto's S3 server speaking real HTTP on
loopback.  Both live only as long as the object that started them, listen only on 127.0.0.1 and pick a
free port, so several test sessions (or engineers) can share one machine.

Example::

    with PostgresServer() as pg, MotoS3Server() as s3:
        pg.create_database("src")
        load_dataset(pg, "pagila", "src")
        s3.create_bucket("staging")
        print(pg.url("src"), s3.endpoint_url)
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bulkmig.core.errors import BulkmigError

if TYPE_CHECKING:
    from botocore.client import BaseClient

LOOPBACK = "127.0.0.1"

# The system user a root-started cluster runs as when there is no ``postgres`` user (initdb refuses root).
FALLBACK_SERVICE_USER = "bulkmig"

# Server settings for a throwaway cluster.  Durability is switched off because a test cluster is
# thrown away anyway and fsync dominates small-test run time; ``wal_level=logical`` and the slot and
# sender limits are what capture needs.  Every one can be overridden with ``PostgresServer(settings=…)``.
DEFAULT_PG_SETTINGS: dict[str, str | int | bool] = {
    "listen_addresses": LOOPBACK,
    "max_connections": 100,
    "shared_buffers": "128MB",
    "wal_level": "logical",
    "max_replication_slots": 20,
    "max_wal_senders": 20,
    "fsync": False,
    "synchronous_commit": False,
    "full_page_writes": False,
    "password_encryption": "scram-sha-256",
}

# Local (socket) connections are trusted so the owner of the temp dir can always get in; every TCP
# connection must prove its password with SCRAM, so wrong-password tests fail for real.
PG_HBA = """\
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
"""

_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")
_BIND_FAILED = ("could not bind", "Address already in use", "could not create any TCP/IP sockets")


class DevServerError(BulkmigError):
    """A throwaway server could not be started or used; the message carries the server's own log."""


def repo_root() -> Path:
    """The checkout this module lives in (meaningful for an editable install, which tests and demos use)."""
    return Path(__file__).resolve().parents[2]


def datasets_dir() -> Path | None:
    """Where the shared sample datasets live, or None when this checkout has none.

    ``BULKMIG_DATASETS`` wins so a checkout elsewhere can point at them; otherwise they sit next to the
    repository in ``../shared/datasets``, which is how the team's machines and CI lay them out.
    """
    env = os.environ.get("BULKMIG_DATASETS")
    candidate = Path(env) if env else repo_root().parent / "shared" / "datasets"
    return candidate if (candidate / "load.sh").is_file() else None


def free_port() -> int:
    """A port nobody listens on right now; servers retry with a new one if they lose the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def find_pg_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``BULKMIG_PG_BINDIR`` first, then ``pg_config --bindir`` (only if the server binaries really are
    there: on Debian pg_config comes from libpq-dev and may belong to a client-only version), then the
    highest ``/usr/lib/postgresql/*/bin`` (Debian's layout), then whatever ``initdb`` is on PATH.
    """

    def has_server(d: Path) -> bool:
        return all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres"))

    candidates: list[Path] = []
    if env := os.environ.get("BULKMIG_PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))

    def version(d: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", Path(d).parent.name)) or (0,)

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += [Path(d) for d in debian]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if has_server(d):
            return d
    raise DevServerError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found",
        "install the Debian package 'postgresql' (.ci/run does) or set BULKMIG_PG_BINDIR",
    )


def _service_user() -> str | None:
    """The system user to run initdb/pg_ctl as, or None to run them as ourselves.

    initdb and postgres refuse to run as root.  CI and containers run as root, so the server then runs
    as ``postgres`` (the Debian package's user) or, failing that, a ``bulkmig`` system user created here.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SERVICE_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    done = subprocess.run([*cmd, FALLBACK_SERVICE_USER], capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: created meanwhile by a parallel session
        raise DevServerError(
            f"cannot create system user {FALLBACK_SERVICE_USER!r} to run PostgreSQL: {done.stderr.strip()}",
            "run the tests as a non-root user, or create a 'postgres' system user",
        )
    return FALLBACK_SERVICE_USER


def _conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class _Throwaway:
    """What every throwaway server shares: a context manager, and a temp dir removed unless ``keep``."""

    keep: bool = False
    _tmp: Path | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _kept_note(self) -> str:
        return f" (kept in {self.tmpdir})" if self.keep else " (its temp dir is removed; keep=True keeps it)"

    def _cleanup_dir(self) -> None:
        if self._tmp is not None and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _end_child(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM (the server's normal shutdown), SIGKILL if it has not exited after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class PostgresServer(_Throwaway):
    """A throwaway PostgreSQL cluster on 127.0.0.1, superuser ``postgres`` with a random password.

    The URL it hands out never contains the password (tasks must take secrets from the environment);
    ``env()`` and ``conninfo()`` carry it for subprocesses and test code.
    """

    host = LOOPBACK
    user = "postgres"

    def __init__(
        self,
        *,
        settings: Mapping[str, str | int | bool] | None = None,
        port: int | None = None,
        bindir: str | Path | None = None,
        keep: bool = False,
        name: str = "pg",
    ) -> None:
        """``settings`` override DEFAULT_PG_SETTINGS; ``port`` pins the port (else a free one);
        ``keep`` leaves the temp dir (data + server.log) behind after ``stop()`` for post-mortems."""
        merged = {**DEFAULT_PG_SETTINGS, **(settings or {})}
        for key in merged:
            if not _SETTING_NAME.match(key):
                raise ValueError(f"not a PostgreSQL setting name: {key!r}")
        self.settings: dict[str, str | int | bool] = merged
        self.bindir: Path = Path(bindir) if bindir else find_pg_bindir()
        self.password: str = secrets.token_urlsafe(24)
        self.port: int = port or 0
        self.keep = keep
        self.name = name
        self._fixed_port = port is not None
        self._tmp: Path | None = None
        self._run_as: str | None = None
        self._running = False

    # ------------------------------------------------------------------ paths

    @property
    def tmpdir(self) -> Path:
        """The temp dir holding ``data/``, ``server.log`` and the unix socket."""
        if self._tmp is None:
            raise DevServerError(f"PostgreSQL server {self.name!r} is not started", "call start() first")
        return self._tmp

    @property
    def datadir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        return self.tmpdir / "server.log"

    def _exe(self, name: str) -> str:
        local = self.bindir / name
        if local.is_file():
            return str(local)
        found = shutil.which(name)
        if not found:
            raise DevServerError(f"{name} not found in {self.bindir} nor on PATH", "install postgresql-client")
        return found

    # ------------------------------------------------------------------ lifecycle

    def _as_service(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the service user, from the temp dir (the service user may not be
        able to read our cwd, which initdb and pg_ctl stumble over), without our PG* variables."""
        cmd = ["runuser", "-u", self._run_as, "--", *argv] if self._run_as else argv
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            cmd, cwd=self.tmpdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._as_service([self._exe("pg_ctl"), "-D", str(self.datadir), *args])

    def start(self) -> Self:
        """initdb a fresh cluster in a new temp dir and start it; returns once it accepts logins."""
        if self._running:
            return self
        self._run_as = _service_user()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bulkmig-{self.name}-"))
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self._cleanup_dir()
            raise
        self._running = True
        atexit.register(self.stop)
        return self

    def _initdb(self) -> None:
        pwfile = self.tmpdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._run_as:
            info = pwd.getpwnam(self._run_as)
            for p in (self.tmpdir, pwfile):
                os.chown(p, info.pw_uid, info.pw_gid)
        initdb = [self._exe("initdb"), "-D", str(self.datadir), "-U", self.user, "-E", "UTF8", "--locale=C.UTF-8"]
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        # --no-sync: the cluster is thrown away, and syncing doubles initdb's time.
        done = self._as_service([*initdb, *auth, "--no-sync", "--no-instructions"])
        pwfile.unlink()
        if done.returncode != 0:
            raise DevServerError(
                f"initdb failed (as {self._run_as or 'current user'}): {done.stderr.strip()[-2000:]}",
                f"the service user must be able to reach {self.tmpdir.parent}; set TMPDIR to a world-"
                "readable directory such as /tmp"
                if self._run_as
                else "check the PostgreSQL installation",
            )
        (self.datadir / "pg_hba.conf").write_text(PG_HBA)
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# added by bulkmig.demo.servers\ninclude 'bulkmig.conf'\n")

    def _write_settings(self) -> None:
        values = {
            **self.settings,
            "port": self.port,
            "unix_socket_directories": str(self.tmpdir),
        }
        lines = [f"{k} = {_conf_value(v)}" for k, v in values.items()]
        path = self.datadir / "bulkmig.conf"
        path.write_text("\n".join(lines) + "\n")
        if self._run_as:
            info = pwd.getpwnam(self._run_as)
            for p in (path, self.datadir / "pg_hba.conf", self.datadir / "postgresql.conf"):
                os.chown(p, info.pw_uid, info.pw_gid)

    def _start_server(self) -> None:
        """pg_ctl start, retrying with a new port if another process grabbed ours in between."""
        attempts = 1 if self._fixed_port else 4
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            self._write_settings()
            done = self._pg_ctl("-l", str(self.logfile), "-w", "-t", "60", "start")
            if done.returncode == 0:
                self._wait_ready()
                return
            log = _tail(self.logfile)
            if attempt + 1 < attempts and any(s in log for s in _BIND_FAILED):
                continue
            raise DevServerError(
                f"PostgreSQL {self.name!r} did not start on port {self.port}: {done.stderr.strip()}\n"
                f"--- tail of server.log{self._kept_note()} ---\n{log}",
                "read the server log above",
            )

    def _wait_ready(self, timeout: float = 30) -> None:
        """pg_ctl -w already waited; logging in over TCP also proves the password and pg_hba work."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.conninfo("postgres"), connect_timeout=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DevServerError(
                        f"PostgreSQL {self.name!r} started but refuses logins: {exc}\n"
                        f"--- tail of server.log{self._kept_note()} ---\n{_tail(self.logfile)}",
                        "read the server log above",
                    ) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (disconnects clients), then remove the temp dir unless ``keep``."""
        atexit.unregister(self.stop)
        if self._running:
            self._running = False
            done = self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
            if done.returncode != 0:
                self._kill_postmaster()
        self._cleanup_dir()

    def shut_down(self, mode: str = "fast") -> None:
        """Stop the server but keep its data and port, for fault tests: ``fast`` ends every session with
        SQLSTATE 57P01 (a restart or failover), ``immediate`` is a crash.  :meth:`start_again` undoes it."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pg_ctl stop mode must be smart, fast or immediate, not {mode!r}")
        done = self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")
        if done.returncode != 0:
            raise DevServerError(f"PostgreSQL {self.name!r} did not stop: {done.stderr.strip()}", "read server.log")

    def start_again(self) -> None:
        """Start a server stopped by :meth:`shut_down` on the same data and port; returns once it accepts logins."""
        done = self._pg_ctl("-l", str(self.logfile), "-w", "-t", "60", "start")
        if done.returncode != 0:
            raise DevServerError(
                f"PostgreSQL {self.name!r} did not start again on port {self.port}: {done.stderr.strip()}\n"
                f"--- tail of server.log ---\n{_tail(self.logfile)}",
                "read the server log above",
            )
        self._wait_ready()

    def restart(self, down: float = 0.0, mode: str = "fast") -> None:
        """:meth:`shut_down`, stay down for ``down`` seconds, :meth:`start_again`."""
        self.shut_down(mode)
        time.sleep(down)
        self.start_again()

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl cannot stop the server: SIGQUIT is PostgreSQL's immediate shutdown."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresServer {self.name} {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ connecting

    def url(self, dbname: str, user: str | None = None) -> str:
        """``postgresql://user@127.0.0.1:port/db`` — no password: give it via ``env()`` / PGPASSWORD."""
        who = quote(user or self.user, safe="")
        return f"postgresql://{who}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def conninfo(self, dbname: str, **params: str) -> str:
        """libpq ``key=value`` string WITH the password, for test code (e.g. ``replication="database"``)."""
        return make_conninfo(
            host=self.host,
            port=str(self.port),
            user=self.user,
            password=self.password,
            dbname=dbname,
            **params,
        )

    def env(self) -> dict[str, str]:
        """PG* variables that point a subprocess (psql, load.sh, the bulkmig CLI) at this cluster."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
        }

    def execute(self, dbname: str, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL in autocommit (so CREATE DATABASE and friends work); returns the last result's rows.

        Without ``params`` several ``;``-separated statements may be sent at once.
        """
        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows: list[tuple[Any, ...]] = []
            while True:
                if cur.description is not None:
                    rows = cur.fetchall()
                if not cur.nextset():
                    return rows

    def create_database(self, name: str) -> None:
        self.execute("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop even while clients are connected, and drop the database's replication slots first.

        A logical slot pins its database (DROP DATABASE refuses it even WITH (FORCE)), and leaked slots
        would soon exhaust ``max_replication_slots`` for the whole test session.
        """
        self.execute(
            "postgres",
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE database = %s AND active_pid IS NOT NULL",
            (name,),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.execute(
                    "postgres",
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                    (name,),
                )
                break
            except psycopg.errors.ObjectInUse:  # the terminated walsender has not exited yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.execute("postgres", sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def psql_file(self, dbname: str, path: str | Path) -> str:
        """Run an SQL script with psql, stopping at the first error (which is raised); returns stdout."""
        # dbname goes in as a conninfo so a name with '=' or spaces is not misread; the password via env.
        argv = [self._exe("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", make_conninfo(dbname=dbname)]
        done = subprocess.run(
            [*argv, "-f", str(path)], env={**os.environ, **self.env()}, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DevServerError(
                f"psql failed on {path} in database {dbname!r}: {done.stderr.strip()[-4000:]}",
                "fix the script",
            )
        return done.stdout


class MotoS3Server(_Throwaway):
    """moto's S3 server as a real HTTP endpoint on loopback, in a child process.

    A child process rather than an in-process thread so the code under test talks to S3 exactly as it
    would in production (HTTP, signing, retries) and can itself be a subprocess pointed at ``env()``.
    Credentials are always dummies: a fake endpoint must never see a developer's real AWS keys.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        port: int | None = None,
        access_key: str = "testing",
        secret_key: str = "testing",
        region: str = "us-east-1",
        keep_log: bool = False,
    ) -> None:
        self.port: int = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.keep_log = keep_log
        self.keep = keep_log  # the log is all a moto server leaves behind
        self._fixed_port = port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def logfile(self) -> Path | None:
        return self._tmp / "moto.log" if self._tmp else None

    def env(self) -> dict[str, str]:
        """AWS variables pointing a subprocess (boto3 ≥ 1.28 honours AWS_ENDPOINT_URL_S3) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def start(self) -> Self:
        """Start ``python -m moto.server`` and return once it answers HTTP."""
        if self._proc is not None:
            return self
        if importlib.util.find_spec("moto") is None:
            raise DevServerError(
                "moto (the S3 server the demo and the tests run on loopback) is not installed",
                "pip install 'bulkmig[demo]' (or '.[test]' in a checkout)",
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="bulkmig-moto-"))
        attempts = 1 if self._fixed_port else 4
        try:
            for attempt in range(attempts):
                if not self._fixed_port:
                    self.port = free_port()
                if self._spawn_and_wait():
                    break
                log = _tail(self.logfile) if self.logfile else ""
                if attempt + 1 < attempts and "already in use" in log:
                    continue
                raise DevServerError(
                    f"moto S3 server did not start on port {self.port}\n--- tail of its log ---\n{log}",
                    "check that moto[server] (flask, werkzeug) is installed: pip install 'bulkmig[demo]'",
                )
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _spawn_and_wait(self, timeout: float = 60) -> bool:
        assert self.logfile is not None
        # MOTO_PORT is what moto puts into URLs it generates; an inherited one would point elsewhere.
        child_env = {**os.environ, **self.env(), "MOTO_PORT": str(self.port)}
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer means the server is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self._terminate()
        return False

    def _terminate(self) -> None:
        _end_child(self._proc, 10)
        self._proc = None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._terminate()
        self._cleanup_dir()

    def client(self) -> BaseClient:
        """A boto3 S3 client for this server, with path-style addressing (no DNS for bucket names)."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<MotoS3Server {self.endpoint_url} {state}>"


def find_mariadbd() -> Path:
    """The MariaDB/MySQL server binary: ``BULKMIG_MYSQLD`` first, then ``mariadbd`` / ``mysqld`` on PATH or in
    /usr/sbin (Debian keeps it off a normal user's PATH)."""
    candidates: list[str | None] = [os.environ.get("BULKMIG_MYSQLD")]
    for name in ("mariadbd", "mysqld"):
        candidates += [shutil.which(name), f"/usr/sbin/{name}"]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    raise DevServerError(
        "no MariaDB/MySQL server binary (mariadbd, mysqld) found",
        "install the Debian package 'mariadb-server' (.ci/run does) or set BULKMIG_MYSQLD",
    )


def _mysql_service_user() -> str | None:
    """The system user a root-started mariadbd runs as: ``mysql`` (the package's user), else the one
    PostgreSQL uses; None when we are not root.  mariadbd refuses to run as root without ``--user``."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        pwd.getpwnam("mysql")
        return "mysql"
    return _service_user()


# Server options for a throwaway MariaDB.  The binlog settings are what MySQL CDC needs (DESIGN §6,
# issue 6); durability is off for the same reason as PostgreSQL's fsync=off (the datadir is thrown away,
# and flushes dominate small-test time: bootstrap takes 0.7 s instead of 3.9 s).  The charset matches
# Debian's packaged server (utf8mb4), which the datasets' READMEs were checked against.  Every one can be
# overridden with ``MariaDBServer(settings=…)``; a value of None removes the option.
DEFAULT_MARIADB_SETTINGS: dict[str, str | int | bool | None] = {
    "bind_address": LOOPBACK,
    "skip_name_resolve": True,
    "server_id": 1,
    "log_bin": "binlog",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    # The datasets create functions while the binlog is on; a throwaway server need not guard replicas.
    "log_bin_trust_function_creators": True,
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_general_ci",
    "innodb_flush_method": "nosync",
    "innodb_flush_log_at_trx_commit": 0,
    "innodb_doublewrite": False,
    "sync_binlog": 0,
    "innodb_buffer_pool_size": "128M",
    "innodb_log_file_size": "16M",
    "performance_schema": False,
    "max_connections": 200,
}

# Options that must be equal at bootstrap and at start (a different redo log size would be recreated).
_MARIADB_BOOTSTRAP_KEYS = (
    "innodb_flush_method",
    "innodb_doublewrite",
    "innodb_buffer_pool_size",
    "innodb_log_file_size",
)
_MARIADB_BIND_FAILED = (
    "Address already in use",
    "Can't start server: Bind on TCP/IP port",
    "Do you already have another",
)


def _mysql_option(key: str, value: str | int | bool) -> str:
    if not _SETTING_NAME.match(key):
        raise ValueError(f"not a MariaDB option name: {key!r}")
    flag = "--" + key.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return f"{flag}=0"
    return f"{flag}={value}"


def _mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MariaDBServer(_Throwaway):
    """A throwaway MariaDB (or MySQL) server on 127.0.0.1 with row-based binlog, for the MySQL engine.

    ``mariadbd`` runs in the foreground as our child, with its own datadir, unix socket and free TCP port,
    so several sessions share a machine and ``stop()`` (or the end of the process) leaves nothing behind.
    Root is reachable only over the socket; tests and tasks log in over TCP as ``user`` with ``password``,
    which has every privilege (replication included, as capture will need).  The URL never carries the
    password; ``env()`` gives it to subprocesses the way the mysql client reads it (MYSQL_PWD).

    Example::

        with MariaDBServer() as my:
            load_dataset(my, "sakila-mysql", "sakila")
            my.execute("sakila", "SELECT count(*) FROM film")   # [(1000,)]
    """

    host = LOOPBACK
    user = "bulkmig"

    def __init__(
        self,
        *,
        settings: Mapping[str, str | int | bool | None] | None = None,
        port: int | None = None,
        mysqld: str | Path | None = None,
        keep: bool = False,
        name: str = "mariadb",
    ) -> None:
        """``settings`` override DEFAULT_MARIADB_SETTINGS (None drops one); ``port`` pins the port; ``keep``
        leaves the temp dir (datadir, binlogs, error log) behind after ``stop()`` for post-mortems."""
        merged = {**DEFAULT_MARIADB_SETTINGS, **(settings or {})}
        self.settings: dict[str, str | int | bool] = {k: v for k, v in merged.items() if v is not None}
        for key in self.settings:
            _mysql_option(key, "x")  # validates the name now rather than in a failed start
        self.mysqld: Path = Path(mysqld) if mysqld else find_mariadbd()
        self.password: str = secrets.token_urlsafe(24)
        self.port: int = port or 0
        self.keep = keep
        self.name = name
        self._fixed_port = port is not None
        self._tmp: Path | None = None
        self._run_as: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ paths

    @property
    def tmpdir(self) -> Path:
        """The temp dir holding ``data/``, ``server.log``, the socket and the pid file."""
        if self._tmp is None:
            raise DevServerError(f"MariaDB server {self.name!r} is not started", "call start() first")
        return self._tmp

    @property
    def datadir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        return self.tmpdir / "server.log"

    @property
    def socket(self) -> Path:
        return self.tmpdir / "mysqld.sock"

    def _tool(self, *names: str) -> str:
        for n in names:
            for c in (self.mysqld.parent / n, Path("/usr/bin") / n):
                if c.is_file():
                    return str(c)
            if found := shutil.which(n):
                return found
        raise DevServerError(f"none of {', '.join(names)} found", "install mariadb-server / mariadb-client")

    # ------------------------------------------------------------------ lifecycle

    def _child_ids(self) -> dict[str, Any]:
        """Popen arguments that run a child as the service user (no root supplementary groups either)."""
        if not self._run_as:
            return {}
        info = pwd.getpwnam(self._run_as)
        return {"user": info.pw_uid, "group": info.pw_gid, "extra_groups": []}

    def start(self) -> Self:
        """Bootstrap a fresh datadir in a new temp dir, start the server, create the password user."""
        if self._proc is not None:
            return self
        self._run_as = _mysql_service_user()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bulkmig-{self.name}-"))
        try:
            if self._run_as:
                info = pwd.getpwnam(self._run_as)
                os.chown(self._tmp, info.pw_uid, info.pw_gid)
            self._install_db()
            self._start_server()
            self._create_user()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _bootstrap_options(self) -> list[str]:
        return [_mysql_option(k, self.settings[k]) for k in _MARIADB_BOOTSTRAP_KEYS if k in self.settings]

    def _install_db(self) -> None:
        """mariadb-install-db with no option files (the machine's my.cnf must not leak in) and a root that
        logs in without a password over the socket only — nothing else can reach the socket's directory."""
        install = self._tool("mariadb-install-db", "mysql_install_db")
        argv = [
            install,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *self._bootstrap_options(),
        ]
        done = subprocess.run(
            argv, cwd=self.tmpdir, capture_output=True, text=True, timeout=120, check=False, **self._child_ids()
        )
        if done.returncode != 0:
            raise DevServerError(
                f"mariadb-install-db failed (as {self._run_as or 'current user'}):\n"
                f"{(done.stdout + done.stderr).strip()[-3000:]}",
                f"the service user must be able to reach {self.tmpdir.parent}; set TMPDIR to a world-readable "
                "directory such as /tmp"
                if self._run_as
                else "check the MariaDB installation",
            )

    def _server_argv(self) -> list[str]:
        fixed = {
            "datadir": str(self.datadir),
            "port": self.port,
            "socket": str(self.socket),
            "pid_file": str(self.tmpdir / "mysqld.pid"),
            "log_error": str(self.logfile),
            "tmpdir": str(self.tmpdir),
        }
        # --no-defaults must come first; the machine's my.cnf (a system server's port, socket) must not apply.
        return [
            str(self.mysqld),
            "--no-defaults",
            *(_mysql_option(k, v) for k, v in {**self.settings, **fixed}.items()),
        ]

    def _start_server(self) -> None:
        """Start mariadbd, retrying with a new port if another process grabbed ours in between."""
        attempts = 1 if self._fixed_port else 4
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            self._proc = subprocess.Popen(
                self._server_argv(),
                cwd=self.tmpdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **self._child_ids(),
            )
            if self._wait_ready():
                return
            log = _tail(self.logfile)
            self._terminate()
            if attempt + 1 < attempts and any(s in log for s in _MARIADB_BIND_FAILED):
                continue
            raise DevServerError(
                f"MariaDB {self.name!r} did not start on port {self.port}\n"
                f"--- tail of server.log{self._kept_note()} ---\n{log}",
                "read the server log above",
            )

    def _wait_ready(self, timeout: float = 60) -> bool:
        """True once root can log in over the socket; False if the server died or never got there."""
        import pymysql

        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=5).close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        return False

    def _root(self) -> Any:
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def _create_user(self) -> None:
        """The password user for TCP logins (127.0.0.1: skip-name-resolve never says localhost over TCP),
        and for the socket too; every privilege, so load.sh, capture and tests need nothing else."""
        conn = self._root()
        try:
            with conn.cursor() as cur:
                # install-db also makes password-less root@127.0.0.1/::1/<hostname>: anyone on the machine
                # could use those over TCP, so root keeps only the socket.
                cur.execute("SELECT host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")
                for (host,) in cur.fetchall():
                    cur.execute("DROP USER 'root'@%s", (host,))
                for host in (LOOPBACK, "localhost"):
                    cur.execute(f"CREATE USER '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                    cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'{host}' WITH GRANT OPTION")
        finally:
            conn.close()

    def _terminate(self) -> None:
        """SIGKILL only if mariadbd hangs for 30 s (the datadir is discarded anyway)."""
        _end_child(self._proc, 30)
        self._proc = None

    def stop(self) -> None:
        """Shut the server down, then remove the temp dir unless ``keep``."""
        atexit.unregister(self.stop)
        self._terminate()
        self._cleanup_dir()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<MariaDBServer {self.name} {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ connecting

    def url(self, dbname: str, user: str | None = None) -> str:
        """``mysql://user@127.0.0.1:port/db`` — no password: give it via ``env()`` / MYSQL_PWD."""
        who = quote(user or self.user, safe="")
        return f"mysql://{who}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def connect_args(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` WITH the password, for test code."""
        args: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
        }
        if dbname:
            args["database"] = dbname
        return args

    def env(self) -> dict[str, str]:
        """MYSQL_* variables that point a subprocess (the mysql client via load.sh) at this server over TCP."""
        return {
            "MYSQL_HOST": self.host,
            "MYSQL_PORT": str(self.port),
            "MYSQL_USER": self.user,
            "MYSQL_PWD": self.password,
        }

    def execute(self, dbname: str | None, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL in autocommit; returns the last result's rows.

        Without ``params`` several ``;``-separated statements may be sent at once (as in the mysql client).
        """
        import pymysql
        from pymysql.constants import CLIENT

        flags = CLIENT.MULTI_STATEMENTS if params is None else 0
        conn = pymysql.connect(**self.connect_args(dbname), autocommit=True, client_flag=flags)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                rows: list[tuple[Any, ...]] = []
                while True:
                    if cur.description is not None:
                        rows = list(cur.fetchall())
                    if not cur.nextset():
                        return rows
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        self.execute(None, f"CREATE DATABASE {_mysql_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.execute(None, f"DROP DATABASE IF EXISTS {_mysql_ident(name)}")


# Datasets load.sh can put into PostgreSQL, and the database each one creates when it does not take
# PAGILA_DB (the chinook scripts create their database themselves).
PG_DATASETS: dict[str, str | None] = {
    "pagila": None,
    "chinook-postgres": "chinook",
    "chinook-postgres-serial": "chinook_serial",
    "chinook-postgres-identity": "chinook_auto_increment",
}


# Datasets load.sh can put into MySQL/MariaDB, and the database each one's script creates.
MYSQL_DATASETS: dict[str, str] = {
    "sakila-mysql": "sakila",
    "chinook-mysql": "Chinook",
    "chinook-mysql-autoinc": "Chinook_AutoIncrement",
}


def load_dataset(server: PostgresServer | MariaDBServer, dataset: str, dbname: str) -> str:
    """Load a shared sample dataset into ``dbname`` (dropped and recreated) with the upstream loader.

    Runs ``load.sh`` rather than re-implementing it so row counts are checked the same way everywhere.
    The chinook scripts always create their own database name; it is renamed to ``dbname`` afterwards,
    so do not load the same chinook variant into one cluster from two places at once.
    MySQL datasets (:data:`MYSQL_DATASETS`) go to a :class:`MariaDBServer`; see :func:`_load_mysql_dataset`.
    Returns load.sh's report (per-table row counts).
    """
    if isinstance(server, MariaDBServer):
        return _load_mysql_dataset(server, dataset, dbname)
    if dataset not in PG_DATASETS:
        raise ValueError(f"not a PostgreSQL dataset: {dataset!r} (choose from {', '.join(PG_DATASETS)})")
    root = datasets_dir()
    if root is None:
        raise DevServerError(
            "the shared sample datasets are not there",
            "set BULKMIG_DATASETS to the folder holding load.sh, or put it in ../shared/datasets",
        )
    env = {**os.environ, **server.env(), "PAGILA_DB": dbname, "PSQL": server._exe("psql")}
    done = subprocess.run(
        ["bash", str(root / "load.sh"), dataset], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DevServerError(
            f"load.sh {dataset} failed (exit {done.returncode}):\n{done.stderr[-4000:]}{done.stdout[-2000:]}",
            "see the loader output above",
        )
    created = PG_DATASETS[dataset]
    if created is not None and created != dbname:
        server.drop_database(dbname)
        server.execute(
            "postgres",
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(created), sql.Identifier(dbname)),
        )
    return done.stdout + done.stderr


def _load_mysql_dataset(server: MariaDBServer, dataset: str, dbname: str) -> str:
    """load.sh over TCP as the server's password user, with the server's own client.

    MySQL has no RENAME DATABASE, and RENAME TABLE cannot carry triggers, views or routines to another
    database, so a dataset lands in the database its script creates and ``dbname`` must name it: asking
    for another name is refused instead of handing back a half-moved copy.
    """
    if dataset not in MYSQL_DATASETS:
        raise ValueError(f"not a MySQL dataset: {dataset!r} (choose from {', '.join(MYSQL_DATASETS)})")
    created = MYSQL_DATASETS[dataset]
    if dbname != created:
        raise ValueError(
            f"{dataset} always loads into database {created!r} (MySQL cannot rename a database with its "
            f"views, triggers and routines); pass dbname={created!r}"
        )
    root = datasets_dir()
    if root is None:
        raise DevServerError(
            "the shared sample datasets are not there",
            "set BULKMIG_DATASETS to the folder holding load.sh, or put it in ../shared/datasets",
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}
    env.update(server.env(), MYSQL=server._tool("mariadb", "mysql"))
    done = subprocess.run(
        ["bash", str(root / "load.sh"), dataset], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DevServerError(
            f"load.sh {dataset} failed (exit {done.returncode}):\n{done.stderr[-4000:]}{done.stdout[-2000:]}",
            "see the loader output above",
        )
    return done.stdout + done.stderr
