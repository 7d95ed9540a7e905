"""`bulkmig load`: import an imported volume from the bucket into the target.

Order, for every target: the schema's pre-data section (types, tables), then every part, then post-data
(primary keys, secondary indexes, foreign keys, triggers, materialized view refreshes), then what the target
does after it (PostgreSQL: renames and sequence values), then statistics.  Primary keys are built after the
data by default (``settings.schema.primary_keys``), as pg_restore does: one sorted build instead of a B-tree
grown row by row; ``before`` puts them in pre-data, so a duplicate row is refused while loading, naming its
part.  Triggers and foreign keys do not exist yet while rows arrive (and a PostgreSQL loading session runs
with ``session_replication_role = replica`` besides).

Exactly once: each part is loaded in one target transaction together with its row in the target's ledger
``bulkmig.loaded_parts``, so a crash or a second loader never loads a part twice, and a rerun loads exactly the
parts the ledger lacks.  This is what guarantees it, not a key: with the keys built after the data, a part
loaded twice would meet no duplicate-key error.  Every part's sha256 is checked against the sealed volume
manifest before a single row of it is sent.  The target engine (``engines/<engine>/target``) holds each step's
SQL; this module the order, the volume and the executor.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.crypto import Key, key_for_plan
from bulkmig.core.errors import BulkmigError, DevicesMissing, IntegrityError, PlanError, TargetError
from bulkmig.core.executor import run_on_dask
from bulkmig.core.log import Clock, Progress, say
from bulkmig.core.manifest import FileEntry, VolumeManifest, sha256_file
from bulkmig.core.model import Table
from bulkmig.core.retry import Reconnecting, Retry
from bulkmig.core.store import NotFound, Store, open_store
from bulkmig.engines.parts import load_parts
from bulkmig.fullload.plan import Plan, plan_mismatch, read_plan
from bulkmig.targets import target_for
from bulkmig.transform import target as transform_target


@dataclass
class LoadReport:
    parts_total: int
    parts_loaded: int
    parts_skipped: int
    rows: int


def find_plan(task: Task) -> Plan:
    """The task's plan, which says which tables (and filters) were moved: from the volume, else from the volume
    imported into the bucket (what validation and a MySQL target's replay go by)."""
    plan = read_plan(open_store(task.volume, task.volume_s3_options()))
    if plan is None:
        _, _, plan = find_volume(task)
    if plan is None:
        raise PlanError("no plan found on the volume or in the bucket", "run plan, extract, import and load first")
    return plan


def find_volume(task: Task, *, partial: bool = False) -> tuple[Store, VolumeManifest, Plan]:
    """The sealed, imported volume of this task in the bucket, with its manifest and plan checked.

    Several devices: the manifest covers the devices imported so far; unless ``partial`` (PostgreSQL's
    load, which loads the tables that have arrived), a device still missing is refused (DevicesMissing)."""
    bucket = open_store(task.bucket, task.s3_options())
    candidates = []
    for info in bucket.list("volumes/"):
        parts = info.key.split("/")
        single = len(parts) == 3 and parts[2] == layout.VOLUME_MANIFEST
        device = len(parts) > 3 and (layout.parse_device_key("/".join(parts[2:])) or ("", ""))[1] == "volume.json"
        if (single or device) and parts[1] not in candidates:
            candidates.append(parts[1])
    if not candidates:
        raise PlanError(
            f"{task.bucket} holds no imported volume",
            f"import one with `bulkmig volume import --task {task.path}`",
        )
    matching = []
    same_name: list[tuple[str, Store, Plan]] = []  # this task's name, other inputs: it changed since
    for volume_id in candidates:
        store = bucket.under(layout.bucket_volume_prefix("", volume_id))
        if not store.exists(layout.PLAN):
            continue
        plan_bytes = store.get_bytes(layout.PLAN)
        plan = Plan.from_bytes(plan_bytes, f"{store.url}/{layout.PLAN}")
        if plan.made_by(task):
            matching.append((plan.created_at, volume_id, store, plan, plan_bytes))
        elif plan.task_name == task.name:
            same_name.append((plan.created_at, store, plan))
    if not matching and same_name:
        _, store, plan = max(same_name, key=lambda item: item[0])
        raise plan_mismatch(task, store, plan)
    if not matching:
        raise PlanError(
            f"no volume in {task.bucket} was planned from this task ({', '.join(candidates)} belong to others "
            "or to a changed task)",
            "import this task's volume, or use the task file that planned it",
        )
    matching.sort()
    _, volume_id, store, plan, plan_bytes = matching[-1]
    if len(matching) > 1:
        say(f"load: {len(matching)} volumes of this task in the bucket; using the newest, {volume_id}")
    manifest = (
        arrived_manifest(store, plan)
        if plan.devices
        else VolumeManifest.from_bytes(store.get_bytes(layout.VOLUME_MANIFEST))
    )
    missing = missing_devices(plan, manifest)
    if missing and not partial:
        raise DevicesMissing(
            f"device(s) {', '.join(missing)} of volume {volume_id} are not imported into {task.bucket} yet",
            f"import each as it arrives (`bulkmig volume import --task {task.path} --device NAME`), then rerun",
        )
    if hashlib.sha256(plan_bytes).hexdigest() != manifest.plan_sha256:
        raise IntegrityError(
            f"{store.url}/{layout.PLAN} does not match its sealed manifest",
            "re-import the volume (`bulkmig volume import`)",
        )
    return store, manifest, plan


def arrived_manifest(store: Store, plan: Plan) -> VolumeManifest:
    """The files of every device of ``plan`` imported so far, as one manifest (:func:`missing_devices`
    tells which are not).  Two devices disagreeing on a shared file is refused."""
    files: dict[str, FileEntry] = {}
    arrived = []
    for d in plan.devices:
        key = layout.device_manifest(str(d["name"]))
        try:
            data = store.get_bytes(key)
        except NotFound:
            continue  # not imported yet
        one = VolumeManifest.from_bytes(data, f"{store.url}/{key}")
        if one.volume_id != plan.volume_id or (one.device or {}).get("name") != d["name"]:
            raise IntegrityError(
                f"{store.url}/{key} is not device {d['name']} of volume {plan.volume_id}", "re-import it"
            )
        for entry in one.files:
            if entry.key in files and files[entry.key] != entry:
                raise IntegrityError(
                    f"devices of volume {plan.volume_id} disagree on {entry.key}",
                    "the devices come from different plans: re-import each from its device",
                )
            files[entry.key] = entry
        arrived.append(str(d["name"]))
        plan_sha = one.plan_sha256
    if not arrived:  # find_volume saw a device manifest: it vanished since
        raise PlanError(f"no device of volume {plan.volume_id} is imported into {store.url}", "import one, then load")
    return VolumeManifest.build(plan.volume_id, plan_sha, files.values())


def missing_devices(plan: Plan, manifest: VolumeManifest) -> list[str]:
    """The plan's devices whose files ``manifest`` lacks (each device seals its own marker, so an imported
    device's marker is in the merged manifest); empty for a single volume."""
    return [str(d["name"]) for d in plan.devices if manifest.entry(layout.device_marker(str(d["name"]))) is None]


def _schema_file(store: Store, manifest: VolumeManifest, key: str, dest: Path) -> Path:
    entry = manifest.entry(key)
    store.download(key, dest)
    digest, size = sha256_file(dest)
    if entry is None or digest != entry.sha256 or size != entry.bytes:
        raise IntegrityError(f"{store.url}/{key} does not match the sealed manifest", "re-import the volume")
    return dest


def part_failed(target: Any, table: Table, index: int, exc: Exception) -> BaseException:
    """A part's own error as the operator reads it: ours as raised, a database error naming the part."""
    if isinstance(exc, BulkmigError):
        return exc
    return TargetError(
        f"loading {table.qualified} part {index} failed: {target.error_text(exc)}",
        "fix the cause and rerun `bulkmig load` (loaded parts are kept)",
    )


def load_unit(
    task: Task, store_url: str, manifest: VolumeManifest, plan: Plan, table: Table, index: int, key: Key | None
) -> int:
    """One part, as a Dask worker loads it: its own connection (a loading session), its own handle on the bucket
    and temp dir; exactly once through the ledger like every part, so a unit run twice (a lost worker's part
    rescheduled) finds its part loaded and returns 0."""
    store = open_store(store_url, task.s3_options())
    retry = Retry("load", task.settings.retry_timeout, hint="loaded parts are kept (ledger)")
    target = target_for(task)

    def once() -> int:
        conn = target.connect(loading=True)
        try:
            with tempfile.TemporaryDirectory(prefix="bulkmig-load-") as tmp:
                return target.load_part(conn, store, manifest, plan, table, index, Path(tmp), key)
        finally:
            conn.close()

    try:
        return retry.call(once, what=f"{table.qualified} part {index}")
    except Exception as exc:
        raise part_failed(target, table, index, exc) from None


def load(
    task: Task,
    *,
    workers: int | None = None,
    progress: bool = True,
    executor: str | None = None,
    scheduler: str | None = None,
) -> LoadReport:
    """Load every part the ledger lacks: on this host's threads, or with ``executor`` (default
    ``settings.executor``) ``dask`` as units on the cluster at ``scheduler`` (default ``settings.scheduler``).
    The target engine (:func:`bulkmig.targets.target_for`) supplies each step's SQL; the order is the same for
    every target."""
    target = target_for(task)
    clock = Clock()
    store, manifest, plan = find_volume(task, partial=True)
    # An encrypted volume's key is checked before the target is touched.
    decrypt_with = key_for_plan(task.settings.encryption.key_file, plan.settings, plan.volume_id)
    clock.lap("find volume")
    # A target that restarts or fails over mid-load is waited for (settings.retry_timeout): every step
    # below is one transaction or idempotent, so it is simply done again on a new connection.
    retry = Retry("load", task.settings.retry_timeout, hint="loaded parts are kept (ledger)")
    conn = Reconnecting(retry, target.connect, lambda c: c.close())
    conn.open()  # now: a wrong URL or password fails at once, not after retry_timeout
    with tempfile.TemporaryDirectory(prefix="bulkmig-load-") as tmpname:
        tmp = Path(tmpname)
        pre = _schema_file(store, manifest, layout.PRE_DATA, tmp / "pre-data.sql")
        retry.call(lambda: target.apply_pre_data(pre, plan.volume_id), what="pre-data")
        shaped = [t for t in plan.tables if t.transform]  # DMS rules that change the target (bulkmig.transform)
        if shaped:  # PostgreSQL targets only: transform.plan refuses these rules for another target
            conn.call(lambda c: transform_target.before_parts(c, shaped))
        clock.lap("pre-data")
        done = conn.call(lambda c: target.loaded(c, plan.volume_id))
        waiting = _waiting_tables(plan, manifest)
        todo = [
            (t, i)
            for t, i in plan.parts()
            if layout.part_key(t.schema, t.name, i) not in done and t.qualified not in waiting
        ]
        report = LoadReport(plan.total_parts, 0, plan.total_parts - len(todo), 0)
        if report.parts_skipped:
            say(f"load: {report.parts_skipped} of {plan.total_parts} parts already loaded (ledger); skipping them")
        if todo:
            on_dask = (executor or task.settings.executor) == "dask"
            cluster = (scheduler or task.settings.scheduler or "") if on_dask else None
            _load_parts(
                task, target, store, manifest, plan, todo, tmp, workers, progress, report, retry, decrypt_with, cluster
            )
        clock.lap("parts")
        if waiting:
            raise _devices_missing(task, plan, manifest, waiting, report)
        done = conn.call(lambda c: target.loaded(c, plan.volume_id))
        missing = [k for k in (layout.part_key(t.schema, t.name, i) for t, i in plan.parts()) if k not in done]
        if missing:
            raise TargetError(f"{len(missing)} parts are not loaded (first: {missing[0]})", "rerun `bulkmig load`")
        if shaped and conn.call(lambda c: transform_target.after_parts(c, shaped, plan.volume_id)):
            say("load: changed the column types the change-data-type rules name")
        post = _schema_file(store, manifest, layout.POST_DATA, tmp / "post-data.sql")
        jobs = workers or task.settings.workers  # keys and indexes built side by side, as pg_restore -j
        retry.call(lambda: target.apply_post_data(post, plan.volume_id, jobs=jobs), what="post-data")
        if shaped and conn.call(lambda c: transform_target.after_post_data(c, shaped, plan.volume_id)):
            say("load: defined the keys and moved the indexes the transformation rules name")
        notes = conn.call(lambda c: target.after_post_data(c, plan))
        clock.lap("post-data")
        conn.call(lambda c: target.analyze(c, plan.tables))
        clock.lap("analyze")
    conn.close()
    say(
        f"load: {report.parts_loaded} parts, {report.rows:,} rows loaded into {task.target.redacted()} "
        f"({clock.render()})"
    )
    for line in notes:
        say(line)
    return report


def _waiting_tables(plan: Plan, manifest: VolumeManifest) -> dict[str, set[str]]:
    """Tables with a part on a device not imported yet -> the devices they wait for (empty: all arrived)."""
    waiting: dict[str, set[str]] = {}
    for table, index in plan.parts():
        if manifest.entry(layout.part_key(table.schema, table.name, index)) is None:
            waiting.setdefault(table.qualified, set()).add(str(table.partitions[index].device))
    return waiting


def _devices_missing(
    task: Task, plan: Plan, manifest: VolumeManifest, waiting: dict[str, set[str]], report: LoadReport
) -> DevicesMissing:
    """Every table whose parts have arrived is loaded; say which devices the others wait for."""
    missing = missing_devices(plan, manifest)
    arrived = [str(d["name"]) for d in plan.devices if str(d["name"]) not in missing]
    count = len(plan.devices)
    names = ", ".join(f"{d['name']} ({n} of {count})" for n, d in enumerate(plan.devices, 1) if d["name"] in missing)
    tables = sorted(waiting)
    shown = ", ".join(tables[:10]) + (f" … and {len(tables) - 10} more" if len(tables) > 10 else "")
    return DevicesMissing(
        f"load: {len(plan.tables) - len(tables)} of {len(plan.tables)} tables loaded ({report.parts_loaded} parts "
        f"this run) from device(s) {', '.join(arrived)}; device(s) {names} not imported yet, so {len(tables)} "
        f"table(s) wait: {shown}; indexes, foreign keys and sequences come once every device is in",
        f"import each as it arrives (`bulkmig volume import --task {task.path} --device NAME`), then rerun "
        "`bulkmig load`: the loaded parts are kept",
    )


def _load_parts(
    task: Task,
    target: Any,
    store: Store,
    manifest: VolumeManifest,
    plan: Plan,
    todo: list[tuple[Table, int]],
    tmp: Path,
    workers: int | None,
    progress: bool,
    report: LoadReport,
    retry: Retry,
    decrypt_with: Key | None = None,
    cluster: str | None = None,
) -> None:
    """Load ``todo`` on threads here (engines.parts' pool of reconnecting workers), or with ``cluster`` (a
    scheduler address; "" for a LocalCluster) as Dask units; the same ledger makes either exactly once."""
    if cluster is None:
        load_parts(
            todo,
            manifest,
            workers=workers or task.settings.workers,
            progress=progress,
            report=report,
            retry=retry,
            open_conn=lambda: target.connect(loading=True),
            load_one=lambda conn, table, index: target.load_part(
                conn, store, manifest, plan, table, index, tmp, decrypt_with
            ),
            error_text=target.error_text,
        )
        return
    sizes = {e.key: e.bytes for e in manifest.files}
    total = sum(sizes.get(layout.part_key(t.schema, t.name, i), 0) for t, i in todo)
    bar = Progress("load", len(todo), total) if progress else None

    def done(item: tuple[Table, int], rows: int) -> None:  # called on this thread, as each unit finishes
        report.parts_loaded += 1
        report.rows += rows
        if bar:
            bar.advance(parts=1, rows=rows, nbytes=sizes.get(layout.part_key(item[0].schema, item[0].name, item[1]), 0))

    say(f"load: {len(todo)} parts on {cluster or 'a local Dask cluster'}")
    try:
        run_on_dask(
            "load",
            cluster or None,
            workers or task.settings.workers,
            load_unit,
            todo,
            lambda item: (task, store.url, manifest, plan, item[0], item[1], decrypt_with),
            done,
        )
    finally:
        if bar:
            bar.finish()
