"""A task document checked key by key into a :class:`~bulkmig.config.task_model.Task`.

Why it collects instead of raising: a migration runs for days across several hosts, so the whole
file is checked at once and every problem is reported in one ``ConfigError`` with its fix (unknown
keys get a "did you mean").  The key lists here are also what ``manifests/task.schema.json`` must
agree with (``tests/unit/test_schemas.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bulkmig.config.dms_settings import DmsTaskSettings
from bulkmig.config.endpoint import Endpoint, _check_s3_url, redact_url
from bulkmig.config.engine_settings import NUMERIC_DATES, SqliteTypeSettings
from bulkmig.config.engine_settings import MysqlTypeSettings as TypeSettings
from bulkmig.config.mappings import Mappings
from bulkmig.config.reading import did_you_mean
from bulkmig.config.task_model import (
    Device,
    DmsSourceSettings,
    EncryptionSettings,
    S3Settings,
    SchemaSettings,
    Settings,
    Task,
    ValidationSettings,
    left_out,
    parse_size,
)
from bulkmig.core.errors import ConfigError

MIGRATION_TYPES = ("full-load", "full-load-and-cdc", "cdc")
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
IDENTIFIERS = ("lower", "preserve")
# How PostgreSQL capture reads its slot: the streaming replication protocol, or the old SQL peek loop (for a
# server or pooler that offers no WAL sender; it re-decodes from the restart point on every poll).
CAPTURE_READS = ("stream", "peek")
EXECUTORS = ("local", "dask")
SSE_MODES = {"SSE_S3": "AES256", "AES256": "AES256", "SSE_KMS": "aws:kms", "aws:kms": "aws:kms"}

TOP_KEYS = (
    "name",
    "description",
    "source",
    "target",
    "source_password_file",
    "target_password_file",
    "migration_type",
    "volume",
    "volumes",
    "bucket",
    "s3",
    "volume_s3",
    "table_mappings",
    "task_settings",
    "settings",
    "cdc_start_position",
)
REQUIRED_KEYS = ("source", "target", "migration_type", "volume", "bucket")
ENDPOINT_KEYS = ("url", "password_file")
S3_KEYS = ("endpoint_url", "region", "sse", "kms_key_id")
DEVICE_KEYS = ("name", "path", "capacity")
DEVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
SETTINGS_KEYS = (
    "workers",
    "executor",
    "scheduler",
    "max_part_bytes",
    "max_row_group_rows",
    "compression",
    "identifiers",
    "allow_replica_identity_full",
    "slot_name",
    "publication_name",
    "schema",
    "validation",
    "wal_retained_warning",
    "retry_timeout",
    "capture_read",
    "mysql",
    "encryption",
    "sqlite",
    "existing_tables",
    "dms",
)
ENCRYPTION_KEYS = ("key_file",)
SCHEMA_SETTINGS_KEYS = ("owners", "privileges", "primary_keys")
PRIMARY_KEYS = ("before", "after")
VALIDATION_SETTINGS_KEYS = ("enabled", "threads", "only", "partition_size", "failure_max_count")
# settings.existing_tables: what load does with target tables that already exist (DMS TargetTablePrepMode:
# DO_NOTHING = append, DROP_AND_CREATE = drop, TRUNCATE_BEFORE_LOAD = truncate); refuse is bulkmig's own default.
EXISTING_TABLES = ("refuse", "append", "drop", "truncate")
# settings.mysql: the type-mapping choices of schema conversion (bulkmig.config.engine_settings.MysqlTypeSettings).
MYSQL_SETTINGS_KEYS = ("tinyint1_as_boolean", "zero_dates", "time_as", "postgis", "scan_values")
# settings.dms: how a dms-s3:// source's files are read (bulkmig.dms).
DMS_SETTINGS_KEYS = ("table_definition", "endpoint_settings", "before_image_prefix", "before_image_suffix")
# settings.sqlite: how SQLite values are read (bulkmig.config.engine_settings.SqliteTypeSettings).
SQLITE_SETTINGS_KEYS = ("numeric_dates", "column_types")


class _Builder:
    """Turns a task document into a Task, collecting every problem before raising once."""

    def __init__(self, doc: Any, base_dir: Path, path: Path | None, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.path = path
        self.env = env
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def unknown(self, section: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in section:
            if key not in known:
                self.problem(f"{prefix}{key}: unknown key{did_you_mean(str(key), known)}")

    def build(self) -> Task:
        origin = str(self.path) if self.path else "task"
        doc = self.doc
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{origin}: expected a YAML mapping of keys (source:, target:, …)", "see examples/task.yaml"
            )
        self.unknown(doc, TOP_KEYS, "")
        cdc_only = doc.get("migration_type") == "cdc"
        # A DMS S3 folder as the source: its files are read where DMS wrote them, no volume, no bucket of ours.
        raw_source = doc.get("source")
        raw_source = raw_source.get("url") if isinstance(raw_source, dict) else raw_source
        dms_source = isinstance(raw_source, str) and raw_source.startswith("dms-s3://")
        for key in REQUIRED_KEYS:
            if key == "volume" and (cdc_only or dms_source or doc.get("volumes") not in (None, "", [])):
                continue  # replication only: no volume travels; or several devices (volumes:)
            if key == "bucket" and dms_source:
                continue
            if doc.get(key) in (None, ""):
                self.problem(f"{key}: missing (required; see examples/task.yaml)")
        source = self.endpoint(doc, "source")
        target = self.endpoint(doc, "target")
        if source and target and source.identity() == target.identity():
            self.problem("source and target are the same database; point target at the new database")
        migration_type = doc.get("migration_type")
        if migration_type not in (None, "") and migration_type not in MIGRATION_TYPES:
            self.problem(
                f"migration_type: {migration_type!r} is not one of {', '.join(MIGRATION_TYPES)}"
                + did_you_mean(str(migration_type), MIGRATION_TYPES)
            )
        devices = self.devices(doc.get("volumes"), doc.get("volume"))
        volume = devices[0].path if devices else None
        volume = volume or self.volume(doc.get("volume") or ("./volume" if cdc_only or dms_source else None))
        bucket = self.bucket(doc.get("bucket") or (raw_source.replace("dms-s3://", "s3://", 1) if dms_source else None))
        cdc_start = doc.get("cdc_start_position")
        # A MySQL source starts at a binlog position (file:offset; file names are case-sensitive).
        mysql_source = source is not None and source.engine == "mysql"
        text = cdc_start if isinstance(cdc_start, str) else ""
        binlog_start = mysql_source and bool(re.fullmatch(r"[^\s:]+\.\d+:\d+", text))
        lsn = bool(re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", text))
        if cdc_start is not None and not binlog_start and not lsn:
            self.problem(
                f"cdc_start_position: {cdc_start!r} is not a PostgreSQL LSN like 16/B374D848"
                + (" or a binlog position like binlog.000042:1234" if mysql_source else "")
            )
            cdc_start = None
        if cdc_start is not None and not cdc_only:
            self.problem("cdc_start_position: only for migration_type cdc (a full load starts from its snapshot)")
        s3 = self.s3(doc.get("s3"), "s3")
        volume_s3 = self.s3(doc.get("volume_s3"), "volume_s3") if doc.get("volume_s3") is not None else None
        settings = self.settings(doc.get("settings"))
        mappings = self.mappings(doc.get("table_mappings"))
        dms = self.task_settings(doc.get("task_settings"), doc.get("migration_type"))
        notes: list[str] = list(mappings.warnings) if mappings else []
        if dms is not None and settings is not None and mappings is not None:
            raw_settings = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
            settings, overridden = dms.apply_to(settings, raw_settings)
            mappings = dms.apply_to_mappings(mappings)
            notes += [*dms.warnings, *overridden]
        name = doc.get("name")
        if name is None:
            name = self.path.stem if self.path else "task"
        elif not isinstance(name, str) or not name.strip():
            self.problem("name: must be a non-empty string")
        if self.problems:
            raise ConfigError(f"{origin}: " + "; ".join(self.problems), "fix the task file (see examples/task.yaml)")
        assert source and target and volume and bucket and s3 and settings and mappings  # for the type checker
        return Task(
            source=source,
            target=target,
            migration_type=str(migration_type),
            volume=volume,
            bucket=bucket,
            s3=s3,
            mappings=mappings,
            settings=settings,
            path=self.path,
            name=str(name),
            volume_s3=volume_s3,
            cdc_start_position=(cdc_start if binlog_start else cdc_start.upper()) if cdc_start else None,
            dms=dms,
            notes=tuple(notes),
            devices=tuple(devices),
        )

    # ------------------------------------------------------------------------------------ sections

    def endpoint(self, doc: Mapping[str, Any], role: str) -> Endpoint | None:
        raw = doc.get(role)
        if raw in (None, ""):
            return None
        password_file = doc.get(f"{role}_password_file")
        if isinstance(raw, dict):
            self.unknown(raw, ENDPOINT_KEYS, f"{role}.")
            if raw.get("password_file") is not None:
                if password_file is not None:
                    self.problem(f"{role}.password_file and {role}_password_file are both set; keep one")
                password_file = raw.get("password_file")
            raw = raw.get("url")
            if raw in (None, ""):
                self.problem(f"{role}.url: missing (the database URL)")
                return None
        if not isinstance(raw, str):
            self.problem(f"{role}: must be a database URL string")
            return None
        try:
            ep = Endpoint.parse(raw, role, self.base_dir)
        except ConfigError as exc:
            self.problem(str(exc))
            return None
        password = self.env.get(f"BULKMIG_{role.upper()}_PASSWORD") or None
        if password is None and password_file is not None:
            password = self.read_password_file(password_file, role)
        return ep.with_password(password)

    def read_password_file(self, raw: Any, role: str) -> str | None:
        key = f"{role}_password_file"
        if not isinstance(raw, str) or not raw:
            self.problem(f"{key}: must be a file path")
            return None
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = self.base_dir / p
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            self.problem(f"{key}: cannot read {p}: {exc.strerror or exc}")
            return None
        password = text.rstrip("\r\n")
        if not password:
            self.problem(f"{key}: {p} is empty")
            return None
        return password

    def volume(self, raw: Any) -> str | None:
        if raw in (None, ""):
            return None
        if not isinstance(raw, str):
            self.problem("volume: must be a directory path or an s3:// URL")
            return None
        if raw.startswith("s3://"):
            bad = _check_s3_url(raw)
            if bad:
                self.problem(f"volume: {bad}")
                return None
            return raw.rstrip("/")
        if "://" in raw:
            self.problem(f"volume: {redact_url(raw)!r} is neither a directory nor an s3:// URL")
            return None
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = self.base_dir / p
        return os.path.normpath(p)

    def devices(self, raw: Any, volume: Any) -> list[Device]:
        """``volumes: [{name: a, path: /mnt/dev-a, capacity: 80TB}, …]``: the devices a migration ships on."""
        if raw in (None, "", []):
            return []
        if volume not in (None, ""):
            self.problem("volume and volumes are both set: keep volume: for one device, volumes: for several")
            return []
        if not isinstance(raw, list) or len(raw) < 2:
            self.problem("volumes: must be a list of two or more devices ({name, path, capacity}); use volume: for one")
            return []
        out: list[Device] = []
        for n, item in enumerate(raw):
            where = f"volumes[{n}]"
            if not isinstance(item, dict):
                self.problem(f"{where}: must be a mapping like {{name: a, path: /mnt/dev-a, capacity: 80TB}}")
                continue
            self.unknown(item, DEVICE_KEYS, f"{where}.")
            name = item.get("name", chr(ord("a") + n) if n < 26 else f"dev{n + 1}")
            if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
                self.problem(f"{where}.name: {name!r} must be 1-40 letters, digits, '_' or '-' (it names a directory)")
                continue
            before = len(self.problems)
            path = self.volume(item.get("path"))
            for k in range(before, len(self.problems)):  # say which device's path is wrong
                self.problems[k] = self.problems[k].replace("volume:", f"{where}.path:", 1)
            if path is None:
                if len(self.problems) == before:
                    self.problem(f"{where}.path: missing (where the device is mounted, or its S3 adapter's URL)")
                continue
            capacity = None
            if item.get("capacity") is not None:
                try:
                    capacity = parse_size(item["capacity"])
                except ValueError as exc:
                    self.problem(f"{where}.capacity: {exc}")
                    continue
            out.append(Device(name, path, capacity))
        names = [d.name for d in out]
        paths = [d.path for d in out]
        if len(set(names)) != len(names):
            self.problem(f"volumes: two devices share a name ({', '.join(sorted(names))}); each needs its own")
        if len(set(paths)) != len(paths):
            self.problem("volumes: two devices share a path; each device is a volume of its own")
        return out

    def bucket(self, raw: Any) -> str | None:
        if raw in (None, ""):
            return None
        if not isinstance(raw, str) or not raw.startswith("s3://"):
            self.problem(f"bucket: {redact_url(str(raw))!r} is not an s3:// URL; write s3://bucket[/prefix]")
            return None
        bad = _check_s3_url(raw)
        if bad:
            self.problem(f"bucket: {bad}")
            return None
        return raw.rstrip("/")

    def s3(self, raw: Any, key: str) -> S3Settings | None:
        if raw is None:
            return S3Settings()
        if not isinstance(raw, dict):
            self.problem(f"{key}: must be a mapping ({', '.join(S3_KEYS)})")
            return None
        self.unknown(raw, S3_KEYS, f"{key}.")
        for k in S3_KEYS:
            if raw.get(k) is not None and not isinstance(raw.get(k), str):
                self.problem(f"{key}.{k}: must be a string")
                return None
        endpoint_url = raw.get("endpoint_url") or None
        if endpoint_url and not re.match(r"https?://[^/\s]+", endpoint_url):
            self.problem(f"{key}.endpoint_url: {redact_url(endpoint_url)!r} must start with http:// or https://")
        sse = raw.get("sse") or None
        if sse is not None:
            if sse not in SSE_MODES:
                self.problem(f"{key}.sse: {sse!r} is not one of {', '.join(SSE_MODES)}")
            sse = SSE_MODES.get(sse)
        kms_key_id = raw.get("kms_key_id") or None
        if kms_key_id and sse != "aws:kms":
            self.problem(f"{key}.kms_key_id: only used with sse: SSE_KMS (aws:kms)")
        return S3Settings(endpoint_url, raw.get("region") or None, sse, kms_key_id)

    def mappings(self, raw: Any) -> Mappings | None:
        try:
            if raw is None:
                return Mappings.default()
            if isinstance(raw, dict):
                return Mappings.from_doc(raw, "table_mappings")
            if isinstance(raw, str) and raw.strip().startswith("{"):
                return Mappings.from_json(raw, "table_mappings")
            if isinstance(raw, str) and raw.strip():
                p = Path(raw).expanduser()
                return Mappings.load(p if p.is_absolute() else self.base_dir / p)
            self.problem("table_mappings: must be a file path, a mapping, or a JSON string")
        except ConfigError as exc:
            self.problem(str(exc))
        return None

    def task_settings(self, raw: Any, migration_type: Any) -> DmsTaskSettings | None:
        """``task_settings``: an AWS DMS task-settings JSON file (relative to the task file), or the document inline."""
        if raw in (None, ""):
            return None
        kind = migration_type if isinstance(migration_type, str) else None
        try:
            if isinstance(raw, dict):
                return DmsTaskSettings.from_doc(raw, "task_settings", kind)
            if isinstance(raw, str):
                p = Path(raw).expanduser()
                return DmsTaskSettings.load(p if p.is_absolute() else self.base_dir / p, kind)
            self.problem("task_settings: must be a file path (the JSON a DMS task exports) or a mapping")
        except ConfigError as exc:
            self.problem(str(exc))
        return None

    def settings(self, raw: Any) -> Settings | None:
        if raw is None:
            return Settings()
        if not isinstance(raw, dict):
            self.problem("settings: must be a mapping")
            return None
        self.unknown(raw, SETTINGS_KEYS, "settings.")
        d = Settings()
        before = len(self.problems)
        workers = self.int_(raw, "workers", d.workers, minimum=1)
        max_row_group_rows = self.int_(raw, "max_row_group_rows", d.max_row_group_rows, minimum=1)
        wal_retained_warning = self.size_(raw, "wal_retained_warning", d.wal_retained_warning)
        retry_timeout = self.int_(raw, "retry_timeout", d.retry_timeout, minimum=0)
        max_part_bytes = self.size_(raw, "max_part_bytes", d.max_part_bytes)
        compression = self.choice(raw, "compression", COMPRESSIONS, d.compression)
        identifiers = self.choice(raw, "identifiers", IDENTIFIERS, d.identifiers)
        allow_full = self.bool_(raw, "allow_replica_identity_full", d.allow_replica_identity_full, "settings.")
        slot_name = self.ident(raw, "slot_name", r"[a-z0-9_]{1,63}", "lower-case letters, digits and _, at most 63")
        publication_name = self.ident(raw, "publication_name", r"[^\x00]{1,63}", "1 to 63 characters")
        capture_read = self.choice(raw, "capture_read", CAPTURE_READS, d.capture_read)
        executor = self.choice(raw, "executor", EXECUTORS, d.executor)
        scheduler = raw.get("scheduler")
        if scheduler is not None and not (isinstance(scheduler, str) and "://" in scheduler):
            self.problem(
                f"settings.scheduler: must be a Dask scheduler address like tcp://host:8786, not {scheduler!r}"
            )
            scheduler = None
        schema = self.section(raw, "schema", SCHEMA_SETTINGS_KEYS)
        validation = self.section(raw, "validation", VALIDATION_SETTINGS_KEYS)
        schema_settings = SchemaSettings(
            owners=self.bool_(schema, "owners", False, "settings.schema."),
            privileges=self.bool_(schema, "privileges", False, "settings.schema."),
            primary_keys=self.choice(schema, "primary_keys", PRIMARY_KEYS, SchemaSettings.primary_keys),
        )
        threads = validation.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            self.problem(f"settings.validation.threads: must be an integer ≥ 1, not {threads!r}")
            threads = None
        validation_settings = ValidationSettings(
            enabled=self.bool_(validation, "enabled", True, "settings.validation."),
            threads=threads,
            only=self.bool_(validation, "only", False, "settings.validation."),
            partition_size=self.int_(validation, "partition_size", 10_000, 1, "settings.validation."),
            failure_max_count=self.int_(validation, "failure_max_count", 10_000, 1, "settings.validation."),
        )
        existing_tables = self.choice(raw, "existing_tables", EXISTING_TABLES, d.existing_tables)
        encryption_settings = self.encryption(self.section(raw, "encryption", ENCRYPTION_KEYS))
        mysql_settings = self.mysql(self.section(raw, "mysql", MYSQL_SETTINGS_KEYS))
        sqlite_settings = self.sqlite(self.section(raw, "sqlite", SQLITE_SETTINGS_KEYS))
        dms_settings = self.dms(self.section(raw, "dms", DMS_SETTINGS_KEYS))
        if len(self.problems) > before:
            return None
        return Settings(
            workers=workers,
            executor=executor,
            scheduler=scheduler,
            max_part_bytes=max_part_bytes,
            wal_retained_warning=wal_retained_warning,
            retry_timeout=retry_timeout,
            max_row_group_rows=max_row_group_rows,
            compression=compression,
            identifiers=identifiers,
            allow_replica_identity_full=allow_full,
            slot_name=slot_name,
            publication_name=publication_name,
            capture_read=capture_read,
            schema=schema_settings,
            validation=validation_settings,
            mysql=mysql_settings,
            encryption=encryption_settings,
            sqlite=sqlite_settings,
            existing_tables=existing_tables,
            dms=dms_settings,
            defaulted=left_out(raw),
        )

    def encryption(self, raw: Mapping[str, Any]) -> EncryptionSettings:
        key_file = raw.get("key_file")
        if key_file is None:
            if raw:
                self.problem("settings.encryption.key_file: missing (the file holding the volume's key)")
            return EncryptionSettings()
        if not isinstance(key_file, str) or not key_file.strip():
            self.problem("settings.encryption.key_file: must be a file path")
            return EncryptionSettings()
        p = Path(key_file).expanduser()
        return EncryptionSettings(key_file=os.path.normpath(p if p.is_absolute() else self.base_dir / p))

    # ------------------------------------------------------------------------------- value checks

    def mysql(self, raw: Mapping[str, Any]) -> TypeSettings:
        """``settings.mysql``: how MySQL types map (tinyint(1), zero dates, TIME, spatial); see TypeSettings."""
        d = TypeSettings()
        prefix = "settings.mysql."
        values: dict[str, Any] = {}
        for key, allowed in (("zero_dates", ("null", "refuse")), ("time_as", ("time", "interval"))):
            value = raw.get(key)
            if value is not None and value not in allowed:
                hint = did_you_mean(str(value), allowed)
                self.problem(f"{prefix}{key}: {value!r} is not one of {', '.join(allowed)}{hint}")
            elif value is not None:
                values[key] = value
        values["tinyint1_as_boolean"] = self.bool_(raw, "tinyint1_as_boolean", d.tinyint1_as_boolean, prefix)
        values["postgis"] = self.bool_(raw, "postgis", d.postgis, prefix)
        values["scan_values"] = self.bool_(raw, "scan_values", d.scan_values, prefix)
        return TypeSettings(**values)

    def dms(self, raw: Mapping[str, Any]) -> DmsSourceSettings:
        """``settings.dms``: the two DMS files (paths relative to the task file) and the before-image naming."""
        paths: dict[str, str | None] = {}
        for key in ("table_definition", "endpoint_settings"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                self.problem(f"settings.dms.{key}: must be a file path")
                value = None
            if value is not None:
                p = Path(value).expanduser()
                p = p if p.is_absolute() else self.base_dir / p
                if not p.is_file():
                    self.problem(f"settings.dms.{key}: {p} is not a file")
                value = os.path.normpath(p)
            paths[key] = value
        affixes = {}
        for key, default in (("before_image_prefix", "BI_"), ("before_image_suffix", "")):
            value = default if raw.get(key) is None else raw.get(key)
            if not isinstance(value, str):
                self.problem(f"settings.dms.{key}: must be a string")
                value = default
            affixes[key] = value
        return DmsSourceSettings(paths["table_definition"], paths["endpoint_settings"], **affixes)

    def sqlite(self, raw: Mapping[str, Any]) -> SqliteTypeSettings:
        """``settings.sqlite``: how numbers in date columns are read, and columns read as another declared
        type (``column_types: {"table.column": TEXT}``, the fix for values that do not fit their type)."""
        prefix = "settings.sqlite."
        values: dict[str, Any] = {}
        numeric_dates = raw.get("numeric_dates")
        if numeric_dates is not None and numeric_dates not in NUMERIC_DATES:
            hint = did_you_mean(str(numeric_dates), NUMERIC_DATES)
            self.problem(f"{prefix}numeric_dates: {numeric_dates!r} is not one of {', '.join(NUMERIC_DATES)}{hint}")
        elif numeric_dates is not None:
            values["numeric_dates"] = numeric_dates
        column_types = raw.get("column_types")
        if column_types is not None and not isinstance(column_types, dict):
            self.problem(f"{prefix}column_types: must be a mapping of table.column to a declared type, e.g. TEXT")
        elif column_types is not None:
            checked: dict[str, str] = {}
            for key, declared in column_types.items():
                table, dot, column = str(key).rpartition(".")
                if not isinstance(key, str) or not dot or not table or not column:
                    self.problem(f"{prefix}column_types: {key!r} must name a column as table.column")
                elif not isinstance(declared, str) or not declared.strip():
                    self.problem(f"{prefix}column_types.{key}: must be a declared type such as TEXT, not {declared!r}")
                else:
                    checked[key] = declared.strip()
            values["column_types"] = checked
        return SqliteTypeSettings(**values)

    def int_(self, raw: Mapping[str, Any], key: str, default: int, minimum: int, prefix: str = "settings.") -> int:
        value = raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(f"{prefix}{key}: must be an integer ≥ {minimum}, not {value!r}")
            return default
        return value

    def size_(self, raw: Mapping[str, Any], key: str, default: int) -> int:
        """A size setting (``256MB``, ``1GiB``, bytes; see :func:`~bulkmig.config.task_model.parse_size`)."""
        value = raw.get(key)
        if value is None:
            return default
        try:
            return parse_size(value)
        except ValueError as exc:
            self.problem(f"settings.{key}: {exc}")
            return default

    def bool_(self, raw: Mapping[str, Any], key: str, default: bool, prefix: str) -> bool:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(f"{prefix}{key}: must be true or false, not {value!r}")
            return default
        return value

    def choice(self, raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
        value = raw.get(key)
        if value is None:
            return default
        if value not in choices:
            self.problem(
                f"settings.{key}: {value!r} is not one of {', '.join(choices)}{did_you_mean(str(value), choices)}"
            )
            return default
        return str(value)

    def ident(self, raw: Mapping[str, Any], key: str, pattern: str, rule: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            self.problem(f"settings.{key}: {value!r} is not a valid name ({rule})")
            return None
        return value

    def section(self, raw: Mapping[str, Any], key: str, known: tuple[str, ...]) -> Mapping[str, Any]:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(f"settings.{key}: must be a mapping ({', '.join(known)})")
            return {}
        self.unknown(value, known, f"settings.{key}.")
        return value
