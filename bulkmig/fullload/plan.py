"""`bulkmig plan`: decide what moves, in how many parts, from which snapshot, and write it on the volume.

The plan is the contract between every later stage: extraction agents only execute it, the loader
only reads it (and the schema files beside it) from the bucket.  It is deterministic for a given
source state and task, and a volume holds exactly one plan: planning a volume that already holds
another migration's plan is refused, and re-planning the same task reuses the plan it finds.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from bulkmig.config.task import Task, changed_inputs, plan_version
from bulkmig.core import crypto, layout
from bulkmig.core.errors import ConfigError, PlanError, SourceError
from bulkmig.core.log import say
from bulkmig.core.manifest import check_format
from bulkmig.core.model import Partition, Table
from bulkmig.core.retry import first_line
from bulkmig.core.store import Store, open_store
from bulkmig.engines import check_cdc_ready, foreign_source
from bulkmig.engines.postgres import privileges, reflect, schema
from bulkmig.engines.postgres.connect import connect, require_version, snapshot_importable
from bulkmig.engines.postgres.sql import ident, literal
from bulkmig.engines.postgres.target import renames
from bulkmig.engines.postgres.target.renames import record_target_names, refuse_unsupported
from bulkmig.fullload import devices
from bulkmig.fullload.lobs import check_lob_limits
from bulkmig.transform import plan as transform_plan

PLAN_FORMAT = "bulkmig-plan"
PLAN_VERSION = 1


@dataclass
class Plan:
    volume_id: str
    created_at: str
    task_name: str
    task_fingerprint: str
    migration_type: str
    source: dict[str, Any]
    snapshot: dict[str, Any]
    schema_files: dict[str, dict[str, Any]]
    sequences: list[dict[str, Any]]
    tables: list[Table]
    settings: dict[str, Any]
    skipped_objects: list[str] = field(default_factory=list)
    # Task.fingerprint_inputs() of the task that made the plan: names what changed when a task no longer fits.
    task_inputs: dict[str, Any] | None = None
    # Several devices (task ``volumes:``): name, capacity, parts and estimated bytes of each, in the task's
    # order; every partition names its device.  Empty for a single volume.
    devices: list[dict[str, Any]] = field(default_factory=list)
    # What the operator must fix by hand after the load (PostgreSQL -> PostgreSQL renames: function and
    # procedure bodies that still name the old objects, :func:`bulkmig.engines.postgres.target.renames.function_notes`).
    notes: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["tables"] = [t.to_dict() for t in self.tables]
        if not self.devices:
            del doc["devices"]  # a single volume's plan reads as it always has
        if not self.notes:
            del doc["notes"]
        doc = {"format": PLAN_FORMAT, "version": PLAN_VERSION, **doc}
        return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = layout.PLAN) -> Plan:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise PlanError(f"{where} is not valid JSON ({exc})", "the volume is damaged; re-run plan") from None
        check_format(doc, PLAN_FORMAT, PLAN_VERSION, where)
        doc = {k: v for k, v in doc.items() if k not in ("format", "version")}
        doc["tables"] = [Table.from_dict(t) for t in doc["tables"]]
        return cls(**doc)

    def extracted(self, *stores: Store) -> int:
        """How many planned parts have a sidecar on ``stores`` (written after the part: the part is there);
        with several devices, pass every device's store."""
        sidecars = {
            i.key
            for store in stores
            for i in store.list(layout.DATA_DIR + "/")
            if i.key.endswith(layout.SIDECAR_SUFFIX)
        }
        return sum(1 for t, i in self.parts() if layout.sidecar_key(t.schema, t.name, i) in sidecars)

    def parts(self) -> list[tuple[Table, int]]:
        """Every (table, partition index) in plan order: the unit of extraction and loading."""
        return [(t, p.index) for t in self.tables for p in t.partitions]

    @property
    def total_parts(self) -> int:
        return sum(len(t.partitions) for t in self.tables)

    def made_by(self, task: Task) -> bool:
        """Whether ``task`` is the task this plan was made from: its fingerprint as computed under the plan's
        fingerprint version, so a plan recorded by an older bulkmig is checked the way it was made (a setting
        whose default changed since counts with its old default when the task leaves it out)."""
        return self.task_fingerprint == task.fingerprint(plan_version(self.task_inputs))


def read_plan(store: Store) -> Plan | None:
    if not store.exists(layout.PLAN):
        return None
    return Plan.from_bytes(store.get_bytes(layout.PLAN), f"{store.url}/{layout.PLAN}")


def load_plan_for(task: Task, store: Store) -> Plan:
    """The plan on ``store``, refusing one made from different inputs (another task or changed task)."""
    plan = read_plan(store)
    if plan is None:
        raise PlanError(f"{store.url} holds no plan", f"run `bulkmig plan --task {task.path}` first")
    if not plan.made_by(task):
        raise plan_mismatch(task, store, plan)
    return plan


def plan_mismatch(task: Task, store: Store, plan: Plan) -> PlanError:
    """The error for a plan whose task inputs differ from ``task``'s, saying what differs: another
    migration's volume (the task names differ) or this task changed since its plan."""
    recorded = plan.task_inputs
    changes = changed_inputs(recorded, task.fingerprint_inputs(plan_version(recorded))) if recorded else []
    what = ", ".join(changes) if changes else "source, table_mappings or settings"
    restart = f"`bulkmig plan --task {task.path} --restart`"
    if plan.task_name != task.name:
        return PlanError(
            f"{store.url} holds volume {plan.volume_id} of the migration {plan.task_name!r}, not of {task.name!r}: "
            f"made from different task inputs ({what})",
            f"point `volume:` at a directory or prefix of its own, or use the task that made it; {restart} "
            "(or --force) would discard that volume",
        )
    return PlanError(
        f"volume {plan.volume_id} on {store.url} was planned from different task inputs; changed since: {what}",
        f"undo the change to resume, or discard the volume's plan and parts and start again with {restart} "
        "(or --force)",
    )


def new_volume_id(task: Task) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in task.name)[:40] or "volume"
    return f"{safe}-{stamp}-{secrets.token_hex(3)}"


def new_plan(task: Task, volume_id: str, encryption_key: crypto.Key | None, **fields: Any) -> Plan:
    """A plan for ``task`` with what every engine's plan records the same way (when, which task, the part
    and encryption settings, which device each part ships on); ``fields`` are the engine's own (source,
    snapshot, schema files, tables...)."""
    if task.devices:
        fields["devices"] = devices.assign(fields["tables"], task.devices)
    return Plan(
        volume_id=volume_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        task_name=task.name,
        task_fingerprint=task.fingerprint(),
        migration_type=task.migration_type,
        settings={
            "max_part_bytes": task.settings.max_part_bytes,
            "max_row_group_rows": task.settings.max_row_group_rows,
            "compression": task.settings.compression,
            **crypto.plan_settings(encryption_key),
        },
        task_inputs=task.fingerprint_inputs(),
        **fields,
    )


def _selected(
    task: Task, found: list[reflect.SourceTable], *, honour_renames: bool | None = None
) -> list[reflect.SourceTable]:
    """Apply the table mappings; leaves of a partitioned table follow their root's selection.  ``honour_renames``:
    the target honours the rename rules (PostgreSQL: :mod:`bulkmig.engines.postgres.target.renames`), each table records
    its target names; else they are refused."""
    names: list[tuple[str, str]] = []
    for src in found:
        names.append((src.table.schema, src.table.name))
        if src.root_name:
            names.append((src.table.schema, src.root_name))
    if honour_renames is None:  # the target's capability (see plan's own calls)
        from bulkmig.targets import target_for

        honour_renames = target_for(task).capabilities.honours_renames
    chosen = {(s.schema, s.table): s for s in task.mappings.select_or_refuse(sorted(set(names)))}
    refuse_unmatched_table_settings(task, set(chosen))
    if task.cdc:  # masks and added columns are applied by extract only (bulkmig.transform)
        transform_plan.refuse_data_rules(task.mappings, "in CDC (full-load-and-cdc, cdc)", transform_plan.CDC_OK)
    if not honour_renames:
        transform_plan.refuse_data_rules(task.mappings, "for a MySQL/MariaDB target")
    out = []
    for src in found:
        sel = chosen.get((src.table.schema, src.table.name))
        if sel is None and src.root_name:
            sel = chosen.get((src.table.schema, src.root_name))
        if sel is None:
            continue
        src.table.filter = sel.where_sql(ident, _literal_any)
        if honour_renames:
            record_target_names(task, src.table)
        else:
            _refuse_renames(task, src.table)
        out.append(src)
    if honour_renames:
        task.mappings.check_target_tables([(s.table.schema, s.table.name) for s in out])
        refuse_unsupported(task, [s.table for s in out])
    return out


def refuse_unmatched_table_settings(task: Task, selected: set[tuple[str, str]]) -> None:
    """A table-settings rule for a table the selection rules do not select is almost always a typo (its names
    are exact and case-sensitive): refused, as a selection rule that matches nothing is."""
    unmatched = [r for r in task.mappings.table_settings if (r.schema, r.table) not in selected]
    if unmatched:
        names = ", ".join(f"{r.rule_name!r} ({r.schema}.{r.table})" for r in unmatched)
        raise ConfigError(
            f"table-settings rule {names} names a table the selection rules do not select",
            "fix its object-locator (one table, exact and case-sensitive names) or remove the rule",
        )


def _refuse_renames(task: Task, table: Table) -> None:
    """A PostgreSQL source into a MySQL target: its schema conversion lands tables under their own names.

    Rather than load into names the schema does not have, refuse the rules up front.
    """
    target = task.mappings.target_table_name(table.schema, table.name)
    if target != (table.schema, table.name):
        raise ConfigError(
            f"a transformation rule renames {table.qualified} to {target[0]}.{target[1]}; renames are not "
            "supported for PostgreSQL -> MySQL yet",
            "drop the rename/convert rules for this task (the schema is recreated as it is on the source)",
        )
    columns = [c.name for c in table.columns]
    removed = task.mappings.removed_columns(table.schema, table.name, columns)
    renamed = [c for c in columns if task.mappings.target_column_name(table.schema, table.name, c) != c]
    if removed or renamed:
        raise ConfigError(
            f"transformation rules remove or rename columns of {table.qualified} "
            f"({', '.join(sorted(removed) + renamed)}); not supported for PostgreSQL -> MySQL yet",
            "drop those rules for this task",
        )


def _literal_any(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return literal(str(value))


def make_plan(task: Task, *, force: bool = False, keep_snapshot: bool = False) -> tuple[Plan, SnapshotHolder | None]:
    """Plan the task onto its volume.

    Returns the plan and, with ``keep_snapshot``, the :class:`SnapshotHolder` whose connections keep the
    plan's snapshot importable (so ``migrate`` extracts from the very same moment); the caller closes it.
    Without ``keep_snapshot``, full-load-and-cdc holds the slot's snapshot until extraction is complete
    (it cannot outlive this process), and a full load simply lets its snapshot go: extraction then
    exports its own.
    """
    for note in task.notes:  # DMS keys accepted but not used, settings the task file overrides
        say(f"plan: warning: {note}")
    store = open_store(task.volume, task.volume_s3_options())
    existing = read_plan(store)
    if existing is not None and not force:
        if existing.made_by(task):
            _refuse_lost_snapshot(task, store, existing)
            say(f"plan: {store.url} already holds this task's plan (volume {existing.volume_id}); reusing it")
            return existing, None
        # The plan just read is this task's only if the fingerprints match, so it is refused as it stands.
        raise plan_mismatch(task, store, existing)
    if existing is not None and force:
        for each in _stores(task, existing, store, every=True):
            say(f"plan: --restart: discarding volume {existing.volume_id} on {each.url}")
            for info in list(each.list("")):
                each.delete(info.key)

    # The key (when parts are encrypted) is read first: a missing key file is refused before the source is touched.
    encryption_key = crypto.task_key(task.settings.encryption.key_file)
    foreign = foreign_source(task.source.engine)
    from bulkmig.targets import target_for

    target = target_for(task)
    target.check_source()
    if foreign is not None:
        return plan_foreign(task, store, foreign, encryption_key), None

    # Autocommit, with explicit BEGIN: the snapshot transaction must be the one we open, nothing implicit.
    conn = connect(task.source, autocommit=True)
    require_version(conn, task.source)
    stream = None
    checked: set[tuple[str, str]] = set()  # tables whose SELECT privilege is already verified
    if task.migration_type == "full-load-and-cdc":
        # Publication, then the slot with its exported snapshot (DESIGN §6): the volume will be exactly the
        # source at the slot's start, and replay starts there.  The tables are chosen before, outside it.
        from bulkmig.engines.postgres.capture import discard_stream_of_volume, start_stream

        # Here the volume holds no plan (or --restart discarded it): a stream of this volume is left over
        # from a plan that did not finish.
        discard_stream_of_volume(task, conn)
        streamed = [
            (s.table.schema, s.table.name)
            for s in _selected(task, reflect.list_tables(conn), honour_renames=target.capabilities.honours_renames)
        ]
        privileges.require_select(conn, streamed)
        checked.update(streamed)
        stream = start_stream(
            task, conn, streamed, allow_replica_identity_full=task.settings.allow_replica_identity_full
        )
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT {literal(stream.snapshot_name or '')}")
        snapshot, lsn = stream.snapshot_name, stream.start_pos
    else:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot, lsn = conn.execute("SELECT pg_export_snapshot(), pg_current_wal_lsn()::text").fetchone()
    version, database, lc_monetary = conn.execute(
        "SELECT current_setting('server_version'), current_database(), current_setting('lc_monetary')"
    ).fetchone()
    found = reflect.list_tables(conn)
    chosen = _selected(task, found, honour_renames=target.capabilities.honours_renames)
    transform_plan.build(task.mappings, [s.table for s in chosen], lambda t: reflect.tablespaces(conn, t), cdc=task.cdc)
    selected = [(s.table.schema, s.table.name) for s in chosen]
    if not set(selected) <= checked:
        # Always without a stream; with one, only when a selected table appeared between the stream's own
        # selection and its snapshot (the rest were checked moments ago, before the slot was created).
        privileges.require_select(conn, selected)
    reflect.partition_tables(conn, chosen, task, task.settings.max_part_bytes, task.settings.workers)
    check_lob_limits(task, [s.table for s in chosen], reflect.lob_columns, lambda r: reflect.measure_lobs(conn, r))
    subset = [(s.table.schema, s.table.name) for s in chosen] if _is_subset(found, chosen) else None
    sequences = schema.sequence_values(conn, subset)
    notes = renames.function_notes(conn, [s.table for s in chosen])
    volume_id = new_volume_id(task)

    with tempfile.TemporaryDirectory(prefix="bulkmig-schema-") as tmp:
        # pg_dump's schema as it is (PostgreSQL), or converted from the catalog in the snapshot with its report
        # (MySQL): the target decides.
        files = target.schema_from_postgres(
            conn,
            chosen,
            Path(tmp),
            store,
            native=lambda: schema.dump_schema(
                task.source.libpq_env(),
                database,
                snapshot,
                subset,
                Path(tmp),
                primary_keys_first=task.settings.schema.primary_keys == "before",
            ),
        )
        schema_files = {}
        for name, path, key in (
            ("pre-data", files.pre_data, layout.PRE_DATA),
            ("post-data", files.post_data, layout.POST_DATA),
        ):
            digest, size = store.put_file(key, path)
            schema_files[name] = {"key": key, "sha256": digest, "bytes": size}

    plan = new_plan(
        task,
        volume_id,
        encryption_key,
        source={
            "engine": "postgresql",
            "url": task.source.redacted(),
            "database": database,
            "server_version": version,
            "lc_monetary": lc_monetary,
        },
        snapshot={
            "name": snapshot,
            "lsn": lsn,
            "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_by": "replication-slot" if stream else "transaction",
            "stream_id": stream.stream_id if stream else None,
        },
        schema_files=schema_files,
        sequences=sequences,
        tables=[s.table for s in chosen],
        skipped_objects=list(files.skipped),
        notes=notes,
    )
    publish(task, store, plan)
    say(
        f"plan: volume {volume_id}: {len(plan.tables)} tables in {plan.total_parts} parts, "
        f"snapshot at {lsn}, written to {store.url}/{layout.PLAN}"
    )
    for obj in plan.skipped_objects:
        say(f"plan: not migrated: {obj}")
    for note in plan.notes:
        say(f"plan: needs action: {note}")
    holder = SnapshotHolder(conn, stream)
    if keep_snapshot:
        return plan, holder
    if stream is not None:
        # The slot's snapshot dies with its connection: hold it here until every part is extracted.
        hold_until_extracted(task, store, plan, holder)
    holder.close()
    return plan, None


def plan_foreign(task: Task, store: Store, source: ModuleType, encryption_key: crypto.Key | None) -> Plan:
    """Plan a foreign source (MySQL/MariaDB, SQLite): catalog, selection, schema conversion, partitions.

    ``encryption_key`` is the task's key as ``make_plan`` already read it (before touching the source), so
    the key file is read once and the plan records the very key that was checked.

    The catalog is read inside one consistent snapshot whose source position (MySQL: binlog file/position
    and GTID set) becomes ``plan.snapshot``: change capture starts there.  MySQL cannot hand a snapshot to
    another process, so ``extract`` takes its own, later one, recorded in each sidecar; replay starts at the
    plan's position and skips, per table, the changes its parts already hold (``replay.volume_marks``).
    The conversion's DDL and assessment report are written next to the plan, so ``load`` applies exactly
    what it says.
    """
    from bulkmig.convert import convert

    transform_plan.refuse_data_rules(task.mappings, f"for a {task.source.engine} source")
    if task.cdc:
        check_cdc_ready(task)
    catalog, position = source.open_catalog(task)
    if task.cdc and not position.get("lsn"):
        raise ConfigError(
            f"{task.source.redacted()} has no binary log position (binlog off?): change capture cannot start",
            "enable the binlog (log_bin, binlog_format=ROW, binlog_row_image=FULL) or use migration_type: full-load",
        )
    names = [(catalog.schema, t.table.name) for t in catalog.tables]
    selected = task.mappings.select_or_refuse(names)
    refuse_unmatched_table_settings(task, {(sel.schema, sel.table) for sel in selected})
    order = {(sel.schema, sel.table): n for n, sel in enumerate(selected)}
    by_name = {(sel.schema, sel.table): sel for sel in selected}
    for ct in catalog.tables:
        sel = by_name.get((catalog.schema, ct.table.name))
        if sel is not None:
            ct.table.filter = sel.where_sql(source.quote_ident, source.literal)
    conversion = convert(catalog, task)
    from bulkmig.targets import target_for

    conversion = target_for(task).convert_schema(catalog, conversion)  # the target's own DDL (PostgreSQL: as is)
    tables = sorted(conversion.tables, key=lambda t: order.get((t.schema, t.name), len(order)))
    if not tables:
        raise ConfigError("the table mappings select no table", "check the selection rules")
    partition = getattr(source, "partition_tables", None)
    if partition is not None:
        partition(task, tables)
    else:
        for t in tables:
            t.split = {"method": "whole"}
            t.partitions = [Partition(0, f"({t.filter})" if t.filter else None, {}, t.estimated_bytes)]
    lob_columns, measure = getattr(source, "lob_columns", None), getattr(source, "measure_lobs", None)
    if lob_columns is not None and measure is not None:
        check_lob_limits(task, tables, lob_columns, lambda r: measure(task, r))

    schema_files: dict[str, dict[str, Any]] = {}
    for name, key, text in (
        ("pre-data", layout.PRE_DATA, conversion.pre_data_sql),
        ("post-data", layout.POST_DATA, conversion.post_data_sql),
        ("assessment-md", layout.ASSESSMENT_MD, conversion.render_markdown()),
        (
            "assessment-json",
            layout.ASSESSMENT_JSON,
            json.dumps(conversion.report, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
        ),
    ):
        data = text.encode()
        store.put_bytes(key, data)
        schema_files[name] = {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    volume_id = new_volume_id(task)
    snapshot = {"name": None, **position}
    snapshot.setdefault("taken_at", datetime.now(UTC).isoformat(timespec="seconds"))
    plan = new_plan(
        task,
        volume_id,
        encryption_key,
        source={
            "engine": task.source.engine,
            "dialect": catalog.dialect,
            "url": task.source.redacted(),
            "database": catalog.schema,
            "server_version": catalog.server_version,
            "mariadb": catalog.mariadb,
        },
        snapshot=snapshot,
        schema_files=schema_files,
        sequences=[],
        tables=tables,
        skipped_objects=[],
    )
    publish(task, store, plan)
    summary = conversion.report.get("summary", {})
    at = f"binlog {snapshot['lsn']}" if snapshot.get("lsn") else "no binlog position (binlog off)"
    say(
        f"plan: volume {volume_id}: {len(tables)} tables in {plan.total_parts} parts from {task.source.engine} "
        f"{catalog.schema}, snapshot at {at}, written to {store.url}/{layout.PLAN}"
    )
    say(
        f"plan: schema conversion: {summary.get('total', 0)} objects, {summary.get('needs_action', 0)} need action; "
        f"see {store.url}/{layout.ASSESSMENT_MD}"
    )
    return plan


def publish(task: Task, store: Store, plan: Plan) -> None:
    """Write ``plan.json`` — last, it says the volume is planned — onto the volume, or with several devices
    onto every device together with the schema files and the device's marker (``devices/<name>/device.json``)."""
    if not plan.devices:
        store.put_bytes(layout.PLAN, plan.to_bytes())
        return
    shared = {f["key"]: store.get_bytes(f["key"]) for f in plan.schema_files.values()}
    devices.publish(task, plan.volume_id, [str(d["name"]) for d in plan.devices], shared, plan.to_bytes())
    say(f"plan: {len(plan.devices)} devices: {devices.render_assignment(plan.devices)}")


def _stores(task: Task, plan: Plan, store: Store, *, every: bool = False) -> list[Store]:
    """The stores of ``plan``'s devices (``[store]`` for a single volume).  ``every``: those the task names
    now even when they no longer match the plan (to discard them)."""
    if not plan.devices and not (every and task.devices):
        return [store]
    if every:
        return [open_store(d.path, task.volume_s3_options()) for d in task.devices] or [store]
    return list(devices.stores(task, plan.devices).values())


def _refuse_lost_snapshot(task: Task, store: Store, plan: Plan) -> None:
    """full-load-and-cdc reads every part in the slot's snapshot, which lives only as long as the ``plan``
    that created it.  A rerun after that process ended (killed, or the source restarted) with parts still
    missing cannot hold it again: say so now rather than at extract."""
    name = plan.snapshot.get("name")
    if plan.snapshot.get("exported_by") != "replication-slot" or not name:
        return
    missing = plan.total_parts - plan.extracted(*_stores(task, plan, store))
    if not missing:
        return
    if snapshot_importable(task.source, name):
        return  # another `bulkmig plan` still holds it
    raise PlanError(
        f"snapshot {name} of volume {plan.volume_id} ended with the `bulkmig plan` that held it, and {missing} of "
        f"{plan.total_parts} parts were not extracted in it: the volume cannot be completed at the stream's start",
        f"start over with `bulkmig plan --task {task.path} --restart` (discards this volume and its change stream)",
    )


@dataclass
class SnapshotHolder:
    """The connections that keep the plan's snapshot importable: the plan's own transaction, and for
    full-load-and-cdc the replication connection that exported the slot's snapshot (open and silent)."""

    conn: Any
    stream: Any = None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.release()
            self._wait_slot_released()
        self.conn.close()

    def _wait_slot_released(self, timeout: float = 30.0) -> None:
        """The walsender that exported the snapshot holds the slot until it has exited; capture started
        right after would find the slot "active for PID …".  Wait for it (slot state is not MVCC, so this
        works inside the plan's open transaction)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.conn.execute(
                "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (self.stream.slot_name,)
            ).fetchone()
            if row is None or not row[0]:
                return
            time.sleep(0.05)


def hold_until_extracted(task: Task, store: Store, plan: Plan, holder: SnapshotHolder, poll: float = 2.0) -> None:
    """Keep the snapshot alive while extraction agents (this host or others) import it."""
    import time

    say(
        f"plan: holding snapshot {plan.snapshot['name']} for extraction; run `bulkmig extract --task {task.path}` "
        "now (here or on the agent hosts). This command returns once every part is on the volume (Ctrl-C aborts)."
    )
    stores = _stores(task, plan, store)
    while True:
        if plan.extracted(*stores) == plan.total_parts:
            say("plan: every part is on the volume; releasing the snapshot")
            return
        try:
            holder.conn.execute("SELECT 1")  # the plan's own session (never the silent replication one)
        except psycopg.Error as exc:
            missing = plan.total_parts - plan.extracted(*stores)
            raise SourceError(
                f"lost the source session holding snapshot {plan.snapshot['name']} ({first_line(exc)}): the snapshot "
                f"is gone with {missing} of {plan.total_parts} parts not extracted in it",
                f"start over with `bulkmig plan --task {task.path} --restart` (discards this volume and its stream)",
            ) from None
        time.sleep(poll)


def _is_subset(found: list[reflect.SourceTable], chosen: list[reflect.SourceTable]) -> bool:
    return len(chosen) < len(found)
