"""PostgreSQL -> PostgreSQL schema: everything ``pg_dump --schema-only`` recreates, split around the data.

Why pg_dump and not our own DDL generator: pg_dump already knows every object kind of every server
version it supports (enums, domains, composite types, identity and generated columns, partitions,
functions, aggregates, triggers, rules, policies, comments...) and the order they must be created in.
We only decide *when* each part runs, and *which* part, for a table subset:

* ``pre-data.sql``: types, functions, sequences, tables with defaults, generated and identity columns,
  check constraints, views, materialized views (``WITH NO DATA``), comments — and the primary keys,
  which the issue asks for before the data (see :data:`PRIMARY_KEYS_FIRST`).
* ``post-data.sql``: unique constraints, secondary indexes, foreign keys, triggers, rules, policies, then
  ``REFRESH MATERIALIZED VIEW`` for every materialized view that was populated on the source.
  Triggers and foreign keys do not exist while rows arrive, so they can neither fire nor slow the load.

Both files travel on the volume, so the loader never needs the source.  They are applied by ``psql``
(not psycopg) because pg_dump 15.14+ (and 13.22, 14.19, 16.10, 17.6) writes the psql meta-commands
``\\restrict KEY`` / ``\\unrestrict KEY`` around plain-text output (CVE-2025-8714): they stop a
malicious server from smuggling psql meta-commands into a dump, and only psql understands them.

What pg_dump 15 does that we correct for:

* ``--schema-only`` leaves out the ``MATERIALIZED VIEW DATA`` entries, i.e. the REFRESH of populated
  materialized views: they would arrive empty and unreadable.  We append the REFRESHes ourselves.
* ``--schema-only`` leaves out ``SEQUENCE SET``: sequences restart at their START.  Their values are
  read with :func:`sequence_values` (stored in the plan) and set after the load with
  :func:`set_sequences_sql`.
* ``-Fc`` archives keep owners and ``--no-owner`` is ignored for them, so ``pg_restore`` gets
  ``--no-owner --no-privileges`` too: the target's roles are not the source's.
* Subscriptions and user mappings are left out (and reported): their options may hold a password, and
  nothing on the volume may; a subscription must not start pulling changes into the target either.
  pg_dump has ``--no-subscriptions``; user mappings are filtered out of the SQL files, but stay in
  ``schema.dump``, which is why that archive is kept for the operator and never shipped.

Connections go through libpq environment variables (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``...) and ``PGDATABASE``: a password is never on a command line (``ps`` shows those to
every user), and a database name holding ``=`` is never misread as a connection string.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bulkmig.core.errors import BulkmigError, ConfigError, ConnectError, SourceError, TargetError
from bulkmig.core.log import say
from bulkmig.engines.postgres.sql import ident, literal, qualified

PRE_DATA = "pre-data"
POST_DATA = "post-data"
SECTIONS = (PRE_DATA, POST_DATA)

# Our own schema on a target (the loader's ledger lives there too).  Never dumped from a source: a
# source that was once a bulkmig target must not carry its ledger into the next migration.
BULKMIG_SCHEMA = "bulkmig"
MARKER_TABLE = "schema_applied"
_SKIP_SCHEMAS = ("pg_catalog", "information_schema", BULKMIG_SCHEMA)

# The issue wants tables *and primary keys* before the data: rows then meet their key as they arrive,
# so a duplicate stops the load at the part that carries it instead of failing the whole post-data
# section hours later.  pg_restore's own order (keys after the data) is faster to load; pass
# ``primary_keys_first=False`` to :func:`dump_schema` for it.
PRIMARY_KEYS_FIRST = True

# One advisory lock for every schema section, so two loaders started at once apply a section once.
_SCHEMA_LOCK = 0x62756C6B6D6967  # "bulkmig"

# The first minor releases whose psql knows \restrict (the same releases' pg_dump writes it).
_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}

# pg_dump descriptions made of several words, longest first so "FK CONSTRAINT" wins over "CONSTRAINT".
_MULTIWORD_DESCS = sorted(
    [
        "ACCESS METHOD", "CHECK CONSTRAINT", "DATABASE PROPERTIES", "DEFAULT ACL", "EVENT TRIGGER",
        "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "FOREIGN TABLE", "INDEX ATTACH",
        "LARGE OBJECT", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR CLASS", "OPERATOR FAMILY",
        "PROCEDURAL LANGUAGE", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY",
        "SECURITY LABEL", "SEQUENCE OWNED BY", "SEQUENCE SET", "SHELL TYPE", "SUBSCRIPTION TABLE",
        "TABLE ATTACH", "TABLE DATA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "USER MAPPING", "BLOB METADATA", "STATISTICS DATA",
    ],
    key=len,
    reverse=True,
)  # fmt: skip
# Objects whose definition may hold a password (FDW credentials); subscriptions are not even dumped.
_SECRET_DESCS = ("USER MAPPING", "SUBSCRIPTION", "SUBSCRIPTION TABLE")

# libpq environment variables and the connection keyword each stands for (for our own psycopg
# connections, which must see exactly what pg_dump and psql see).
_ENV_KEYWORDS = {
    "PGHOST": "host",
    "PGHOSTADDR": "hostaddr",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGPASSFILE": "passfile",
    "PGSERVICE": "service",
    "PGSERVICEFILE": "servicefile",
    "PGOPTIONS": "options",
    "PGAPPNAME": "application_name",
    "PGSSLMODE": "sslmode",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCRL": "sslcrl",
    "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGGSSENCMODE": "gssencmode",
    "PGKRBSRVNAME": "krbsrvname",
    "PGCHANNELBINDING": "channel_binding",
}
_DEFAULT_CONNECT_TIMEOUT = "30"


@dataclass
class SchemaFiles:
    """What :func:`dump_schema` wrote; ``skipped`` names every object left out, each with its reason."""

    pre_data: Path
    post_data: Path
    archive: Path
    skipped: list[str] = field(default_factory=list)
    toc: Path | None = None  # the annotated table of contents: ``pg_restore -L toc.list schema.dump``
    refreshed: list[str] = field(default_factory=list)  # materialized views post-data refreshes


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


# ----------------------------------------------------------------------------------------- sequences


_SEQUENCES_SQL = """
SELECT n.nspname, c.relname,
       (SELECT d.refobjid FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype IN ('a', 'i') LIMIT 1) AS owner,
       has_sequence_privilege(c.oid, 'SELECT') AS readable,
       ARRAY(SELECT a.adrelid FROM pg_depend d JOIN pg_attrdef a ON a.oid = d.objid
             WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = c.oid
               AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass
                               AND i.objid = c.oid AND i.deptype = 'i')) AS used_by
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S'
  AND n.nspname <> ALL (%(skip)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid
                  AND e.deptype = 'e')
ORDER BY 1, 2
"""


def sequence_values(conn: psycopg.Connection, tables: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """``[{"schema", "name", "last_value", "is_called"}, ...]`` for every user sequence, for the plan.

    ``--schema-only`` dumps sequences at their START value, so the loader sets these after the load.
    Sequences are not transactional: this reads their value *now*, not as of the caller's snapshot,
    which is why cutover syncs them again from a fresh read (DESIGN §6).  With ``tables`` (a subset),
    sequences owned by tables that are not selected (serial and identity ones) are left out unless a
    selected table's default uses them, as :func:`dump_schema` does with the schema.  Safe inside the caller's snapshot
    transaction: unreadable sequences are reported before anything could fail and abort it.
    """
    keep = _kept_tables(conn, tables) if tables is not None else None
    found = conn.execute(_SEQUENCES_SQL, {"skip": list(_SKIP_SCHEMAS)}).fetchall()
    if keep is not None:  # the rule dump_schema follows: a sequence stays if its owner or a user stays
        found = [row for row in found if row[2] is None or row[2] in keep or keep.intersection(row[4])]
    unreadable = [f"{nsp}.{rel}" for nsp, rel, _, readable, _ in found if not readable]
    if unreadable:
        raise SourceError(
            f"the source user may not read sequence {', '.join(unreadable[:5])}"
            + (f" (+{len(unreadable) - 5} more)" if len(unreadable) > 5 else ""),
            "GRANT SELECT ON the sequences to the migration user",
        )
    out: list[dict[str, Any]] = []
    for start in range(0, len(found), 200):  # a few round trips, not one per sequence
        chunk = found[start : start + 200]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, last_value, is_called FROM {}.{}").format(
                sql.Literal(i), sql.Identifier(nsp), sql.Identifier(rel)
            )
            for i, (nsp, rel, *_) in enumerate(chunk)
        )
        values = {i: (last, called) for i, last, called in conn.execute(query)}
        for i, (nsp, rel, *_) in enumerate(chunk):
            last, called = values[i]
            out.append({"schema": nsp, "name": rel, "last_value": int(last), "is_called": bool(called)})
    return out


def set_sequences_sql(values: Iterable[Mapping[str, Any]]) -> str:
    """``SELECT pg_catalog.setval(...)`` for each value of :func:`sequence_values`, in one string.

    ``is_called`` matters: false means the next ``nextval`` returns ``last_value`` itself (a sequence
    never used), true means it returns the one after.  Empty input gives an empty string.
    """
    lines = []
    for v in values:
        name = literal(qualified(str(v["schema"]), str(v["name"])))
        called = "true" if v["is_called"] else "false"
        lines.append(f"SELECT pg_catalog.setval({name}, {int(v['last_value'])}, {called});")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- dump


@dataclass
class TocEntry:
    """One line of ``pg_restore -l -v``: ``215; 1259 16411 TABLE public customer postgres``."""

    dump_id: int
    classid: int  # the catalog's OID (pg_class = 1259...), 0 for entries with no catalog row
    objid: int
    desc: str  # "TABLE", "FK CONSTRAINT", ...
    label: str  # the rest: schema, tag and owner as pg_restore prints them (for messages only)
    deps: list[int] = field(default_factory=list)
    line_no: int = 0  # index of the entry's line in the listing


_ENTRY_RE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPS_RE = re.compile(r"^;\s*depends on:\s*([\d ]*)$")


def parse_toc(listing: str) -> list[TocEntry]:
    """The entries of a ``pg_restore -l -v`` listing, with their dependencies (by dump id)."""
    entries: list[TocEntry] = []
    for i, line in enumerate(listing.splitlines()):
        m = _ENTRY_RE.match(line)
        if m:
            rest = m.group(4)
            desc = next((d for d in _MULTIWORD_DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])
            label = rest[len(desc) :].strip()
            entries.append(TocEntry(int(m.group(1)), int(m.group(2)), int(m.group(3)), desc, label, [], i))
            continue
        d = _DEPS_RE.match(line)
        if d and entries:
            entries[-1].deps.extend(int(x) for x in d.group(1).split())
    return entries


_FACTS_SQL = """
SELECT t.classid, t.objid,
       pg_describe_object(t.classid, t.objid, 0) AS what,
       CASE WHEN t.classid = 'pg_class'::regclass THEN (SELECT c.relkind::text FROM pg_class c WHERE c.oid = t.objid)
            WHEN t.classid = 'pg_constraint'::regclass THEN (SELECT o.contype::text FROM pg_constraint o
                                                              WHERE o.oid = t.objid)
       END AS kind,
       CASE t.classid
         WHEN 'pg_class'::regclass THEN (
           SELECT CASE WHEN c.relkind IN ('i', 'I') THEN (SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = c.oid)
                       WHEN c.relkind = 'S' THEN (
                         SELECT d.refobjid FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1)
                  END
           FROM pg_class c WHERE c.oid = t.objid)
         WHEN 'pg_constraint'::regclass THEN (SELECT nullif(o.conrelid, 0) FROM pg_constraint o WHERE o.oid = t.objid)
         WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = t.objid)
         WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef a WHERE a.oid = t.objid)
         WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = t.objid)
         WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = t.objid)
         WHEN 'pg_statistic_ext'::regclass THEN (SELECT s.stxrelid FROM pg_statistic_ext s WHERE s.oid = t.objid)
         WHEN 'pg_publication_rel'::regclass THEN (SELECT p.prrelid FROM pg_publication_rel p WHERE p.oid = t.objid)
       END AS owner,
       CASE WHEN t.classid = 'pg_class'::regclass THEN (SELECT c.relispopulated FROM pg_class c WHERE c.oid = t.objid)
       END AS populated,
       CASE WHEN t.classid = 'pg_class'::regclass THEN (
         SELECT ARRAY[n.nspname::text, c.relname::text] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = t.objid)
       END AS qualified_name,
       t.classid = 'pg_class'::regclass AND EXISTS (
         SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = t.objid AND d.deptype = 'i'
       ) AS identity
FROM unnest(%(classids)s::oid[], %(objids)s::oid[]) AS t(classid, objid)
"""

_SUBSCRIPTIONS_SQL = """
SELECT s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
WHERE d.datname = current_database() ORDER BY 1
"""

_KEEP_SQL = """
WITH RECURSIVE chosen AS (
    SELECT c.oid
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS s(nsp, rel)
    JOIN pg_namespace n ON n.nspname = s.nsp
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.rel AND c.relkind IN ('r', 'p', 'f')
), down AS (
    SELECT oid FROM chosen
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.oid
    JOIN pg_class p ON p.oid = d.oid AND p.relkind = 'p'
), up AS (
    SELECT oid FROM down
    UNION
    SELECT i.inhparent FROM pg_inherits i JOIN up u ON i.inhrelid = u.oid
)
SELECT oid FROM up
"""


@dataclass
class _Fact:
    what: str  # pg_describe_object: "view public.actor_info"
    kind: str | None  # relkind for relations, contype for constraints
    owner: int | None  # the relation this object is part of (an index's table...), if any
    populated: bool | None
    name: tuple[str, str] | None = None  # (schema, name) of relations
    identity: bool = False  # an identity column's sequence: created by ALTER TABLE on its table


def _kept_tables(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> set[int]:
    """OIDs of the selected tables, the partitions of selected partitioned tables (they hold its rows),
    and the ancestors of all of them (a partition or child cannot exist without its parent; a parent's
    own rows move only if it is selected itself)."""
    names = sorted(set(tables))
    found = conn.execute(
        "SELECT s.nsp, s.rel FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS s(nsp, rel) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = s.nsp AND c.relname = s.rel AND c.relkind IN ('r', 'p', 'f'))",
        {"schemas": [s for s, _ in names], "names": [t for _, t in names]},
    ).fetchall()
    if found:
        missing = ", ".join(f"{s}.{t}" for s, t in found[:5])
        raise SourceError(f"selected table {missing} is not in the source", "fix the table mappings")
    rows = conn.execute(_KEEP_SQL, {"schemas": [s for s, _ in names], "names": [t for _, t in names]}).fetchall()
    return {int(r[0]) for r in rows}


def _facts(conn: psycopg.Connection, entries: list[TocEntry]) -> dict[tuple[int, int], _Fact]:
    with_rows = [e for e in entries if e.classid and e.objid]
    rows = conn.execute(
        _FACTS_SQL, {"classids": [e.classid for e in with_rows], "objids": [e.objid for e in with_rows]}
    ).fetchall()
    return {
        (int(c), int(o)): _Fact(
            what or "", kind, int(owner) if owner else None, populated, tuple(qn) if qn else None, ident
        )
        for c, o, what, kind, owner, populated, qn, ident in rows
    }


@dataclass
class _Selection:
    """The outcome of filtering a TOC: which entries go, which move, and what to tell the operator."""

    removed: dict[int, str]  # dump id -> why (a comment for toc.list)
    moved: set[int]  # post-data entries that go to pre-data (primary keys)
    skipped: list[str]
    refresh: list[tuple[str, str]]  # populated materialized views, in restore order


def _select(
    entries: list[TocEntry],
    facts: dict[tuple[int, int], _Fact],
    keep: set[int] | None,
    post_ids: set[int],
    primary_keys_first: bool,
) -> _Selection:
    """Decide the fate of every TOC entry.

    With a table subset, the unselected tables go, and with them everything that depends on them,
    transitively, by pg_dump's own dependency graph.  What belonged to an unselected table (its keys,
    indexes, triggers, owned sequences, comments) goes silently; anything else that has to go with it
    (a view, a function returning its rows, a foreign key of a selected table pointing at it) is
    reported, never silently dropped.  A selected table that cannot be created without an
    unselected one is an error: the operator must select both.
    """
    by_id = {e.dump_id: e for e in entries}
    pg_class = 1259
    rel_entry = {e.objid: e.dump_id for e in entries if e.classid == pg_class}

    def fact(e: TocEntry) -> _Fact | None:
        return facts.get((e.classid, e.objid))

    removed: dict[int, str] = {}
    cause: dict[int, set[int]] = {}  # dump id -> dump ids of the unselected tables it went with
    skipped: list[str] = []
    unselected: set[int] = set()
    if keep is not None:
        for e in entries:
            f = fact(e)
            # Foreign tables hold no rows to move: like views, they stay unless they depend on what goes.
            if e.classid == pg_class and f is not None and f.kind in ("r", "p") and e.objid not in keep:
                unselected.add(e.dump_id)
        owned_sequences: list[TocEntry] = []
        for e in entries:
            f = fact(e)
            if e.dump_id in unselected:
                removed[e.dump_id] = "table not selected"
                cause[e.dump_id] = {e.dump_id}
            elif f is not None and f.owner is not None and rel_entry.get(f.owner) in unselected:
                if f.kind == "S" and not f.identity:  # decided below: another table's default may use it
                    owned_sequences.append(e)
                    continue
                removed[e.dump_id] = "part of a table not selected"
                cause[e.dump_id] = {rel_entry[f.owner]}
        # A serial sequence of an unselected table stays when something that stays uses it (a selected
        # table's DEFAULT nextval(...)); it just loses its OWNED BY.  pg_dump makes it depend on its
        # table, so it is exempt from the first closure, and decided once the users are known.
        _close(entries, removed, cause, exempt={e.dump_id for e in owned_sequences})
        candidates = {e.dump_id for e in owned_sequences}
        used = {
            d
            for e in entries
            if e.dump_id not in removed and e.dump_id not in candidates and fact(e) is not None
            for d in e.deps
        }
        for e in owned_sequences:
            if e.dump_id not in used:
                f = fact(e)
                assert f is not None and f.owner is not None
                removed[e.dump_id] = "part of a table not selected"
                cause[e.dump_id] = {rel_entry[f.owner]}
        _close(entries, removed, cause, exempt=candidates & used)
        for e in entries:  # the kept ones lose their OWNED BY (pg_dump lists it under the sequence alone)
            if e.desc == "SEQUENCE OWNED BY" and candidates & used & set(e.deps):
                removed[e.dump_id] = "its table is not selected"
                cause[e.dump_id] = set()
    for e in entries:
        if e.desc in _SECRET_DESCS and e.dump_id not in removed:
            removed[e.dump_id] = "may hold a password"
            cause[e.dump_id] = set()
            f = fact(e)
            what = f.what if f is not None else _describe_nil(e)
            skipped.append(f"{what}: not migrated, its options may hold a password; recreate it on the target")

    for e in entries:
        if e.dump_id not in removed or e.dump_id in unselected or not cause.get(e.dump_id):
            continue
        f = fact(e)
        if f is None:  # comments, ACLs, ATTACH...: they go with the object they belong to
            continue
        owner_gone = f.owner is not None and (f.owner not in rel_entry or rel_entry[f.owner] in removed)
        if owner_gone and f.owner != e.objid:
            continue
        if e.classid == pg_class and keep is not None and e.objid in keep:
            raise ConfigError(
                f"selected {f.what} cannot be created without {_tables(cause[e.dump_id], by_id, facts)}",
                "select that table too in the table mappings",
            )
        skipped.append(f"{f.what}: not migrated, it depends on {_tables(cause[e.dump_id], by_id, facts)}")

    moved: set[int] = set()
    if primary_keys_first:
        pg_constraint = 2606
        for e in entries:
            f = fact(e)
            primary = e.classid == pg_constraint and f is not None and f.kind == "p"
            if primary and e.dump_id in post_ids and e.dump_id not in removed:
                moved.add(e.dump_id)
        for e in entries:  # partition index attachments and comments of the moved keys move with them
            follows = e.desc in ("INDEX ATTACH", "COMMENT") and any(d in moved for d in e.deps)
            if follows and e.dump_id in post_ids and e.dump_id not in removed:
                moved.add(e.dump_id)

    refresh = []
    for e in entries:
        f = fact(e)
        if e.classid == pg_class and f is not None and f.kind == "m" and f.populated and e.dump_id not in removed:
            assert f.name is not None
            refresh.append(f.name)
    return _Selection(removed, moved, skipped, refresh)


def _close(
    entries: list[TocEntry], removed: dict[int, str], cause: dict[int, set[int]], exempt: set[int] | None = None
) -> None:
    """Remove every entry (but the ``exempt``) that depends on a removed one.  Dependencies point
    backwards in restore order, so one pass in that order closes them transitively."""
    for e in entries:
        if e.dump_id in removed or (exempt and e.dump_id in exempt):
            continue
        gone = [d for d in e.deps if d in removed]
        if gone:
            removed[e.dump_id] = "depends on an object not migrated"
            cause[e.dump_id] = set().union(*(cause[d] for d in gone))


def _describe_nil(e: TocEntry) -> str:
    """Words for an entry with no catalog row: ``user mapping for postgres on server elsewhere``."""
    m = re.match(r"^- USER MAPPING (.*) SERVER (.*) \S+$", e.label)
    if e.desc == "USER MAPPING" and m:
        return f"user mapping for {m.group(1)} on server {m.group(2)}"
    return f"{e.desc.lower()} {e.label}"


def _tables(ids: set[int], by_id: dict[int, TocEntry], facts: dict[tuple[int, int], _Fact]) -> str:
    """``table public.customer, which is not selected`` / ``tables public.a, public.b, which are not selected``"""
    names = []
    for i in ids:
        e = by_id[i]
        f = facts.get((e.classid, e.objid))
        names.append(".".join(f.name) if f and f.name else e.label)
    names.sort()
    if len(names) == 1:
        return f"table {names[0]}, which is not selected"
    return f"tables {', '.join(names)}, which are not selected"


def _source_session(conn: psycopg.Connection, snapshot: str | None) -> str:
    """Open the catalog transaction; returns the snapshot pg_dump must use (ours when none is given),
    so the dump and the catalog facts we filter it with describe the same moment."""
    # An empty search_path makes pg_describe_object qualify every name ("view public.actor_info").
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        try:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        except psycopg.Error as exc:
            raise SourceError(
                f"the source snapshot {snapshot!r} cannot be used: {_first_line(str(exc))}",
                "the connection that exported it must stay open until the schema is dumped; re-run plan",
            ) from None
        return snapshot
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def _pg_dump_error(stderr: str, conninfo_env: Mapping[str, str], dbname: str, version: tuple[int, int]) -> BulkmigError:
    line = _first_line(stderr)
    if "server version mismatch" in stderr:
        m = re.search(r"server version: ([\d.]+)", stderr)
        server = m.group(1) if m else "newer"
        return ConfigError(
            f"pg_dump {version[0]}.{version[1]} is older than the source server ({server}) and refuses to dump it",
            f"install postgresql-client {server.split('.')[0]} (or newer) and use its pg_dump",
        )
    if "connection to server" in stderr or "password authentication" in stderr:
        return _connect_error("source", conninfo_env, dbname, line)
    if "snapshot" in stderr.lower():
        return SourceError(f"pg_dump cannot use the plan's snapshot: {line}", "re-run plan")
    return SourceError(f"pg_dump failed on the {_where('source', conninfo_env, dbname)}: {line}", "see the message")


def dump_schema(
    conninfo_env: dict[str, str],
    dbname: str,
    snapshot: str | None,
    tables: list[tuple[str, str]] | None,
    out_dir: Path,
    pg_dump: str | None = None,
    *,
    primary_keys_first: bool = PRIMARY_KEYS_FIRST,
) -> SchemaFiles:
    """Dump the source's schema into ``out_dir`` as ``pre-data.sql`` and ``post-data.sql``.

    Also leaves there ``schema.dump`` (the custom-format archive, for a human with pg_restore),
    ``toc.list`` (its table of contents, every left-out entry commented out with the reason) and the
    two per-section lists the SQL files were made from.  ``snapshot`` is an exported snapshot the
    dump reads in (the plan's); ``tables`` the selected ``(schema, table)`` pairs, or None for all.
    The schema ``bulkmig`` is never dumped (a former target's ledger).
    """
    dump_exe = find_tool("pg_dump", pg_dump)
    restore_exe = _sibling(dump_exe, "pg_restore")
    version = tool_version(dump_exe)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _child_env(conninfo_env, dbname)
    archive = out_dir / "schema.dump"

    with connect_env(conninfo_env, dbname, "source") as conn:
        server = conn.info.server_version
        if server // 10000 > version[0]:
            raise ConfigError(
                f"pg_dump {version[0]}.{version[1]} is older than the source server "
                f"({server // 10000}.{server % 10000}) and cannot dump it",
                f"install postgresql-client {server // 10000} (or newer) and use its pg_dump",
            )
        snap = _source_session(conn, snapshot)
        argv = [dump_exe, "--schema-only", "-Fc", "--no-owner", "--no-privileges", "--no-subscriptions"]
        argv.append(f"--snapshot={snap}")
        argv += [f"--exclude-schema={BULKMIG_SCHEMA}", "-f", str(archive)]
        done = _run(argv, env)
        if done.returncode != 0:
            raise _pg_dump_error(done.stderr, conninfo_env, dbname, version)

        listing = _restore(restore_exe, ["-l", "-v", str(archive)], env).stdout
        post_ids = {
            e.dump_id for e in parse_toc(_restore(restore_exe, ["-l", "--section=post-data", str(archive)], env).stdout)
        }
        entries = parse_toc(listing)
        facts = _facts(conn, entries)
        keep = _kept_tables(conn, tables) if tables is not None else None
        subscriptions = [r[0] for r in conn.execute(_SUBSCRIPTIONS_SQL)]
        conn.execute("COMMIT")

    chosen = _select(entries, facts, keep, post_ids, primary_keys_first)
    chosen.skipped += [
        f"subscription {name}: not migrated, its connection string may hold a password and it would pull "
        "changes into the target; recreate it there after cutover"
        for name in subscriptions
    ]
    pre_ids = {
        e.dump_id for e in parse_toc(_restore(restore_exe, ["-l", "--section=pre-data", str(archive)], env).stdout)
    }
    lines = listing.splitlines()
    toc = out_dir / "toc.list"
    toc.write_text(_annotated(lines, entries, chosen), encoding="utf-8", errors="surrogateescape")

    files = {}
    for section, ids in (
        (PRE_DATA, (pre_ids | chosen.moved) - chosen.removed.keys()),
        (POST_DATA, post_ids - chosen.moved - chosen.removed.keys()),
    ):
        section_list = out_dir / f"{section}.list"
        section_list.write_text(
            "".join(lines[e.line_no] + "\n" for e in entries if e.dump_id in ids),
            encoding="utf-8",
            errors="surrogateescape",
        )
        target = out_dir / f"{section}.sql"
        _restore(
            restore_exe,
            ["--no-owner", "--no-privileges", "-L", str(section_list), "-f", str(target), str(archive)],
            env,
        )
        files[section] = target

    refreshed = [f"{schema}.{name}" for schema, name in chosen.refresh]
    if chosen.refresh:
        _add_refreshes(files[POST_DATA], chosen.refresh)
    return SchemaFiles(
        pre_data=files[PRE_DATA],
        post_data=files[POST_DATA],
        archive=archive,
        skipped=chosen.skipped,
        toc=toc,
        refreshed=refreshed,
    )


def _restore(exe: str, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    done = _run([exe, *args], env)
    if done.returncode != 0:
        raise SourceError(f"pg_restore could not read the schema archive: {_first_line(done.stderr)}", "re-run plan")
    return done


def _annotated(lines: list[str], entries: list[TocEntry], chosen: _Selection) -> str:
    """The listing with every left-out entry commented out (pg_restore -L skips ';' lines)."""
    out = list(lines)
    for e in entries:
        if e.dump_id in chosen.removed:
            out[e.line_no] = f";{lines[e.line_no]}\t; bulkmig: left out, {chosen.removed[e.dump_id]}"
        elif e.dump_id in chosen.moved:
            out[e.line_no] = f"{lines[e.line_no]}\t; bulkmig: applied with pre-data"
    return "\n".join(out) + "\n"


def _add_refreshes(post_data: Path, matviews: list[tuple[str, str]]) -> None:
    """Add ``REFRESH MATERIALIZED VIEW`` for the views populated on the source, in restore order (so a
    view built on another is refreshed after it): after the indexes (a view's unique index is built
    on the fresh rows), before any event trigger (REFRESH fires them) and the dump's closing lines."""
    block = ["--", "-- bulkmig: materialized views that were populated on the source", "--", ""]
    for schema, name in matviews:
        block.append(f"REFRESH MATERIALIZED VIEW {qualified(schema, name)};")
    block.append("")
    text = post_data.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.splitlines()
    at = len(lines)
    for i, line in enumerate(lines):
        if line.startswith("-- PostgreSQL database dump complete") or (
            _HEADER_RE.match(line) and "; Type: EVENT TRIGGER;" in line
        ):
            at = max(i - 1, 0)
            break
    lines[at:at] = block
    post_data.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")


# ------------------------------------------------------------------------------------------- apply


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


def _marker_sql(section: str, volume_id: str | None) -> str:
    """Run in the section's own transaction, so the marker exists exactly when the section does.

    ``client_min_messages`` hides the "already exists, skipping" notices of the second section.
    """
    table = qualified(BULKMIG_SCHEMA, MARKER_TABLE)
    vol = literal(volume_id) if volume_id is not None else "NULL"
    return (
        "SET client_min_messages = warning;\n"
        f"CREATE SCHEMA IF NOT EXISTS {ident(BULKMIG_SCHEMA)};\n"
        f"CREATE TABLE IF NOT EXISTS {table} (section text PRIMARY KEY, volume_id text, "
        "applied_at timestamptz NOT NULL DEFAULT pg_catalog.now());\n"
        f"INSERT INTO {table} (section, volume_id) VALUES ({literal(section)}, {vol});"
    )


def apply_schema(
    target_env: dict[str, str],
    dbname: str,
    sql_file: Path,
    section: str,
    *,
    volume_id: str | None = None,
    existing: Literal["error", "skip"] = "error",
    psql: str | None = None,
) -> None:
    """Apply one section file to the target with psql, all of it or nothing (one transaction).

    Rerunnable: the section's transaction also writes its row in ``bulkmig.schema_applied``, so a
    rerun (a resumed load) finds the section done and returns.  A section applied from another
    volume is refused.  Before pre-data, tables it would create must not exist: that is someone
    else's data, and is refused with their names unless ``existing="skip"`` (then pre-data is not
    applied at all and the existing tables are trusted to match).
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, not {section!r}")
    if existing not in ("error", "skip"):
        raise ConfigError(f"existing must be 'error' or 'skip', not {existing!r}", "fix the caller")
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
        if _already_applied(conn, section, volume_id):
            return
        if section == PRE_DATA:
            clash = _existing(conn, created_tables(sql_file))
            if clash:
                if existing == "skip":
                    say(f"schema: {len(clash)} tables of pre-data already exist on the target; not applying it")
                    return
                shown = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
                raise TargetError(
                    f"the target already holds {shown}; pre-data would create {'it' if len(clash) == 1 else 'them'}",
                    "drop them or use a fresh database",
                )

    # Lock, marker, then the file, all in one transaction.  The marker goes first so that its DDL runs
    # before post-data creates event triggers (pg_dump puts them last), which could refuse it.
    argv = [psql_exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    argv += ["-c", f"SELECT pg_catalog.pg_advisory_xact_lock({_SCHEMA_LOCK})", "-c", _marker_sql(section, volume_id)]
    argv += ["-f", str(sql_file)]
    done = _run(argv, _child_env(target_env, dbname))
    if done.returncode == 0:
        return
    with contextlib.suppress(BulkmigError), connect_env(target_env, dbname, "target") as conn:
        if _already_applied(conn, section, volume_id, quiet=True):
            return  # another loader applied it while we waited for the lock
    raise _psql_error(done.stderr, sql_file, section, target_env, dbname)


def _already_applied(conn: psycopg.Connection, section: str, volume_id: str | None, quiet: bool = False) -> bool:
    marker = _marker(conn, section)
    if marker is None:
        return False
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
