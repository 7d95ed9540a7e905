"""pg_dump, pg_restore and psql: finding them, their versions, and the environment a child runs with (the
password in PGPASSWORD, never on a command line)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from bulkmig.core.errors import ConfigError, ConnectError
from bulkmig.engines.postgres.schema.common import _DEFAULT_CONNECT_TIMEOUT, _ENV_KEYWORDS, _RESTRICT_SINCE

# ---------------------------------------------------------------------------------------- binaries


def find_tool(name: str, explicit: str | os.PathLike[str] | None = None) -> str:
    """The path of a PostgreSQL client program.

    An explicit path wins; else the one in ``pg_config --bindir`` (the installation the headers and
    libpq belong to, usually the newest on Debian); else PATH.
    """
    if explicit is not None:
        path = Path(explicit)
        if path.is_dir():
            path = path / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise ConfigError(f"{name} not found at {path}", "give the path of an installed PostgreSQL client program")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            candidate = Path(done.stdout.strip()) / name
            if done.returncode == 0 and candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigError(
        f"{name} not found (neither in `pg_config --bindir` nor on PATH)",
        "install postgresql-client, at least as new as the source server",
    )


def _sibling(tool: str, name: str) -> str:
    """``pg_restore`` from the directory ``pg_dump`` came from: an archive must be read by its own version."""
    candidate = Path(tool).with_name(name)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return find_tool(name)


def tool_version(tool: str) -> tuple[int, int]:
    """``(15, 18)`` for "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"."""
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run {tool}: {exc}", "install postgresql-client") from None
    m = re.search(r"\)\s+(\d+)(?:\.(\d+))?", done.stdout)
    if done.returncode != 0 or not m:
        raise ConfigError(f"{tool} --version said {done.stdout.strip() or done.stderr.strip()!r}", "reinstall it")
    return int(m.group(1)), int(m.group(2) or 0)


def _knows_restrict(version: tuple[int, int]) -> bool:
    major, minor = version
    if major >= 18:
        return True
    return major in _RESTRICT_SINCE and minor >= _RESTRICT_SINCE[major]


# -------------------------------------------------------------------------------------- connecting


def _child_env(conninfo_env: Mapping[str, str], dbname: str) -> dict[str, str]:
    """The environment of a pg_dump/pg_restore/psql child: ours, the endpoint's PG* variables, and
    ``PGDATABASE``; client messages in English, because we read them."""
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANGUAGE")}
    env.update(conninfo_env)
    env["PGDATABASE"] = dbname
    env.setdefault("PGCONNECT_TIMEOUT", _DEFAULT_CONNECT_TIMEOUT)
    env.setdefault("PGAPPNAME", "bulkmig")
    env["LC_MESSAGES"] = "C"
    return env


def _where(role: str, conninfo_env: Mapping[str, str], dbname: str) -> str:
    """``source database 'pagila' on 127.0.0.1:5432``: names the endpoint, never its password."""
    host = conninfo_env.get("PGHOST") or os.environ.get("PGHOST") or "the local socket"
    port = conninfo_env.get("PGPORT") or os.environ.get("PGPORT")
    return f"{role} database {dbname!r} on {host}{':' + port if port else ''}"


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return re.sub(r"^((pg_dump|pg_restore|psql): (error: )?|connection failed: )", "", line)
    return "(no message)"


def _connect_error(role: str, conninfo_env: Mapping[str, str], dbname: str, text: str) -> ConnectError:
    line = _first_line(text)
    lowered = line.lower()
    if "password" in lowered:
        hint = "give the right password (PGPASSWORD, ~/.pgpass or the task's password variable)"
    elif "does not exist" in lowered:
        hint = "create the database or fix its name"
    elif "resolve host" in lowered or "translate host name" in lowered:
        hint = "fix the host name"
    else:
        hint = "check that the server runs and that host, port and user are right"
    return ConnectError(f"cannot connect to the {_where(role, conninfo_env, dbname)}: {line}", hint)


def connect_env(conninfo_env: Mapping[str, str], dbname: str, role: str) -> psycopg.Connection:
    """An autocommit psycopg connection that reaches the server exactly as our child programs do."""
    params = {kw: conninfo_env[var] for var, kw in _ENV_KEYWORDS.items() if conninfo_env.get(var)}
    params.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
    params.setdefault("application_name", "bulkmig")
    try:
        return psycopg.connect(make_conninfo(dbname=dbname, **params), autocommit=True)
    except psycopg.OperationalError as exc:
        raise _connect_error(role, conninfo_env, dbname, str(exc)) from None


def _run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, env=dict(env), capture_output=True, text=True, encoding="utf-8", errors="replace", check=False
        )
    except OSError as exc:
        raise ConfigError(f"cannot run {argv[0]}: {exc}", "install postgresql-client") from None
