"""The task file: one YAML document that names source, target, volume, bucket and what moves.

Why it is strict: a migration runs for days across several hosts, and a typo found on day three
(``max_part_byte``, a bucket in upper case, a password pasted into a URL) is expensive.  So the file
is validated completely when it is read, every problem is reported in one error (as singer-sdk does),
unknown keys get a "did you mean", and secrets are never taken from it: passwords come from
``BULKMIG_<ROLE>_PASSWORD``, a password file, or libpq's own ``PGPASSWORD``/``.pgpass``, and no
``repr``, message or fingerprint ever contains one.

Example (see ``examples/task.yaml``)::

    source: postgresql://app@127.0.0.1:5432/shop
    target: postgresql://admin@127.0.0.1:5433/shop
    migration_type: full-load            # full-load | full-load-and-cdc | cdc (AWS DMS MigrationType)
    volume: ./volume                     # a directory (relative to this file) or s3://bucket/prefix
    bucket: s3://migration/shop
    s3: {endpoint_url: http://127.0.0.1:5000, region: us-east-1}
    table_mappings: mappings.json        # AWS DMS table-mapping JSON; default: every table
    task_settings: task-settings.json    # AWS DMS task-settings JSON, as DMS exports it (optional)
    settings: {workers: 2, max_part_bytes: 256MB}

Sizes: ``MB``/``GB`` (and ``k``/``M``/``G``) are powers of 1000, ``MiB``/``GiB`` powers of 1024,
as on disk labels and in the SI; a plain integer is bytes.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import yaml

from bulkmig.config.dms_settings import DmsTaskSettings
from bulkmig.config.engine_settings import NUMERIC_DATES, REPORT_ONLY_SETTINGS, SqliteTypeSettings
from bulkmig.config.engine_settings import MysqlTypeSettings as TypeSettings
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError

MIGRATION_TYPES = ("full-load", "full-load-and-cdc", "cdc")
ROLES = ("source", "target")
ENGINES = ("postgresql", "mysql", "sqlite", "dms-s3")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# URL scheme (before any "+driver") -> engine.  SQLAlchemy spellings, so existing URLs paste in.
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    # An AWS DMS S3 target's folder, read as a source (bulkmig.dms.read): dms-s3://bucket/folder.
    "dms-s3": "dms-s3",
}
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
IDENTIFIERS = ("lower", "preserve")
# How PostgreSQL capture reads its slot: the streaming replication protocol, or the old SQL peek loop (for a
# server or pooler that offers no WAL sender; it re-decodes from the restart point on every poll).
CAPTURE_READS = ("stream", "peek")
EXECUTORS = ("local", "dask")
SSE_MODES = {"SSE_S3": "AES256", "AES256": "AES256", "SSE_KMS": "aws:kms", "aws:kms": "aws:kms"}

MiB = 1024**2
FINGERPRINT_VERSION = 1

TOP_KEYS = (
    "name",
    "description",
    "source",
    "target",
    "source_password_file",
    "target_password_file",
    "migration_type",
    "volume",
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

# libpq connection keywords (PostgreSQL 17 docs), so a typo such as `sslmod=` is caught on load
# rather than as "invalid connection option" on day three.  Value: the environment variable that
# carries it for subprocesses (pg_dump, psql), or None when libpq reads it only from a conninfo.
LIBPQ_PARAMS: dict[str, str | None] = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "fallback_application_name": None,
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
    "tcp_user_timeout": None,
    "gssencmode": "PGGSSENCMODE",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# Query parameters that are secrets: refused in a task file, masked by redact_url.
SECRET_PARAMS = frozenset({"password", "sslpassword"})
_REDACT_PARAMS = SECRET_PARAMS | {
    "secret",
    "token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
}


# ------------------------------------------------------------------------------------------- redaction


def _split_authority(rest: str) -> tuple[str | None, str]:
    """Split ``user[:password]@host…`` (the text after ``scheme://``) into userinfo and the rest.

    The userinfo ends at the last ``@`` before the query, where the query starts at the first
    ``?`` *after* the first ``@``: so an unencoded ``/`` or ``?`` inside a password still counts
    as userinfo, and no fragment of a password is ever mistaken for a host or port and echoed.
    """
    first_at = rest.find("@")
    if first_at == -1:
        return None, rest
    q = rest.find("?", first_at)
    head = rest if q == -1 else rest[:q]
    at = head.rfind("@")
    return rest[:at], rest[at + 1 :]


def _mask_query(query: str) -> str:
    out = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        out.append(f"{key}=***" if eq and unquote(key).lower() in _REDACT_PARAMS else item)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` with any password removed and secret query values masked; safe for any message.

    Also masks ``password=…`` in libpq key=value strings, so a conninfo that ends up in an
    exception text is harmless.  Never raises.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        userinfo, remainder = _split_authority(rest)
        auth = userinfo.split(":", 1)[0] + "@" if userinfo is not None else ""
        base, q, query = remainder.partition("?")
        return f"{scheme}://{auth}{base}{q}{_mask_query(query) if q else ''}"
    return re.sub(r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)


# -------------------------------------------------------------------------------------------- endpoint


def _conninfo_value(value: str) -> str:
    """A libpq conninfo value: quoted when it is empty or holds a space, quote or backslash."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Endpoint:
    """A database given by a SQLAlchemy-style URL, with its password resolved from the environment.

    ``password`` is excluded from ``repr``, equality and the fingerprint; ``str()`` is the redacted
    URL, so an endpoint can be put in any message as it is.
    """

    role: str  # "source" | "target"
    engine: str  # "postgresql" | "mysql" | "sqlite" | "dms-s3" (host: the bucket, database: the folder)
    scheme: str  # as written, e.g. "postgresql+psycopg"
    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None  # for sqlite: the absolute path of the database file
    params: dict[str, str] = field(default_factory=dict, hash=False)
    password: str | None = field(default=None, repr=False, compare=False, hash=False)

    @classmethod
    def parse(cls, url: str, role: str, base_dir: Path | None = None) -> Endpoint:
        """Parse ``url``; refuses a password in it.  ``base_dir`` anchors relative sqlite paths."""
        where = f"{role}: {redact_url(url)}"
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                f"{role}: expected a database URL, got {redact_url(str(url))!r}",
                "write e.g. postgresql://user@host:5432/dbname, mysql://user@host/db or sqlite:///file.db",
            )
        scheme, _, rest = url.partition("://")
        engine = SCHEMES.get(scheme.lower().split("+", 1)[0])
        if engine is None:
            raise ConfigError(
                f"{where}: unsupported scheme {scheme!r}",
                "use postgresql://, postgres://, mysql://, mariadb://, sqlite:/// or dms-s3://",
            )
        if engine == "sqlite":
            return cls._parse_sqlite(url, rest, role, scheme, base_dir)
        if engine == "dms-s3":
            bucket, _, folder = rest.partition("/")
            bad = _check_s3_url(f"s3://{rest}") if bucket else "names no bucket"
            if role != "source" or bad or "?" in rest:
                raise ConfigError(
                    f"{where}: " + (bad or ("a DMS S3 folder can only be a source" if role != "source" else "no ?")),
                    "write source: dms-s3://bucket/folder (the BucketName and BucketFolder of the DMS S3 target)",
                )
            return cls(role, "dms-s3", "dms-s3", host=bucket, database=folder.strip("/") or None)
        userinfo, remainder = _split_authority(rest)
        hostport, _, tail = remainder.partition("/")
        path, _, query = tail.partition("?")
        if "?" in hostport:  # postgresql://host?sslmode=... (no database)
            hostport, _, query = hostport.partition("?")
        if userinfo is not None and ":" in userinfo:
            raise ConfigError(
                f"{role}: the URL contains a password; bulkmig never reads secrets from the task file",
                f"remove it from the URL and set BULKMIG_{role.upper()}_PASSWORD, or {role}_password_file"
                + (", PGPASSWORD or ~/.pgpass" if engine == "postgresql" else ""),
            )
        params: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            if k.lower() in SECRET_PARAMS:
                raise ConfigError(
                    f"{role}: the URL contains {k}=…; bulkmig never reads secrets from the task file",
                    f"remove it and set BULKMIG_{role.upper()}_PASSWORD or {role}_password_file",
                )
            params[k] = v
        host, port_text = _split_hostport(hostport)
        user = unquote(userinfo) if userinfo else None
        database = unquote(path) if path else None
        if engine == "postgresql":
            unknown = [k for k in params if k not in LIBPQ_PARAMS]
            if unknown:
                bad = ", ".join(f"{k!r}{_suggest(k, LIBPQ_PARAMS)}" for k in unknown)
                raise ConfigError(f"{where}: unknown libpq parameter {bad}", "see the libpq connection keywords")
            # libpq lets ?host=/?port=/?user=/?dbname= stand in for the URL parts; fold them in.
            for key, current in (("host", host), ("port", port_text), ("user", user), ("dbname", database)):
                if key in params:
                    if current:
                        raise ConfigError(f"{where}: {key} is given twice (in the URL and as ?{key}=)", "keep one")
                    value = params.pop(key)
                    if key == "host":
                        host = value
                    elif key == "port":
                        port_text = value
                    elif key == "user":
                        user = value
                    else:
                        database = value
            # The values come from libpq's own URL parser (multi-host lists, percent-encoding, IPv6,
            # sockets): what bulkmig connects to is exactly what psql would connect to.
            host, port_text, user, database = _libpq_url_parts(rest, where)
        port: int | None = None
        if port_text:
            for one in port_text.split(","):
                if not one.isdigit() or not 0 < int(one) < 65536:
                    raise ConfigError(f"{where}: port {one!r} is not a number from 1 to 65535", "fix the port")
            if "," in port_text:  # one port per host of a multi-host URL: libpq takes the list as it is
                params["port"] = port_text
            else:
                port = int(port_text)
        return cls(role, engine, scheme, host or None, port, user or None, database or None, params)

    @classmethod
    def _parse_sqlite(cls, url: str, rest: str, role: str, scheme: str, base_dir: Path | None) -> Endpoint:
        # sqlite:///relative.db -> rest "/relative.db"; sqlite:////abs.db -> rest "//abs.db".
        path, _, query = rest.partition("?")
        if not path.startswith("/") or path in ("/", "") or path.startswith("/:memory:"):
            raise ConfigError(
                f"{role}: {redact_url(url)} names no database file",
                "write sqlite:///relative/to/task.db or sqlite:////absolute/path.db",
            )
        file = unquote(path[1:])
        p = Path(file).expanduser()
        if not p.is_absolute():
            p = (base_dir or Path.cwd()) / p
        params = dict(parse_qsl(query, keep_blank_values=True))
        return cls(role, "sqlite", scheme, database=os.path.normpath(p), params=params)

    def with_password(self, password: str | None) -> Endpoint:
        return dataclasses.replace(self, password=password)

    def redacted(self) -> str:
        """The URL without any password: for messages, manifests and plan.json."""
        if self.engine == "dms-s3":
            return f"dms-s3://{self.host}" + (f"/{self.database}" if self.database else "")
        if self.engine == "sqlite":
            db = self.database or ""
            return f"{self.scheme}:///{quote(db, safe='/')}" + (
                f"?{urlencode(self.params, safe='/')}" if self.params else ""
            )
        host = self.host or ""
        if host.startswith("/"):
            host = quote(host, safe="")
        elif ":" in host:
            host = f"[{host}]"
        auth = f"{quote(self.user, safe='')}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        db = f"/{quote(self.database, safe='')}" if self.database else ""
        query = f"?{urlencode(self.params, safe='/')}" if self.params else ""
        return f"{self.scheme}://{auth}{host}{port}{db}{query}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"Endpoint({self.role}={self.redacted()!r})"

    def identity(self) -> dict[str, Any]:
        """What makes this *the same database* (not the same login): for fingerprints."""
        return {
            "engine": self.engine,
            "host": self.host,
            "port": self.port or DEFAULT_PORTS.get(self.engine),
            "database": self.database,
        }

    def _require_postgres(self, what: str) -> None:
        if self.engine != "postgresql":
            raise ConfigError(f"{self.role} {self.redacted()} is not PostgreSQL", f"{what} is for PostgreSQL only")

    def libpq_conninfo(self) -> str:
        """``key=value`` connection string for psycopg/libpq, password included: never log it."""
        self._require_postgres("a libpq conninfo")
        items: list[tuple[str, str]] = []
        for key, value in (
            ("host", self.host),
            ("port", str(self.port) if self.port else None),
            ("user", self.user),
            ("dbname", self.database),
            ("password", self.password),
        ):
            if value is not None:
                items.append((key, value))
        items.extend(self.params.items())
        return " ".join(f"{k}={_conninfo_value(v)}" for k, v in items)

    def libpq_env(self) -> dict[str, str]:
        """PG* environment variables for subprocesses (pg_dump, psql): merge into ``os.environ``.

        Parameters libpq reads only from a conninfo (keepalives, …) have no variable and are left out.
        """
        self._require_postgres("a libpq environment")
        env: dict[str, str] = {}
        for var, value in (
            ("PGHOST", self.host),
            ("PGPORT", str(self.port) if self.port else None),
            ("PGUSER", self.user),
            ("PGDATABASE", self.database),
            ("PGPASSWORD", self.password),
        ):
            if value is not None:
                env[var] = value
        for key, value in self.params.items():
            var = LIBPQ_PARAMS.get(key)
            if var:
                env[var] = value
        return env


def _libpq_url_parts(rest: str, where: str) -> tuple[str | None, str | None, str | None, str | None]:
    """host, port, user and dbname of ``postgresql://<rest>`` as libpq parses them (``h1,h2`` and
    ``5432,5433`` for a multi-host URL).  ``rest`` holds no password: ``Endpoint.parse`` refused it first."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        # bulkmig has always taken unencoded spaces (`my db`); libpq wants them as %20.
        parts = conninfo_to_dict(f"postgresql://{rest.replace(' ', '%20')}")
    except ProgrammingError as exc:
        reason = str(exc).strip()
        hint = "see libpq's connection URI format"
        raise ConfigError(f"{where}: libpq cannot parse this URL ({reason})", hint) from None
    return tuple(parts.get(k) for k in ("host", "port", "user", "dbname"))  # type: ignore[return-value]


def _split_hostport(hostport: str) -> tuple[str | None, str | None]:
    if hostport.startswith("["):  # [::1]:5432
        host, _, after = hostport[1:].partition("]")
        return host or None, after[1:] if after.startswith(":") else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return unquote(host) or None, port or None
    return unquote(hostport) or None, None


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
    # "before": tables get their primary keys before the data, so a duplicate is refused while loading.
    # "after": keys are built after the data like pg_restore does: ~1.7x faster loads (bench).
    primary_keys: str = "before"


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


# ----------------------------------------------------------------------------------------------- task


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

    def fingerprint(self) -> str:
        """sha256 over :meth:`fingerprint_inputs`: what determines the data on the volume, so a volume is
        never resumed or loaded by a different task.  It covers the source database's identity (engine,
        host, port, database — not the login or TLS options, which may change between hosts without changing a
        byte), the migration type, the normalised mappings and the plan-shaping settings; never a
        password, the target, or where the volume and bucket live."""
        blob = json.dumps(self.fingerprint_inputs(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def fingerprint_inputs(self) -> dict[str, Any]:
        """The document the fingerprint hashes, by section (source, migration_type, mappings, settings).

        The plan keeps it (it holds names, never a secret), so a task that no longer fits its volume is
        told *what* changed, not only that something did (:func:`changed_inputs`)."""
        s = self.settings
        return {
            "version": FINGERPRINT_VERSION,
            "source": self.source.identity(),
            "migration_type": self.migration_type,
            "mappings": self.mappings.canonical(),
            "settings": {
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
            },
        }


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


# ---------------------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys: PyYAML silently keeps the last one otherwise."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:  # a complex YAML key; construct_mapping reports it properly below
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, origin: str) -> Any:
    """YAML with duplicate keys refused and errors located by line and column."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{origin}: not valid YAML{where}: {exc.problem or exc.context}", "fix the YAML syntax there"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}", "fix the YAML syntax") from None


def load_task(path: Path, overrides: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None) -> Task:
    """Read and validate a task file.

    ``overrides`` (from the command line) are merged over the file before validation: nested
    mappings merge key by key, and dotted keys are paths, so ``{"settings.workers": 8}`` and
    ``{"settings": {"workers": 8}}`` are the same.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read task file {path}: {exc.strerror or exc}", "pass an existing file with --task"
        ) from None
    doc = parse_yaml(text, str(path))
    if doc is None:
        doc = {}
    if overrides:
        if not isinstance(doc, dict):
            doc = {}
        doc = merge_overrides(doc, overrides)
    return Task.from_dict(doc, path.parent.absolute(), path=path, env=env)


def merge_overrides(doc: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with ``overrides`` merged in (dotted keys are paths; ``None`` values are skipped,
    so unset command-line options leave the file alone)."""
    out: dict[str, Any] = _deep_copy(doc)
    for key, value in overrides.items():
        if value is None:
            continue
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = merge_overrides(node[last], value)
        else:
            node[last] = _deep_copy(value) if isinstance(value, Mapping) else value
    return out


def _deep_copy(doc: Any) -> Any:
    if isinstance(doc, Mapping):
        return {k: _deep_copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_deep_copy(v) for v in doc]
    return doc


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _check_s3_url(url: str) -> str | None:
    """A problem with an ``s3://bucket[/prefix]`` URL, or None."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        return f"{bucket!r} is not a valid bucket name (3-63 characters: lower-case letters, digits, dots, hyphens)"
    if "//" in prefix or prefix.startswith("/"):
        return f"the prefix {prefix!r} has an empty path segment ('//')"
    return None


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
                self.problem(f"{prefix}{key}: unknown key{_suggest(str(key), known)}")

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
            if key == "volume" and (cdc_only or dms_source):
                continue  # replication only: no volume travels
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
                + _suggest(str(migration_type), MIGRATION_TYPES)
            )
        volume = self.volume(doc.get("volume") or ("./volume" if cdc_only or dms_source else None))
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
        wal_retained_warning = d.wal_retained_warning
        if raw.get("wal_retained_warning") is not None:
            try:
                wal_retained_warning = parse_size(raw["wal_retained_warning"])
            except ValueError as exc:
                self.problem(f"settings.wal_retained_warning: {exc}")
        retry_timeout = self.int_(raw, "retry_timeout", d.retry_timeout, minimum=0)
        max_part_bytes = d.max_part_bytes
        if raw.get("max_part_bytes") is not None:
            try:
                max_part_bytes = parse_size(raw["max_part_bytes"])
            except ValueError as exc:
                self.problem(f"settings.max_part_bytes: {exc}")
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
            primary_keys=self.choice(schema, "primary_keys", PRIMARY_KEYS, "before"),
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
                hint = _suggest(str(value), allowed)
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
            hint = _suggest(str(numeric_dates), NUMERIC_DATES)
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
            self.problem(f"settings.{key}: {value!r} is not one of {', '.join(choices)}{_suggest(str(value), choices)}")
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
