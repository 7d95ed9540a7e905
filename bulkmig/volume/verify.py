"""`bulkmig volume verify`: recompute every sha256 on a volume (or its bucket copy) and name what is wrong.

A sealed volume is checked against ``volume.json``: every listed file must be there with its size and
sha256, and nothing else may be.  An unsealed one (extraction still running, or never sealed) is
checked against the plan and the sidecars instead, and reported as ``unsealed``, which fails: only a
sealed volume is ready to ship or import.  Every byte is read (S3: streamed) — a size or metadata check
would not catch a flipped bit on a disk that travelled in a truck.

Problem kinds:

``missing``        a file the manifest or the plan expects is not there
``extra``          a file that is not part of the volume (an unsealed volume: not in the plan)
``truncated``      smaller than recorded (an interrupted copy)
``altered``        larger than recorded, or same size but another sha256
``bad-sidecar``    a sidecar that does not parse, or belongs to another part or volume
``leftover-temp``  a ``*.partial`` file from an interrupted write: a warning, never trusted, not a failure
``unsealed``       no volume.json
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, PlanError
from bulkmig.core.log import human_bytes
from bulkmig.core.manifest import PartManifest, VolumeManifest, check_format, load_document
from bulkmig.core.store import NotFound, Store
from bulkmig.volume import ProgressFn, Tracker
from bulkmig.volume.device import device_of

PLAN_FORMAT = "bulkmig-plan"  # owned by bulkmig.fullload.plan; repeated to keep this module free of engine imports
PLAN_VERSION = 1
DEFAULT_WORKERS = 4

MISSING = "missing"
EXTRA = "extra"
TRUNCATED = "truncated"
ALTERED = "altered"
BAD_SIDECAR = "bad-sidecar"
LEFTOVER_TEMP = "leftover-temp"
UNSEALED = "unsealed"
KINDS = (MISSING, EXTRA, TRUNCATED, ALTERED, BAD_SIDECAR, LEFTOVER_TEMP, UNSEALED)
WARNINGS = frozenset({LEFTOVER_TEMP})

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Problem:
    kind: str  # one of KINDS
    key: str
    detail: str


@dataclass
class VerifyReport:
    url: str
    sealed: bool
    volume_id: str | None = None
    root_hash: str | None = None
    files: int = 0  # files whose bytes were checked
    parts: int = 0
    rows: int = 0
    bytes: int = 0  # bytes of those files
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing but warnings (leftover temp files) was found."""
        return not self.failures

    @property
    def failures(self) -> list[Problem]:
        return [p for p in self.problems if p.kind not in WARNINGS]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.kind in WARNINGS]

    def render(self, limit: int = 50) -> str:
        state = "sealed" if self.sealed else "NOT sealed"
        verdict = "OK" if self.ok else f"{len(self.failures)} problem(s)"
        head = (
            f"volume {self.volume_id or '?'} at {self.url}: {state}; {self.files} files, {self.parts} parts, "
            f"{self.rows:,} rows, {human_bytes(self.bytes)} checked: {verdict}"
        )
        if self.root_hash:
            head += f"\n  root hash {self.root_hash}"
        ordered = self.failures + self.warnings
        lines = [f"  {p.kind:<14} {p.key}  {p.detail}" for p in ordered[:limit]]
        if len(ordered) > limit:
            lines.append(f"  … and {len(ordered) - limit} more")
        return "\n".join([head, *lines])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------------------------------- plan


def read_plan(store: Store) -> tuple[dict[str, Any], bytes] | None:
    """The plan document (opaque apart from tables/partitions) and its bytes; None if absent."""
    try:
        data = store.get_bytes(layout.PLAN)
    except NotFound:
        return None
    where = f"{store.url}/{layout.PLAN}"
    doc = load_document(data, where)
    check_format(doc, PLAN_FORMAT, PLAN_VERSION, where)
    return doc, data


def expected_parts(plan: dict[str, Any], device: str | None = None) -> dict[str, tuple[str, str, int]]:
    """Part key -> (schema, table, index) for every partition the plan lists, in plan order; with
    ``device``, only the partitions the plan assigned to that device."""
    out: dict[str, tuple[str, str, int]] = {}
    try:
        for t in plan["tables"]:
            for p in t.get("partitions", []):
                if device is not None and p.get("device") != device:
                    continue
                out[layout.part_key(t["schema"], t["name"], int(p["index"]))] = (
                    t["schema"],
                    t["name"],
                    int(p["index"]),
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"plan.json lists tables without schema/name/partitions ({exc})", "re-run plan") from None
    return out


def plan_schema_files(plan: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Key -> (bytes, sha256) of the schema files the plan recorded when it wrote them (may be none)."""
    out: dict[str, tuple[int, str]] = {}
    files = plan.get("schema_files")
    for item in files.values() if isinstance(files, dict) else ():
        if isinstance(item, dict) and {"key", "bytes", "sha256"} <= item.keys():
            out[str(item["key"])] = (int(item["bytes"]), str(item["sha256"]))
    return out


def is_metadata(key: str) -> bool:
    """plan.json, volume.json, schema/** and a device's marker: volume files that are not data parts."""
    return (
        key in (layout.PLAN, layout.VOLUME_MANIFEST)
        or key.startswith(layout.SCHEMA_DIR + "/")
        or layout.parse_device_key(key) is not None
    )


# ---------------------------------------------------------------------------------------- checks


def check_file(store: Store, key: str, size: int | None, want_bytes: int, want_sha: str) -> Problem | None:
    """Size first (cheap, and the kind tells truncation from alteration), then the recomputed sha256."""
    if size is None:
        return Problem(MISSING, key, "not on the volume")
    if size < want_bytes:
        return Problem(TRUNCATED, key, f"{size:,} bytes, {want_bytes:,} recorded")
    if size > want_bytes:
        return Problem(ALTERED, key, f"{size:,} bytes, {want_bytes:,} recorded")
    try:
        actual = store.sha256(key)
    except NotFound:
        return Problem(MISSING, key, "vanished while being checked")
    if actual != want_sha:
        return Problem(ALTERED, key, f"sha256 {actual}, {want_sha} recorded")
    return None


@dataclass
class PartCheck:
    """The outcome of checking one part against its sidecar."""

    key: str
    manifest: PartManifest | None = None
    sidecar: bytes | None = None
    problems: list[Problem] = field(default_factory=list)


def check_part(
    store: Store, key: str, ident: tuple[str, str, int] | None, volume_id: str | None, sizes: dict[str, int]
) -> PartCheck:
    """A part verifies when its sidecar parses, names this part and volume, and its rows/bytes/sha256
    match the part's actual bytes (recomputed here).  ``ident`` is what the plan says the part is."""
    result = PartCheck(key)
    side = layout.sidecar_for(key)
    if key not in sizes:
        result.problems.append(Problem(MISSING, key, "part not on the volume"))
        return result
    if side not in sizes:
        result.problems.append(Problem(MISSING, side, "the part is there but not its sidecar: it is incomplete"))
        return result
    try:
        result.sidecar = store.get_bytes(side)
        manifest = PartManifest.from_bytes(result.sidecar, side)
    except NotFound:
        result.problems.append(Problem(MISSING, side, "vanished while being checked"))
        return result
    except BulkmigError as exc:
        result.problems.append(Problem(BAD_SIDECAR, side, exc.message))
        return result
    wrong = []
    if manifest.key != key or manifest.expected_key != key:
        wrong.append(f"describes {manifest.key} ({manifest.schema}.{manifest.table} #{manifest.index})")
    if ident is not None and (manifest.schema, manifest.table, manifest.index) != ident:
        wrong.append(f"is for {manifest.schema}.{manifest.table} #{manifest.index}, the plan says {ident}")
    if volume_id is not None and manifest.volume_id != volume_id:
        wrong.append(f"belongs to volume {manifest.volume_id}, not {volume_id}")
    if wrong:
        result.problems.append(Problem(BAD_SIDECAR, side, "; ".join(wrong)))
        return result
    problem = check_file(store, key, sizes.get(key), manifest.bytes, manifest.sha256)
    if problem:
        result.problems.append(problem)
        return result
    result.manifest = manifest
    return result


def run_parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """Map ``fn`` over ``items`` on a small thread pool (hashing is I/O-bound and hashlib drops the
    GIL), keeping order; the first exception propagates once the pool has drained."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulkmig-hash") as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------------------- verify


def verify(store: Store, progress: ProgressFn | None = None, *, workers: int = DEFAULT_WORKERS) -> VerifyReport:
    """Check every file of the volume at ``store``; returns a report (raises only for what prevents
    checking at all: an unreachable store, or a plan / manifest of a newer format)."""
    sizes = {info.key: info.size for info in store.list()}
    report = VerifyReport(url=store.url, sealed=layout.VOLUME_MANIFEST in sizes)
    report.problems += [
        Problem(LEFTOVER_TEMP, k, "an interrupted write left this; never trusted, safe to delete")
        for k in sizes
        if layout.is_temp(k)
    ]
    device_manifests = sorted(k for k in sizes if (layout.parse_device_key(k) or ("", ""))[1] == layout.VOLUME_MANIFEST)
    if device_manifests and not report.sealed:  # the bucket copy of a plan's several devices
        _verify_devices(store, device_manifests, sizes, report, progress, workers)
        order = {k: i for i, k in enumerate(KINDS)}
        report.problems.sort(key=lambda p: (order.get(p.kind, 99), p.key))
        return report
    manifest: VolumeManifest | None = None
    if report.sealed:
        try:
            manifest = VolumeManifest.from_bytes(store.get_bytes(layout.VOLUME_MANIFEST))
        except PlanError:
            raise  # a newer format: refuse by name rather than report nonsense
        except BulkmigError as exc:
            report.problems.append(Problem(ALTERED, layout.VOLUME_MANIFEST, exc.message))
    if manifest is not None:
        _verify_sealed(store, manifest, sizes, report, progress, workers)
    else:
        if not report.sealed:
            report.problems.append(
                Problem(UNSEALED, layout.VOLUME_MANIFEST, "not sealed: checked parts against their sidecars and plan")
            )
        _verify_unsealed(store, sizes, report, progress, workers)
    order = {k: i for i, k in enumerate(KINDS)}
    report.problems.sort(key=lambda p: (order.get(p.kind, 99), p.key))
    return report


def _verify_sealed(
    store: Store,
    manifest: VolumeManifest,
    sizes: dict[str, int],
    report: VerifyReport,
    progress: ProgressFn | None,
    workers: int,
) -> None:
    report.volume_id = manifest.volume_id
    report.root_hash = manifest.root_hash
    plan_entry = manifest.entry(layout.PLAN)
    if plan_entry is None or plan_entry.sha256 != manifest.plan_sha256:
        report.problems.append(
            Problem(ALTERED, layout.VOLUME_MANIFEST, "plan_sha256 does not match its plan.json entry")
        )
    listed = {f.key for f in manifest.files}
    report.problems += [
        Problem(EXTRA, k, "not listed in volume.json")
        for k in sizes
        if k not in listed and k != layout.VOLUME_MANIFEST and not layout.is_temp(k)
    ]
    tracker = Tracker(progress, manifest.total_bytes, len(manifest.files))
    tracker.start()

    def one(entry: Any) -> Problem | None:
        problem = check_file(store, entry.key, sizes.get(entry.key), entry.bytes, entry.sha256)
        tracker.add(entry.bytes)
        return problem

    report.problems += [p for p in run_parallel(one, manifest.files, workers) if p]
    report.files = len(manifest.files)
    report.bytes = manifest.total_bytes
    report.parts = len(manifest.parts)
    report.rows = manifest.total_rows


def _verify_devices(
    store: Store,
    keys: list[str],
    sizes: dict[str, int],
    report: VerifyReport,
    progress: ProgressFn | None,
    workers: int,
) -> None:
    """The bucket copy of several devices: every imported device's files as its ``volume.json`` lists them,
    nothing else, and every device of the plan imported (a missing one is reported, so this fails)."""
    manifests = [VolumeManifest.from_bytes(store.get_bytes(k), f"{store.url}/{k}") for k in keys]
    files = {f.key: f for m in manifests for f in m.files}
    merged = VolumeManifest.build(manifests[0].volume_id, manifests[0].plan_sha256, files.values())
    _verify_sealed(store, merged, {k: v for k, v in sizes.items() if k not in keys}, report, progress, workers)
    report.root_hash = None  # one per device; the devices' manifests carry them
    count = int((manifests[0].device or {}).get("count", len(manifests)))
    arrived = {int((m.device or {}).get("index", 0)) for m in manifests}
    report.sealed = len(arrived) == count
    for m in manifests:
        if m.volume_id != report.volume_id or m.plan_sha256 != merged.plan_sha256:
            report.problems.append(
                Problem(
                    ALTERED,
                    layout.device_manifest(str((m.device or {}).get("name"))),
                    f"belongs to volume {m.volume_id}, not {report.volume_id}",
                )
            )
    if not report.sealed:
        missing = sorted(set(range(1, count + 1)) - arrived)
        report.problems.append(
            Problem(MISSING, layout.DEVICES_DIR + "/", f"device(s) {missing} of {count} not imported yet")
        )


def _verify_unsealed(
    store: Store, sizes: dict[str, int], report: VerifyReport, progress: ProgressFn | None, workers: int
) -> None:
    plan = read_plan(store)
    if plan is None:
        report.problems.append(Problem(MISSING, layout.PLAN, "no plan: checking whatever parts are there"))
        volume_id = None
        found = {k for k in sizes if k.endswith(layout.PART_SUFFIX) and layout.parse_data_key(k)}
        expected: dict[str, tuple[str, str, int] | None] = dict.fromkeys(sorted(found))
    else:
        report.volume_id = volume_id = plan[0].get("volume_id")
        device = device_of(store)
        expected = dict(expected_parts(plan[0], device.name if device else None))
    allowed = set(expected) | {layout.sidecar_for(k) for k in expected}
    report.problems += [
        Problem(EXTRA, k, "not a part of the plan" if k.startswith(layout.DATA_DIR + "/") else "not part of a volume")
        for k in sizes
        if not (layout.is_temp(k) or k in allowed or is_metadata(k))
    ]
    schema_files = plan_schema_files(plan[0]) if plan else {}
    tracker = Tracker(
        progress,
        sum(sizes.get(k, 0) for k in [*expected, *schema_files]),
        len(expected) + len(schema_files),
    )
    tracker.start()

    def schema_file(item: tuple[str, tuple[int, str]]) -> Problem | None:
        problem = check_file(store, item[0], sizes.get(item[0]), *item[1])
        tracker.add(sizes.get(item[0], 0))
        return problem

    report.problems += [p for p in run_parallel(schema_file, schema_files.items(), workers) if p]

    def one(item: tuple[str, tuple[str, str, int] | None]) -> PartCheck:
        result = check_part(store, item[0], item[1], volume_id, sizes)
        tracker.add(sizes.get(item[0], 0))
        return result

    for result in run_parallel(one, expected.items(), workers):
        report.problems += result.problems
        if result.manifest is not None:
            report.parts += 1
            report.files += 2
            report.rows += result.manifest.rows
            report.bytes += result.manifest.bytes + len(result.sidecar or b"")
