"""Validation of added columns: each one recomputed from the source row and compared with the target's value.

Why it is separate from the row hashes: an added column exists only on the target, and its value is a
function of the source row that only bulkmig's evaluator computes as SQLite does.  So the source rows are read
as extract reads them (:class:`~bulkmig.engines.postgres.reader.SnapshotReader`, a fresh snapshot), masked and
extended by the same :class:`~bulkmig.transform.apply.Transformer`, and each batch's keys and values are sent to
the target, which compares them with its own in one statement per batch (``IS DISTINCT FROM`` after casting to
the column's type: ``12`` equals ``12.00`` in a numeric column, as the load stored it).

Left out, and named: a column whose expression reads the change header (``$AR_H_*``: after replay each row
holds its own change's values, which the source row no longer tells).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.core.model import Partition, Table
from bulkmig.engines.postgres.reader import SnapshotReader, arrow_schema
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.transform.apply import Transformer, part_schema
from bulkmig.transform.parser import parse, references

MAX_KEYS = 20


@dataclass
class AddedCheck:
    compared: list[str] = field(default_factory=list)  # added columns compared
    skipped: list[str] = field(default_factory=list)  # added columns that could not be
    why: str = "they read the change header, $AR_H_*"
    rows: int = 0
    differing: int = 0
    keys: list[str] = field(default_factory=list)  # the first differing keys, as text

    def note(self) -> str:
        parts = []
        if self.compared:
            what = f"{self.differing:,} row(s) differ" if self.differing else "equal"
            parts.append(f"added column(s) {', '.join(self.compared)} recomputed for {self.rows:,} rows: {what}")
        if self.skipped:
            parts.append(f"not compared: {', '.join(self.skipped)} ({self.why})")
        return "; ".join(parts)


def recomputable(table: Table) -> tuple[list[str], list[str]]:
    """(added columns validation recomputes, those it cannot)."""
    yes, no = [], []
    for a in table.transform.get("added", []):
        refs = references(parse(a["expression"], a["rule"])) if a["expression"] else set()
        (no if any(r.startswith("AR_H_") for r in refs) else yes).append(a["name"])
    return yes, no


def check_added(source: Any, target_conn: Any, table: Table, snapshot: dict[str, Any] | None) -> AddedCheck:
    """Compare every recomputable added column of ``table`` (PostgreSQL source and target)."""
    wanted, skipped = recomputable(table)
    if not table.primary_key:  # nothing pairs a target row with its source row
        return AddedCheck([], wanted + skipped, "added columns of a table without a primary key")
    out = AddedCheck(wanted, skipped)
    if not wanted:
        return out
    # Only what is compared: a column of $AR_H_COMMIT_TIMESTAMP has no value outside the load or a change.
    transformer = Transformer(table, snapshot, only=wanted)
    schema = part_schema(table, arrow_schema(table))
    key_src = table.primary_key
    targets = {c.name: c.target for c in table.columns}
    key_dst = [targets[k] for k in key_src]
    added = {a["name"]: a for a in table.transform["added"]}
    types = dict(
        target_conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (qualified(*table.target_qualified),),
        ).fetchall()
    )
    reader = SnapshotReader(source, None)
    try:
        part = Partition(0, f"({table.filter})" if table.filter else None)
        for batch in reader.batches(table, part):
            extended = transformer.apply(batch, schema)
            keys = [_texts(extended.column(k)) for k in key_src]
            values = [_texts(extended.column(n)) for n in wanted]
            diff_keys, diff_count = _compare(target_conn, table, types, key_dst, keys, wanted, values, added)
            out.rows += extended.num_rows
            out.differing += diff_count
            out.keys.extend(diff_keys[: max(0, MAX_KEYS - len(out.keys))])
    finally:
        reader.close()
    return out


def _texts(arr: pa.Array) -> list[str | None]:
    """Values as PostgreSQL reads them back (``true``/``false``, ISO dates and times, shortest floats)."""
    if pa.types.is_boolean(arr.type):
        arr = pc.if_else(arr, "true", "false")
    return pc.cast(arr, pa.string()).to_pylist()


def _compare(
    conn: Any,
    table: Table,
    types: dict[str, str],
    key_dst: list[str],
    keys: list[list[str | None]],
    names: list[str],
    values: list[list[str | None]],
    added: dict[str, dict[str, Any]],
) -> tuple[list[str], int]:
    """(the first differing keys, how many rows differ) of one batch, compared by the target."""
    ks = [f"k{i}" for i in range(len(key_dst))]
    vs = [f"v{i}" for i in range(len(names))]
    columns = ", ".join(ks + vs)
    arrays = ", ".join("%s::text[]" for _ in ks + vs)
    join = " AND ".join(f"t.{ident(k)} = s.{s}::{types[k]}" for k, s in zip(key_dst, ks, strict=True))
    differs = " OR ".join(
        f"t.{ident(n)} IS DISTINCT FROM s.{v}::{types.get(n, added[n]['pg_type'])}"
        for n, v in zip(names, vs, strict=True)
    )
    key_text = " || ',' || ".join(f"s.{k}" for k in ks)
    sql = (
        f"SELECT count(*), (array_agg({key_text}))[1:{MAX_KEYS}] FROM unnest({arrays}) AS s({columns}) "
        f"JOIN {qualified(*table.target_qualified)} t ON {join} WHERE {differs}"
    )
    count, first = conn.execute(sql, [*keys, *values]).fetchone()
    return list(first or []), int(count)
