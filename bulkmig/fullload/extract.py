"""`bulkmig extract`: execute the plan, writing one Parquet part and one sidecar per partition.

Resumable by construction: a part exists only once its sidecar is written (after the part), and a
rerun skips every part whose sidecar verifies against the part's bytes.  Everything else is redone
from scratch, so a killed extraction never leaves half a part that a later stage would trust.

Consistency: a coordinator connection exports one snapshot and stays idle in its transaction while
every worker imports it (``SET TRANSACTION SNAPSHOT``), so all parts show the source at one moment.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.crypto import Key, key_for_plan
from bulkmig.core.errors import BulkmigError, ConfigError, IntegrityError, SourceError
from bulkmig.core.executor import ClusterLost, run_on_dask
from bulkmig.core.log import Progress, human_bytes, say
from bulkmig.core.manifest import PartManifest
from bulkmig.core.model import Table
from bulkmig.core.parquet import write_parquet
from bulkmig.core.retry import Reason, first_line, retryable
from bulkmig.core.store import DiskFull, Store, is_disk_full, no_space, open_store
from bulkmig.core.workers import Pool, prefetch
from bulkmig.engines import foreign_source
from bulkmig.engines.postgres.connect import connect, snapshot_importable
from bulkmig.engines.postgres.reader import FarValue, SnapshotReader, arrow_schema
from bulkmig.engines.postgres.sql import literal
from bulkmig.fullload import devices
from bulkmig.fullload.plan import Plan, load_plan_for
from bulkmig.transform.apply import Transformer, part_schema
from bulkmig.transform.plan import added_columns


@dataclass
class ExtractReport:
    parts_total: int
    parts_written: int
    parts_skipped: int
    rows: int
    bytes: int


def parse_agent(spec: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): this agent takes every 4th part starting with the 2nd."""
    if not spec:
        return 1, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--agent {spec!r} is not I/N", "write it like --agent 2/4") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--agent {spec}: I must be between 1 and N", "write it like --agent 2/4")
    return i, n


def read_sidecars(store: Store, volume_id: str) -> dict[str, PartManifest]:
    """Every readable sidecar on the volume, by key, read once per extract run.

    A damaged sidecar is left out (its part is redone); one of another volume means the volume mixes
    two migrations, which is refused.
    """
    found: dict[str, PartManifest] = {}
    for info in store.list(layout.DATA_DIR + "/"):
        if not info.key.endswith(layout.SIDECAR_SUFFIX):
            continue
        try:
            manifest = PartManifest.from_bytes(store.get_bytes(info.key))
        except BulkmigError:
            continue
        if manifest.volume_id != volume_id:
            raise IntegrityError(
                f"{info.key} belongs to volume {manifest.volume_id}, not {volume_id}",
                "this volume mixes two migrations; use a fresh volume",
            )
        found[info.key] = manifest
    return found


def part_is_done(store: Store, manifest: PartManifest | None) -> bool:
    """Whether the part its sidecar describes is on the store, complete and unaltered (sha256 recomputed)."""
    if manifest is None:
        return False
    info = store.stat(manifest.key)
    return info is not None and info.size == manifest.bytes and store.sha256(manifest.key) == manifest.sha256


def _tmp_dir(store: Store) -> str | None:
    """Write parts next to a local volume so publishing them is a rename, not a copy."""
    root = getattr(store, "root", None)
    if root is None:
        return None
    path = Path(root) / ".bulkmig-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def extract_part(
    reader: Any, store: Store, plan: Plan, table: Table, index: int, encrypt_with: Key | None = None
) -> PartManifest:
    part = table.partitions[index]
    key = layout.part_key(table.schema, table.name, index)
    fd, tmp = tempfile.mkstemp(prefix="part-", suffix=layout.TEMP_SUFFIX, dir=_tmp_dir(store))
    os.close(fd)
    as_text: frozenset[str] = frozenset()
    # The table's masks and added columns (DMS transformation rules) apply before a byte is written.
    transformer = Transformer(table, plan.snapshot) if table.transform else None
    try:
        while True:
            try:
                batches = prefetch(reader.batches(table, part, as_text))
                schema = arrow_schema(table, as_text)
                if transformer is not None and transformer.active:
                    schema = part_schema(table, schema)
                    batches = transformer.batches(batches, schema)
                rows, groups = write_parquet(
                    batches,
                    schema,
                    Path(tmp),
                    plan.settings["max_row_group_rows"],
                    plan.settings["compression"],
                    [c.name for c in table.copied_columns if c.dictionary and c.name not in as_text],
                    key=encrypt_with,
                )
                break
            except FarValue as far:
                # Rare: a date beyond Arrow's range.  Read this part again with that column as text.
                say(f"extract: {table.qualified}.{far.column} holds dates beyond Arrow's range; part {index} as text")
                as_text = as_text | {far.column}
        digest, size = store.put_file(key, Path(tmp), move=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    manifest = PartManifest(
        volume_id=plan.volume_id,
        schema=table.schema,
        table=table.name,
        index=index,
        key=key,
        rows=rows,
        bytes=size,
        sha256=digest,
        bounds=part.bounds,
        columns=[c.name for c in table.copied_columns] + [c.name for c in added_columns(table)],
        row_groups=groups,
        source_position={
            "snapshot": reader.snapshot,
            "lsn": reader.snapshot_lsn,
            "text_columns": sorted(as_text),
            **(reader.source_position() if hasattr(reader, "source_position") else {}),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    store.put_bytes(layout.sidecar_key(table.schema, table.name, index), manifest.to_bytes())
    return manifest


def extract_unit(
    task: Task, plan: Plan, snapshot: str, lsn: str | None, table: Table, index: int, encrypt_with: Key | None
) -> PartManifest:
    """One part, as a Dask worker runs it: its own connection inside the coordinator's exported snapshot
    (refused when that snapshot is gone: the coordinator died), its own handle on the part's device."""
    store = open_store(devices.path(task, table.partitions[index].device), task.volume_s3_options())
    reader = SnapshotReader(task.source, snapshot, lsn)
    try:
        return extract_part(reader, store, plan, table, index, encrypt_with)
    finally:
        reader.close()


def _check_columns(conn: Any, plan: Plan) -> None:
    """Refuse to extract a table whose columns changed since the plan (data would land in wrong columns)."""
    for table in plan.tables:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.name),
        ).fetchall()
        now = [(r[0], r[1]) for r in rows]
        planned = [(c.name, c.source_type) for c in table.columns]
        if not rows:
            raise SourceError(f"table {table.qualified} no longer exists on the source", "re-plan with --force")
        if now != planned:
            raise SourceError(
                f"the columns of {table.qualified} changed since the plan",
                "re-plan with `bulkmig plan --force` (the volume's parts would not match the new schema)",
            )


Done = Callable[[tuple[Table, int], PartManifest], None]
Failed = Callable[[tuple[Table, int], Exception], Callable[[tuple[Table, int]], bool] | None]


def _run_parts(
    stores: dict[str | None, Store],
    plan: Plan,
    todo: list[tuple[Table, int]],
    n_workers: int,
    open_reader: Callable[[], Any],
    progress: bool,
    report: ExtractReport,
    encrypt_with: Key | None,
    on_cluster: Callable[[Done, Failed], None] | None = None,
) -> None:
    """Extract ``todo`` on ``n_workers`` threads, each with a reader from ``open_reader`` — or, with
    ``on_cluster``, hand the parts to it (the Dask executor), which calls back as each one is done.

    Each part goes to its device's store (``stores[partition.device]``; ``None`` for a single volume).  A
    device that fills up stops its own remaining parts; the other devices' parts go on, and the run then
    fails naming the full device (a part cut short by it was never published)."""
    total_bytes = sum(t.partitions[i].estimated_bytes for t, i in todo)
    bar = Progress("extract", len(todo), total_bytes) if progress else None
    lock = threading.Lock()
    full: dict[str | None, Exception] = {}  # device -> its disk-full error

    def device(item: tuple[Table, int]) -> str | None:
        return item[0].partitions[item[1]].device

    def one(reader: Any, item: tuple[Table, int]) -> None:
        if device(item) in full:
            return  # its device is full: left for the rerun
        try:
            manifest = extract_part(reader, stores[device(item)], plan, item[0], item[1], encrypt_with)
        except Exception as exc:
            if failed(item, exc) is None:
                raise
            return
        done(item, manifest)

    def failed(item: tuple[Table, int], exc: Exception) -> Callable[[tuple[Table, int]], bool] | None:
        """A full device: remember it and stop its parts (returns which); anything else is raised."""
        if not is_disk_full(exc):
            return None
        with lock:
            full.setdefault(device(item), exc)
        name = device(item)
        return lambda other: device(other) == name

    def done(item: tuple[Table, int], manifest: PartManifest) -> None:
        table, index = item
        with lock:
            report.parts_written += 1
            report.rows += manifest.rows
            report.bytes += manifest.bytes
            estimated[0] += table.partitions[index].estimated_bytes
            written.add((table.schema, table.name, index))
        if bar:
            bar.advance(parts=1, rows=manifest.rows, nbytes=table.partitions[index].estimated_bytes)

    estimated = [0]  # the plan's estimate of the parts written by this run, for the disk-full message
    written: set[tuple[str, str, int]] = set()  # (schema, table, index) of this run's parts
    pool: Pool[tuple[Table, int], Any] = Pool("extract", open_reader, lambda reader: reader.close())
    try:
        if on_cluster is not None:
            on_cluster(done, failed)
        else:
            pool.run(todo, n_workers, one)
    except ClusterLost:
        raise  # the cluster, not the source: its own message says what to do
    except Exception as exc:
        left = len(todo) - report.parts_written
        lost = retryable(exc)
        if lost is not None and lost.kind != "conflict":
            raise _source_lost(plan, exc, lost, report.parts_written, left) from None
        raise
    finally:
        if bar:
            bar.finish()
    if full:
        name, exc = next(iter(full.items()))
        left = [(t, i) for t, i in todo if device((t, i)) == name and (t.schema, t.name, i) not in written]
        left_estimate = sum(t.partitions[i].estimated_bytes for t, i in left)
        error = _volume_full(stores[name], exc, len(left), left_estimate, report.bytes, estimated[0])
        if name is not None:
            others = report.parts_written
            error.message = f"device {name}: {error.message}; the other devices' {others} parts of this run are done"
        raise error


def _volume_full(store: Store, exc: Exception, left: int, left_estimate: int, written: int, estimate: int) -> DiskFull:
    """The volume's device filled up: say which device, and about how much the parts still to do need —
    the plan's estimate of their table bytes, scaled by what this run's parts came to on disk."""
    full = exc if isinstance(exc, DiskFull) else no_space(Path(_tmp_dir(store) or tempfile.gettempdir()), "")
    ratio = written / estimate if estimate and written else 1.0
    need = int(left_estimate * ratio)
    basis = (
        f"{ratio:.0%} of the plan's {human_bytes(left_estimate)} estimate, as parts came out so far"
        if (estimate and written)
        else "the plan's estimate of their table data"
    )
    on = f"device {full.device} mounted at {full.mount}" if full.device else str(full.mount)
    return DiskFull(
        f"the volume {store.url} is full: no space left on {on} ({human_bytes(full.free)} free); the {left} parts "
        f"not yet extracted need about {human_bytes(need)} ({basis})",
        f"free space on {full.mount} or move the volume to a larger device, then rerun `bulkmig extract`: the parts "
        "already on the volume are kept and skipped (a part cut short by the full disk was never published)",
        mount=full.mount,
        device=full.device,
        free=full.free,
        needed=need,
    )


def _source_lost(plan: Plan, exc: Exception, reason: Reason, written: int, left: int) -> SourceError:
    """The source restarted (or killed our sessions) mid-extraction.  No retry can help: every part of
    this run is read in one snapshot, and the snapshot ended with the sessions."""
    if plan.snapshot.get("exported_by") == "replication-slot":
        hint = (
            "the parts must be read in the change stream's snapshot, which is gone: start over with "
            "`bulkmig plan --restart` (discards this volume and its change stream)"
        )
    else:
        hint = (
            "rerun `bulkmig extract` once the source is back: it keeps the parts written and reads the rest in a new "
            "snapshot (the volume then shows the source at two moments: fine for a quiet source or with change "
            "replay; for one consistent image start over with `bulkmig plan --restart`)"
        )
    return SourceError(
        f"lost the source while extracting ({reason}: {first_line(exc)}): the snapshot this run reads in is gone; "
        f"{written} parts of this run are on the volume, {left} are not",
        hint,
    )


def _extract_foreign(
    task: Task,
    stores: dict[str | None, Store],
    plan: Plan,
    source: ModuleType,
    todo: list[tuple[Table, int]],
    earlier: set[str],
    n_workers: int,
    progress: bool,
    report: ExtractReport,
    encrypt_with: Key | None,
) -> None:
    """Extract a foreign source's parts (MySQL/MariaDB, SQLite) with ``n_workers`` readers in one snapshot.

    MySQL cannot export a snapshot to another process: ``plan`` recorded the position of its own snapshot
    (``plan.snapshot``) and this run opens a new one — FLUSH TABLES WITH READ LOCK, one START TRANSACTION
    WITH CONSISTENT SNAPSHOT per reader, the binlog position, UNLOCK — so every part of this run shows the
    source at one moment, at or after the plan's position.  Each sidecar records that position.  A full
    load is consistent as of it; with change capture, replay starts at the plan's (earlier) position and
    skips, per table, the changes older than the position its parts were read at (``replay.volume_marks``).
    """
    snap = source.open_snapshot(task.source, n_workers, batch_rows=int(plan.settings["max_row_group_rows"]))
    try:
        wanted = {(t.schema, t.name) for t, _ in todo}
        snap.check_columns([t for t in plan.tables if (t.schema, t.name) in wanted])
        if earlier - {snap.snapshot_id}:
            say(
                f"extract: warning: parts on the volume were read in earlier snapshot(s); the remaining "
                f"{len(todo)} are read in {snap.snapshot_id}: the volume is not one moment of a live source "
                "(fine for a quiet source, or with CDC replay from the plan's position)"
            )
        readers = list(snap.readers)
        _run_parts(stores, plan, todo, n_workers, readers.pop, progress, report, encrypt_with)
    finally:
        snap.close()
    at = snap.position.get("lsn") or "no binlog position"
    say(
        f"extract: wrote {report.parts_written} parts, {report.rows:,} rows, {report.bytes:,} bytes "
        f"to {_where(stores)} (snapshot {snap.snapshot_id} at {at}; the plan's position is "
        f"{plan.snapshot.get('lsn') or 'none'})"
    )


def resolve_parts(plan: Plan, specs: list[str]) -> list[tuple[Table, int]]:
    """The plan's parts named by ``specs``: a part or sidecar key as `volume verify` prints it
    (``data/public/film/part-00003.parquet``), ``schema.table:3``, or ``schema.table`` for all its parts."""
    by_name = {(t.schema, t.name): t for t in plan.tables}
    by_qualified = {t.qualified: t for t in plan.tables}
    out: list[tuple[Table, int]] = []
    for spec in specs:
        parsed = layout.parse_data_key(spec.strip().lstrip("/"))
        if parsed is not None:
            table, index = by_name.get((parsed[0], parsed[1])), parsed[2]
            wanted = [index] if table is not None else []
        else:
            name, _, number = spec.rpartition(":") if ":" in spec else (spec, "", "")
            table = by_qualified.get(name)
            wanted = [int(number)] if number.isdigit() else [p.index for p in table.partitions] if table else []
        if table is None or not wanted or any(i >= len(table.partitions) for i in wanted):
            raise ConfigError(
                f"--redo {spec!r} names no part of this plan",
                "give a part key as `bulkmig volume verify` prints it (data/<schema>/<table>/part-00003.parquet), "
                "schema.table:3, or schema.table for all of its parts",
            )
        out.extend((table, i) for i in wanted if (table, i) not in out)
    return out


def _refuse_inconsistent_redo(plan: Plan, parts: list[tuple[Table, int]], snapshot_held: bool) -> None:
    """``--redo`` without ``--not-consistent`` must read in the very snapshot the rest of the volume shows."""
    if snapshot_held:
        return
    names = ", ".join(f"{t.qualified}:{i}" for t, i in parts[:5]) + (" …" if len(parts) > 5 else "")
    cdc = plan.migration_type == "full-load-and-cdc"
    raise SourceError(
        f"cannot re-extract {names} in the snapshot the rest of the volume was read in: that snapshot is gone "
        "(it lives only while the process that took it runs)",
        "either add --not-consistent to read them now ("
        + (
            "change replay from the plan's position converges them: every applied change is idempotent"
            if cdc
            else "the volume then shows two moments of the source: fine for a quiet source"
        )
        + "), or start over with `bulkmig plan --restart`",
    )


def _refuse_keyless_convergence(plan: Plan, parts: list[tuple[Table, int]]) -> None:
    """From PostgreSQL, replay converges parts read after the stream's start only by idempotent upserts and
    deletes by key: a table without a primary key would get the changes in between twice.  (A MySQL
    stream skips, per table, the changes older than the snapshot its parts were read in — exact, and
    replay itself refuses a key-less table whose parts were read at different moments.)"""
    keyless = sorted({t.qualified for t, _ in parts if not t.primary_key})
    postgres = plan.source.get("engine", "postgresql") == "postgresql"
    if plan.migration_type == "full-load-and-cdc" and postgres and keyless:
        raise SourceError(
            f"--not-consistent cannot be exact for {', '.join(keyless)}: without a primary key, replaying the "
            "changes made since the stream's start onto rows read later would apply some of them twice",
            "start over with `bulkmig plan --restart` (or add a primary key to those tables first)",
        )


def _clear_parts(stores: dict[str | None, Store], parts: list[tuple[Table, int]]) -> None:
    """Remove the sidecars first (a part without one does not exist), then the parts themselves."""
    for table, index in parts:
        stores[table.partitions[index].device].delete(layout.sidecar_key(table.schema, table.name, index))
    for table, index in parts:
        stores[table.partitions[index].device].delete(layout.part_key(table.schema, table.name, index))


def _where(stores: dict[str | None, Store]) -> str:
    """``/mnt/vol`` or ``devices a (/mnt/dev-a), b (/mnt/dev-b)`` for the closing line."""
    if list(stores) == [None]:
        return stores[None].url
    return "devices " + ", ".join(f"{name} ({store.url})" for name, store in stores.items())


def _placement(item: tuple[Table, int]) -> dict[str, float] | None:
    """On a Dask cluster, a part of device b runs only on a worker offering ``device-b`` (its host mounts it)."""
    name = item[0].partitions[item[1]].device
    return {devices.resource(name): 1} if name else None


def extract(
    task: Task,
    *,
    workers: int | None = None,
    agent: str | None = None,
    snapshot: str | None = None,
    progress: bool = True,
    redo: list[str] | None = None,
    not_consistent: bool = False,
    executor: str | None = None,
    scheduler: str | None = None,
) -> ExtractReport:
    """Extract every part of the plan not yet on the volume (this agent's share with ``--agent I/N``).

    ``snapshot`` is an already exported snapshot to read in (``migrate`` passes the plan's, held open);
    without one, extraction exports its own and holds it for its whole run.

    ``redo`` re-extracts the named parts (damaged or altered ones `volume verify` named), whatever their
    sidecars say.  That is exact only inside the snapshot the other parts were read in, which only a
    full-load-and-cdc plan still running can offer; otherwise ``not_consistent`` must say that reading
    them at a later moment is acceptable.
    """
    store = open_store(task.volume, task.volume_s3_options())
    plan = load_plan_for(task, store)
    stores = devices.stores(task, plan.devices)  # {None: store} for a single volume
    encrypt_with = key_for_plan(task.settings.encryption.key_file, plan.settings, plan.volume_id)
    me, of = parse_agent(agent)
    mine = [pi for n, pi in enumerate(plan.parts()) if n % of == me - 1]
    slot_snapshot = plan.snapshot.get("exported_by") == "replication-slot"
    # Probing the plan's snapshot costs a connection: --redo and --not-consistent both ask, so ask once per run.
    snapshot_alive = functools.cache(lambda: snapshot_importable(task.source, str(plan.snapshot["name"])))
    if redo:
        mine = resolve_parts(plan, redo)
        held = slot_snapshot and snapshot_alive()
        _refuse_inconsistent_redo(plan, mine, held or not_consistent)
        if not held:
            _refuse_keyless_convergence(plan, mine)
        _clear_parts(stores, mine)
        say(f"extract: --redo: re-extracting {len(mine)} part(s); seal and import the volume again afterwards")
    sidecars = {k: m for each in stores.values() for k, m in read_sidecars(each, plan.volume_id).items()}
    todo = [
        (t, i)
        for t, i in mine
        if not part_is_done(stores[t.partitions[i].device], sidecars.get(layout.sidecar_key(t.schema, t.name, i)))
    ]
    # The snapshots every part already on the volume (any agent's) was read in.
    earlier = {
        str(m.source_position["snapshot"]) for m in sidecars.values() if (m.source_position or {}).get("snapshot")
    }
    skipped = len(mine) - len(todo)
    if skipped:
        say(f"extract: {skipped} of {len(mine)} parts already on the volume and verified; skipping them")
    report = ExtractReport(len(mine), 0, skipped, 0, 0)
    if not todo:
        return report
    n_workers = max(1, min(workers or task.settings.workers, len(todo)))
    on_dask = (executor or task.settings.executor) == "dask"

    foreign = foreign_source(str(plan.source.get("engine", "postgresql")))
    if foreign is not None:
        if on_dask:
            raise ConfigError(
                f"settings.executor: dask extracts PostgreSQL sources only; this source is {plan.source.get('engine')}",
                "set settings.executor: local (MySQL/MariaDB and SQLite extraction runs on this host: one consistent "
                "snapshot across hosts is not offered for them yet)",
            )
        _extract_foreign(task, stores, plan, foreign, todo, earlier, n_workers, progress, report, encrypt_with)
        return report

    if snapshot is None and slot_snapshot:
        # Change replay starts at the slot's snapshot: the parts must come from that very snapshot.
        snapshot = plan.snapshot["name"]
        if not_consistent and not snapshot_alive():
            _refuse_keyless_convergence(plan, todo)
            say(f"extract: --not-consistent: the plan's snapshot is gone; reading {len(todo)} parts in a new one")
            snapshot = ""  # export a fresh snapshot below
    holder = connect(task.source, autocommit=True)
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if not snapshot:
            snapshot, lsn = holder.execute("SELECT pg_export_snapshot(), pg_current_wal_lsn()::text").fetchone()
        else:
            lsn = plan.snapshot.get("lsn")
            try:
                holder.execute(f"SET TRANSACTION SNAPSHOT {literal(snapshot)}")
            except psycopg.Error:
                raise SourceError(
                    f"the plan's snapshot {snapshot} is gone (the process that held it has ended)",
                    "for full-load-and-cdc, keep `bulkmig plan` running while extracting (it holds the snapshot);"
                    " else `bulkmig extract --not-consistent` reads the remaining parts now (replay from the"
                    " plan's position converges them), or `bulkmig plan --restart` starts over",
                ) from None
        _check_columns(holder, plan)
        if todo and earlier - {snapshot}:
            # The parts already here were read at another moment, in a snapshot that is gone.
            say(
                "extract: warning: parts on the volume were read in snapshot(s) "
                f"{', '.join(sorted(str(e) for e in earlier))}; the remaining {len(todo)} are read in {snapshot}: the "
                "volume is not one moment of a live source (fine for a quiet source or with CDC replay; for one "
                "consistent image run extraction once, or use full-load-and-cdc, whose plan holds one snapshot)"
            )
        on_cluster = None
        if on_dask:
            where = scheduler or task.settings.scheduler

            def on_cluster(done: Done, failed: Failed) -> None:
                run_on_dask(
                    "extract",
                    where,
                    n_workers,
                    extract_unit,
                    todo,
                    lambda item: (task, plan, snapshot, lsn, item[0], item[1], encrypt_with),
                    done,
                    resources=_placement,
                    on_error=failed,
                )

            say(f"extract: {len(todo)} parts on {where or 'a local Dask cluster'} (snapshot {snapshot})")
        _run_parts(
            stores,
            plan,
            todo,
            n_workers,
            lambda: SnapshotReader(task.source, snapshot, lsn),
            progress,
            report,
            encrypt_with,
            on_cluster,
        )
    finally:
        holder.close()
    say(
        f"extract: wrote {report.parts_written} parts, {report.rows:,} rows, {report.bytes:,} bytes "
        f"to {_where(stores)} (snapshot {snapshot})"
    )
    return report
