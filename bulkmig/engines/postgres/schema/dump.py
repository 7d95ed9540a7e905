"""The dump: pg_dump --schema-only of the selected tables, split into pre-data and post-data SQL files for the
volume (see the package docstring for what is corrected)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from bulkmig.core.errors import BulkmigError, ConfigError, SourceError
from bulkmig.engines.postgres.schema.apply import _HEADER_RE
from bulkmig.engines.postgres.schema.common import (
    _MULTIWORD_DESCS,
    _SECRET_DESCS,
    BULKMIG_SCHEMA,
    POST_DATA,
    PRE_DATA,
    PRIMARY_KEYS_FIRST,
    SchemaFiles,
)
from bulkmig.engines.postgres.schema.tools import (
    _child_env,
    _connect_error,
    _first_line,
    _run,
    _sibling,
    _where,
    connect_env,
    find_tool,
    tool_version,
)
from bulkmig.engines.postgres.sql import qualified

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
