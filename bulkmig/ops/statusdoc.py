"""The status document: `bulkmig status --json`, the text `status`, the dashboard and /metrics all read it.

Schema: ``manifests/status.schema.json`` (format ``bulkmig-status``, version 1).  Every number comes from
durable state — the plan and sidecars on the volume, the objects in the bucket, the load ledger and the
replay position on the target, the change batches' manifests, the records in :mod:`bulkmig.core.records`
— so the document is right after any crash and while a stage restarts.  A place that cannot be read
becomes an ``error`` in its stage instead of failing the document.

Per table it carries what AWS DMS users know from table statistics: full-load rows, inserts, updates,
deletes, DDLs, table state, validation state (DMS's words and counters: Validated, Mismatched records, …,
failed and repaired records) and last update time.  The change counts come from the
applied change batches; batches never change once written, so their counts are cached per process.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core import layout, records
from bulkmig.core.store import open_store
from bulkmig.ops.status import _section, status

FORMAT = "bulkmig-status"
VERSION = 1

# (stream_id, seq) -> {(schema, table): Counter(I=.., U=.., D=.., T=.., DDL=..)}; batches are immutable.
_BATCH_COUNTS: dict[tuple[str, int], dict[tuple[str, str], Counter]] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parts_by_table(store: Any) -> tuple[Counter, dict[str, int]]:
    """Sidecars (a part is complete once its sidecar is there) and part bytes per table folder
    (:func:`layout.table_dir`)."""
    done: Counter = Counter()
    size: Counter = Counter()
    for info in store.list(layout.DATA_DIR + "/"):
        folder, _, name = info.key.rpartition("/")
        if name.endswith(layout.SIDECAR_SUFFIX):
            done[folder] += 1
        elif name.endswith(layout.PART_SUFFIX):
            size[folder] += info.size
    return done, dict(size)


def _batch_counts(stream: Any, seq: int) -> dict[tuple[str, str], Counter]:
    cached = _BATCH_COUNTS.get((stream.stream_id, seq))
    if cached is not None:
        return cached
    from bulkmig.cdc.batch import read_batch

    batch = read_batch(stream.store, stream.prefix, seq)
    counts: dict[tuple[str, str], Counter] = {}
    for t in batch.tables:
        c = counts.setdefault((t.schema, t.table), Counter())
        c.update(r.op for r in t.rows)
    for change in batch.schema_changes:
        key = (str(change.get("schema")), str(change.get("table")))
        counts.setdefault(key, Counter())["DDL"] += 1
    _BATCH_COUNTS[(stream.stream_id, seq)] = counts
    return counts


def _changes(task: Task, applied_seq: int | None) -> tuple[dict[tuple[str, str], Counter], int]:
    """Applied change counts per table, and the rows in batches not applied yet (the lag in changes)."""
    from bulkmig.cdc.batch import read_manifest
    from bulkmig.replay.stream import find_stream

    stream = find_stream(task, open_store(task.bucket, task.s3_options()))
    applied: dict[tuple[str, str], Counter] = {}
    pending_rows = 0
    for seq in stream.batches():
        if applied_seq is not None and seq <= applied_seq:
            for key, c in _batch_counts(stream, seq).items():
                applied.setdefault(key, Counter()).update(c)
        else:
            pending_rows += int(read_manifest(stream.store, stream.prefix, seq).get("rows", 0))
    return applied, pending_rows


def _ledger(task: Task, volume_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    from bulkmig.targets import target_for

    return target_for(task).ledger_by_table(volume_id)


def _stage(name: str, state: str, done: int | None = None, total: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "done": done, "total": total, "bytes": extra.pop("bytes", None), **extra}


def build(task: Task) -> dict[str, Any]:
    """The whole document (see the module docstring and the JSON Schema)."""
    from bulkmig.fullload.plan import read_plan

    raw = status(task)
    vol, bucket, target = raw["volume"], raw["bucket"], raw["target"]
    doc: dict[str, Any] = {
        **raw,  # volume, bucket, target, capture, replay: the keys scripts read before this document existed
        "format": FORMAT,
        "version": VERSION,
        "generated_at": _now(),
        "task": task.name,
        "migration_type": task.migration_type,
        "stages": [],
        "tables": [],
        "cdc": None,
        "validation": records.last_validation(task),
        "errors": records.last_errors(task),
    }
    plan = None
    errors: dict[str, str] = {}
    if vol.get("planned"):
        plan_or_err = _section("volume", lambda: {"plan": read_plan(open_store(task.volume, task.volume_s3_options()))})
        plan = plan_or_err.get("plan")
    on_volume = _section("volume", lambda: dict(zip(("done", "bytes"), _parts_by_table(_vol_store(task)), strict=True)))
    in_bucket = (
        _section(
            "bucket",
            lambda: dict(zip(("done", "bytes"), _parts_by_table(_bucket_store(task, vol["volume_id"])), strict=True)),
        )
        if plan
        else {}
    )
    ledger = _section("target", lambda: {"rows": _ledger(task, vol["volume_id"])}) if plan else {}
    for name, sect in (("volume", on_volume), ("bucket", in_bucket), ("target", ledger)):
        if "error" in sect:
            errors[name] = sect["error"]
    replay = raw.get("replay") or {}
    applied: dict[tuple[str, str], Counter] = {}
    pending_rows: int | None = None
    if task.cdc and "error" not in replay:
        ch = _section(
            "replay", lambda: dict(zip(("applied", "pending"), _changes(task, replay.get("applied_seq")), strict=True))
        )
        applied, pending_rows = ch.get("applied", {}), ch.get("pending")
        if "error" in ch:
            errors["replay"] = ch["error"]
    validation = {t["table"]: {"at": doc["validation"]["at"], **t} for t in (doc["validation"] or {}).get("tables", [])}

    total_parts = plan.total_parts if plan else None
    vol_done = sum((on_volume.get("done") or Counter()).values())
    bkt_done = sum((in_bucket.get("done") or Counter()).values())
    loaded = ledger.get("rows") or {}
    for t in plan.tables if plan else []:
        key = (t.schema, t.name)
        folder = layout.table_dir(t.schema, t.name)
        tkey = t.target_qualified
        led = loaded.get(tkey) or loaded.get(key) or {}
        c = applied.get(key) or applied.get(tkey) or Counter()
        n = len(t.partitions)
        v = validation.get(t.qualified) or validation.get(".".join(tkey))
        lp = int(led.get("parts", 0))
        state = (
            "not started"
            if not (on_volume.get("done") or {}).get(folder)
            else "extracting"
            if (on_volume["done"][folder] < n)
            else "extracted"
            if lp == 0
            else "loading"
            if lp < n
            else "replicating"
            if task.cdc
            else "table completed"
        )
        doc["tables"].append(
            {
                "schema": t.schema,
                "table": t.name,
                "target": ".".join(tkey),
                "parts": n,
                "parts_on_volume": int((on_volume.get("done") or {}).get(folder, 0)),
                "parts_in_bucket": int((in_bucket.get("done") or {}).get(folder, 0)),
                "parts_loaded": lp,
                "bytes_on_volume": int((on_volume.get("bytes") or {}).get(folder, 0)),
                "estimated_rows": int(t.estimated_rows),
                "full_load_rows": int(led.get("rows", 0)),
                "inserts": int(c.get("I", 0)),
                "updates": int(c.get("U", 0)),
                "deletes": int(c.get("D", 0)),
                "ddls": int(c.get("DDL", 0)),
                "table_state": state,
                "validation_state": ("not validated" if v is None else "equal" if v.get("equal") else "differs"),
                "validation": _table_validation(task, v),
                "last_update_time": led.get("at"),
            }
        )

    def stage_state(done: int, total: int | None, err: str | None) -> str:
        if err:
            return "error"
        if not done:
            return "not started"
        return "done" if total is not None and done >= total else "running"

    stages = doc["stages"]
    stages.append(
        _stage(
            "plan",
            "error" if "error" in vol else "done" if vol.get("planned") else "not started",
            error=vol.get("error"),
        )
    )
    vbytes = sum((on_volume.get("bytes") or {}).values())
    stages.append(
        _stage(
            "extract",
            stage_state(vol_done, total_parts, errors.get("volume")),
            vol_done,
            total_parts,
            bytes=vbytes,
            error=errors.get("volume"),
        )
    )
    stages.append(_stage("seal", "done" if vol.get("sealed") else "not started"))
    bbytes = sum((in_bucket.get("bytes") or {}).values())
    berr = bucket.get("error") or errors.get("bucket")
    stages.append(
        _stage(
            "import",
            "error" if berr else "done" if bucket.get("imported") else stage_state(bkt_done, None, None),
            bkt_done,
            total_parts,
            bytes=bbytes,
            error=berr,
        )
    )
    ldone = sum(int(v["parts"]) for v in loaded.values())
    lerr = target.get("error") or errors.get("target")
    stages.append(
        _stage(
            "load",
            stage_state(ldone, total_parts, lerr),
            ldone,
            total_parts,
            rows=sum(int(v["rows"]) for v in loaded.values()),
            error=lerr,
        )
    )
    val = doc["validation"]
    stages.append(
        _stage(
            "validate",
            "not started" if val is None else "done" if val.get("equal") else "error",
            error=None if val is None or val.get("equal") else "tables differ",
        )
    )
    if task.cdc:
        cap = raw.get("capture") or {}
        stages.append(
            _stage(
                "capture",
                "error" if "error" in cap else "running" if cap.get("batches") else "not started",
                cap.get("batches"),
                None,
                error=cap.get("error"),
            )
        )
        rerr = replay.get("error") or errors.get("replay")
        stages.append(
            _stage(
                "replay",
                "error" if rerr else "running" if replay.get("applied_seq") is not None else "not started",
                replay.get("applied_seq"),
                replay.get("latest_seq"),
                error=rerr,
            )
        )
        doc["cdc"] = {
            # Caught up (nothing captured waits) is lag 0, not the age of the last change: a quiet source
            # would otherwise look ever further behind.
            "lag_seconds": 0.0 if replay.get("pending_batches") == 0 else replay.get("lag_seconds"),
            "lag_changes": pending_rows,
            "lag_bytes": replay.get("lag_bytes"),
            "pending_batches": replay.get("pending_batches"),
            "applied_pos": replay.get("applied_pos"),
            "captured_through": replay.get("captured_through") or cap.get("captured_through"),
            "source_pos": replay.get("source_pos"),
            "applied_changes": sum(sum(v for k, v in c.items() if k != "DDL") for c in applied.values()),
        }
    return doc


def _table_validation(task: Task, v: dict[str, Any] | None) -> dict[str, Any]:
    """A table's validation as AWS DMS's table statistics put it (``ValidationState`` and its counters),
    from the last `bulkmig validate` report; failed records are those still differing (not repaired)."""
    if v is None:
        state = "Pending validation" if task.settings.validation.enabled else "Not enabled"
        return {"state": state, "failed_records": 0, "repaired_records": 0, "partitions": 0, "at": None}
    repaired = int(v.get("repaired", 0))
    found = int(v.get("failures_total", 0)) or sum(
        int(v.get(k, 0)) for k in ("missing_on_target", "extra_on_target", "differing_rows")
    )
    state = v.get("validation_state") or ("Validated" if v.get("equal") else "Mismatched records")
    return {
        "state": state,
        "failed_records": 0 if v.get("equal") else max(found - repaired, 0),
        "repaired_records": repaired,
        "partitions": int(v.get("partitions", 0)),
        "at": v.get("at"),
    }


def _vol_store(task: Task) -> Any:
    return open_store(task.volume, task.volume_s3_options())


def _bucket_store(task: Task, volume_id: str) -> Any:
    return open_store(layout.join(task.bucket, "volumes", volume_id), task.s3_options())
