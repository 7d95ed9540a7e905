"""`bulkmig load`: import an imported volume from the bucket into the target.

Order: the schema's pre-data section (types, tables and their primary keys), then every part, then
post-data (secondary indexes, foreign keys, triggers, materialized view refreshes), then sequence
values.  Primary keys come first so a duplicate row is refused while loading, naming its part;
triggers and foreign keys do not exist yet while rows arrive, and every loading session runs with
``session_replication_role = replica`` besides.

Exactly once: each part is loaded in one target transaction together with its row in the ledger
``bulkmig.loaded_parts``, under an advisory lock on the part, so a crash or a second loader never
loads a part twice, and a rerun loads exactly the parts the ledger lacks.  Every part's sha256 is
checked against the sealed volume manifest before a single row of it is sent.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.crypto import Key, key_for_plan
from bulkmig.core.errors import BulkmigError, IntegrityError, PlanError, TargetError
from bulkmig.core.log import Clock, Progress, say
from bulkmig.core.manifest import VolumeManifest, sha256_file
from bulkmig.core.model import Table
from bulkmig.core.parquet import open_part
from bulkmig.core.retry import Reconnecting, Retry
from bulkmig.core.store import Store, open_store
from bulkmig.core.workers import Pool
from bulkmig.engines.postgres import binary, schema
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.engines.postgres.writer import to_copy_csv
from bulkmig.fullload.plan import Plan, plan_mismatch

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS bulkmig;
CREATE TABLE IF NOT EXISTS bulkmig.loaded_parts (
    volume_id text NOT NULL,
    part_key text NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    rows bigint NOT NULL,
    sha256 text NOT NULL,
    copy_format text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (volume_id, part_key)
);
"""


# settings.existing_tables -> schema.apply_schema's ``existing``.
EXISTING_MODES: dict[str, Literal["error", "append", "drop", "truncate"]] = {
    "refuse": "error",
    "append": "append",
    "drop": "drop",
    "truncate": "truncate",
}


@dataclass
class LoadReport:
    parts_total: int
    parts_loaded: int
    parts_skipped: int
    rows: int


def find_volume(task: Task) -> tuple[Store, VolumeManifest, Plan]:
    """The sealed, imported volume of this task in the bucket, with its manifest and plan checked."""
    bucket = open_store(task.bucket, task.s3_options())
    candidates = []
    for info in bucket.list("volumes/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == layout.VOLUME_MANIFEST:
            candidates.append(parts[1])
    if not candidates:
        raise PlanError(
            f"{task.bucket} holds no imported volume",
            f"import one with `bulkmig volume import --task {task.path}`",
        )
    matching = []
    same_name: list[tuple[str, Store, Plan]] = []  # this task's name, other inputs: it changed since
    for volume_id in candidates:
        store = open_store(layout.join(task.bucket, "volumes", volume_id), task.s3_options())
        if not store.exists(layout.PLAN):
            continue
        plan_bytes = store.get_bytes(layout.PLAN)
        plan = Plan.from_bytes(plan_bytes, f"{store.url}/{layout.PLAN}")
        if plan.task_fingerprint == task.fingerprint():
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
    manifest = VolumeManifest.from_bytes(store.get_bytes(layout.VOLUME_MANIFEST))
    if hashlib.sha256(plan_bytes).hexdigest() != manifest.plan_sha256:
        raise IntegrityError(
            f"{store.url}/{layout.PLAN} does not match its sealed manifest",
            "re-import the volume (`bulkmig volume import`)",
        )
    return store, manifest, plan


def _schema_file(store: Store, manifest: VolumeManifest, key: str, dest: Path) -> Path:
    entry = manifest.entry(key)
    store.download(key, dest)
    digest, size = sha256_file(dest)
    if entry is None or digest != entry.sha256 or size != entry.bytes:
        raise IntegrityError(f"{store.url}/{key} does not match the sealed manifest", "re-import the volume")
    return dest


def loaded_keys(conn: Any, volume_id: str) -> set[str]:
    """The parts of ``volume_id`` the ledger holds."""
    return {r[0] for r in conn.execute("SELECT part_key FROM bulkmig.loaded_parts WHERE volume_id = %s", (volume_id,))}


def claim_part(conn: Any, volume_id: str, key: str) -> str | None:
    """Inside the caller's transaction: lock the part (until that transaction ends, so a second loader
    waits), then the sha256 its ledger row records, or None when it is not loaded yet.  Other sources of
    parts (the ``dms-s3://`` reader) keep their files in this same ledger through this and
    :func:`record_part`, so one table and one rule say what is loaded."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{volume_id}/{key}",))
    row = conn.execute(
        "SELECT sha256 FROM bulkmig.loaded_parts WHERE volume_id = %s AND part_key = %s", (volume_id, key)
    ).fetchone()
    return str(row[0]) if row else None


def record_part(
    conn: Any, volume_id: str, key: str, schema_name: str, table_name: str, rows: int, sha256: str, copy_format: str
) -> None:
    """The ledger row of a part, in the transaction that loaded its rows."""
    conn.execute(
        "INSERT INTO bulkmig.loaded_parts (volume_id, part_key, schema_name, table_name, rows, sha256,"
        " copy_format) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (volume_id, key, schema_name, table_name, rows, sha256, copy_format),
    )


def load_part(
    conn: Any,
    store: Store,
    manifest: VolumeManifest,
    plan: Plan,
    table: Table,
    index: int,
    tmp: Path,
    decrypt_with: Key | None = None,
) -> int:
    """Load one part in one transaction with its ledger row.  Returns rows loaded, 0 if already loaded."""
    key = layout.part_key(table.schema, table.name, index)
    entry = manifest.entry(key)
    if entry is None:
        raise IntegrityError(f"part {key} is not in the sealed volume manifest", "re-seal and re-import the volume")
    local = tmp / f"{abs(hash(key))}.parquet"
    store.download(key, local)
    try:
        digest, size = sha256_file(local)
        if digest != entry.sha256 or size != entry.bytes:
            raise IntegrityError(
                f"part {key} in {store.url} is damaged (sha256 or size differs from the sealed manifest)",
                "re-import the volume from the device (`bulkmig volume import`), or re-extract that part",
            )
        columns = ", ".join(ident(c.target) for c in table.copied_columns)
        target = qualified(*table.target_qualified)
        rows = 0
        with conn.transaction():
            if claim_part(conn, plan.volume_id, key) is not None:
                return 0
            parquet = open_part(local, decrypt_with, f"{store.url}/{key}")
            # Binary COPY where every column has an exact binary form (2.5x faster: the server parses no
            # text); else CSV, which every type's text input reads exactly.
            kinds = binary.plan_columns(parquet.schema_arrow, table.copied_columns)
            fmt = "binary" if kinds is not None else "csv"
            with conn.cursor().copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT {fmt})") as copy:
                if kinds is not None:
                    copy.write(binary.header())
                for group in range(parquet.num_row_groups):
                    for batch in parquet.read_row_group(group).to_batches():
                        copy.write(binary.encode_batch_view(batch, kinds) if kinds is not None else to_copy_csv(batch))
                        rows += batch.num_rows
                if kinds is not None:
                    copy.write(binary.trailer())
            if rows != entry.rows:
                raise IntegrityError(f"part {key} held {rows} rows, its manifest says {entry.rows}", "re-extract it")
            record_part(conn, plan.volume_id, key, table.schema, table.name, rows, digest, fmt)
        return rows
    finally:
        local.unlink(missing_ok=True)


def load(task: Task, *, workers: int | None = None, progress: bool = True) -> LoadReport:
    from bulkmig.targets import target_engine

    if (engine := target_engine(task)) is not None:
        return engine.load(workers=workers, progress=progress)
    clock = Clock()
    store, manifest, plan = find_volume(task)
    # An encrypted volume's key is checked before the target is touched.
    decrypt_with = key_for_plan(task.settings.encryption.key_file, plan.settings, plan.volume_id)
    clock.lap("find volume")
    target_env = task.target.libpq_env()
    # A target that restarts or fails over mid-load is waited for (settings.retry_timeout): every step
    # below is one transaction or idempotent, so it is simply done again on a new connection.
    retry = Retry("load", task.settings.retry_timeout, hint="loaded parts are kept (ledger)")
    conn = Reconnecting(retry, lambda: connect(task.target, autocommit=True), lambda c: c.close())
    conn.open()  # now: a wrong URL or password fails at once, not after retry_timeout
    with tempfile.TemporaryDirectory(prefix="bulkmig-load-") as tmpname:
        tmp = Path(tmpname)
        pre = _schema_file(store, manifest, layout.PRE_DATA, tmp / "pre-data.sql")
        # settings.existing_tables (DMS TargetTablePrepMode): what happens to target tables that already exist.
        existing = EXISTING_MODES[task.settings.existing_tables]
        retry.call(
            lambda: schema.apply_schema(
                target_env, task.target.database, pre, "pre-data", volume_id=plan.volume_id, existing=existing
            ),
            what="pre-data",
        )
        conn.call(lambda c: c.execute(LEDGER_DDL))
        clock.lap("pre-data")
        done = conn.call(lambda c: loaded_keys(c, plan.volume_id))
        todo = [(t, i) for t, i in plan.parts() if layout.part_key(t.schema, t.name, i) not in done]
        report = LoadReport(plan.total_parts, 0, plan.total_parts - len(todo), 0)
        if report.parts_skipped:
            say(f"load: {report.parts_skipped} of {plan.total_parts} parts already loaded (ledger); skipping them")
        if todo:
            _load_parts(task, store, manifest, plan, todo, tmp, workers, progress, report, retry, decrypt_with)
        clock.lap("parts")
        done = conn.call(lambda c: loaded_keys(c, plan.volume_id))
        missing = [k for k in (layout.part_key(t.schema, t.name, i) for t, i in plan.parts()) if k not in done]
        if missing:
            raise TargetError(f"{len(missing)} parts are not loaded (first: {missing[0]})", "rerun `bulkmig load`")
        post = _schema_file(store, manifest, layout.POST_DATA, tmp / "post-data.sql")
        retry.call(
            lambda: schema.apply_schema(target_env, task.target.database, post, "post-data", volume_id=plan.volume_id),
            what="post-data",
        )
        if plan.sequences:
            conn.call(lambda c: c.execute(schema.set_sequences_sql(plan.sequences)))
        from bulkmig.convert.skipped import skipped_objects  # translated objects PostgreSQL refused

        skipped = conn.call(skipped_objects)
        clock.lap("post-data")
        for table in plan.tables:
            conn.call(lambda c, table=table: c.execute(f"ANALYZE {qualified(*table.target_qualified)}"))
        clock.lap("analyze")
    conn.close()
    say(
        f"load: {report.parts_loaded} parts, {report.rows:,} rows loaded into {task.target.redacted()} "
        f"({clock.render()})"
    )
    for obj in skipped:
        say(f"load: {obj.line()}")
    return report


def _load_parts(
    task: Task,
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
) -> None:
    sizes = {e.key: e.bytes for e in manifest.files}
    total = sum(sizes.get(layout.part_key(t.schema, t.name, i), 0) for t, i in todo)
    bar = Progress("load", len(todo), total) if progress else None
    lock = threading.Lock()

    def open_conn() -> Any:
        conn = connect(task.target, autocommit=True)
        conn.execute("SET session_replication_role = replica")
        return conn

    def open_worker() -> Reconnecting[Any]:
        return Reconnecting(retry, open_conn, lambda conn: conn.close())

    def one(worker: Reconnecting[Any], item: tuple[Table, int]) -> None:
        table, index = item
        # One transaction with its ledger row: after a lost connection it is redone (or found done).
        rows = worker.call(
            lambda conn: load_part(conn, store, manifest, plan, table, index, tmp, decrypt_with),
            what=f"{table.qualified} part {index}",
        )
        with lock:
            report.parts_loaded += 1
            report.rows += rows
        if bar:
            bar.advance(parts=1, rows=rows, nbytes=sizes.get(layout.part_key(table.schema, table.name, index), 0))

    def wrap(item: tuple[Table, int], exc: Exception) -> BaseException:
        if isinstance(exc, BulkmigError):
            return exc
        table, index = item  # a database error: name the part and the reason
        return TargetError(
            f"loading {table.qualified} part {index} failed: {str(exc).strip().splitlines()[0]}",
            "fix the cause and rerun `bulkmig load` (loaded parts are kept)",
        )

    pool: Pool[tuple[Table, int], Reconnecting[Any]] = Pool("load", open_worker, Reconnecting.close, wrap)
    try:
        pool.run(todo, workers or task.settings.workers, one)
    finally:
        if bar:
            bar.finish()
