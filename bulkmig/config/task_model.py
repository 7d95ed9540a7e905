"""The validated task: :class:`Task`, its settings sections and the fingerprint that ties a volume to it.

Why a module of its own: every stage reads these frozen dataclasses, and adding a setting starts
here; how a YAML document becomes one (every problem reported at once) is ``task_builder``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmig.config.dms_settings import DmsTaskSettings
from bulkmig.config.endpoint import Endpoint
from bulkmig.config.engine_settings import REPORT_ONLY_SETTINGS, SqliteTypeSettings
from bulkmig.config.engine_settings import MysqlTypeSettings as TypeSettings
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError

MiB = 1024**2
# 2: settings.schema.primary_keys defaults to "after" (it was "before"; issue 16).
FINGERPRINT_VERSION = 2
# Settings whose default changed: dotted name -> (the last fingerprint version of the old default, that default).
# A task that leaves such a setting out is checked against a plan recorded under that version (or an older one)
# with the old default, which is what the plan was made with, so a volume planned before an upgrade still loads.
CHANGED_DEFAULTS: dict[str, tuple[int, Any]] = {"schema.primary_keys": (1, "before")}


# ------------------------------------------------------------------------------------------ settings


def parse_size(value: Any) -> int:
    """Bytes from ``256MB`` (10**6), ``256MiB`` (2**20), ``512k``, ``1.5GiB`` or a plain integer."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{value} is not a positive size")
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*", str(value), re.IGNORECASE)
    if not m or (m.group(3) and not m.group(2)):
        raise ValueError(f"{value!r} is not a size (write e.g. 256MB, 256MiB, 1GiB or a number of bytes)")
    number, unit, binary = float(m.group(1)), m.group(2).lower(), bool(m.group(3))
    power = "kmgtp".index(unit) + 1 if unit else 0
    size = round(number * (1024 if binary else 1000) ** power)
    if size <= 0:
        raise ValueError(f"{value!r} is not a positive size")
    return size


@dataclass(frozen=True)
class S3Settings:
    """Where the bucket (or a device's S3 adapter) answers.  No ``endpoint_url`` means AWS itself.
    Credentials come from boto3's usual chain (environment, profile, instance role), never from here."""

    endpoint_url: str | None = None
    region: str | None = None
    sse: str | None = None  # "AES256" | "aws:kms" (DMS spellings SSE_S3 / SSE_KMS accepted)
    kms_key_id: str | None = None

    def options(self) -> Any:
        """This as ``bulkmig.core.store.S3Options`` (imported lazily: task files load without boto3)."""
        from bulkmig.core.store import S3Options

        return S3Options(endpoint_url=self.endpoint_url, region=self.region, sse=self.sse, kms_key_id=self.kms_key_id)


@dataclass(frozen=True)
class SchemaSettings:
    """Whether ownership and GRANTs are recreated on the target (off: the target's admin owns all)."""

    owners: bool = False
    privileges: bool = False
    # "after" (the default): keys are built after the data, like pg_restore does, so the server sorts once
    # instead of growing a B-tree row by row (bench: narrow table load ~1.5x faster).  Exactly once is the
    # ledger's, either way; a duplicate row stops the key's creation in post-data, naming the key.
    # "before": tables get their primary keys before the data, so a duplicate is refused while loading.
    primary_keys: str = "after"


@dataclass(frozen=True)
class EncryptionSettings:
    """Parts encrypted at rest (bulkmig.core.crypto) with the key in ``key_file`` (an absolute path; None: off).
    The file is read only by the stages that need the key (plan, extract, load), never when the task
    is loaded, so ``volume import`` runs on a host that does not hold it."""

    key_file: str | None = None


@dataclass(frozen=True)
class ValidationSettings:
    enabled: bool = True  # false: `migrate` ends after load without validating (`validate` still runs when asked)
    threads: int | None = None  # tables compared at once (None: settings.workers)
    only: bool = False  # `migrate` only validates: it moves nothing (DMS ValidationOnly)
    # PG → PG: rows per key-range partition hashed on both servers (DMS's ValidationSettings.PartitionSize).
    partition_size: int = 10_000
    # Failure records kept per table; past it the bisection stops (DMS suspends the table's validation).
    failure_max_count: int = 10_000


@dataclass(frozen=True)
class DmsSourceSettings:
    """``settings.dms``, for a ``dms-s3://`` source: the DMS files to read (absolute paths; None: not given)."""

    table_definition: str | None = None  # the DMS S3 external table definition JSON
    endpoint_settings: str | None = None  # the DMS S3 target endpoint's S3Settings JSON
    # add-before-image-columns' default naming (BI_<column>): a key update's old key in CDC files
    before_image_prefix: str = "BI_"
    before_image_suffix: str = ""


@dataclass(frozen=True)
class Settings:
    workers: int = 2
    # how units of work run (bulkmig.core.executor): "local" threads here, or "dask" on a cluster at
    # ``scheduler`` (tcp://host:8786), or on a LocalCluster started for the run when no scheduler is named
    executor: str = "local"
    scheduler: str | None = None
    max_part_bytes: int = 256 * MiB
    wal_retained_warning: int = 1024 * MiB  # `status` warns when the slot retains more WAL than this
    retry_timeout: int = 300  # seconds a stage keeps retrying a lost database connection (bulkmig.core.retry)
    max_row_group_rows: int = 65536
    compression: str = "zstd"
    identifiers: str = "lower"  # for heterogeneous sources: fold unquoted upper-case names
    allow_replica_identity_full: bool = False
    slot_name: str | None = None
    publication_name: str | None = None
    capture_read: str = "stream"  # PostgreSQL capture: START_REPLICATION ("stream") or SQL peek polls ("peek")
    schema: SchemaSettings = SchemaSettings()
    validation: ValidationSettings = ValidationSettings()
    mysql: TypeSettings = TypeSettings()  # MySQL/MariaDB sources: type-mapping choices (issue 5)
    encryption: EncryptionSettings = EncryptionSettings()
    sqlite: SqliteTypeSettings = SqliteTypeSettings()  # SQLite sources: numeric dates, column type overrides
    existing_tables: str = "refuse"  # load and target tables that exist: refuse | append | drop | truncate
    dms: DmsSourceSettings = DmsSourceSettings()  # dms-s3:// sources: table definition, endpoint settings
    # The settings of CHANGED_DEFAULTS the task left out (neither the task file nor its DMS task settings name
    # them): only these take an old default when a task is checked against an older plan.  Settings() leaves
    # out every one; the task reader says which a task file sets (left_out).
    defaulted: frozenset[str] = frozenset(CHANGED_DEFAULTS)


# ----------------------------------------------------------------------------------------------- task


@dataclass(frozen=True)
class Device:
    """One of several devices a migration ships on (task ``volumes:``): a Snowball-class appliance, a disk.
    ``path`` is where it is mounted on the host that writes it (an agent's host; or its S3 adapter's URL);
    ``capacity`` in bytes (None: unbounded).  The name tags the Dask resource ``device-<name>``."""

    name: str
    path: str
    capacity: int | None = None


@dataclass(frozen=True)
class Task:
    source: Endpoint
    target: Endpoint
    migration_type: str
    volume: str  # an absolute local path, or s3://bucket[/prefix]
    bucket: str  # s3://bucket[/prefix], without a trailing slash
    s3: S3Settings
    mappings: Mappings
    settings: Settings
    path: Path | None = None
    name: str = "task"
    volume_s3: S3Settings | None = None  # a device's S3 adapter when volume is s3://; default: s3
    cdc_start_position: str | None = None  # migration_type cdc: start the stream at this LSN instead of now
    dms: DmsTaskSettings | None = None  # the task_settings file (AWS DMS task settings), as read
    notes: tuple[str, ...] = ()  # one-line warnings about the task (DMS keys accepted but not used, overrides)
    # ``volumes:`` — several devices (``volume`` is then the first one's path); empty for one ``volume:``
    devices: tuple[Device, ...] = ()

    @classmethod
    def from_dict(
        cls,
        doc: Any,
        base_dir: Path,
        *,
        path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Task:
        """Validate a task document; every problem is reported in one ConfigError.

        ``base_dir`` anchors relative paths (volume, table_mappings, password files, sqlite files);
        ``env`` defaults to ``os.environ`` and is where ``BULKMIG_<ROLE>_PASSWORD`` is looked up.
        """
        from bulkmig.config.task_builder import _Builder  # it builds Tasks: imported here, not above

        task = _Builder(doc, Path(base_dir), path, os.environ if env is None else env).build()
        # The builder named every problem with its fix; the schema (what editors and the docs show) must
        # agree with it, so a task it accepted and the schema refuses is reported, not let through.
        from bulkmig.core.errors import IntegrityError
        from bulkmig.core.manifest import validate_document

        try:
            validate_document(doc, "task", str(path) if path else "the task")
        except IntegrityError as exc:
            raise ConfigError(str(exc).split(" — ")[0], "see manifests/task.schema.json") from None
        return task

    @property
    def full_load(self) -> bool:
        return self.migration_type in ("full-load", "full-load-and-cdc")

    @property
    def cdc(self) -> bool:
        return self.migration_type in ("full-load-and-cdc", "cdc")

    @property
    def volume_is_s3(self) -> bool:
        return self.volume.startswith("s3://")

    def s3_options(self) -> Any:
        """Options for opening the bucket (``bulkmig.core.store.S3Options``)."""
        return self.s3.options()

    def volume_s3_options(self) -> Any:
        """Options for opening an ``s3://`` volume: ``volume_s3`` when given (a device's adapter)."""
        return (self.volume_s3 or self.s3).options()

    def fingerprint(self, version: int = FINGERPRINT_VERSION) -> str:
        """sha256 over :meth:`fingerprint_inputs`: what determines the data on the volume, so a volume is
        never resumed or loaded by a different task.  It covers the source database's identity (engine,
        host, port, database — not the login or TLS options, which may change between hosts without changing a
        byte), the migration type, the normalised mappings and the plan-shaping settings; never a
        password, the target, or where the volume and bucket live.  ``version``: as the bulkmig that recorded
        a plan under that fingerprint version computed it (:func:`plan_version`), to check an older plan."""
        blob = json.dumps(self.fingerprint_inputs(version), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def fingerprint_inputs(self, version: int = FINGERPRINT_VERSION) -> dict[str, Any]:
        """The document the fingerprint hashes, by section (source, migration_type, mappings, settings).

        The plan keeps it (it holds names, never a secret), so a task that no longer fits its volume is
        told *what* changed, not only that something did (:func:`changed_inputs`).  For an older
        ``version``, a setting the task left out whose default changed since counts with its old default
        (:data:`CHANGED_DEFAULTS`): the plan was made with it."""
        if not 1 <= version <= FINGERPRINT_VERSION:
            raise ConfigError(
                f"a plan records task fingerprint version {version}; this bulkmig knows 1 to {FINGERPRINT_VERSION}",
                "load the volume with the bulkmig that planned it (or a newer one)",
            )
        s = self.settings
        settings: dict[str, Any] = {
            "max_part_bytes": s.max_part_bytes,
            "max_row_group_rows": s.max_row_group_rows,
            "compression": s.compression,
            "identifiers": s.identifiers,
            "slot_name": s.slot_name,
            "publication_name": s.publication_name,
            "schema": dataclasses.asdict(s.schema),
            **({"mysql": _mysql_fingerprint(s.mysql)} if self.source.engine == "mysql" else {}),
            **({"sqlite": dataclasses.asdict(s.sqlite)} if self.source.engine == "sqlite" else {}),
            # Only when on, so turning it on changes the fingerprint and tasks without it keep theirs.
            **({"encryption": True} if s.encryption.key_file else {}),
        }
        for name, (last, old) in CHANGED_DEFAULTS.items():
            if version <= last and name in s.defaulted:
                *sections, key = name.split(".")
                place = settings
                for section in sections:
                    place = place[section]
                place[key] = old
        return {
            "version": version,
            "source": self.source.identity(),
            "migration_type": self.migration_type,
            "mappings": self.mappings.canonical(),
            "settings": settings,
        }


def plan_version(task_inputs: Mapping[str, Any] | None) -> int:
    """The fingerprint version a plan's recorded :meth:`Task.fingerprint_inputs` were computed under
    (plans recorded before the inputs were kept are version 1)."""
    version = (task_inputs or {}).get("version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def left_out(raw_settings: Mapping[str, Any]) -> frozenset[str]:
    """The settings of :data:`CHANGED_DEFAULTS` that a task file's ``settings`` mapping does not set (the
    DMS task settings may still set one: ``DmsTaskSettings.apply_to`` takes it off)."""
    out = set()
    for name in CHANGED_DEFAULTS:
        place: Any = raw_settings
        for key in name.split("."):
            place = place.get(key) if isinstance(place, Mapping) else None
        if place is None:
            out.add(name)
    return frozenset(out)


def _mysql_fingerprint(settings: TypeSettings) -> dict[str, Any]:
    """``settings.mysql`` without the report-only fields (``scan_values``): they never change the data moved."""
    return {k: v for k, v in dataclasses.asdict(settings).items() if k not in REPORT_ONLY_SETTINGS}


# The task file's own words for the fingerprint's sections, so a message points at what to edit.
_INPUT_NAMES = {"mappings": "table_mappings", "version": "fingerprint version"}


def changed_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two :meth:`Task.fingerprint_inputs` documents, as the task file names it:
    ``["settings.max_part_bytes (268435456 -> 1000000)", "table_mappings"]``.  Sorted; the mappings are
    named, not printed (they may be long)."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if a == b:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping) and path != "mappings":
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            return
        name = _INPUT_NAMES.get(path, path)
        out.append(name if path == "mappings" else f"{name} ({a} -> {b})")

    walk(old, new, "")
    return sorted(out)
