"""The rows of one change batch into one MySQL/MariaDB table: values turned into parameters, then set-based SQL.

Two kinds of stream arrive here, told apart by the value forms their ``stream.json`` names:

- ``postgresql`` (a PostgreSQL source, pgoutput's text): each value becomes the form the full load gave the column
  (booleans 1/0, bytea bytes, timestamptz as UTC wall-clock; arrays and other text-travelling types as the same
  PostgreSQL text the parts carried) by :func:`mysql_value`; a value MySQL cannot hold (an infinity, NaN) stops
  the batch with its column.  Columns carry source names, mapped to the target's by the plan.
- ``mysql`` (a MySQL/MariaDB source, ``engines/mysql/forms.py``): the values are already MySQL's own text; only
  what is not plain column text is bound otherwise (:func:`form_converter`: binary strings and spatial values as
  bytes, BIT and YEAR as numbers).  Columns carry target names.  The one value MySQL holds but a strict session
  refuses, the '' of an invalid ENUM value, is written by its row alone in a non-strict session and checked
  to have produced exactly that (:meth:`_TableApply.lenient`).

Set-based: a keyed table's changes are compacted per key (the last one wins; a key change is a delete of the old
key and a row under the new one), then every key touched goes in a few ``DELETE … WHERE (key) IN (…)`` and the rows
that remain in a few multi-row ``INSERT``s (the driver sends ``executemany`` as one statement).  Compaction
reorders changes across keys, so it could meet a clash on a secondary unique key the source never had (a value
moved from one row to another): a plain INSERT fails on it, and the batch is applied again in order (``exact``:
runs of upserts as ``INSERT … ON DUPLICATE KEY UPDATE``, deletes and key changes as they come), which cannot.
A change that keeps unsent columns (unchanged TOAST of a PostgreSQL stream) is applied in order too.  A table
without a primary key changes exactly one row matching the whole old row (``<=>``, NULL-safe) per update and
delete, in order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core.errors import TargetError
from bulkmig.core.model import Column, Table
from bulkmig.engines.mysql import types

from .writer import quote_ident as q

_UNHOLDABLE = ("infinity", "-infinity", "nan")
# MySQL types whose values travel as hex in the MySQL forms (bytes, not characters): bound as bytes.
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", *types.SPATIAL_SHAPES})
# The non-strict session an invalid ENUM's '' is written in; everything else of the loading session's mode stays.
LENIENT_MODE = "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
STRICT_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
WARN_DATA_TRUNCATED = 1265
# Keys per DELETE and rows per INSERT of a compacted run (a few statements of bounded size).
CHUNK = 1000
_TYPE_NAME = re.compile(r"\s*([a-z][a-z0-9]*)")


def mysql_value(text: str | None, column: Column, where: str) -> Any:
    """A pgoutput text value as the parameter MySQL stores for ``column`` (see the module doc)."""
    if text is None:
        return None
    logical = column.logical_type
    if logical in ("date", "timestamp", "timestamptz", "decimal", "float") and text.lower() in _UNHOLDABLE:
        raise TargetError(f"{where}: {text!r} cannot be held by MySQL", "fix the value at the source; replay stopped")
    if logical == "bool":
        return 1 if text == "t" else 0
    if logical == "binary" and text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    if logical == "timestamptz":
        value = dt.datetime.fromisoformat(text if len(text) < 3 or text[-3] not in "+-" else text + ":00")
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    return text


def _type_name(type_text: str) -> str:
    m = _TYPE_NAME.match(type_text.lower())
    return m.group(1) if m else ""


def form_converter(type_text: str) -> Callable[[str], Any]:
    """How a MySQL-form text value of a column of ``type_text`` (its MySQL column type) becomes the parameter."""
    name = _type_name(type_text)
    if name in BINARY_TYPES:
        return bytes.fromhex
    if name == "bit":
        return lambda text: int(text, 2)
    if name == "year":
        return int  # the text '0' would be the year 2000, the number 0 is 0000
    return str


def enum_labels(type_text: str) -> tuple[str, ...] | None:
    """The labels of an ENUM column type (``enum('a','b') character set latin1``), or None for another type."""
    if _type_name(type_text) != "enum":
        return None
    base = re.split(r"\)\s+character\s+set\s", type_text, flags=re.I)[0]
    return tuple(types.parse_column_type(base if base.endswith(")") else base + ")").args)


@dataclass
class Shape:
    """One table's batch columns as the target takes them: which are written, under which target name, and how
    each value becomes a parameter."""

    name: str  # `database`.`table`
    qualified: str  # for messages
    written: list[str]  # batch column names written (not generated, not removed by the mappings)
    target: dict[str, str]  # batch column name -> target column name
    convert: dict[str, Callable[[str | None], Any]]
    key: list[str]  # batch column names of the key ([] = none)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # batch column -> labels (MySQL forms)


def shape_from_plan(table: Table, database: str, columns: Sequence[str], key: Sequence[str]) -> Shape:
    """A PostgreSQL stream's table: batch columns are source names; the plan maps them to the target's."""
    by_name = {c.name: c for c in table.columns}
    written = [c for c in columns if c in by_name and not by_name[c].generated]
    where = table.qualified

    def converter(column: Column) -> Callable[[str | None], Any]:
        return lambda text: mysql_value(text, column, f"{where}.{column.name}")

    return Shape(
        name=f"{q(database)}.{q(table.target_name or table.name)}",
        qualified=where,
        written=written,
        target={c: by_name[c].target for c in columns if c in by_name},
        convert={c: converter(by_name[c]) for c in columns if c in by_name},
        key=list(table.primary_key or key),
    )


def shape_from_forms(
    table: Table, database: str, columns: Sequence[str], column_types: Sequence[str], key: Sequence[str]
) -> Shape:
    """A MySQL stream's table: batch columns are target names, with their MySQL column types."""
    generated = {c.target for c in table.columns if c.generated}
    plan_key = {c.name: c.target for c in table.columns}
    convert: dict[str, Callable[[str | None], Any]] = {}
    enums: dict[str, tuple[str, ...]] = {}
    for name, type_text in zip(columns, column_types, strict=True):
        to_param = form_converter(type_text or "")
        convert[name] = lambda text, f=to_param: None if text is None else f(text)
        labels = enum_labels(type_text or "")
        if labels is not None and "" not in labels:
            enums[name] = labels
    return Shape(
        name=f"{q(database)}.{q(table.target_name or table.name)}",
        qualified=table.qualified,
        written=[c for c in columns if c not in generated],
        target={c: c for c in columns},
        convert=convert,
        key=list(key) or [plan_key[k] for k in table.primary_key if k in plan_key],
        enums=enums,
    )


class _TableApply:
    """Applies one table's changes of a batch on the batch's cursor (inside its transaction)."""

    def __init__(self, cur: Any, changes: Any, shape: Shape) -> None:
        self.cur = cur
        self.shape = shape
        self.idx = {c: i for i, c in enumerate(changes.columns)}
        cols = shape.written
        t = shape.target
        self.upsert = (
            f"INSERT INTO {shape.name} ({', '.join(q(t[c]) for c in cols)}) VALUES "
            f"({', '.join(['%s'] * len(cols))}) ON DUPLICATE KEY UPDATE "
            + ", ".join(f"{q(t[c])} = VALUES({q(t[c])})" for c in cols)
        )
        self.insert = self.upsert.split(" ON DUPLICATE KEY UPDATE ", 1)[0]
        self.where_key = " AND ".join(f"{q(t[k])} = %s" for k in shape.key)
        self.where_row = " AND ".join(f"{q(t[c])} <=> %s" for c in cols)
        self.pending: list[list[Any]] = []
        self.upserting = True  # what the pending rows go in as: upserts (in order) or inserts (compacted)

    def values(self, vals: Sequence[str | None], names: Sequence[str]) -> list[Any]:
        return [self.shape.convert[c](vals[self.idx[c]]) for c in names]

    def flush(self) -> None:
        if self.pending:
            self.cur.executemany(self.upsert if self.shape.key and self.upserting else self.insert, self.pending)
            self.pending.clear()

    def invalid_enums(self, vals: Sequence[str | None]) -> list[str]:
        """Columns of this row holding the '' MySQL stores for an invalid ENUM value (no such label)."""
        return [c for c in self.shape.enums if c in self.idx and vals[self.idx[c]] == ""]

    def lenient(self, sql: str, params: list[Any], columns: list[str]) -> None:
        """One statement in a non-strict session: MySQL turns the '' it cannot take strictly into the invalid
        ENUM value (index 0) with a "data truncated" warning per value; any other warning stops the batch."""
        self.flush()
        self.cur.execute(f"SET SESSION sql_mode = '{LENIENT_MODE}'")
        try:
            self.cur.execute(sql, params)
            self.cur.execute("SHOW WARNINGS")
            warnings = self.cur.fetchall()
        finally:
            self.cur.execute(f"SET SESSION sql_mode = '{STRICT_MODE}'")
        names = {self.shape.target[c] for c in columns}
        unexpected = [
            w for w in warnings if int(w[1]) != WARN_DATA_TRUNCATED or not any(f"'{n}'" in w[2] for n in names)
        ]
        if unexpected:
            raise TargetError(
                f"{self.shape.qualified}: writing the invalid ENUM value of {', '.join(columns)} also gave: "
                f"{unexpected[0][2]}",
                "compare the target table's definition with the source's; replay stopped (nothing of this batch kept)",
            )

    def row(self, values: Sequence[str | None], upsert: bool = True) -> None:
        bad = self.invalid_enums(values)
        params = self.values(values, self.shape.written)
        if bad:
            self.lenient(self.upsert if upsert and self.shape.key else self.insert, params, bad)
            return
        if self.pending and self.upserting != upsert:
            self.flush()
        self.upserting = upsert
        self.pending.append(params)

    def delete(self, old: Sequence[str | None]) -> None:
        self.flush()
        if self.shape.key:
            self.cur.execute(f"DELETE FROM {self.shape.name} WHERE {self.where_key}", self.values(old, self.shape.key))
        else:
            self.cur.execute(
                f"DELETE FROM {self.shape.name} WHERE {self.where_row} LIMIT 1", self.values(old, self.shape.written)
            )

    def update_keyless(self, old: Sequence[str | None], new: Sequence[str | None]) -> None:
        self.flush()
        t, cols = self.shape.target, self.shape.written
        sets = ", ".join(f"{q(t[c])} = %s" for c in cols)
        sql = f"UPDATE {self.shape.name} SET {sets} WHERE {self.where_row} LIMIT 1"
        params = self.values(new, cols) + self.values(old, cols)
        bad = self.invalid_enums(new)
        if bad:
            self.lenient(sql, params, bad)
        else:
            self.cur.execute(sql, params)

    def unchanged(self, values: Sequence[str | None], unchanged: Sequence[str]) -> None:
        """Unchanged TOAST (PostgreSQL streams): keep the target's value, set only what was sent."""
        self.flush()
        key = self.shape.key
        sent = [c for c in self.shape.written if c not in unchanged and c not in key]
        if sent:
            t = self.shape.target
            self.cur.execute(
                f"UPDATE {self.shape.name} SET {', '.join(f'{q(t[c])} = %s' for c in sent)} WHERE {self.where_key}",
                self.values(values, sent) + self.values(values, key),
            )


def apply_table(cur: Any, changes: Any, shape: Shape, *, exact: bool = False) -> int:
    """Apply one table's changes (``cdc.batch.TableChanges``); returns how many.  A keyed table's changes are
    compacted (:func:`_compacted`) unless ``exact`` or a change keeps unsent columns; otherwise in order."""
    if not shape.key and any(ch.op == "U" and ch.before is None for ch in changes.rows):
        raise TargetError(
            f"{shape.qualified} has no primary key and its updates carry no old row: they cannot be applied to a "
            "MySQL target",
            "give the table a primary key on the source (or REPLICA IDENTITY FULL on PostgreSQL), or exclude it",
        )
    run = _TableApply(cur, changes, shape)
    if shape.key and not exact and not any(ch.unchanged for ch in changes.rows):
        segment: list[Any] = []
        for ch in changes.rows:
            if ch.op == "T":  # a barrier: everything before it is gone anyway, but apply in order around it
                _compacted(run, segment)
                segment = []
                cur.execute(f"DELETE FROM {shape.name}")
            else:
                segment.append(ch)
        _compacted(run, segment)
        return len(changes.rows)
    for ch in changes.rows:
        if ch.op == "T":
            run.flush()
            cur.execute(f"DELETE FROM {shape.name}")
            continue
        old = ch.before if ch.before is not None else ch.values
        if ch.op == "D":
            run.delete(old)
            continue
        if not shape.key:
            if ch.op == "U":
                run.update_keyless(old, ch.values)
            else:
                run.row(ch.values, upsert=False)
            continue
        moved = ch.op == "U" and ch.before is not None
        if moved and run.values(ch.before, shape.key) != run.values(ch.values, shape.key):
            run.delete(ch.before)  # the key changed: the old row goes first
        if ch.unchanged:
            run.unchanged(ch.values, ch.unchanged)
            continue
        run.row(ch.values)
    run.flush()
    return len(changes.rows)


def _compacted(run: _TableApply, rows: Sequence[Any]) -> None:
    """A run of whole-row changes of a keyed table, set-based: per key the last change wins; every key the run
    touched is deleted in a few statements, then the rows that remain are inserted in a few more (plain INSERT,
    so a clash on a secondary unique key — which only the reordering can cause — is an error, and the caller
    applies the batch again in order: ``DuplicateKey``).  Foreign keys are not checked and do not cascade in this
    session, so a row deleted and inserted again is the same as updated."""
    if not rows:
        return
    key = run.shape.key
    final: dict[tuple[Any, ...], Sequence[str | None] | None] = {}
    born: set[tuple[Any, ...]] = set()  # keys whose first change in the run is an insert
    for ch in rows:
        old = ch.before if ch.before is not None else ch.values
        if ch.op == "D":
            final[tuple(run.values(old, key))] = None
            continue
        new = tuple(run.values(ch.values, key))
        if ch.op == "U" and ch.before is not None:
            was = tuple(run.values(ch.before, key))
            if was != new:
                final[was] = None
        elif ch.op == "I" and new not in final:
            born.add(new)
        final[new] = ch.values
    # A key born in the run and alive at its end needs no delete: its row was not there (if it was, after all,
    # the INSERT says so and the batch goes again in order).
    keys = [k for k, v in final.items() if v is None or k not in born]
    t = run.shape.target
    cols = ", ".join(q(t[k]) for k in key)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        marks = ", ".join(["(" + ", ".join(["%s"] * len(key)) + ")"] * len(chunk))
        run.cur.execute(f"DELETE FROM {run.shape.name} WHERE ({cols}) IN ({marks})", [v for k in chunk for v in k])
    for values in final.values():
        if values is not None:
            run.row(values, upsert=False)
            if len(run.pending) >= CHUNK:
                run.flush()
    run.flush()


__all__ = ["Shape", "apply_table", "form_converter", "mysql_value", "shape_from_forms", "shape_from_plan"]
