"""A throwaway PostgreSQL cluster: ``initdb``/``pg_ctl`` in a temp directory, SCRAM over loopback TCP."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:
    pass


from bulkmig.demo.servers.common import (
    LOOPBACK,
    DevServerError,
    _DatabaseServer,
    _tail,
)

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


class PostgresServer(_DatabaseServer):
    """A throwaway PostgreSQL cluster on 127.0.0.1, superuser ``postgres`` with a random password.

    The URL it hands out never contains the password (tasks must take secrets from the environment);
    ``env()`` and ``conninfo()`` carry it for subprocesses and test code.
    """

    kind = "PostgreSQL"
    user = "postgres"
    scheme = "postgresql"
    client_env = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD")

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
        self._init_server(port, keep, name)
        self._running = False

    # ------------------------------------------------------------------ paths

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

        def launch() -> str | None:
            self._write_settings()
            done = self._pg_ctl("-l", str(self.logfile), "-w", "-t", "60", "start")
            if done.returncode != 0:
                return f": {done.stderr.strip()}"
            self._wait_ready()
            return None

        self._start_on_a_port(launch, _BIND_FAILED)

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
