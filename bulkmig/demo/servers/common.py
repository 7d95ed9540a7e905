"""What every throwaway server shares: loopback, free ports, the temp-dir lifecycle, where the datasets are."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from bulkmig.core.errors import BulkmigError
from bulkmig.testing.service import Service

if TYPE_CHECKING:
    pass


LOOPBACK = "127.0.0.1"


class DevServerError(BulkmigError):
    """A throwaway server could not be started or used; the message carries the server's own log."""


def repo_root() -> Path:
    """The checkout this module lives in (meaningful for an editable install, which tests and demos use)."""
    return Path(__file__).resolve().parents[3]


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


class _Throwaway(Service):
    """What every throwaway server shares: start/stop as a context manager, and a temp dir removed unless
    ``keep``."""

    keep: bool = False
    _tmp: Path | None = None

    def _kept_note(self) -> str:
        return f" (kept in {self.tmpdir})" if self.keep else " (its temp dir is removed; keep=True keeps it)"

    def _cleanup_dir(self) -> None:
        if self._tmp is not None and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class _DatabaseServer(_Throwaway):
    """What the PostgreSQL and MariaDB servers share: a random password, a port (pinned or free), and a temp
    dir holding ``data/`` and ``server.log``."""

    kind = "database"  # the engine's name, for messages
    host = LOOPBACK
    user: str  # the superuser the server is set up with
    scheme: str  # of the URLs it hands out (postgresql, mysql)
    # The variables the engine's clients read the host, port, user and password from (PGHOST…, MYSQL_HOST…).
    client_env: tuple[str, str, str, str]

    def _init_server(self, port: int | None, keep: bool, name: str) -> None:
        self.password: str = secrets.token_urlsafe(24)
        self.port: int = port or 0
        self.keep = keep
        self.name = name
        self._fixed_port = port is not None
        self._tmp = None
        self._run_as: str | None = None

    def _start_on_a_port(self, launch: Callable[[], str | None], bind_failed: tuple[str, ...]) -> None:
        """Run ``launch`` (it returns None once the server is up, else what went wrong), retrying on a new free
        port when the log says another process grabbed ours in between."""
        attempts = 1 if self._fixed_port else 4
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            why = launch()
            if why is None:
                return
            log = _tail(self.logfile)
            if attempt + 1 < attempts and any(s in log for s in bind_failed):
                continue
            raise DevServerError(
                f"{self.kind} {self.name!r} did not start on port {self.port}{why}\n"
                f"--- tail of server.log{self._kept_note()} ---\n{log}",
                "read the server log above",
            )

    def url(self, dbname: str, user: str | None = None) -> str:
        """``<scheme>://user@127.0.0.1:port/db``, with no password: ``env()`` carries it (PGPASSWORD, MYSQL_PWD)."""
        who = quote(user or self.user, safe="")
        return f"{self.scheme}://{who}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def env(self) -> dict[str, str]:
        """The variables that point a subprocess (the engine's own client, load.sh, the bulkmig CLI) at this
        server over TCP, the password included."""
        host, port, user, password = self.client_env
        return {host: self.host, port: str(self.port), user: self.user, password: self.password}

    @property
    def tmpdir(self) -> Path:
        """The temp dir holding ``data/``, ``server.log`` and the unix socket."""
        if self._tmp is None:
            raise DevServerError(f"{self.kind} server {self.name!r} is not started", "call start() first")
        return self._tmp

    @property
    def datadir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        return self.tmpdir / "server.log"


class _ChildServer(_Throwaway):
    """A server that is one child process of ours (mariadbd, moto_server): stopping it ends that child."""

    _proc: subprocess.Popen[bytes] | None = None
    stop_grace: float = 10.0  # seconds after SIGTERM before SIGKILL

    def _terminate(self) -> None:
        _end_child(self._proc, self.stop_grace)
        self._proc = None

    def stop(self) -> None:
        """End the child, then remove the temp dir unless ``keep``."""
        atexit.unregister(self.stop)
        self._terminate()
        self._cleanup_dir()


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
