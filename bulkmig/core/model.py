"""The engine-neutral description of what is being moved: tables, columns, keys, partitions.

These objects are what ``plan.json`` stores, so every field is plain data (str, int, list, dict) and
round-trips through ``to_dict`` / ``from_dict``.  Engines fill them in (``engines/<engine>/reflect.py``)
and read them back when extracting and loading; nothing here talks to a database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from bulkmig.core.errors import SourceError

# How a column travels in Parquet.
#   native: the driver's Arrow type is exact for every value the source type can hold.
#   text:   the engine's canonical text form (``col::text``), restored by the target's text input.
TRANSFER_NATIVE = "native"
TRANSFER_TEXT = "text"


# Arrow type names as plan.json writes them (names keep the plan readable JSON), for every engine.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "uuid": pa.uuid(),
    "date32": pa.date32(),
    "timestamp[us]": pa.timestamp("us"),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}
_DECIMAL_RE = re.compile(r"^decimal(128|256)\((\d+), (\d+)\)$")


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a plan's column names (``Column.arrow_type``), e.g. ``decimal128(12, 2)``."""
    if m := _DECIMAL_RE.match(name):
        make = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        return make(int(m.group(2)), int(m.group(3)))
    return _ARROW_TYPES[name]


@dataclass
class Column:
    name: str
    source_type: str  # exactly as the source prints it, e.g. "numeric(12,2)", "public.mpaa_rating"
    logical_type: str  # engine-neutral family: integer, float, decimal, text, binary, bool, date, ...
    arrow_type: str  # the Arrow type in the part files, e.g. "int64", "string", "timestamp[us, tz=UTC]"
    transfer: str = TRANSFER_NATIVE
    nullable: bool = True
    generated: bool = False  # stored generated columns are computed by the target, never copied
    # How it is read.  PostgreSQL: a type to cast to (a domain is read as its base type).  Foreign engines
    # (MySQL, SQLite): an SQL expression template over ``{col}`` (the quoted column), e.g. ``CAST({col} AS CHAR)``.
    read_as: str | None = None
    dictionary: bool = False  # few distinct values: dictionary-encode it in Parquet (decided from statistics)
    # Where it lands when the target differs from the source (heterogeneous migrations; set by conversion):
    # the target column's name (None: the same name) and PostgreSQL type (None: the same as source_type).
    target_name: str | None = None
    target_type: str | None = None

    @property
    def target(self) -> str:
        """The target column's name."""
        return self.target_name or self.name


@dataclass
class Partition:
    """One part's worth of a table: a WHERE fragment over the source plus bounds for the manifest."""

    index: int
    where: str | None  # SQL fragment for the source, None = the whole table
    bounds: dict[str, Any] = field(default_factory=dict)
    estimated_bytes: int = 0
    device: str | None = None  # the device it ships on, when the task names several (fullload/devices.py)


@dataclass
class Table:
    schema: str
    name: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    kind: str = "table"  # table | partition (a leaf of a partitioned table)
    parent: str | None = None  # "schema.table" of the partitioned parent, for leaves
    estimated_rows: int = 0
    estimated_bytes: int = 0  # heap + TOAST: what reading it costs
    split: dict[str, Any] = field(default_factory=dict)  # {"method": "key-range"|"ctid-range"|"whole", ...}
    filter: str | None = None  # the table mapping's source filter, as SQL
    target_schema: str | None = None
    target_name: str | None = None
    partitions: list[Partition] = field(default_factory=list)
    # What the data-changing DMS rules do to this table (masks, added columns, types, keys, tablespaces):
    # decided by bulkmig.transform.plan, empty when none applies.
    transform: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """``schema.table`` for messages (not for SQL: use the engine's quoting for that)."""
        return f"{self.schema}.{self.name}"

    @property
    def target_qualified(self) -> tuple[str, str]:
        """(schema, table) on the target."""
        return (self.target_schema or self.schema, self.target_name or self.name)

    @property
    def copied_columns(self) -> list[Column]:
        """Columns whose values travel; generated columns are recomputed by the target."""
        return [c for c in self.columns if not c.generated]

    def refuse_changed_columns(self, now: Mapping[str, str], where: str) -> None:
        """Refuse to extract when the planned columns changed since the plan (``now``: column -> the source
        type it has today): data would land in the wrong target columns.  Columns added since are not read."""
        if not now:
            raise SourceError(f"table {self.qualified} no longer exists {where}", "re-plan with --force")
        changed = [c.name for c in self.columns if now.get(c.name) != c.source_type]
        if changed:
            raise SourceError(
                f"the columns of {self.qualified} changed since the plan ({', '.join(changed)})",
                "re-plan with `bulkmig plan --force` (the volume's parts would not match the new schema)",
            )

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for part in doc["partitions"]:
            if part.get("device") is None:
                del part["device"]  # a single volume's plan reads as it always has
        if not doc["transform"]:
            del doc["transform"]
        return doc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        d = dict(d)
        d["columns"] = [Column(**c) for c in d["columns"]]  # a column and a partition are their fields, nothing more
        d["partitions"] = [Partition(**p) for p in d.get("partitions", [])]
        return cls(**d)


# A table this big is split into at least one part per worker, so a large table alone keeps every
# worker (and the target's cores) busy; smaller tables are not worth the per-part overhead.
MIN_SPLIT_PART_BYTES = 16 * 1024 * 1024


def part_count(estimated_bytes: int, max_part_bytes: int, workers: int) -> int:
    """How many parts: enough to stay under ``max_part_bytes``, at least one per worker for a large
    table, and for a large table a multiple of the workers, so the last round of parts does not leave
    workers idle (5 parts on 2 workers take 3 rounds; 6 smaller ones take 3 shorter rounds)."""
    by_size = math.ceil(estimated_bytes / max(1, max_part_bytes))
    by_workers = min(workers, estimated_bytes // MIN_SPLIT_PART_BYTES)
    n = max(1, by_size, by_workers)
    if workers > 1 and n > 1 and estimated_bytes >= workers * MIN_SPLIT_PART_BYTES:
        n = math.ceil(n / workers) * workers
    return n
