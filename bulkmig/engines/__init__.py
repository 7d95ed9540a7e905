"""Engine packages: one per database engine, holding what differs between engines as data.

PostgreSQL sources are handled by ``plan``/``extract`` directly (exported snapshots, pg_dump).  Foreign
sources (MySQL/MariaDB, SQLite) go through schema conversion and a source module,
``bulkmig.engines.<engine>.source``, which :func:`foreign_source` returns.  What ``plan`` and ``extract``
use of such a module:

- ``open_catalog(task) -> (Catalog, position)``: the catalog read inside one consistent snapshot, and
  that snapshot's source position (MySQL: ``{"lsn": "<file>:<pos>", "binlog_file", "binlog_pos",
  "gtid_set", "server_id", "exported_by"}``; it becomes ``plan.snapshot``);
- ``partition_tables(task, tables) -> None`` (optional): fill each table's ``partitions``; without it
  every table is one part;
- ``open_snapshot(endpoint, workers, *, batch_rows) -> snapshot`` with ``.readers`` (``workers`` readers,
  each with ``.batches(table, partition, as_text)``, ``.snapshot``, ``.snapshot_lsn``, ``.close()`` and
  optionally ``.source_position() -> dict`` for the sidecars), ``.position`` (dict), ``.snapshot_id``,
  ``.check_columns(tables)`` (refuses tables whose columns changed since the plan) and ``.close()``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from bulkmig.core.errors import ConfigError

# Engine name (``Endpoint.engine``) -> its source module; None: read by the PostgreSQL code in plan/extract.
SOURCE_MODULES: dict[str, str | None] = {
    "postgresql": None,
    "mysql": "bulkmig.engines.mysql.source",
    "sqlite": "bulkmig.engines.sqlite.source",
}


def foreign_source(engine: str) -> ModuleType | None:
    """The source module of a foreign engine, or None for PostgreSQL (the native path)."""
    if engine not in SOURCE_MODULES:
        raise ConfigError(f"no source support for engine {engine!r}", f"use one of {', '.join(SOURCE_MODULES)}")
    name = SOURCE_MODULES[engine]
    return importlib.import_module(name) if name else None


# Engine name -> its change-capture driver module (a ``DRIVER`` satisfying ``bulkmig.cdc.driver.CaptureDriver``).
CDC_DRIVERS: dict[str, str] = {
    "postgresql": "bulkmig.engines.postgres.capture",
    "mysql": "bulkmig.engines.mysql.capture",
}


def cdc_driver(engine: str) -> Any:
    """The capture driver of ``engine``; a one-line error for an engine without change capture."""
    if engine not in CDC_DRIVERS:
        raise ConfigError(
            f"change capture is not supported for {engine} sources",
            f"use migration_type: full-load, or a source of: {', '.join(CDC_DRIVERS)}",
        )
    return importlib.import_module(CDC_DRIVERS[engine]).DRIVER


def check_cdc_ready(task: Any) -> None:
    """Refuse change capture from a foreign source that has none, or whose server is not set up for it
    (the source module's ``check_cdc_ready``: binlog on, ROW format, FULL images...)."""
    check = getattr(foreign_source(task.source.engine), "check_cdc_ready", None)
    if check is None:
        raise ConfigError(
            f"migration_type {task.migration_type} is not supported for {task.source.engine} sources",
            "use migration_type: full-load",
        )
    check(task)
