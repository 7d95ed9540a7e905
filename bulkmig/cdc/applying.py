"""What every target's apply of a change batch shares with replay's loop (``bulkmig.replay.runner``): what the rows
loaded from the volume already hold (:class:`TableMark`) and what applying a batch did (:class:`ApplyStats`).

Engine-free, so each target engine's apply (``engines/postgres/target/apply.py``, ``engines/mysql/target/apply.py``)
and the loop read the same two records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableMark:
    """What the rows of one table loaded from the volume already hold (MySQL sources; module docstring).

    ``below`` is the binlog ordinal of the snapshot the table's parts were read in — the lowest, when they
    were read in several — and ``engines/mysql/binlog.in_snapshot(pos, below)`` says whether a change is
    already in them: replay skips those.
    """

    table: str  # the source table, schema.table, for messages
    below: int
    snapshots: tuple[str, ...]  # the distinct snapshot positions (binlog file:offset), lowest first
    columns: frozenset[str]  # the target columns the parts hold values of (the plan's)
    source_key: bool  # the source table has a primary key (the stream sends it as the key)

    @property
    def mixed(self) -> bool:
        """The parts were read in more than one snapshot."""
        return len(self.snapshots) > 1


@dataclass
class ApplyStats:
    changes: int = 0  # change rows in the batch
    statements: int = 0
    skipped: int = 0  # changes the rows loaded from the volume already hold (TableMark)
    missing: int = 0  # updates/deletes that found no row (delete-if-present is fine; updates are counted)
