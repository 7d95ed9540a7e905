"""A throwaway MariaDB (or MySQL) server: a temp datadir, row binlog, a random root password."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    pass


from bulkmig.demo.servers.common import LOOPBACK, DevServerError, _ChildServer, _DatabaseServer
from bulkmig.demo.servers.postgres import _SETTING_NAME, _service_user


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


class MariaDBServer(_ChildServer, _DatabaseServer):
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

    kind = "MariaDB"
    user = "bulkmig"
    scheme = "mysql"
    client_env = ("MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PWD")
    stop_grace = 30.0  # SIGKILL only if mariadbd hangs for 30 s (the datadir is discarded anyway)

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
        self._init_server(port, keep, name)
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ paths

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

        def launch() -> str | None:
            self._proc = subprocess.Popen(
                self._server_argv(),
                cwd=self.tmpdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **self._child_ids(),
            )
            if self._wait_ready():
                return None
            self._terminate()
            return ""

        self._start_on_a_port(launch, _MARIADB_BIND_FAILED)

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

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<MariaDBServer {self.name} {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ connecting

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
