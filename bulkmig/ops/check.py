"""`bulkmig check`: the pre-flight an operator runs before (or instead of) ``plan``.

``plan`` stops at the first problem, and for ``full-load-and-cdc`` it changes the source on its way (a
publication, a replication slot).  At 3 a.m. an operator wants every problem at once, each with its fix,
and nothing touched.  So ``check`` runs every check even when one fails, one line each (``ok``, ``FAIL``
with the problem and the exact setting / GRANT / ALTER ROLE that fixes it, or ``skip`` with why), and
only reads: no publication, no slot, no CREATE, no lock, nothing written to the volume or the bucket.

Each check calls the very function the stage calls (``require_select``, ``check_wal_level``,
``require_cdc``, ``check_cdc_ready``, the bucket probe, ``plan_mismatch``…), so ``check`` and the stage
never disagree.  Two are read-only stand-ins for what the stage learns only by doing it: MySQL's RELOAD
privilege (the stage finds out when FLUSH TABLES WITH READ LOCK is refused; taking that lock to find out
would hold up the source's writes) is read from SHOW GRANTS, and the volume's writability comes from the
filesystem's flags and permissions rather than from writing a file.

The exit code is 0 when nothing failed, else the exit code of the first failure's class
(``bulkmig.core.errors``): the same code the stage would have stopped with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core import crypto
from bulkmig.core.errors import EXIT_FAILED, EXIT_OK, BulkmigError, ConfigError, PrivilegeError, StoreError
from bulkmig.core.log import human_bytes

OK = "ok"
FAIL = "FAIL"
SKIP = "skip"


@dataclass
class CheckResult:
    """One check's outcome: ``detail`` is what was found (ok), the problem (FAIL) or why not run (skip)."""

    name: str
    status: str
    detail: str
    fix: str = ""
    exit_code: int = EXIT_OK

    def line(self, width: int = 0) -> str:
        text = f"{self.status:<4}  {self.name:<{width}}  {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """The first failure's exit code (the one the stage would have stopped with), else 0."""
        return self.failed[0].exit_code if self.failed else EXIT_OK

    def render(self) -> str:
        width = max((len(r.name) for r in self.results), default=0)
        lines = [r.line(width) for r in self.results]
        counts = {s: sum(r.status == s for r in self.results) for s in (OK, FAIL, SKIP)}
        lines.append(f"check: {counts[OK]} ok, {counts[FAIL]} failed, {counts[SKIP]} skipped")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.results], indent=1)


class Skip(Exception):
    """Raised by a check that does not apply to this task; the message says why."""


class _Checks:
    """Runs the checks in order; a check whose prerequisite did not pass is skipped, naming it."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.report = CheckReport()
        self.passed: set[str] = set()
        self.closers: list[Callable[[], None]] = []
        # Facts later checks need, set by earlier ones.
        self.source_conn: Any = None
        self.tables: list[tuple[str, str]] = []
        self.source_bytes: int | None = None
        self.shaped: list[Any] = []  # planned tables the data-changing DMS rules touch (bulkmig.transform)

    def run(self, name: str, check: Callable[[], str], *needs: str) -> None:
        missing = [n for n in needs if n not in self.passed]
        if missing:
            self.report.results.append(CheckResult(name, SKIP, f"needs {missing[0]}, which did not pass"))
            return
        try:
            detail = check()
        except Skip as why:
            self.report.results.append(CheckResult(name, SKIP, str(why)))
            return
        except BulkmigError as exc:
            self.report.results.append(CheckResult(name, FAIL, exc.message, exc.hint, exc.exit_code))
            return
        except Exception as exc:  # noqa: BLE001 - one check's surprise must not hide the others' results
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.report.results.append(
                CheckResult(
                    name,
                    FAIL,
                    f"unexpected {type(exc).__name__}: {first}",
                    "rerun with --debug and report it",
                    EXIT_FAILED,
                )
            )
            return
        self.report.results.append(CheckResult(name, OK, detail))
        self.passed.add(name)

    def run_source(self, connect: Callable[[], Any], describe: Callable[[Any], str], tables: Callable[[], str]) -> None:
        """The two checks every source starts with.  ``source.connect`` opens the one connection the later
        source checks read through (closed when the checks end) and says what answered (``describe``);
        ``source.tables`` says what the task's mappings select there."""

        def connected() -> str:
            conn = connect()
            self.closers.append(conn.close)
            self.source_conn = conn
            return describe(conn)

        self.run("source.connect", connected)
        self.run("source.tables", tables, "source.connect")

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):  # closing a read-only connection: nothing to report
                close()


def check(task: Task) -> CheckReport:
    """Every pre-flight check for ``task``, read-only, all of them even when some fail."""
    c = _Checks(task)
    try:
        c.run("task.encryption_key", lambda: _encryption_key(task))
        engine = task.source.engine
        if engine == "postgresql":
            _postgres_source(c)
        elif engine == "mysql":
            _mysql_source(c)
        else:
            _sqlite_source(c)
        c.run("target.connect", lambda: _target(c))
        c.run("bucket.reachable", lambda: _bucket(task))
        c.run("volume.writable", lambda: _volume_writable(task))
        c.run("volume.free_space", lambda: _volume_free_space(c), "volume.writable")
        c.run("volume.plan", lambda: _volume_plan(task), "volume.writable")
    finally:
        c.close()
    return c.report


# ------------------------------------------------------------------------------------------------ task


def _encryption_key(task: Task) -> str:
    key_file = task.settings.encryption.key_file
    if not key_file:
        raise Skip("parts are not encrypted (settings.encryption.key_file is not set)")
    key = crypto.task_key(key_file)
    assert key is not None
    return f"key {key.id} read from settings.encryption.key_file"


def _select(task: Task, names: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (schema, table) pairs the task's mappings select among a foreign source's tables, refused as
    ``plan_foreign`` refuses them (a rule matching nothing, or nothing selected)."""
    return [(sel.schema, sel.table) for sel in task.mappings.select_or_refuse(names)]


def _tables_detail(c: _Checks, total: int) -> str:
    size = f", {human_bytes(c.source_bytes)} on the source" if c.source_bytes is not None else ""
    return f"the table mappings select {len(c.tables)} of {total} tables{size}"


def _no_cdc(task: Task) -> None:
    if not task.cdc:
        raise Skip(f"migration_type {task.migration_type}: no change data capture")


# ------------------------------------------------------------------------------------------ PostgreSQL


def _postgres_source(c: _Checks) -> None:
    from bulkmig.engines.postgres import privileges, reflect
    from bulkmig.engines.postgres.connect import connect, require_version
    from bulkmig.engines.postgres.slot import check_wal_level, find_tables_without_identity, refuse_missing_identity
    from bulkmig.engines.postgres.sql import qualified
    from bulkmig.fullload.plan import _selected
    from bulkmig.transform import plan as transform_plan

    task = c.task

    def describe(conn: Any) -> str:
        require_version(conn, task.source)
        version = conn.execute("SHOW server_version").fetchone()[0]
        return f"PostgreSQL {version} at {task.source.redacted()}"

    def tables() -> str:
        found = reflect.list_tables(c.source_conn)
        chosen = _selected(task, found)
        # The data-changing rules are decided here as plan decides them: a rule plan would refuse fails here.
        transform_plan.build(
            task.mappings, [s.table for s in chosen], lambda t: reflect.tablespaces(c.source_conn, t), cdc=task.cdc
        )
        c.shaped = [s.table for s in chosen if s.table.transform]
        c.tables = [(s.table.schema, s.table.name) for s in chosen]
        c.source_bytes = sum(s.table.estimated_bytes for s in chosen)
        return _tables_detail(c, len(found))

    def select() -> str:
        privileges.require_select(c.source_conn, c.tables)
        return f"the login may read all {len(c.tables)} selected tables"

    def wal_level() -> str:
        _no_cdc(task)
        check_wal_level(c.source_conn)
        return "wal_level = logical, replication slots available"

    def cdc_privileges() -> str:
        _no_cdc(task)
        privileges.require_cdc(c.source_conn, c.tables)
        return "the login may create the publication and the replication slot"

    def replica_identity() -> str:
        _no_cdc(task)
        # The refusal create_publication makes before it publishes anything (DESIGN §6), without publishing.
        missing = find_tables_without_identity(c.source_conn, c.tables)
        if not missing:
            return f"all {len(c.tables)} selected tables have a primary key or replica identity"
        if not task.settings.allow_replica_identity_full:
            refuse_missing_identity(missing)
        listed = ", ".join(qualified(s, t) for s, t in missing)
        return f"plan will set REPLICA IDENTITY FULL on {len(missing)} table(s), as the task allows: {listed}"

    # autocommit: no transaction is left idle on the source
    c.run_source(lambda: connect(task.source, autocommit=True), describe, tables)
    c.run("source.select_privilege", select, "source.tables")
    c.run("source.wal_level", wal_level, "source.connect")
    c.run("source.cdc_privileges", cdc_privileges, "source.tables")
    c.run("source.replica_identity", replica_identity, "source.tables")


# ------------------------------------------------------------------------------------------ MySQL


def _mysql_source(c: _Checks) -> None:
    from bulkmig.engines.mysql import binlog, source
    from bulkmig.engines.mysql import connect as my
    from bulkmig.engines.mysql.reflect import reflect

    task = c.task

    def describe(conn: Any) -> str:
        version, mariadb = my.server_info(conn)
        return f"{'MariaDB' if mariadb else 'MySQL'} {version} at {task.source.redacted()}"

    def tables() -> str:
        if not task.source.database:
            raise ConfigError(
                f"source {task.source.redacted()} names no database",
                "write the database to migrate in the URL: mysql://user@host/dbname in `source:`",
            )
        # A plain connection, as `convert` reads it: plan's snapshot lock (FTWRL) is no business of a check.
        catalog = reflect(c.source_conn, task.source.database, source.type_settings(task), objects=False)
        names = [(catalog.schema, t.table.name) for t in catalog.tables]
        c.tables = _select(task, names)
        chosen = {name for _, name in c.tables}
        c.source_bytes = sum(t.table.estimated_bytes for t in catalog.tables if t.table.name in chosen)
        return _tables_detail(c, len(names))

    def reload() -> str:
        held = binlog.global_privileges(c.source_conn)
        if held & {"RELOAD", "ALL", "ALL PRIVILEGES"}:
            return "the login holds RELOAD (FLUSH TABLES WITH READ LOCK lines the readers up on one snapshot)"
        raise PrivilegeError(
            f"source {task.source.redacted()}: {task.source.user!r} lacks the RELOAD privilege, which FLUSH TABLES "
            "WITH READ LOCK needs to line every reader up on one consistent snapshot",
            f"as an admin run: GRANT RELOAD ON *.* TO '{task.source.user}'@'<host>'",
        )

    def binlog_ready() -> str:
        _no_cdc(task)
        source.check_cdc_ready(task)  # exactly plan's refusal: settings and REPLICATION grants at once
        return "binlog on, binlog_format=ROW, binlog_row_image=FULL; REPLICATION SLAVE and CLIENT held"

    c.run_source(lambda: my.connect(task.source), describe, tables)
    c.run("source.reload_privilege", reload, "source.connect")
    c.run("source.binlog", binlog_ready, "source.connect")


# ------------------------------------------------------------------------------------------ SQLite


def _sqlite_source(c: _Checks) -> None:
    from bulkmig.engines import check_cdc_ready
    from bulkmig.engines.sqlite import connect as lite
    from bulkmig.engines.sqlite import reflect as rf

    task = c.task

    def describe(conn: Any) -> str:
        size = os.path.getsize(lite.database_path(task.source))
        return f"SQLite {sqlite3.sqlite_version}, {task.source.redacted()} ({human_bytes(size)}) opens read-only"

    def tables() -> str:
        found = rf.list_tables(c.source_conn)
        c.tables = _select(task, [(rf.SCHEMA, t.name) for t in found])
        c.source_bytes = os.path.getsize(lite.database_path(task.source))  # the file: an upper bound
        return _tables_detail(c, len(found))

    def cdc() -> str:
        _no_cdc(task)
        check_cdc_ready(task)
        return "change data capture is possible"

    # read-only (mode=ro): not even a journal is written
    c.run_source(lambda: lite.connect(task.source), describe, tables)
    c.run("source.cdc", cdc)


# ------------------------------------------------------------------------------------------ target


def _target(c: _Checks) -> str:
    from bulkmig.targets import target_for

    return str(target_for(c.task).check_target(c.shaped))


# ------------------------------------------------------------------------------------ bucket, volume


def _probe(url: str, options: Any) -> str:
    """Open an S3 store and probe its bucket (HEAD bucket: reads nothing, writes nothing)."""
    from bulkmig.core.store import S3Store, open_store

    store = open_store(url, options)
    assert isinstance(store, S3Store)
    _ = store.client  # the store's own fast probe: endpoint answers, credentials accepted, bucket exists
    return f"{store.url} answers at {store.endpoint}"


def _bucket(task: Task) -> str:
    return _probe(task.bucket, task.s3_options())


def _no_volume(task: Task) -> None:
    if task.migration_type == "cdc":
        raise Skip("migration_type cdc: no volume travels")


def _existing_dir(path: Path) -> Path:
    """The path itself or its nearest existing ancestor (plan creates the missing directories)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _volume_writable(task: Task) -> str:
    from bulkmig.core.store import mount_device

    _no_volume(task)
    if task.volume_is_s3:
        return _probe(task.volume, task.volume_s3_options())
    path = Path(task.volume)
    existing = _existing_dir(path)
    if not existing.is_dir():
        raise StoreError(f"volume {path}: {existing} is not a directory", "point `volume:` at a directory")
    mount, device = mount_device(existing)
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise StoreError(
            f"volume {path} is on a read-only filesystem ({device or 'mounted'} at {mount})",
            f"remount it read-write (mount -o remount,rw {mount}) or point `volume:` elsewhere",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(
            f"volume {path}: this user may not write in {existing}",
            f"chown or chmod {existing} for the user running bulkmig, or point `volume:` elsewhere",
        )
    return f"{path} is writable" + ("" if existing == path else " (plan creates it)")


def _volume_free_space(c: _Checks) -> str:
    """Enough room for the parts extract writes at once; the source's size as a guide beyond that."""
    from bulkmig.core.store import mount_device

    task = c.task
    if task.volume_is_s3:
        raise Skip("an S3 volume reports no free space")
    path = Path(task.volume)
    mount, device = mount_device(path)
    free = shutil.disk_usage(_existing_dir(path)).free
    in_flight = task.settings.max_part_bytes * task.settings.workers
    needed = min(in_flight, c.source_bytes) if c.source_bytes is not None else in_flight
    where = f"{device} at {mount}" if device else str(mount)
    if free < needed:
        raise StoreError(
            f"volume {path}: {human_bytes(free)} free on {where}, but extract writes up to {human_bytes(needed)} "
            f"at once ({task.settings.workers} workers × max_part_bytes {human_bytes(task.settings.max_part_bytes)})",
            "free space on that device or use a larger one (or lower settings.workers / settings.max_part_bytes)",
        )
    detail = f"{human_bytes(free)} free on {where}"
    if c.source_bytes is None:
        return detail
    detail += f"; the selected tables take {human_bytes(c.source_bytes)} on the source"
    if free < c.source_bytes:
        detail += " (more than is free: fits only if Parquet compresses them enough; watch `bulkmig status`)"
    return detail


def _volume_plan(task: Task) -> str:
    from bulkmig.core.store import open_store
    from bulkmig.fullload.plan import plan_mismatch, read_plan

    _no_volume(task)
    store = open_store(task.volume, task.volume_s3_options())
    plan = read_plan(store)
    if plan is None:
        return "holds no plan yet"
    if not plan.made_by(task):
        raise plan_mismatch(task, store, plan)
    crypto.key_for_plan(task.settings.encryption.key_file, plan.settings, plan.volume_id)
    done = plan.extracted(store)
    return f"holds this task's plan (volume {plan.volume_id}, {done} of {plan.total_parts} parts extracted)"
