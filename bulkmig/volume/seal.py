"""`bulkmig volume seal`: prove the volume complete and write ``volume.json`` last.

Sealing is the line between "extraction may still be running" and "this volume can travel": it
checks that every part the plan lists is present with a sidecar that verifies against the part's
actual bytes (sha256 recomputed, not taken from the sidecar), that the schema files are the ones the
plan wrote, and that nothing else is on the volume.  Only then does it write ``volume.json`` (every
file's size and sha256 plus a root hash), atomically, as the last file.

Sealing is deterministic: the same content gives the same ``volume.json`` apart from ``sealed_at``, so
resealing an untouched volume keeps its root hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, IntegrityError, PlanError
from bulkmig.core.log import say
from bulkmig.core.manifest import FileEntry, VolumeManifest
from bulkmig.core.store import NotFound, Store
from bulkmig.volume import ProgressFn, Tracker
from bulkmig.volume.device import DeviceId, device_of
from bulkmig.volume.verify import (
    DEFAULT_WORKERS,
    PartCheck,
    Problem,
    check_file,
    check_part,
    expected_parts,
    plan_schema_files,
    read_plan,
    run_parallel,
)

SHOWN = 20  # problems named in one error; the count says how many more


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" … and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _device(store: Store, plan_doc: dict[str, Any], volume_id: str) -> DeviceId | None:
    """The device ``store`` is, checked against the plan: a plan on several devices needs the marker."""
    device = device_of(store)
    planned = [str(d.get("name")) for d in plan_doc.get("devices") or []]
    if device is None and planned:
        raise IntegrityError(
            f"{store.url} holds a plan on {len(planned)} devices ({', '.join(planned)}) but no device marker "
            f"({layout.DEVICES_DIR}/<name>/device.json): cannot tell which device it is",
            "restore that file (`bulkmig plan` wrote it; every device has its own), or start over with "
            "`bulkmig plan --task … --restart`",
        )
    if device is not None and (device.volume_id != volume_id or device.name not in planned):
        raise IntegrityError(
            f"{store.url}: its marker names {device.label()} of volume {device.volume_id}, which the plan "
            f"(volume {volume_id}, devices {', '.join(planned) or 'none'}) does not have",
            "this device belongs to another plan: use a fresh device, or the task that planned it",
        )
    return device


def seal(store: Store, progress: ProgressFn | None = None, *, workers: int = DEFAULT_WORKERS) -> VolumeManifest:
    """Verify every part of the plan on ``store`` and write ``volume.json``; returns the manifest.

    Raises IntegrityError naming the missing or bad parts (nothing is written then), PlanError when
    the volume holds no plan.
    """
    plan = read_plan(store)
    if plan is None:
        raise PlanError(f"{store.url} holds no plan.json", "run `bulkmig plan --task …` and `bulkmig extract` first")
    plan_doc, plan_bytes = plan
    volume_id = str(plan_doc.get("volume_id", ""))
    device = _device(store, plan_doc, volume_id)
    expected = expected_parts(plan_doc, device.name if device else None)
    sizes = {info.key: info.size for info in store.list()}

    allowed = set(expected) | {layout.sidecar_for(k) for k in expected} | {layout.PLAN, layout.VOLUME_MANIFEST}
    # The schema files, and a device's marker: hashed and sealed with the parts.
    schema_keys = sorted(k for k in sizes if k.startswith(layout.SCHEMA_DIR + "/") and not layout.is_temp(k))
    if device is not None:
        schema_keys.append(layout.device_marker(device.name))
    temps = [k for k in sizes if layout.is_temp(k)]
    unexpected = sorted(k for k in sizes if k not in allowed and k not in schema_keys and not layout.is_temp(k))
    if unexpected:
        raise IntegrityError(
            f"{store.url} holds {len(unexpected)} file(s) that are not part of volume {volume_id}'s plan: "
            + _listing(unexpected),
            "remove them (a volume holds exactly one plan's parts), then seal again",
        )
    if temps:
        say(f"seal: ignoring {len(temps)} leftover temp file(s) (*{layout.TEMP_SUFFIX}); they are never sealed")

    recorded = plan_schema_files(plan_doc)
    missing_schema = sorted(set(recorded) - set(schema_keys))
    total = sum(sizes.get(k, 0) for k in [*expected, *schema_keys])
    tracker = Tracker(progress, total, len(expected) + len(schema_keys))
    tracker.start()

    def part(item: tuple[str, tuple[str, str, int]]) -> PartCheck:
        result = check_part(store, item[0], item[1], volume_id, sizes)
        tracker.add(sizes.get(item[0], 0))
        return result

    def schema_file(key: str) -> tuple[FileEntry | None, Problem | None]:
        """Hash a schema file; one the plan recorded must still match what the plan wrote."""
        try:
            if key in recorded:
                problem = check_file(store, key, sizes[key], *recorded[key])
                return (None, problem) if problem else (FileEntry(key, sizes[key], recorded[key][1]), None)
            return FileEntry(key, sizes[key], store.sha256(key)), None
        except NotFound:
            return None, Problem("missing", key, "vanished while being checked")
        finally:
            tracker.add(sizes[key])

    checks = run_parallel(part, expected.items(), workers)
    schema_results = run_parallel(schema_file, schema_keys, workers)

    problems = [p for c in checks for p in c.problems] + [p for _, p in schema_results if p]
    problems += [Problem("missing", k, "recorded in plan.json but not on the volume") for k in missing_schema]
    if problems:
        bad = [f"{p.key} ({p.kind}: {p.detail})" for p in problems]
        raise IntegrityError(
            f"cannot seal {store.url}: {len(problems)} of {len(expected) + len(recorded)} files are missing "
            f"or do not verify: {_listing(bad)}",
            "run `bulkmig extract --task …` to resume (it redoes exactly the parts that do not verify), "
            "then seal again",
        )

    files = [FileEntry(layout.PLAN, len(plan_bytes), hashlib.sha256(plan_bytes).hexdigest())]
    files += [entry for entry, _ in schema_results if entry is not None]
    for c in checks:
        assert c.manifest is not None and c.sidecar is not None
        files.append(FileEntry(c.key, c.manifest.bytes, c.manifest.sha256, c.manifest.rows))
        side = layout.sidecar_for(c.key)
        files.append(FileEntry(side, len(c.sidecar), hashlib.sha256(c.sidecar).hexdigest()))
    manifest = VolumeManifest.build(volume_id, files[0].sha256, files, device=device.as_manifest() if device else None)

    if layout.VOLUME_MANIFEST in sizes:
        try:
            previous = VolumeManifest.from_bytes(store.get_bytes(layout.VOLUME_MANIFEST)).root_hash
        except BulkmigError:
            previous = None
        if previous != manifest.root_hash:
            say(f"seal: {store.url} was sealed before with another content (root hash {previous}); resealing")
    store.put_bytes(layout.VOLUME_MANIFEST, manifest.to_bytes())
    return manifest
