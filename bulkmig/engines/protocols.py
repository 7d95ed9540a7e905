"""The two engine contracts the stages call, and each engine's facts as data (as dlt does for destinations and
sqlglot for dialects).

- :class:`SourceEngine`: what ``plan`` and ``extract`` use of a foreign source module (``engines/mysql/source.py``,
  ``engines/sqlite/source.py``): the catalog in one snapshot, partitioning, and ``workers`` part readers on one
  snapshot.  PostgreSQL sources are still read by the PostgreSQL code in the stages (exported snapshots, pg_dump);
  its capabilities are here all the same, so a stage asks the capability, not the engine's name.
- :class:`TargetEngine`: what ``load``, ``replay``, ``validate`` and ``status`` use of a target
  (``engines/postgres/target``, ``engines/mysql/target``); ``bulkmig.targets.target_for`` returns one.
- :class:`SourceCapabilities` / :data:`SOURCE_CAPABILITIES`, :class:`TargetCapabilities`: what an engine can do,
  so the stages need no ``if engine == ...``.

``tests/unit/test_engine_protocols.py`` checks that every registered engine module satisfies its protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
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


@dataclass(frozen=True)
class TargetCapabilities:
    """What the stages may assume of a target engine (its facts as data): each target module fills one in, so a
    stage asks the capability, not the engine's name."""

    name: str
    transactional_ddl: bool  # a schema section is applied in one transaction with its marker
    schemas_are_databases: bool  # a table's "schema" is a database of the target server, not a schema in it
    max_identifier: int
    disables_triggers: bool  # no trigger fires while loading and replaying (session_replication_role = replica)
    bulk_format: str
    # validate hashes rows on both servers (pgdiff) with these sources, records failures and repairs them
    hash_diff_sources: frozenset[str]
    # the DMS rename rules are honoured (the load renames the objects of pg_dump's schema once)
    honours_renames: bool
    # a PostgreSQL source's schema is created as pg_dump writes it (no conversion, no assessment)
    takes_pg_dump_schema: bool


@runtime_checkable
class TargetEngine(Protocol):
    """A target engine (``engines/postgres/target.PostgresTarget``, ``engines/mysql/target.MysqlTarget``): the SQL
    of each step the stages take in their own order (``load``, ``replay``, ``validate``, ``status``)."""

    capabilities: TargetCapabilities

    def connect(self, *, loading: bool = False) -> Any:
        """A target connection; ``loading``: a session set up for loading parts (no triggers, strict values)."""
        ...

    def error_text(self, exc: BaseException) -> str:
        """A database error in one line, for the error that names the part or batch."""
        ...

    def apply_pre_data(self, pre: Any, volume_id: str) -> None:
        """The pre-data section (types, tables, primary keys) and the load ledger, once per volume."""
        ...

    def loaded(self, conn: Any, volume_id: str) -> set[str]:
        """The part keys of ``volume_id`` the load ledger holds."""
        ...

    def load_part(self, *args: Any, **kwargs: Any) -> Any:
        """One part into its table, in one transaction with its ledger row."""
        ...

    def apply_post_data(self, post: Any, volume_id: str, jobs: int = 1) -> None:
        """The post-data section (keys, secondary indexes, foreign keys, code), once per volume; ``jobs``: how
        many builds may run side by side where the engine can."""
        ...

    def after_post_data(self, conn: Any, plan: Any) -> list[str]:
        """What the target does once post-data is in (renames, sequence values); lines for the end of the load."""
        ...

    def analyze(self, conn: Any, tables: list[Table]) -> None:
        """Planner statistics for the loaded tables, where the engine needs them refreshed."""
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
        """The last change batch applied (seq, position, applied at, last commit time), from its position table."""
        ...


class ClosingSnapshot:
    """A snapshot is a context manager that closes its sessions (what every engine's snapshot shares)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TargetBase:
    """What every target engine object shares: the task it serves, its target endpoint, and the ``status`` reads,
    which each engine's ``ledger`` module answers with the same three functions over its own record tables."""

    capabilities: TargetCapabilities
    ledger: ModuleType

    def __init__(self, task: Any) -> None:
        self.task = task
        self.endpoint = task.target

    def ledger_by_table(self, volume_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.ledger.ledger_by_table(self.endpoint, volume_id)

    def status(self, volume_id: str | None) -> dict[str, Any]:
        return self.ledger.status(self.endpoint, volume_id)

    def replay_position(self, stream_id: str) -> tuple[int, str, Any, Any] | None:
        return self.ledger.replay_position(self.endpoint, stream_id)
