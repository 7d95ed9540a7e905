"""`bulkmig volume import`: copy a sealed volume into the bucket, every object checked against volume.json.

This is the Snowball-import step for a volume that reached a host with a good uplink (or the device's
own S3 adapter).  Rules:

- Only a sealed volume is imported, and its ``volume.json`` is put last: a bucket volume without it is
  known incomplete, so a loader never starts on half an import.  One of several devices puts it at
  ``devices/<name>/volume.json`` instead: the devices of a plan share one tree in the bucket, each
  arriving on its own, and the loader loads the tables whose devices have all arrived.  A different,
  older ``volume.json`` already in the bucket is removed first for the same reason.
- A file whose bytes on the volume do not match volume.json is never uploaded (IntegrityError naming
  it).  Each upload carries ``ChecksumAlgorithm=SHA256`` and is compared afterwards with S3's own
  checksum (see :mod:`bulkmig.core.store`).
- Resumable: an object already in the bucket with the right size and sha256 (read cheaply from its
  checksum / ``sha256`` metadata, no download) is skipped, so a rerun after a cut link sends only
  what is missing.  Parts go first, then their sidecars, then volume.json (DESIGN §4).
- Afterwards the bucket prefix is listed again and every file must be there with its size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError
from bulkmig.core.executor import run_on_dask
from bulkmig.core.log import human_bytes
from bulkmig.core.manifest import FileEntry, VolumeManifest
from bulkmig.core.store import ChecksumMismatch, NotFound, Store, open_store
from bulkmig.volume import ProgressFn, Tracker

DEFAULT_WORKERS = 4


@dataclass
class ImportReport:
    volume: str  # url of the volume read
    bucket: str  # url of the bucket prefix written
    volume_id: str
    root_hash: str
    files: int = 0  # files in volume.json (volume.json itself not counted)
    uploaded: int = 0
    skipped: int = 0  # already in the bucket with the right size and sha256
    bytes_uploaded: int = 0
    bytes_skipped: int = 0
    extra: list[str] = field(default_factory=list)  # objects under the prefix that volume.json does not list

    device: str | None = None  # "device b (2 of 3)" for one of several devices

    def render(self) -> str:
        of = f"{self.device} of " if self.device else ""
        line = (
            f"imported {of}volume {self.volume_id} into {self.bucket}: {self.uploaded} files uploaded "
            f"({human_bytes(self.bytes_uploaded)}), {self.skipped} already there ({human_bytes(self.bytes_skipped)}); "
            f"root hash {self.root_hash}"
        )
        if self.extra:
            line += f"\n  note: {len(self.extra)} object(s) under the prefix are not in volume.json: {self.extra[:10]}"
        return line


def _altered(volume: Store, key: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"{volume.url}/{key} does not match volume.json ({detail}); it was not uploaded",
        "the volume changed after sealing: run `bulkmig volume verify` on it and re-extract the named part",
    )


def copy_file(volume: Store, bucket: Store, entry: FileEntry) -> bool:
    """Upload one sealed file unless the bucket holds it already with its size and sha256; True if uploaded."""
    info = bucket.stat(entry.key)
    # Objects we uploaded carry their sha256; others (e.g. imported by a device service) are read.
    if info is not None and info.size == entry.bytes and (info.sha256 or bucket.sha256(entry.key)) == entry.sha256:
        return False
    local = volume.stat(entry.key)
    if local is None:
        raise _altered(volume, entry.key, "missing from the volume")
    if local.size != entry.bytes:
        raise _altered(volume, entry.key, f"{local.size:,} bytes, {entry.bytes:,} sealed")
    with volume.open_local(entry.key) as path:
        try:
            bucket.put_file(entry.key, path, sha256=entry.sha256)
        except ChecksumMismatch:
            raise _altered(volume, entry.key, "sha256 differs") from None
    return True


def import_unit(volume_url: str, volume_options: Any, bucket_url: str, bucket_options: Any, entry: FileEntry) -> bool:
    """One file, as a Dask worker copies it (several uplink hosts reading one device's S3 adapter or share)."""
    return copy_file(open_store(volume_url, volume_options), open_store(bucket_url, bucket_options), entry)


def import_volume(
    volume: Store,
    bucket: Store,
    progress: ProgressFn | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    cluster: str | None = None,
    volume_options: Any = None,
    bucket_options: Any = None,
) -> ImportReport:
    """Copy the sealed volume at ``volume`` to ``bucket`` (normally ``<bucket>/volumes/<volume-id>``).

    ``cluster``: copy the files as Dask units on the scheduler at that address ("": a LocalCluster); the
    workers open the stores from their URLs and ``volume_options`` / ``bucket_options``.  volume.json is
    put here, last, either way."""
    try:
        sealed = volume.get_bytes(layout.VOLUME_MANIFEST)
    except NotFound:
        raise IntegrityError(
            f"{volume.url} is not sealed (no {layout.VOLUME_MANIFEST})",
            "finish `bulkmig extract`, then run `bulkmig volume seal` before importing",
        ) from None
    manifest = VolumeManifest.from_bytes(sealed, f"{volume.url}/{layout.VOLUME_MANIFEST}")
    report = ImportReport(volume.url, bucket.url, manifest.volume_id, manifest.root_hash, files=len(manifest.files))
    if manifest.device:
        d = manifest.device
        report.device = f"device {d['name']} ({d['index']} of {d['count']})"

    sealed_key = manifest.bucket_key  # volume.json, or devices/<name>/volume.json for one of several devices
    try:
        already = bucket.get_bytes(sealed_key)
    except NotFound:
        already = None
    if already is not None and already != sealed:
        # Another seal of this volume is in the bucket: drop it first so the bucket copy reads as
        # incomplete until every file of the new seal is there.
        bucket.delete(sealed_key)

    tracker = Tracker(progress, manifest.total_bytes, len(manifest.files))
    tracker.start()
    stop = threading.Event()
    lock = threading.Lock()

    def counted(entry: FileEntry, uploaded: bool) -> None:
        with lock:
            if uploaded:
                report.uploaded += 1
                report.bytes_uploaded += entry.bytes
            else:
                report.skipped += 1
                report.bytes_skipped += entry.bytes
        tracker.add(entry.bytes)

    def one(entry: FileEntry) -> None:
        if not stop.is_set():
            counted(entry, copy_file(volume, bucket, entry))

    sidecars = [f for f in manifest.files if f.key.startswith(layout.DATA_DIR + "/") and f.key.endswith(".json")]
    first = [f for f in manifest.files if f not in sidecars]
    # Big files first, so the pool does not end on one long upload while the other threads idle; the
    # sidecars only once every part is in (a part is there once its sidecar is).
    for batch in (sorted(first, key=lambda f: -f.bytes), sidecars):
        if cluster is not None:
            run_on_dask(
                "import",
                cluster or None,
                workers,
                import_unit,
                batch,
                lambda entry: (volume.url, volume_options, bucket.url, bucket_options, entry),
                counted,
            )
        else:
            _run(one, batch, workers, stop)

    if already != sealed:
        bucket.put_bytes(sealed_key, sealed)

    listing = {info.key: info.size for info in bucket.list()}
    wrong = [f.key for f in manifest.files if listing.get(f.key) != f.bytes]
    if listing.get(sealed_key) != len(sealed):
        wrong.append(sealed_key)
    if wrong:
        raise IntegrityError(
            f"after the import {bucket.url} lacks {len(wrong)} file(s) or holds them with another size: "
            + ", ".join(wrong[:20])
            + (f" … and {len(wrong) - 20} more" if len(wrong) > 20 else ""),
            "something deleted or overwrote them meanwhile; rerun the import",
        )
    listed = {f.key for f in manifest.files} | {sealed_key}
    if manifest.device is None:  # the other devices' files share a device's tree: not extra
        report.extra = sorted(k for k in listing if k not in listed)
    return report


def _run(fn: Callable[[FileEntry], None], items: list[FileEntry], workers: int, stop: threading.Event) -> None:
    """Run ``fn`` over ``items`` on a pool; on the first failure start no new file and re-raise it
    once the uploads already running have finished (so none is cut off half-way)."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bulkmig-import") as pool:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f.exception() for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None:
            stop.set()
            for f in futures:
                f.cancel()
    if failed is not None:
        raise failed
