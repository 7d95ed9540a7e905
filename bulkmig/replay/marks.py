"""Snapshot marks for MySQL streams: per table, the binlog position its volume parts were read at.

Part of :mod:`bulkmig.replay`; the why of replay is in :mod:`bulkmig.replay.runner`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from bulkmig.cdc.applying import TableMark
from bulkmig.cdc.position import lsn_or_none
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import (
    IntegrityError,
    PlanError,
)
from bulkmig.core.log import say
from bulkmig.core.manifest import PartManifest
from bulkmig.core.model import Table
from bulkmig.core.store import NotFound
from bulkmig.fullload.plan import Plan as VolumePlan
from bulkmig.replay.stream import Stream

# Sidecars read at once when replay takes the snapshot positions of an imported volume's parts.
SIDECAR_READERS = 8


# ============================================================================================ snapshot marks


def snapshot_marks(
    plan: VolumePlan, positions: Mapping[tuple[str, str, int], Mapping[str, Any] | None], basename: str | None = None
) -> dict[tuple[str, str], TableMark]:
    """Target (schema, table) -> :class:`TableMark`, from each part's sidecar ``source_position`` (by source
    schema, table and part index) of a MySQL plan.  ``basename``: the stream's binlog base name, which
    every position must share (ordinals of another binlog mean nothing)."""
    from bulkmig.engines.mysql.binlog import snapshot_position

    out: dict[tuple[str, str], TableMark] = {}
    for table in plan.tables:
        found = []
        for part in table.partitions:
            pos = snapshot_position(positions.get((table.schema, table.name, part.index)))
            if pos is None or (basename and pos.basename != basename):
                what = f"binlog position {pos}, not in the stream's {basename}.* files" if pos else "no binlog position"
                raise IntegrityError(
                    f"part {part.index} of {table.qualified} on volume {plan.volume_id} records {what}, so replay "
                    "cannot tell which changes its rows already hold",
                    "extract with the binlog on (log_bin) from the server the stream reads, or re-plan "
                    "(`bulkmig plan --restart`)",
                )
            found.append(pos)
        if not found:
            continue
        distinct = sorted(set(found), key=lambda p: p.ordinal)
        out[table.target_qualified] = TableMark(
            table=table.qualified,
            below=distinct[0].ordinal,
            snapshots=tuple(str(p) for p in distinct),
            columns=frozenset(c.target for c in table.columns),
            source_key=bool(table.primary_key),
        )
    return out


def refuse_mixed_keyless(
    marks: Mapping[tuple[str, str], TableMark], has_key: Callable[[tuple[str, str]], bool]
) -> None:
    """Refuse a table without a key whose parts were read in different snapshots: the changes between them
    are in some of its loaded rows and not in others, and no key says which rows.  ``has_key(target)``:
    whether the target table has a primary key after all (replay then applies by it, idempotently)."""
    bad = [m for t, m in marks.items() if m.mixed and not m.source_key and not has_key(t)]
    if bad:
        m = bad[0]
        others = f" (and {', '.join(b.table for b in bad[1:])})" if len(bad) > 1 else ""
        raise PlanError(
            f"table {m.table}{others} has no primary key and its parts were read in {len(m.snapshots)} different "
            f"snapshots (binlog {', '.join(m.snapshots)}): replay cannot apply the changes between them exactly",
            "re-extract the table in one extract run and load it again, or re-plan (`bulkmig plan --restart`)",
        )


def volume_marks(task: Task, stream: Stream, stream_doc: Mapping[str, Any] | None) -> dict[tuple[str, str], TableMark]:
    """The :class:`TableMark` of every table of the imported volume, for a MySQL stream; {} for any other
    stream (a PostgreSQL plan's parts are all read in the slot's own snapshot), for ``migration_type: cdc``
    and when the bucket holds no volume (nothing was loaded from one).  Sidecars are checked against the
    sealed manifest: a wrong position would skip or repeat changes silently.  ``stream_doc``: the stream's
    ``stream.json`` (None: absent), read once by :func:`replay`.  The sidecars are read a few at a time:
    one small GET per part adds up to minutes of latency on a large volume."""
    from bulkmig.volume.verify import run_parallel

    doc = stream_doc or {}
    if str(doc.get("engine") or task.source.engine) != "mysql" or task.migration_type == "cdc":
        return {}
    from bulkmig.fullload.load import find_volume

    try:
        volume, manifest, plan = find_volume(task)
    except PlanError:
        if any(i.key.endswith("/" + layout.VOLUME_MANIFEST) for i in stream.store.list("volumes/")):
            raise
        say(f"replay: {task.bucket} holds no imported volume: every change of stream {stream.stream_id} is applied")
        return {}

    def position(part: tuple[Table, int]) -> Mapping[str, Any] | None:
        table, index = part
        key = layout.sidecar_key(table.schema, table.name, index)
        where = f"{volume.url}/{key}"
        try:
            data = volume.get_bytes(key)
        except NotFound:
            raise IntegrityError(f"{where} is missing from the imported volume", "re-import the volume") from None
        entry = manifest.entry(key)
        if entry is None or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(f"{where} does not match the sealed manifest", "re-import the volume") from None
        return PartManifest.from_bytes(data, where).source_position

    parts = plan.parts()
    found = run_parallel(position, parts, SIDECAR_READERS)  # in order; the first failing part raises
    positions = {(table.schema, table.name, index): p for (table, index), p in zip(parts, found, strict=True)}
    marks = snapshot_marks(plan, positions, doc.get("basename"))
    start = lsn_or_none(doc.get("start_pos"))
    early = [m for m in marks.values() if start is not None and m.below < start]
    if early:
        raise IntegrityError(
            f"the parts of {early[0].table} were read at binlog {early[0].snapshots[0]}, before change stream "
            f"{stream.stream_id} starts ({doc.get('start_binlog')}): the changes in between are in neither",
            "the stream and the volume come from different plans; start over with a new plan and a new stream",
        )
    return marks


def _in_snapshot(pos: int | None, below: int) -> bool:
    from bulkmig.engines.mysql.binlog import in_snapshot  # only MySQL streams have marks

    return pos is not None and in_snapshot(pos, below)


def names_are_target(task: Task, doc: Mapping[str, Any] | None) -> bool:
    """Whether the stream carries target names (``stream.json`` ``doc``: ``"names": "target"``; MySQL
    capture).  Without the document the source engine's capabilities decide."""
    if doc is None:
        from bulkmig.engines.protocols import source_capabilities

        return source_capabilities(task.source.engine).capture_writes_target_names
    return doc.get("names") == "target"
