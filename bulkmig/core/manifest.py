"""The JSON documents that prove what is on a volume: part sidecars and the sealed volume manifest.

Every document carries ``"format"`` and ``"version"``.  A reader refuses a format it does not know and
a version newer than it reads, by name, rather than guessing at fields: a volume travels for days and
may be read by a different bulkmig than the one that wrote it.  Documents are written canonically
(sorted keys, indent 1, UTF-8, trailing newline) so the same content always gives the same bytes and
therefore the same sha256 — sealing twice gives the same root hash.

Each format has a JSON Schema in ``manifests/`` (with an example in ``manifests/examples/``); documents
are validated against it when written and when read, so a hand-edited or truncated sidecar is refused
with the field that is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError, PlanError
from bulkmig.core.store import sha256_file

__all__ = [
    "PART_FORMAT",
    "PART_VERSION",
    "SCHEMAS_DIR",
    "VOLUME_FORMAT",
    "VOLUME_VERSION",
    "FileEntry",
    "PartManifest",
    "VolumeManifest",
    "check_format",
    "dump_document",
    "load_document",
    "root_hash",
    "sha256_file",
    "utc_now",
    "validate_document",
]

PART_FORMAT = "bulkmig-part"
PART_VERSION = 1
VOLUME_FORMAT = "bulkmig-volume"
VOLUME_VERSION = 1


def _schemas_dir() -> Traversable:
    """The JSON Schemas: inside an installed package as ``bulkmig.manifests`` (setup.py maps the top-level
    ``manifests/`` folder there); when running from a checkout that was not installed, that folder itself."""
    try:
        return importlib.resources.files("bulkmig.manifests")
    except ModuleNotFoundError:
        return Path(__file__).parents[2] / "manifests"


SCHEMAS_DIR = _schemas_dir()


def utc_now() -> str:
    """``2026-11-27T06:52:41+00:00``: the timestamp form every manifest uses."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_document(doc: dict[str, Any]) -> bytes:
    """Canonical bytes of a document: sorted keys, indent 1, UTF-8, trailing newline."""
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load_document(data: bytes, where: str) -> dict[str, Any]:
    """Parse a document's bytes; damaged JSON is an integrity problem, reported by name."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{where} is not valid JSON ({exc})", "the file is damaged; write it again") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where} is not a JSON object", "the file is damaged; write it again")
    return doc


def check_format(doc: dict[str, Any], fmt: str, version: int, where: str) -> None:
    """Refuse a document of another format, or of a version newer than this bulkmig reads."""
    found = doc.get("format")
    if found != fmt:
        what = f"a {found!r} document" if isinstance(found, str) else "not a bulkmig document (no format)"
        raise PlanError(f"{where} is {what}, expected {fmt!r}", "point bulkmig at the right file or volume")
    v = doc.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise PlanError(f"{where} has no valid format version ({v!r})", "the file is damaged; write it again")
    if v > version:
        raise PlanError(f"{where} is format version {v}; this bulkmig reads up to {version}", "upgrade bulkmig")


@functools.cache
def _validator(schema_name: str) -> Any:
    import jsonschema

    path = SCHEMAS_DIR / f"{schema_name}.schema.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(
            f"JSON Schema {schema_name!r} not found in {SCHEMAS_DIR}",
            "reinstall bulkmig (pip install bulkmig, or pip install -e . in a checkout): its schemas are missing",
        ) from None
    # Not checked against its meta-schema here (0.2 s a schema, on every command): the schemas ship with the
    # package and tests/unit/test_schemas.py checks each one.
    return jsonschema.validators.validator_for(schema)(schema)


def validate_document(doc: dict[str, Any], schema_name: str, where: str | None = None) -> None:
    """Check ``doc`` against ``manifests/<schema_name>.schema.json``; IntegrityError naming the first
    wrong field (by its JSON path) otherwise."""
    errors = sorted(_validator(schema_name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IntegrityError(
            f"{where or schema_name} does not match its schema at {at}: {first.message}{more}",
            f"see manifests/{schema_name}.schema.json; the file is damaged or not written by bulkmig",
        )


def _read(data: bytes, fmt: str, version: int, schema_name: str, where: str) -> dict[str, Any]:
    doc = load_document(data, where)
    check_format(doc, fmt, version, where)
    validate_document(doc, schema_name, where)
    return {k: v for k, v in doc.items() if k not in ("format", "version")}


# -------------------------------------------------------------------------------------------- parts


@dataclass
class PartManifest:
    """The sidecar ``data/<schema>/<table>/part-NNNNN.json``: what one Parquet part holds and its hash.

    Written after the part, so a part without a verifying sidecar is known incomplete (DESIGN §4).
    ``bounds`` identifies the partition in the source (``{"column": "id", "lo": 1, "hi": 1000}``,
    ``{"ctid_lo": [0, 0], "ctid_hi": [1000, 0]}``, or ``{}`` for a whole table); ``source_position``
    is the snapshot / position the part was read at.
    """

    volume_id: str
    schema: str
    table: str
    index: int
    key: str
    rows: int
    bytes: int
    sha256: str
    bounds: dict[str, Any]
    columns: list[str]
    row_groups: int
    source_position: dict[str, Any] | None
    created_at: str

    @property
    def expected_key(self) -> str:
        """Where this part must live according to its own schema, table and index."""
        return layout.part_key(self.schema, self.table, self.index)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PART_FORMAT, "version": PART_VERSION, **asdict(self)}

    def to_bytes(self) -> bytes:
        doc = self.to_dict()
        validate_document(doc, "part", f"sidecar of {self.key}")
        return dump_document(doc)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "part sidecar") -> PartManifest:
        return cls(**_read(data, PART_FORMAT, PART_VERSION, "part", where))


# ------------------------------------------------------------------------------------------- volume


@dataclass(frozen=True)
class FileEntry:
    """One file of a sealed volume.  ``rows`` is set for Parquet parts only."""

    key: str
    bytes: int
    sha256: str
    rows: int | None = None

    def line(self) -> str:
        """This file's line in the root hash: ``key<TAB>bytes<TAB>sha256<LF>``."""
        return f"{self.key}\t{self.bytes}\t{self.sha256}\n"


def root_hash(files: Iterable[FileEntry]) -> str:
    """sha256 over the files' lines sorted bytewise (keys are ASCII, see layout.encode_name).

    Anyone can recompute it from volume.json alone::

        jq -r '.files[] | "\\(.key)\\t\\(.bytes)\\t\\(.sha256)"' volume.json | LC_ALL=C sort | sha256sum
    """
    lines = sorted(f.line().encode("utf-8") for f in files)
    return hashlib.sha256(b"".join(lines)).hexdigest()


@dataclass
class VolumeManifest:
    """``volume.json``, written last by ``volume seal``: every file of the volume with its size and
    sha256, and a root hash over them.  A volume (or bucket copy) without it is incomplete."""

    volume_id: str
    sealed_at: str
    plan_sha256: str
    files: list[FileEntry]
    root_hash: str
    # On one of several devices (task ``volumes:``): {"name", "index" (1-based), "count"}; None for a single volume.
    device: dict[str, Any] | None = None

    @functools.cached_property
    def _index(self) -> dict[str, FileEntry]:
        """Key -> entry; built once (treat ``files`` as read-only after construction)."""
        return {f.key: f for f in self.files}

    @classmethod
    def build(
        cls,
        volume_id: str,
        plan_sha256: str,
        files: Iterable[FileEntry],
        sealed_at: str | None = None,
        device: dict[str, Any] | None = None,
    ) -> VolumeManifest:
        """A manifest over ``files`` (sorted by key), with its root hash computed."""
        entries = sorted(files, key=lambda f: f.key.encode("utf-8"))
        keys = [f.key for f in entries]
        if len(set(keys)) != len(keys):
            raise IntegrityError("a volume manifest lists the same key twice", "this is a bug in the caller")
        return cls(volume_id, sealed_at or utc_now(), plan_sha256, entries, root_hash(entries), device)

    def entry(self, key: str) -> FileEntry | None:
        """The sealed entry of ``key``, or None when the volume does not hold it."""
        return self._index.get(key)

    @property
    def parts(self) -> list[FileEntry]:
        """The Parquet parts (not their sidecars, not plan or schema files)."""
        return [f for f in self.files if f.key.startswith(layout.DATA_DIR + "/") and f.key.endswith(layout.PART_SUFFIX)]

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def total_rows(self) -> int:
        return sum(f.rows or 0 for f in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": VOLUME_FORMAT,
            "version": VOLUME_VERSION,
            "volume_id": self.volume_id,
            "sealed_at": self.sealed_at,
            "plan_sha256": self.plan_sha256,
            "files": [asdict(f) for f in self.files],
            "root_hash": self.root_hash,
            **({"device": self.device} if self.device else {}),
        }

    @property
    def bucket_key(self) -> str:
        """Where this manifest goes in the bucket: a device's under ``devices/<name>/``, else the root."""
        return layout.device_manifest(self.device["name"]) if self.device else layout.VOLUME_MANIFEST

    def to_bytes(self) -> bytes:
        doc = self.to_dict()
        validate_document(doc, "volume", layout.VOLUME_MANIFEST)
        return dump_document(doc)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = layout.VOLUME_MANIFEST) -> VolumeManifest:
        """Parse and check a manifest, including that its root hash matches its own file list."""
        doc = _read(data, VOLUME_FORMAT, VOLUME_VERSION, "volume", where)
        files = [FileEntry(**f) for f in doc.pop("files")]
        manifest = cls(files=files, **doc)
        if len(manifest._index) != len(files):
            raise IntegrityError(f"{where} lists a key twice", "the file is damaged; seal the volume again")
        if root_hash(files) != manifest.root_hash:
            raise IntegrityError(
                f"{where}: the root hash does not match its own file list",
                "volume.json was edited or damaged; seal the volume again (`bulkmig volume seal`)",
            )
        return manifest
