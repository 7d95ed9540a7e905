"""Replay's row-wise compaction: a table's changes in one batch folded to steps, one Python object a change.

Part of :mod:`bulkmig.replay`; the why of replay is in :mod:`bulkmig.replay.runner`.  The set-based apply
of keyed tables uses :mod:`bulkmig.cdc.net` (column-wise) instead of :func:`compact`; what is used from
here is the key-less path (:func:`keyless_steps`) and the one-by-one path's key helpers.  :func:`compact`
(segments split at key changes) is the earlier row-wise design, kept with its unit tests as a second,
independent statement of the per-key rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bulkmig.cdc.batch import ChangeRow, TableChanges
from bulkmig.core.errors import (
    IntegrityError,
)

Key = tuple[str | None, ...]


# ============================================================================================ compaction
#
# Pure functions: a table's changes in one batch → the steps that have the same effect on the target.


@dataclass
class Entry:
    """The net effect of a batch's changes on one key.

    ``kind``: ``upsert`` (the whole row is known), ``update`` (some columns were not sent: keep the
    target's values of ``unchanged``), ``delete``.  ``values`` is in the table's column order.
    """

    kind: str
    values: list[str | None]
    unchanged: frozenset[str] = frozenset()
    seq: int = 0


@dataclass
class Truncate:
    """Empty the table (always the first step: what came before it in the batch no longer matters)."""


@dataclass
class KeyChange:
    """An update that moves a row to a new key: ``UPDATE … WHERE <old key>``."""

    old_key: Key
    values: list[str | None]
    unchanged: frozenset[str]
    seq: int


@dataclass
class Segment:
    """A run of changes that can be applied in bulk: first the key changes (``moves``), then at most
    one entry per key.  No key is touched by two of them, so their order across keys does not matter;
    a change that would touch a key twice starts the next segment (the barrier)."""

    moves: list[KeyChange] = field(default_factory=list)
    entries: dict[Key, Entry] = field(default_factory=dict)
    moved: set[Key] = field(default_factory=set)  # old and new keys of the moves


@dataclass
class RowInsert:
    """Key-less tables: consecutive inserts, COPYed as they are."""

    rows: list[list[str | None]]


@dataclass
class RowChange:
    """Key-less tables: one update (``values`` set) or delete (``values`` None) of one whole old row."""

    before: list[str | None]
    values: list[str | None] | None
    unchanged: frozenset[str]
    seq: int


Step = Truncate | Segment | RowInsert | RowChange


def after_last_truncate(rows: Sequence[ChangeRow]) -> tuple[bool, list[ChangeRow]]:
    """(truncated?, the rows after the last TRUNCATE), in seq order."""
    ordered = sorted(rows, key=lambda r: r.seq)
    last = max((i for i, r in enumerate(ordered) if r.op == "T"), default=None)
    if last is None:
        return False, ordered
    return True, ordered[last + 1 :]


def _key_values(row: ChangeRow, columns: Sequence[str], key_idx: Sequence[int], old: bool) -> Key:
    """The row's key: the old key (``before``, falling back to the new values) or the new one.

    A key column that is itself unchanged TOAST is taken from ``before``; without one the row cannot
    be identified, which capture should never produce.
    """
    if old and row.before is not None:
        return tuple(row.before[i] for i in key_idx)
    if not row.unchanged:
        return tuple(row.values[i] for i in key_idx)
    out = []
    for i in key_idx:
        if columns[i] in row.unchanged:
            if row.before is None:
                raise IntegrityError(
                    f"a change (seq {row.seq}) does not identify its row: key column {columns[i]!r} was not sent",
                    "the change stream is incomplete; capture must send the old key for such updates",
                )
            out.append(row.before[i])
        else:
            out.append(row.values[i])
    return tuple(out)


_NOTHING: frozenset[str] = frozenset()


def compact(changes: TableChanges, key: Sequence[str]) -> list[Step]:
    """The steps that replay a keyed table's changes of one batch (see the module docstring).

    A key change is a barrier for the two keys it involves: when the current segment already holds a
    change of either, the segment is closed first.  Changes of other keys do not commute with it only
    through secondary unique indexes, and those conflicts send the batch down the exact path.
    Entries share the batch's value lists (never mutated); merging makes new ones.
    """
    columns = changes.columns
    key_idx = [columns.index(k) for k in key]
    truncated, rows = after_last_truncate(changes.rows)
    steps: list[Step] = [Truncate()] if truncated else []
    seg = Segment()
    entries = seg.entries

    def flush() -> None:
        nonlocal seg, entries
        if seg.entries or seg.moves:
            steps.append(seg)
            seg = Segment()
            entries = seg.entries

    for row in rows:
        op = row.op
        if op == "T":  # only the last TRUNCATE can remain, and it was cut off above
            continue
        if op == "D":
            k = _key_values(row, columns, key_idx, old=True)
            entries[k] = Entry("delete", row.before if row.before is not None else row.values, seq=row.seq)
            continue
        if op != "I" and op != "U":
            raise IntegrityError(f"a change (seq {row.seq}) has op {op!r}", "expected I, U, D or T")
        k = _key_values(row, columns, key_idx, old=False)
        unchanged = frozenset(row.unchanged) if row.unchanged else _NOTHING
        if row.before is not None and op == "U":
            old = _key_values(row, columns, key_idx, old=True)
            if old != k:
                if old in entries or k in entries or old in seg.moved or k in seg.moved:
                    flush()
                seg.moves.append(KeyChange(old, row.values, unchanged, row.seq))
                seg.moved.update((old, k))
                continue
        if not unchanged:
            entries[k] = Entry("upsert", row.values, seq=row.seq)
            continue
        prev = entries.get(k)
        if prev is None:
            entries[k] = Entry("update", row.values, unchanged, row.seq)
        elif prev.kind == "delete":
            # An update of a deleted row: not something the source produces; keep the order exact.
            flush()
            entries[k] = Entry("update", row.values, unchanged, row.seq)
        else:
            merged = [prev.values[i] if c in unchanged else row.values[i] for i, c in enumerate(columns)]
            if prev.kind == "upsert":
                entries[k] = Entry("upsert", merged, seq=row.seq)
            else:
                entries[k] = Entry("update", merged, prev.unchanged & unchanged, row.seq)
    flush()
    return steps


def keyless_steps(changes: TableChanges) -> list[Step]:
    """The steps for a table without a usable key: every change in order, inserts grouped for COPY."""
    truncated, rows = after_last_truncate(changes.rows)
    steps: list[Step] = [Truncate()] if truncated else []
    for row in rows:
        if row.op == "I":
            if steps and isinstance(steps[-1], RowInsert):
                steps[-1].rows.append(row.values)
            else:
                steps.append(RowInsert([row.values]))
        elif row.op in ("U", "D"):
            before = row.before if row.before is not None else (row.values if row.op == "D" else None)
            if before is None:
                raise IntegrityError(
                    f"an update (seq {row.seq}) of {changes.schema}.{changes.table}, a table without a key, "
                    "came without its old row",
                    "set REPLICA IDENTITY FULL on the source table (or give it a primary key) and capture again",
                )
            values = list(row.values) if row.op == "U" else None
            steps.append(RowChange(list(before), values, frozenset(row.unchanged), row.seq))
        elif row.op != "T":
            raise IntegrityError(f"a change (seq {row.seq}) has op {row.op!r}", "expected I, U, D or T")
    return steps
