"""Applying pre-data and post-data on the target with psql, once per volume (a marker table says what was
applied), with errors that name the statement and its line."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from bulkmig.core.errors import BulkmigError, ConfigError, TargetError
from bulkmig.core.log import say
from bulkmig.engines.postgres.schema import builds
from bulkmig.engines.postgres.schema.common import (
    _SCHEMA_LOCK,
    BULKMIG_SCHEMA,
    MARKER_TABLE,
    POST_DATA,
    PRE_DATA,
    SECTIONS,
)
from bulkmig.engines.postgres.schema.tools import (
    _child_env,
    _connect_error,
    _first_line,
    _knows_restrict,
    _run,
    _where,
    connect_env,
    find_tool,
    tool_version,
)
from bulkmig.engines.postgres.sql import ident, literal, qualified

# ------------------------------------------------------------------------------------------- apply

# Post-data builds every primary key and index with one sort of the table, in the memory maintenance_work_mem
# gives it.  More is not faster here: the bench's 20M-row narrow table (its two parts loaded side by side) built
# its key in 6.0-6.1 s with PostgreSQL's default 64MB, 7.6 s with 256MB and 8.1-8.9 s with 1GB (the value bulkmig
# set before, as pgcopydb does), and the 5M-row wide table in 1.7 s against 2.1 s (`python -m bench --only load`,
# 2026-12-08).  A perf profile of the 1GB build shows why: a third of its CPU in the kernel, zeroing freshly
# mapped sort memory (clear_page) and copying spilled runs into the page cache, while a 64MB sort reuses memory
# that stays in the CPU's caches.  So the builds keep the server's own setting (a DBA who sized it for a
# terabyte table keeps that), raised only to PostgreSQL's default where a server is set below it.
INDEX_BUILD_MEMORY = "64MB"
_RAISE_INDEX_MEMORY = (
    "DO $bulkmig$ BEGIN IF pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) < "
    f"pg_catalog.pg_size_bytes('{INDEX_BUILD_MEMORY}') THEN "
    f"PERFORM pg_catalog.set_config('maintenance_work_mem', '{INDEX_BUILD_MEMORY}', false); END IF; END $bulkmig$"
)


_CREATE_TABLE_RE = re.compile(
    r'^CREATE (?:UNLOGGED |FOREIGN )?TABLE ((?:"(?:[^"]|"")*"|[^\s."(]+)\.(?:"(?:[^"]|"")*"|[^\s."(]+))'
)
_HEADER_RE = re.compile(r"^-- Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>.*?); Owner: ")


def created_tables(sql_file: Path) -> list[str]:
    """The schema-qualified (SQL-quoted) names of the tables a pg_dump script creates."""
    out = []
    with sql_file.open(encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            m = _CREATE_TABLE_RE.match(line)
            if m:
                out.append(m.group(1))
    return out


def _marker(conn: psycopg.Connection, section: str) -> tuple[str | None] | None:
    """``(volume_id,)`` when ``section`` was applied to this target before, else None."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{BULKMIG_SCHEMA}.{MARKER_TABLE}",)).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        sql.SQL("SELECT volume_id FROM {}.{} WHERE section = %s").format(
            sql.Identifier(BULKMIG_SCHEMA), sql.Identifier(MARKER_TABLE)
        ),
        (section,),
    ).fetchone()
    return (row[0],) if row else None


def _marker_sql(section: str, volume_id: str | None, *, replace: bool = False, sections: tuple[str, ...] = ()) -> str:
    """Run in the section's own transaction, so the marker exists exactly when the section does.

    ``client_min_messages`` hides the "already exists, skipping" notices of the second section.  ``replace``
    first removes the markers of an earlier volume (the tables it loaded are being dropped or truncated);
    ``sections`` marks more sections at once (tables kept as they are: post-data is the target's own).
    """
    table = qualified(BULKMIG_SCHEMA, MARKER_TABLE)
    vol = literal(volume_id) if volume_id is not None else "NULL"
    rows = ", ".join(f"({literal(one)}, {vol})" for one in (section, *sections))
    return (
        _marker_table_sql()
        + (f"DELETE FROM {table};\n" if replace else "")
        + f"INSERT INTO {table} (section, volume_id) VALUES {rows};"
    )


def _marker_table_sql() -> str:
    return (
        "SET client_min_messages = warning;\n"
        f"CREATE SCHEMA IF NOT EXISTS {ident(BULKMIG_SCHEMA)};\n"
        f"CREATE TABLE IF NOT EXISTS {qualified(BULKMIG_SCHEMA, MARKER_TABLE)} (section text PRIMARY KEY, "
        "volume_id text, applied_at timestamptz NOT NULL DEFAULT pg_catalog.now());\n"
    )


def apply_schema(
    target_env: dict[str, str],
    dbname: str,
    sql_file: Path,
    section: str,
    *,
    volume_id: str | None = None,
    existing: Literal["error", "skip", "append", "drop", "truncate"] = "error",
    psql: str | None = None,
    jobs: int = 1,
) -> None:
    """Apply one section file to the target with psql, all of it or nothing (one transaction).

    Post-data with ``jobs`` > 1 first builds its keys and indexes on up to ``jobs`` connections, each in its
    own transaction with its own marker (:mod:`bulkmig.engines.postgres.schema.builds`), then the rest as one.

    Rerunnable: the section's transaction also writes its row in ``bulkmig.schema_applied``, so a
    rerun (a resumed load) finds the section done and returns.  A section applied from another
    volume is refused.  Before pre-data, tables it would create must not exist: that is someone
    else's data, and is refused with their names unless ``existing`` says otherwise (``settings.existing_tables``,
    DMS ``TargetTablePrepMode``):

    - ``skip``: pre-data is not applied at all and the existing tables are trusted to match;
    - ``append`` (DO_NOTHING) and ``truncate`` (TRUNCATE_BEFORE_LOAD): when every table exists, they are kept as
      they are, metadata included — neither pre-data nor post-data is applied (both are marked, in one
      transaction with the TRUNCATE for ``truncate``, so a resumed load never truncates twice); when only
      some exist, refused (pre-data cannot create part of a schema);
    - ``drop`` (DROP_AND_CREATE): the existing tables are dropped (RESTRICT: an object that depends on them
      and is not dropped with them stops it, named by PostgreSQL) in pre-data's own transaction.

    ``drop`` and ``truncate`` also replace the markers of an earlier volume's load: its tables are going.
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, not {section!r}")
    if existing not in ("error", "skip", "append", "drop", "truncate"):
        raise ConfigError(f"existing must be error, skip, append, drop or truncate, not {existing!r}", "fix the caller")
    replace = existing in ("drop", "truncate")
    drop: list[str] = []
    psql_exe = find_tool("psql", psql)
    if _has_restrict(sql_file):
        version = tool_version(psql_exe)
        if not _knows_restrict(version):
            raise ConfigError(
                f"psql {version[0]}.{version[1]} cannot run {sql_file.name}: pg_dump wrote \\restrict into it, "
                "which psql understands only since 13.22, 14.19, 15.14, 16.10 and 17.6",
                "install the latest postgresql-client of your major version",
            )

    with connect_env(target_env, dbname, "target") as conn:
        if _already_applied(conn, section, volume_id, replace=replace):
            return
        replace = replace and _marker(conn, section) is not None
        if section == PRE_DATA:
            creates = created_tables(sql_file)
            clash = _existing(conn, creates)
            if clash:
                if existing == "skip":
                    say(f"schema: {len(clash)} tables of pre-data already exist on the target; not applying it")
                    return
                if existing in ("append", "truncate"):
                    _keep_tables(conn, existing, creates, clash, volume_id, replace)
                    return
            if clash and existing == "drop":
                drop = clash
                say(f"schema: existing_tables drop: dropping {len(clash)} existing tables before pre-data")
            elif clash:
                shown = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
                raise TargetError(
                    f"the target already holds {shown}; pre-data would create {'it' if len(clash) == 1 else 'them'}",
                    "drop them or use a fresh database, or set settings.existing_tables (append, drop or truncate; "
                    "DMS TargetTablePrepMode)",
                )

    with contextlib.ExitStack() as stack:
        if section == POST_DATA and jobs > 1:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bulkmig-post-data-")))
            sql_file = _build_side_by_side(psql_exe, target_env, dbname, sql_file, volume_id, jobs, tmp)
        _apply_file(psql_exe, target_env, dbname, sql_file, section, volume_id, replace, drop)


def _apply_file(
    psql_exe: str,
    target_env: dict[str, str],
    dbname: str,
    sql_file: Path,
    section: str,
    volume_id: str | None,
    replace: bool,
    drop: list[str],
) -> None:
    """``sql_file`` and the section's marker in one psql transaction, under the schema lock."""
    # Lock, marker, then the file, all in one transaction.  The marker goes first so that its DDL runs
    # before post-data creates event triggers (pg_dump puts them last), which could refuse it.
    argv = [psql_exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    argv += ["-c", f"SELECT pg_catalog.pg_advisory_xact_lock({_SCHEMA_LOCK})"]
    argv += ["-c", _marker_sql(section, volume_id, replace=replace)]
    if section == POST_DATA:
        argv += ["-c", _RAISE_INDEX_MEMORY]
    if drop:
        argv += ["-c", f"DROP TABLE {', '.join(drop)} RESTRICT"]
    argv += ["-f", str(sql_file)]
    done = _run(argv, _child_env(target_env, dbname))
    if done.returncode == 0:
        return
    with contextlib.suppress(BulkmigError), connect_env(target_env, dbname, "target") as conn:
        if _already_applied(conn, section, volume_id, quiet=True):
            return  # another loader applied it while we waited for the lock
    raise _psql_error(done.stderr, sql_file, section, target_env, dbname)


def _build_side_by_side(
    psql_exe: str,
    target_env: dict[str, str],
    dbname: str,
    sql_file: Path,
    volume_id: str | None,
    jobs: int,
    tmp: Path,
) -> Path:
    """Post-data's keys and indexes on ``jobs`` connections (those a stopped load built are skipped, by their
    markers); returns the file of the rest of the section."""
    text = sql_file.read_text(encoding="utf-8", errors="surrogateescape")
    found, rest = builds.split_builds(text)
    if not found:
        return sql_file
    with connect_env(target_env, dbname, "target") as conn, conn.transaction():
        conn.execute(f"SELECT pg_catalog.pg_advisory_xact_lock({_SCHEMA_LOCK})")
        conn.execute(_marker_table_sql())  # the marker table exists before the sessions race to fill it
        done = {
            str(r[0])
            for r in conn.execute(
                sql.SQL("SELECT section FROM {}.{} WHERE section LIKE %s").format(
                    sql.Identifier(BULKMIG_SCHEMA), sql.Identifier(MARKER_TABLE)
                ),
                (f"{POST_DATA}/%",),
            )
        }

    def build(conn: psycopg.Connection, one: builds.Build) -> None:
        try:
            with conn.transaction():
                # The marker first: a second loader building the same one waits on its key, then fails.
                conn.execute(_marker_sql(one.marker, volume_id) + _RAISE_INDEX_MEMORY + ";\n" + one.sql)
        except psycopg.Error as exc:
            with contextlib.suppress(BulkmigError), connect_env(target_env, dbname, "target") as other:
                if _marker(other, one.marker) is not None:
                    return  # another loader built it while this one waited on its marker
            detail = exc.diag.message_detail if isinstance(exc, psycopg.errors.Error) else None
            raise TargetError(
                f"post-data ({one.label}) failed on the {_where('target', target_env, dbname)}: "
                f"{_first_line(str(exc))}" + (f" ({detail})" if detail else ""),
                "nothing of it was kept (the keys and indexes built before it are); fix the cause on the target "
                "(rows that break a key, a missing collation or operator class) and rerun",
            ) from None

    def open_conn() -> psycopg.Connection:
        return connect_env(target_env, dbname, "target")

    ran = builds.run_builds(found, jobs, done, open_conn, build)
    say(f"schema: post-data built {ran} keys and indexes on {min(jobs, max(ran, 1))} connections")
    out = tmp / "post-data-rest.sql"
    out.write_text(rest, encoding="utf-8", errors="surrogateescape")
    return out


def _keep_tables(
    conn: psycopg.Connection, mode: str, creates: list[str], clash: list[str], volume_id: str | None, replace: bool
) -> None:
    """``append`` / ``truncate`` with the tables there: keep them (truncated, for ``truncate``) and mark both
    schema sections done, in one transaction under the schema lock."""
    missing = sorted(set(creates) - set(clash))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TargetError(
            f"settings.existing_tables {mode}: the target holds {len(clash)} of the tables but not {shown}, "
            "and pre-data cannot create only some of them",
            "create the missing tables on the target, drop the existing ones, or use existing_tables drop",
        )
    with conn.transaction():
        conn.execute(f"SELECT pg_catalog.pg_advisory_xact_lock({_SCHEMA_LOCK})")
        marker = _marker(conn, PRE_DATA)
        if marker is not None and marker[0] == volume_id:
            return  # another loader did it while we looked
        if mode == "truncate":
            conn.execute(f"TRUNCATE TABLE {', '.join(clash)} RESTRICT")
        conn.execute(_marker_sql(PRE_DATA, volume_id, replace=replace, sections=(POST_DATA,)))
    done = "truncated" if mode == "truncate" else "kept with their rows"
    say(
        f"schema: existing_tables {mode}: the target's {len(clash)} tables are {done}, their definitions "
        "as they are (pre-data and post-data not applied)"
    )


def _already_applied(
    conn: psycopg.Connection, section: str, volume_id: str | None, quiet: bool = False, replace: bool = False
) -> bool:
    marker = _marker(conn, section)
    if marker is None:
        return False
    if marker[0] != volume_id and replace and section == PRE_DATA:
        return False  # an earlier volume's load, whose tables this one drops or truncates
    if marker[0] != volume_id:
        raise TargetError(
            f"the target's {section} was applied from volume {marker[0]!r}, not {volume_id!r}",
            "load each volume into a fresh database (or drop the old schema and the bulkmig schema first)",
        )
    if not quiet:
        say(f"schema: {section} already applied to the target (volume {volume_id}); skipping it")
    return True


def _existing(conn: psycopg.Connection, names: list[str]) -> list[str]:
    if not names:
        return []
    rows = conn.execute(
        "SELECT quote_ident(s.nspname) || '.' || quote_ident(c.relname) "
        "FROM unnest(%s::text[]) AS n(name) "
        "JOIN pg_class c ON c.oid = to_regclass(n.name) JOIN pg_namespace s ON s.oid = c.relnamespace ORDER BY 1",
        (names,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _has_restrict(sql_file: Path) -> bool:
    with sql_file.open("rb") as fh:
        for i, line in enumerate(fh):
            if line.startswith(b"\\restrict "):
                return True
            if i > 50:
                return False
    return False


def _psql_error(stderr: str, sql_file: Path, section: str, target_env: Mapping[str, str], dbname: str) -> BulkmigError:
    """One line: the section, the object and statement that failed, psql's error and its detail."""
    lines = stderr.splitlines()
    if any(line.startswith("psql: error: connection to server") for line in lines):
        return _connect_error("target", target_env, dbname, stderr)
    if "invalid command \\restrict" in stderr:
        return ConfigError(
            f"this psql cannot run {sql_file.name}: pg_dump wrote \\restrict into it",
            "install the latest postgresql-client of your major version (15.14+, 16.10+, 17.6+)",
        )
    prefix = f"psql:{sql_file}:"
    error, detail, where = "", "", ""
    for i, line in enumerate(lines):
        rest = line[len(prefix) :] if line.startswith(prefix) else line
        m = re.match(r"^(?:(\d+): )?(?:ERROR|FATAL|error):\s+(.*)$", rest)
        if m and not error:
            error = m.group(2).strip()
            if m.group(1):
                where = _locate(sql_file, int(m.group(1)))
            for follow in lines[i + 1 : i + 6]:
                if follow.startswith("DETAIL:"):
                    detail = follow[len("DETAIL:") :].strip()
                    break
    if not error:
        error = _first_line(stderr)
    text = f"{section} failed on the {_where('target', target_env, dbname)}"
    if where:
        text += f" at {where}"
    text += f": {error}" + (f" ({detail})" if detail else "")
    return TargetError(
        text,
        f"nothing of {section} was kept (it runs in one transaction); fix the cause on the target "
        "(a missing extension, role or collation, or rows that break a key) and rerun",
    )


def _locate(sql_file: Path, line_no: int) -> str:
    """``FK CONSTRAINT public.rental rental_customer_id_fkey, line 812: ALTER TABLE ONLY public.rental``"""
    try:
        lines = sql_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"line {line_no}"
    header_at, what = 0, ""
    for i in range(min(line_no, len(lines)) - 1, -1, -1):
        m = _HEADER_RE.match(lines[i])
        if m:
            header_at = i + 1
            schema = m.group("schema")
            what = f"{m.group('type')} {'' if schema == '-' else schema + '.'}{m.group('name')}"
            break
    start = None
    for first, _ in statement_spans(lines[header_at:line_no]):
        if first + header_at + 1 <= line_no:
            start = first + header_at
    first_line = lines[start].strip().rstrip(";") if start is not None else ""
    if len(first_line) > 100:
        first_line = first_line[:97] + "..."
    parts = [what] if what else []
    parts.append(f"line {(start + 1) if start is not None else line_no}" + (f": {first_line}" if first_line else ""))
    return ", ".join(parts)


def statement_spans(lines: list[str]) -> Iterator[tuple[int, int]]:
    """``(first, last)`` 0-based line numbers of each SQL statement or psql meta-command in ``lines``.

    A small lexer, enough for pg_dump output: quotes, E'' strings, dollar quotes, comments.  Used only
    to show the operator where a failing statement starts; psql reports the line it ends on.
    """
    state = ""  # "", "'", "E", '"', "$", "--", "/*"
    tag = ""
    depth = 0
    start: int | None = None
    for no, line in enumerate(lines):
        i = 0
        if state == "--":
            state = ""
        if state == "" and start is None and line.startswith("\\"):
            yield no, no
            continue
        n = len(line)
        while i < n:
            ch = line[i]
            if state == "":
                if ch == "-" and line.startswith("--", i):
                    state = "--"
                    break
                if ch == "/" and line.startswith("/*", i):
                    state, depth = "/*", 1
                    i += 2
                    continue
                if ch.isspace():
                    i += 1
                    continue
                if start is None:
                    start = no
                if ch == ";":
                    yield start, no
                    start = None
                elif ch == "'":
                    prev = line[i - 1] if i else ""
                    escape = (
                        prev != "" and prev in "eE" and (i < 2 or not (line[i - 2].isalnum() or line[i - 2] == "_"))
                    )
                    state = "E" if escape else "'"
                elif ch == '"':
                    state = '"'
                elif ch == "$":
                    m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", line[i:])
                    prev = line[i - 1] if i else " "
                    if m and not (prev.isalnum() or prev == "_"):
                        state, tag = "$", m.group(0)
                        i += len(tag)
                        continue
                i += 1
            elif state in ("'", "E"):
                if state == "E" and ch == "\\":
                    i += 2
                    continue
                if ch == "'":
                    if line.startswith("''", i):
                        i += 2
                        continue
                    state = ""
                i += 1
            elif state == '"':
                if ch == '"':
                    state = ""
                i += 1
            elif state == "$":
                end = line.find(tag, i)
                if end < 0:
                    break
                state, i = "", end + len(tag)
            elif state == "/*":
                if line.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif line.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                    if depth == 0:
                        state = ""
                else:
                    i += 1
    if start is not None:
        yield start, len(lines) - 1
