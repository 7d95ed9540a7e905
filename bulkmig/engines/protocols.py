"""The two engine contracts the stages call, and each engine's facts as data (as dlt does for destinations and
sqlglot for dialects).

- :class:`SourceEngine`: what ``plan`` and ``extract`` use of a foreign source module (``engines/mysql/source.py``,
  ``engines/sqlite/source.py``): the catalog in one snapshot, partitioning, and ``workers`` part readers on one
  snapshot.  PostgreSQL sources are still read by the PostgreSQL code in the stages (exported snapshots, pg_dump);
  its capabilities are here all the same, so a stage asks the capability, not the engine's name.
- :class:`TargetEngine`: what ``load``, ``replay``, ``validate`` and ``status`` use of a non-PostgreSQL target
  (``engines/mysql/target``); ``bulkmig.targets.target_engine`` returns one (None: PostgreSQL, in the stages).
- :class:`SourceCapabilities` / :data:`SOURCE_CAPABILITIES`: what an engine can do, so the stages need no
  ``if engine == ...``.

``tests/unit/test_engine_protocols.py`` checks that every registered engine module satisfies its protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import pyarrow as pa

from bulkmig.core.catalog import Catalog
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Partition, Table


@dataclass(frozen=True)
class SourceCapabilities:
    """What a source engine can do; the stages read these instead of testing the engine's name."""

    #: other sessions (on other hosts too) can join the plan's snapshot by its id (``pg_export_snapshot``)
    exported_snapshot: bool
    #: workers start consistent snapshots together under a global read lock (FLUSH TABLES WITH READ LOCK)
    snapshot_under_lock: bool
    #: the schema is copied by the engine's own dump tool (pg_dump) rather than converted from a catalog
    native_schema: bool
    #: change data capture exists for this engine (a driver in ``engines.CDC_DRIVERS``)
    change_capture: bool
    #: capture writes the target's names into its batches (the stream is converted at capture time)
    capture_writes_target_names: bool
    #: extraction may run on several hosts at once (a distributed executor)
    multi_host_extract: bool
    #: the source is a file on this machine, readable only where it lies
    local_file: bool


# One row per engine, the columns in SourceCapabilities' order (MySQL: no multi-host extract, since the read lock
# that starts every worker's snapshot together is held by one coordinator's sessions; see the README).
# fmt: off
SOURCE_CAPABILITIES: dict[str, SourceCapabilities] = {
    #                          exported  under  native  change   target  multi  local
    #                          snapshot  lock   schema  capture  names   host   file
    "postgresql": SourceCapabilities(True,  False, True,  True,  False, True,  False),
    "mysql":      SourceCapabilities(False, True,  False, True,  True,  False, False),
    "sqlite":     SourceCapabilities(False, False, False, False, False, False, True),
    # an AWS DMS S3 target's folder (bulkmig.dms.read): its changes are files already, read by replay
    "dms-s3":     SourceCapabilities(False, False, False, False, False, False, False),
}
# fmt: on


def source_capabilities(engine: str) -> SourceCapabilities:
    """The capabilities of a source engine; a one-line error for an engine bulkmig does not read."""
    if engine not in SOURCE_CAPABILITIES:
        raise ConfigError(f"no source support for engine {engine!r}", f"use one of {', '.join(SOURCE_CAPABILITIES)}")
    return SOURCE_CAPABILITIES[engine]


@runtime_checkable
class PartReader(Protocol):
    """One session on the extract's snapshot, reading parts."""

    snapshot_id: str

    def batches(
        self, table: Table, partition: Partition | None, as_text: frozenset[str] = ...
    ) -> Iterator[pa.RecordBatch]:
        """The partition's rows in Arrow batches, typed as the plan's columns say."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SourceSnapshot(Protocol):
    """``workers`` readers on one consistent state of the source, and that state's position."""

    readers: list[Any]  # PartReader each
    position: dict[str, Any]
    snapshot_id: str

    def check_columns(self, tables: list[Table]) -> None:
        """Refuse tables whose columns changed since the plan."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SourceEngine(Protocol):
    """A foreign source module (``bulkmig.engines.<engine>.source``)."""

    def open_catalog(self, task: Any) -> tuple[Catalog, dict[str, Any]]:
        """The catalog read inside one consistent snapshot, and that snapshot's position."""
        ...

    def partition_tables(self, task: Any, tables: list[Table]) -> None:
        """Fill every table's ``partitions`` (:mod:`bulkmig.core.partitions` cuts the ranges)."""
        ...

    def open_snapshot(self, endpoint: Any, workers: int, *, batch_rows: int = ...) -> SourceSnapshot: ...

    def quote_ident(self, name: str) -> str:
        """An identifier quoted in the engine's SQL (for the mappings' row filters)."""
        ...

    def literal(self, value: Any) -> str:
        """A value as an SQL literal of the engine (for the mappings' row filters)."""
        ...


@runtime_checkable
class TargetEngine(Protocol):
    """A non-PostgreSQL target (today MySQL/MariaDB: ``bulkmig.engines.mysql.target.MysqlTarget``)."""

    def convert_schema(self, catalog: Any, conversion: Any) -> Any:
        """The plan's schema for this target (its DDL, the assessment report)."""
        ...

    def apply_schema(self, statements_sql: str, section: str, volume_id: str) -> int:
        """Apply a pre-data or post-data section once per volume; the statements applied."""
        ...

    def load_part(self, *args: Any, **kwargs: Any) -> Any:
        """One part into its table, in one transaction with its ledger row."""
        ...

    def load(self, *, workers: int | None = None, progress: bool = True) -> Any:
        """Apply pre-data, load every part once, then post-data."""
        ...

    def replay_target(self, *, target_names: bool, marks: Any, stream_doc: Any) -> Any:
        """The target's side of a replay session (lock, position, each batch applied with its position in one
        transaction); the loop around it is replay's own (``bulkmig.replay.runner``)."""
        ...

    def compare(self, task: Any, table: Table) -> Any:
        """Value-by-value comparison of one table for ``validate``."""
        ...

    def ledger_by_table(self, volume_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Parts loaded per table, from the target's ledger (for ``status``)."""
        ...

    def status(self, volume_id: str | None) -> dict[str, Any]:
        """The target's part of ``status``."""
        ...

    def replay_position(self, stream_id: str) -> Any:
        """The last change batch applied, from the target's position table."""
        ...


class ClosingSnapshot:
    """A snapshot is a context manager that closes its sessions (what every engine's snapshot shares)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
