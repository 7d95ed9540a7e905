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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# The task's parts live in endpoint (URLs, redaction), task_model (Task and its settings) and task_builder
# (checking a document); their names are re-exported so ``from bulkmig.config.task import X`` keeps working.
from bulkmig.config.endpoint import (
    DEFAULT_PORTS,
    ENGINES,
    LIBPQ_PARAMS,
    ROLES,
    SCHEMES,
    SECRET_PARAMS,
    Endpoint,
    redact_url,
)
from bulkmig.config.reading import read_text
from bulkmig.config.task_builder import (
    CAPTURE_READS,
    COMPRESSIONS,
    DMS_SETTINGS_KEYS,
    ENCRYPTION_KEYS,
    ENDPOINT_KEYS,
    EXECUTORS,
    EXISTING_TABLES,
    IDENTIFIERS,
    MIGRATION_TYPES,
    MYSQL_SETTINGS_KEYS,
    PRIMARY_KEYS,
    REQUIRED_KEYS,
    S3_KEYS,
    SCHEMA_SETTINGS_KEYS,
    SETTINGS_KEYS,
    SQLITE_SETTINGS_KEYS,
    SSE_MODES,
    TOP_KEYS,
    VALIDATION_SETTINGS_KEYS,
)
from bulkmig.config.task_model import (
    CHANGED_DEFAULTS,
    FINGERPRINT_VERSION,
    Device,
    DmsSourceSettings,
    EncryptionSettings,
    MiB,
    S3Settings,
    SchemaSettings,
    Settings,
    Task,
    ValidationSettings,
    changed_inputs,
    parse_size,
    plan_version,
)
from bulkmig.core.errors import ConfigError

__all__ = [
    "CHANGED_DEFAULTS",
    "Device",
    "CAPTURE_READS",
    "COMPRESSIONS",
    "DEFAULT_PORTS",
    "DMS_SETTINGS_KEYS",
    "ENCRYPTION_KEYS",
    "ENDPOINT_KEYS",
    "ENGINES",
    "EXECUTORS",
    "EXISTING_TABLES",
    "FINGERPRINT_VERSION",
    "IDENTIFIERS",
    "LIBPQ_PARAMS",
    "MIGRATION_TYPES",
    "MYSQL_SETTINGS_KEYS",
    "PRIMARY_KEYS",
    "REQUIRED_KEYS",
    "ROLES",
    "S3_KEYS",
    "SCHEMA_SETTINGS_KEYS",
    "SCHEMES",
    "SECRET_PARAMS",
    "SETTINGS_KEYS",
    "SQLITE_SETTINGS_KEYS",
    "SSE_MODES",
    "TOP_KEYS",
    "VALIDATION_SETTINGS_KEYS",
    "DmsSourceSettings",
    "EncryptionSettings",
    "Endpoint",
    "MiB",
    "S3Settings",
    "SchemaSettings",
    "Settings",
    "Task",
    "ValidationSettings",
    "changed_inputs",
    "load_task",
    "merge_overrides",
    "parse_size",
    "parse_yaml",
    "plan_version",
    "redact_url",
]


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
    text = read_text(path, "task file", "pass an existing file with --task")
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
