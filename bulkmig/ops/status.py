"""`bulkmig status`: the whole migration at a glance, read from where each stage keeps its state.

Every line comes from the stage's own durable state (the volume's sidecars, the bucket's objects, the
target's ledger and replay position, the source's slot), never from a running process, so status is
right after a crash and on any host that can reach those places.  A place that cannot be reached is
shown as such rather than failing the whole report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError
from bulkmig.core.log import human_bytes
from bulkmig.core.store import open_store
from bulkmig.fullload.plan import read_plan


def _dms_validation(v: dict[str, Any] | None) -> str:
    """`` (Mismatched records: 3 failed, 2 repaired)``: the table's validation in DMS's words."""
    if not v:
        return ""
    counts = [f"{v['failed_records']:,} failed"] if v["failed_records"] else []
    counts += [f"{v['repaired_records']:,} repaired"] if v["repaired_records"] else []
    return f" ({v['state']}" + (f": {', '.join(counts)}" if counts else "") + ")"


def _section(name: str, probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return probe()
    except BulkmigError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def volume_status(task: Task) -> dict[str, Any]:
    store = open_store(task.volume, task.volume_s3_options())
    plan = read_plan(store)
    if plan is None:
        return {"planned": False}
    out: dict[str, Any] = {
        "planned": True,
        "volume_id": plan.volume_id,
        "tables": len(plan.tables),
        "parts": plan.total_parts,
        "extracted": plan.extracted(store),
        "sealed": store.exists(layout.VOLUME_MANIFEST),
        "snapshot_lsn": plan.snapshot.get("lsn"),
    }
    if plan.devices:  # several devices: each one's share, as far as this host can see it
        from bulkmig.fullload.devices import path

        devices = []
        for d in plan.devices:
            try:
                each = open_store(path(task, str(d["name"])), task.volume_s3_options())
                here = {"extracted": plan.extracted(each), "sealed": each.exists(layout.VOLUME_MANIFEST)}
            except BulkmigError as exc:
                here = {"error": str(exc)}
            devices.append({"name": d["name"], "parts": d["parts"], "capacity": d["capacity"], **here})
        out["devices"] = devices
        out["extracted"] = sum(int(d.get("extracted", 0)) for d in devices)
        out["sealed"] = all(d.get("sealed") for d in devices)
    return out


def bucket_status(task: Task, volume_id: str | None) -> dict[str, Any]:
    if not volume_id:
        return {}
    store = open_store(layout.join(task.bucket, "volumes", volume_id), task.s3_options())
    objects = list(store.list(""))
    devices = sorted(
        name for name, doc in (layout.parse_device_key(o.key) or ("", "") for o in objects) if doc == "volume.json"
    )
    return {
        "objects": len(objects),
        "bytes": sum(o.size for o in objects),
        # several devices: imported once every device is (devices_imported names those that are)
        "imported": any(o.key == layout.VOLUME_MANIFEST for o in objects) or _all_devices(task, devices),
        **({"devices_imported": devices} if devices else {}),
    }


def _all_devices(task: Task, imported: list[str]) -> bool:
    return bool(task.devices) and sorted(d.name for d in task.devices) == imported


def target_status(task: Task, volume_id: str | None) -> dict[str, Any]:
    from bulkmig.targets import target_for

    return target_for(task).status(volume_id)


def status(task: Task) -> dict[str, Any]:
    report: dict[str, Any] = {"task": task.name, "migration_type": task.migration_type}
    report["volume"] = _section("volume", lambda: volume_status(task))
    volume_id = report["volume"].get("volume_id")
    report["bucket"] = _section("bucket", lambda: bucket_status(task, volume_id))
    report["target"] = _section("target", lambda: target_status(task, volume_id))
    if task.cdc:
        from bulkmig.capture import stream_status
        from bulkmig.replay import replay_status

        report["capture"] = _section("capture", lambda: stream_status(task))
        report["replay"] = _section("replay", lambda: replay_status(task))
    return report


def render(doc: dict[str, Any]) -> str:
    """The text status, from the status document (:mod:`bulkmig.ops.statusdoc`, as `status --json` prints it)."""
    report = doc
    lines = [f"task {report['task']} ({report['migration_type']})"]
    vol = report["volume"]
    if "error" in vol:
        lines.append(f"  volume    unreadable: {vol['error']}")
    elif not vol.get("planned"):
        lines.append("  volume    not planned yet — next: bulkmig plan")
    else:
        sealed = "sealed" if vol["sealed"] else "not sealed"
        lines.append(
            f"  volume    {vol['volume_id']}: {vol['extracted']}/{vol['parts']} parts extracted, {sealed}"
            f" (snapshot at {vol['snapshot_lsn']})"
        )
    bucket = report["bucket"]
    if "error" in bucket:
        lines.append(f"  bucket    unreadable: {bucket['error']}")
    elif bucket:
        state = "imported" if bucket["imported"] else "incomplete (no volume.json yet)"
        lines.append(f"  bucket    {bucket['objects']} objects, {human_bytes(bucket['bytes'])}: {state}")
    target = report["target"]
    if "error" in target:
        lines.append(f"  target    unreadable: {target['error']}")
    else:
        parts = vol.get("parts", "?")
        lines.append(
            f"  target    {target.get('loaded', 0)}/{parts} parts loaded, {target.get('rows', 0):,} rows; "
            f"schema applied: {', '.join(target.get('schema_applied', [])) or 'none'}"
        )
        # Objects post-data could not create (PostgreSQL refused their translation): each needs a person.
        for obj in target.get("skipped_objects", []):
            lines.append(
                f"  target    {obj['kind']} {obj['schema']}.{obj['name']} NOT CREATED: {obj['error']} — {obj['fix']}"
            )
    for name in ("capture", "replay"):
        if name in report:
            lines.append(f"  {name:<9} {json.dumps(report[name], default=str)}")
    cdc = doc.get("cdc")
    if cdc:
        lag = "unknown" if cdc["lag_seconds"] is None else f"{cdc['lag_seconds']:.1f}s"
        lines.append(f"  cdc lag   {lag}, {cdc['lag_changes']} changes in {cdc['pending_batches']} batches waiting")
    for t in doc.get("tables", []):
        lines.append(
            f"  table     {t['schema']}.{t['table']}: {t['table_state']}; parts {t['parts_on_volume']}/{t['parts']} on"
            f" volume, {t['parts_in_bucket']} in bucket, {t['parts_loaded']} loaded; {t['full_load_rows']:,} rows;"
            f" +{t['inserts']} ~{t['updates']} -{t['deletes']} ddl {t['ddls']}; {t['validation_state']}"
            + _dms_validation(t.get("validation"))
        )
    val = doc.get("validation")
    if val:
        lines.append(f"  validate  {'equal' if val['equal'] else 'DIFFERS'} ({len(val['tables'])} tables, {val['at']})")
    for e in doc.get("errors", [])[:3]:
        lines.append(f"  error     {e['at']} {e['command']}: {e['message']} — {e['fix']}")
    return "\n".join(lines)
