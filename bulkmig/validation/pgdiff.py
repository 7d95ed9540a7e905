"""PostgreSQL → PostgreSQL: find exactly the rows that differ, at a cost that grows with the differences.

0. Both servers, at the same time, count the table's rows and sum a 64-bit hash of every row
   (:mod:`bulkmig.engines.postgres.rowhash`): one pass over each table, the only one when they are equal.
   (Summing per partition in that same pass would cost a hash aggregation per row — 70 % more on a
   narrow table — for tables that are, almost always, equal.)
1. Where the sums differ, both servers sum the row hashes again, per key-range partition of about
   ``partition_size`` rows (:mod:`bulkmig.validation.partitions`), and count each partition's rows.
2. Only the partitions whose count or sum differ are read again, through the primary key's index: an
   integer key's partition splits into ``FANOUT`` sub-ranges, level after level (one query per level and
   side, whatever the number of differing ranges), until a range holds about ``LEAF_ROWS`` rows; any
   other key's partition is read row by row at once (key and row hash, not the row).
3. Rows are paired by key: a key on one side only is MISSING_TARGET or MISSING_SOURCE, a key on both with
   other hashes is RECORD_DIFF.  For those keys alone the values are fetched, to say which columns differ.

A table without a primary key has no key to pair rows by: it is compared as a multiset.  Its partitions
are buckets of the row hash itself (so a changed row leaves one bucket and arrives in another); the rows
of a differing bucket can only be found by a second scan (no index leads to them), which reads back only
the hashes of those buckets' rows.  A row the target lacks (or has in more copies) is MISSING_TARGET, one
the source lacks MISSING_SOURCE, keyed by its row hash.

At most ``failure_max_count`` failures are kept per table: past it, the bisection stops, the table is
reported with the number of differing ranges left unexamined (DMS suspends a table's validation there too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from bulkmig.engines.postgres import rowhash
from bulkmig.engines.postgres.connect import server_version_num
from bulkmig.engines.postgres.sql import ident, literal, qualified
from bulkmig.transform import validation as transform_validation
from bulkmig.validation.partitions import (
    LEAF_ROWS,
    IntegerRanges,
    KeyBoundaries,
    boundary_step,
    key_row,
    plan_integer,
)

RECORD_DIFF, MISSING_TARGET, MISSING_SOURCE = "RECORD_DIFF", "MISSING_TARGET", "MISSING_SOURCE"
KEY_TYPE, ROW_HASH_KEY_TYPE = "Row", "RowHash"  # DMS: KEY_TYPE is always 'Row'; key-less rows: their hash
MAX_VALUE_CHARS = 500
MAX_DETAILS_CHARS = 8000  # DMS's DETAILS is VARCHAR(8000)
RANGES_PER_QUERY = 200  # ranges OR-ed into one statement
KEYS_PER_QUERY = 5000  # keys per fetch of values


@dataclass
class Failure:
    """One differing row: DMS's failure record without the task and table (added when recorded)."""

    kind: str  # RECORD_DIFF, MISSING_TARGET, MISSING_SOURCE
    key_text: str  # "(17)" as ROW(key)::text prints it; the row hash for a key-less table
    key: list[str] | None  # each key column's text; None for a key-less table
    copies: int = 1  # key-less tables: how many copies one side has more
    details: list[Any] = field(default_factory=list)  # [[{column: source}, {column: target}]]

    @property
    def key_type(self) -> str:
        return KEY_TYPE if self.key is not None else ROW_HASH_KEY_TYPE

    def key_json(self) -> str:
        if self.key is not None:
            return json.dumps({"key": self.key}, ensure_ascii=False)
        return json.dumps({"row_hash": self.key_text, "copies": self.copies})

    def details_json(self) -> str:
        text = json.dumps(self.details, ensure_ascii=False)
        if len(text) > MAX_DETAILS_CHARS:
            cut = [[{k: _cut(v, 40) for k, v in side.items()} for side in pair] for pair in self.details]
            text = json.dumps(cut, ensure_ascii=False)[:MAX_DETAILS_CHARS]
        return text


@dataclass
class Diff:
    """What the comparison of one table found, and what it cost."""

    source_rows: int = 0
    target_rows: int = 0
    partitions: int = 0  # level-0 partitions (buckets for a key-less table)
    partitions_differing: int = 0
    ranges_visited: int = 0  # ranges read again below level 0 (sub-ranges and row reads)
    queries: int = 0  # statements sent to the two servers
    failures: list[Failure] = field(default_factory=list)
    failures_total: int = 0  # may exceed len(failures) when the cap was reached
    unexamined_partitions: int = 0  # differing ranges not examined because the cap was reached
    method: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.failures_total and not self.unexamined_partitions and self.source_rows == self.target_rows


def _cut(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    return value[: limit - 1] + "…" if isinstance(value, str) and len(value) > limit else value


# ------------------------------------------------------------------------------------------ one side


class Side:
    """One server's table: its connection, names, types, the row-hash SQL; counts the statements sent."""

    ALIAS = "__bm_t"

    def __init__(self, conn: Any, schema: str, name: str, where: str | None, columns: list[str]) -> None:
        self.conn = conn
        self.relation = qualified(schema, name)
        self.where = where
        self.columns = columns  # every column, in the same order on both sides (quoted)
        self.copied: list[str] = []  # those whose values travel (not generated): what a repair copies
        self.key: list[str] = []  # key columns, quoted
        self.key_types: list[str] = []  # their types' SQL (to cast key text back)
        self.key_integer = False  # a one-column integer key
        self.hashed: list[tuple[str, rowhash.ColumnType, rowhash.ColumnType]] = []  # (name, source, target type)
        # Column -> SQL template ({}: the column) of the value compared, where a DMS rule changed it on the
        # target (a deterministic mask, a type): the source side computes the same (bulkmig.transform.validation).
        self.forms: dict[str, str] = {}
        self.version = 0
        self.queries = 0

    @property
    def hash(self) -> str:
        return self.hash_as(None)

    def hash_as(self, alias: str | None) -> str:
        """The row-hash SQL, its columns qualified by ``alias`` when given (in a join)."""
        pre = f"{alias}." if alias else ""
        return rowhash.row_hash(
            [(self.forms.get(n, "{}").format(pre + ident(n)), s, t) for n, s, t in self.hashed], self.version
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement.  Values are inlined as literals (:func:`text_array`), never bound: the table
        mapping's filter is SQL that may hold a ``%``, which a placeholder parser would misread."""
        self.queries += 1
        return self.conn.execute(sql).fetchall()

    def source(self, *conds: str) -> str:
        """``FROM … WHERE`` with the table mapping's filter (source side only) and ``conds``."""
        where = [c for c in (self.where, *conds) if c]
        return f"FROM {self.relation}" + (f" WHERE {' AND '.join(f'({w})' for w in where)}" if where else "")

    def estimate(self) -> int:
        (n,) = self.query(
            f"SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = {literal(self.relation)}::regclass"
        )[0]
        return int(n or 0)


class Pair:
    """The two sides, queried at the same time."""

    def __init__(self, src: Side, dst: Side, pool: ThreadPoolExecutor) -> None:
        self.src, self.dst, self.pool = src, dst, pool
        self.names: list[str] = []  # the columns' names for reports (the target's)
        self.canon: list[str] = []  # per column, the SQL template (``{}``: the column) of its hashed form
        self.rows_hint = 0  # the plan's row estimate, for tables the servers have not analyzed

    def small_queries(self) -> None:
        """From here on statements read few rows: JIT compilation (100–300 ms for a row hash over many
        columns) would cost more than it saves, as it pays off only on the passes over whole tables."""
        for side in (self.src, self.dst):
            side.conn.execute("SET jit = off")

    def both(self, fn: Callable[[Side], Any]) -> tuple[Any, Any]:
        left = self.pool.submit(fn, self.src)
        right = self.pool.submit(fn, self.dst)
        return left.result(), right.result()


def text_array(values: Sequence[str]) -> str:
    """A ``text[]`` literal: each element double-quoted with ``"`` and ``\\`` escaped."""
    quoted = ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return literal("{" + quoted + "}") + "::text[]"


def int_array(values: Sequence[int]) -> str:
    return "'{" + ",".join(str(int(v)) for v in values) + "}'::bigint[]"


def _sums(rows: list[tuple[Any, ...]]) -> dict[int, tuple[int, str]]:
    return {int(b): (int(n), str(s)) for b, n, s in rows}


def _differing(left: dict[int, tuple[int, str]], right: dict[int, tuple[int, str]]) -> list[int]:
    return sorted(b for b in left.keys() | right.keys() if left.get(b) != right.get(b))


def _rows(counts: dict[int, tuple[int, str]], buckets: Sequence[int]) -> int:
    return sum(counts[b][0] for b in buckets if b in counts)


# ------------------------------------------------------------------------------------------ keyed tables


def diff_keyed(pair: Pair, partition_size: int, failure_max_count: int) -> Diff:
    src, dst = pair.src, pair.dst
    diff = Diff()
    ranges: IntegerRanges | KeyBoundaries | None = None
    if src.key_integer and dst.key_integer:
        (s_min, s_max), (t_min, t_max) = pair.both(
            lambda s: s.query(f"SELECT min({s.key[0]}), max({s.key[0]}) {s.source()}")[0]
        )
        known = [v for v in (s_min, t_min) if v is not None]
        if not known:
            ranges = IntegerRanges(0, 0, 1, 0)  # both empty: one range, which both count as empty
        else:
            rows = max(*pair.both(Side.estimate), pair.rows_hint)
            lo, hi = min(known), max(v for v in (s_max, t_max) if v is not None)
            ranges = plan_integer(lo, hi, rows, partition_size)
    if isinstance(ranges, IntegerRanges):
        diff.method = "key-range partitions (integer key, bisected)"
        return _bisect_integer(pair, ranges, diff, failure_max_count)
    boundaries = _boundaries(pair, partition_size)
    diff.method = "key-range partitions"
    return _by_boundaries(pair, boundaries, diff, failure_max_count)


def _bisect_integer(pair: Pair, ranges: IntegerRanges, diff: Diff, cap: int) -> Diff:
    src = pair.src
    key = src.key[0]

    def level_sums(side: Side, level: int, within: list[int] | None) -> dict[int, tuple[int, str]]:
        k = side.key[0]
        cond = ranges.predicate(k, level - 1, within) if within is not None else None
        body = f"{ranges.bucket_sql(k, level)}, count(*), sum({side.hash})::text"
        return _sums(side.query(f"SELECT {body} {side.source(cond or '')} GROUP BY 1"))

    left, right = pair.both(lambda s: level_sums(s, 0, None))
    pair.small_queries()
    diff.partitions = ranges.partitions
    diff.source_rows = sum(n for n, _ in left.values())
    diff.target_rows = sum(n for n, _ in right.values())
    todo = _differing(left, right)
    diff.partitions_differing = len(todo)
    level = 0
    while todo:
        leaves = [b for b in todo if level == ranges.depth or max(_rows(left, [b]), _rows(right, [b])) <= LEAF_ROWS]
        split = [b for b in todo if b not in set(leaves)]
        read = 0
        for chunk in _chunks(leaves, RANGES_PER_QUERY):
            if len(diff.failures) >= cap:
                break
            diff.ranges_visited += len(chunk)
            read += len(chunk)
            _read_rows(
                pair, ranges.predicate(key, level, chunk), ranges.predicate(pair.dst.key[0], level, chunk), diff, cap
            )
        if len(diff.failures) >= cap:
            diff.unexamined_partitions = len(split) + len(leaves) - read
            break
        nxt_left: dict[int, tuple[int, str]] = {}
        nxt_right: dict[int, tuple[int, str]] = {}
        for chunk in _chunks(split, RANGES_PER_QUERY):
            diff.ranges_visited += len(chunk)
            a, b = pair.both(lambda s, c=chunk, n=level + 1: level_sums(s, n, c))
            nxt_left.update(a)
            nxt_right.update(b)
        left, right, level = nxt_left, nxt_right, level + 1
        todo = _differing(left, right)
    return diff


def _chunks(items: list[int], n: int) -> list[list[int]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _boundaries(pair: Pair, partition_size: int) -> KeyBoundaries:
    """Every ``partition_size``-th source key (of a block sample for large tables), checked to be in
    ascending order on the target too — else the target's ranges would not cover its keys (two servers
    sorting text differently): then one partition."""
    src, dst = pair.src, pair.dst
    rows = max(src.estimate(), pair.rows_hint)
    percent, step = boundary_step(rows, partition_size)
    sample = f" TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (0)" if percent is not None and percent < 100 else ""
    keys = ", ".join(src.key)
    texts = ", ".join(f"{k}::text" for k in src.key)
    where = f" WHERE {src.where}" if src.where else ""
    sql = (
        f"SELECT ARRAY[{texts}] FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS __bm_rn"
        f" FROM {src.relation}{sample}{where}) AS __bm_s WHERE mod(__bm_rn, {step}) = 0 ORDER BY __bm_rn"
    )
    bounds = tuple(tuple(r[0]) for r in src.query(sql))
    if len(bounds) > 1:
        cols = list(zip(*bounds, strict=True))
        lows = [list(c[:-1]) for c in cols]
        highs = [list(c[1:]) for c in cols]
        n = len(cols)
        low = key_row([f"__bm_r.l{i}::{t}" for i, t in enumerate(dst.key_types)])
        high = key_row([f"__bm_r.h{i}::{t}" for i, t in enumerate(dst.key_types)])
        names = ", ".join([f"l{i}" for i in range(n)] + [f"h{i}" for i in range(n)])
        arrays = ", ".join(text_array(a) for a in [*lows, *highs])
        (ordered,) = dst.query(f"SELECT bool_and({low} < {high}) FROM unnest({arrays}) AS __bm_r({names})")[0]
        if not ordered:
            return KeyBoundaries(())
    return KeyBoundaries(bounds)


def _by_boundaries(pair: Pair, parts: KeyBoundaries, diff: Diff, cap: int) -> Diff:
    def sums(side: Side) -> dict[int, tuple[int, str]]:
        t = Side.ALIAS
        qkey = [f"{t}.{k}" for k in side.key]
        body = f"count(*), sum({side.hash})::text"
        if parts.partitions == 1:
            return _sums(side.query(f"SELECT 0, {body} {side.source()}"))
        first = parts.range_sql(side.key, side.key_types, 0)
        last = parts.range_sql(side.key, side.key_types, parts.partitions - 1)
        sql = [f"SELECT 0, {body} {side.source(first)}"]
        if parts.partitions > 2:
            n = len(side.key)
            cols = list(zip(*parts.boundaries, strict=True))
            arrays = ", ".join(text_array(a) for a in [list(c[:-1]) for c in cols] + [list(c[1:]) for c in cols])
            low = key_row([f"__bm_r.l{i}::{t_}" for i, t_ in enumerate(side.key_types)])
            high = key_row([f"__bm_r.h{i}::{t_}" for i, t_ in enumerate(side.key_types)])
            names = ", ".join([f"l{i}" for i in range(n)] + [f"h{i}" for i in range(n)] + ["i"])
            rel = f"(SELECT * {side.source()}) AS {t}" if side.where else f"{side.relation} AS {t}"
            hashed = side.hash_as(t)
            sql.append(
                f"SELECT __bm_r.i, count(*), sum({hashed})::text"
                f" FROM unnest({arrays}) WITH ORDINALITY AS __bm_r({names}) JOIN {rel}"
                f" ON {key_row(qkey)} >= {low} AND {key_row(qkey)} < {high} GROUP BY 1"
            )
        sql.append(f"SELECT {parts.partitions - 1}, {body} {side.source(last)}")
        return _sums(side.query(" UNION ALL ".join(f"({s})" for s in sql)))

    left, right = pair.both(sums)
    pair.small_queries()
    left = {b: v for b, v in left.items() if v[0]}  # an empty edge partition sums to NULL: absent
    right = {b: v for b, v in right.items() if v[0]}
    diff.partitions = parts.partitions
    diff.source_rows = sum(n for n, _ in left.values())
    diff.target_rows = sum(n for n, _ in right.values())
    todo = _differing(left, right)
    diff.partitions_differing = len(todo)
    for i, chunk in enumerate(_chunks(todo, 20)):
        if len(diff.failures) >= cap:
            diff.unexamined_partitions = len(todo) - i * 20
            break
        diff.ranges_visited += len(chunk)
        _read_rows(
            pair,
            parts.predicate(pair.src.key, pair.src.key_types, chunk),
            parts.predicate(pair.dst.key, pair.dst.key_types, chunk),
            diff,
            cap,
        )
    return diff


def _read_rows(pair: Pair, src_cond: str, dst_cond: str, diff: Diff, cap: int) -> None:
    """Key and row hash of the rows in these ranges on both sides, paired by key."""

    def read(side: Side, cond: str) -> dict[str, tuple[list[str], str]]:
        sql = (
            f"SELECT ROW({', '.join(side.key)})::text, ARRAY[{', '.join(f'{k}::text' for k in side.key)}],"
            f" {side.hash}::text {side.source(cond)}"
        )
        return {r[0]: (list(r[1]), r[2]) for r in side.query(sql)}

    left_f = pair.pool.submit(read, pair.src, src_cond)
    right_f = pair.pool.submit(read, pair.dst, dst_cond)
    left, right = left_f.result(), right_f.result()
    keys = left.keys() | right.keys()
    for k in sorted(keys, key=lambda k: _natural((left.get(k) or right[k])[0])):
        s, t = left.get(k), right.get(k)
        if s is not None and t is not None and s[1] == t[1]:
            continue
        kind = MISSING_TARGET if t is None else MISSING_SOURCE if s is None else RECORD_DIFF
        diff.failures_total += 1
        if len(diff.failures) < cap:
            diff.failures.append(Failure(kind, k, (s or t)[0]))  # type: ignore[index]


# ------------------------------------------------------------------------------------------ key-less tables


def diff_keyless(pair: Pair, partition_size: int, failure_max_count: int) -> Diff:
    diff = Diff(method="row-hash buckets (no primary key: multiset)")
    rows = max(*pair.both(Side.estimate), pair.rows_hint)
    n = max(1, math.ceil(rows / partition_size))
    bucket = f"mod(mod(__bm_h, {n}) + {n}, {n})"

    def sums(side: Side) -> dict[int, tuple[int, str]]:
        inner = f"SELECT {side.hash} AS __bm_h {side.source()} OFFSET 0"
        return _sums(side.query(f"SELECT {bucket}, count(*), sum(__bm_h)::text FROM ({inner}) AS __bm_s GROUP BY 1"))

    left, right = pair.both(sums)
    diff.partitions = n
    diff.source_rows = sum(c for c, _ in left.values())
    diff.target_rows = sum(c for c, _ in right.values())
    todo = _differing(left, right)
    diff.partitions_differing = len(todo)
    if not todo:
        return diff
    diff.ranges_visited = len(todo)

    def copies(side: Side) -> dict[str, int]:
        inner = f"SELECT {side.hash} AS __bm_h {side.source()} OFFSET 0"
        sql = f"SELECT __bm_h::text, count(*) FROM ({inner}) AS __bm_s WHERE {bucket} = ANY({int_array(todo)})"
        sql += " GROUP BY 1"
        return {h: int(c) for h, c in side.query(sql)}

    have, got = pair.both(copies)
    for h in sorted(have.keys() | got.keys()):
        more = have.get(h, 0) - got.get(h, 0)
        if more:
            diff.failures_total += abs(more)
            if len(diff.failures) < failure_max_count:
                diff.failures.append(Failure(MISSING_TARGET if more > 0 else MISSING_SOURCE, h, None, abs(more)))
    return diff


# ------------------------------------------------------------------------------------------ values


def fill_details(pair: Pair, names: list[str], canon: list[str], failures: list[Failure]) -> None:
    """The values behind each failure: the differing columns of a RECORD_DIFF (source, target), the whole
    row of a missing one (from the side that has it).  ``canon``: per column, the hashed form's SQL template
    (``{}`` for the column) — it decides what differs; the text is what is shown."""
    keyed = [f for f in failures if f.key is not None]
    keyless = [f for f in failures if f.key is None]

    def fetch(side: Side) -> dict[str, tuple[list[str | None], list[str | None]]]:
        out: dict[str, tuple[list[str | None], list[str | None]]] = {}
        texts = ", ".join(f"{c}::text" for c in side.columns)
        forms = ", ".join(f"({form.format(c)})::text" for c, form in zip(side.columns, canon, strict=True))
        for chunk in [keyed[i : i + KEYS_PER_QUERY] for i in range(0, len(keyed), KEYS_PER_QUERY)]:
            casts = ", ".join(f"(__bm_e->>{i})::{t}" for i, t in enumerate(side.key_types))
            keys = literal(json.dumps([f.key for f in chunk], ensure_ascii=False))
            sql = f"SELECT ROW({', '.join(side.key)})::text, ARRAY[{texts}], ARRAY[{forms}] " + side.source(
                f"{key_row(side.key)} IN (SELECT {casts} FROM jsonb_array_elements({keys}::jsonb) AS __bm_e)"
            )
            for k, values, shapes in side.query(sql):
                out[k] = (list(values), list(shapes))
        if keyless:
            hashes = [int(f.key_text) for f in keyless]
            sql = f"SELECT DISTINCT ON (1) {side.hash}::text, ARRAY[{texts}], ARRAY[]::text[] " + side.source(
                f"{side.hash} = ANY({int_array(hashes)})"
            )
            for h, values, shapes in side.query(sql):
                out[h] = (list(values), list(shapes))
        return out

    left, right = pair.both(fetch)
    for f in failures:
        s, t = left.get(f.key_text), right.get(f.key_text)
        if f.kind == RECORD_DIFF and s and t:
            bad = [i for i in range(len(names)) if s[1][i] != t[1][i]] or list(range(len(names)))
            f.details = [[{names[i]: _cut(s[0][i]) for i in bad}, {names[i]: _cut(t[0][i]) for i in bad}]]
        elif s and f.kind != MISSING_SOURCE:
            f.details = [[dict(zip(names, map(_cut, s[0]), strict=True)), {}]]
        elif t:
            f.details = [[{}, dict(zip(names, map(_cut, t[0]), strict=True))]]


# ------------------------------------------------------------------------------------------ the entry point


def open_pair(src_conn: Any, dst_conn: Any, table: Any, pool: ThreadPoolExecutor) -> Pair:
    """Both sides of ``table`` (a :class:`bulkmig.core.model.Table`); raises LookupError naming a column
    the target lacks."""
    tschema, tname = table.target_qualified
    # Generated ones too (a target computing them otherwise is a difference); not those a random mask rewrote.
    skipped = set(transform_validation.not_compared(table))
    columns = [c for c in table.columns if c.name not in skipped]
    forms = transform_validation.source_forms(table)
    src = Side(
        src_conn,
        table.schema,
        table.name,
        table.filter,
        [forms.get(c.name, "{}").format(ident(c.name)) for c in columns],
    )
    src.forms = forms
    dst = Side(dst_conn, tschema, tname, None, [ident(c.target) for c in columns])
    src.copied = [ident(c.name) for c in table.copied_columns]
    dst.copied = [ident(c.target) for c in table.copied_columns]
    s_types = rowhash.column_types(src_conn, table.schema, table.name)
    t_types = rowhash.column_types(dst_conn, tschema, tname)
    missing = [c.target for c in columns if c.target not in t_types]
    if missing:
        raise LookupError(f"column {missing[0]} is missing on the target")
    # A column whose type a rule changed is compared as the target's type on both sides (the source casts).
    types = [(t_types[c.target] if c.name in forms else s_types[c.name], t_types[c.target]) for c in columns]
    version = min(server_version_num(src_conn), server_version_num(dst_conn))
    target_of = {c.name: c.target for c in table.columns}
    for side, names, mine in ((src, [c.name for c in columns], s_types), (dst, [c.target for c in columns], t_types)):
        side.queries = 2  # the catalog and the version
        side.version = version
        side.hashed = [(n, s, t) for n, (s, t) in zip(names, types, strict=True)]
        key_names = table.primary_key if side is src else [target_of[k] for k in table.primary_key]
        side.key = [ident(k) for k in key_names]
        side.key_types = [mine[k].sql for k in key_names]
        side.key_integer = len(key_names) == 1 and rowhash.is_integer(mine[key_names[0]])
    record_hash = version >= rowhash.RECORD_HASH_SINCE
    canon = [rowhash.canonical("{}", s, t) if record_hash else "{}" for s, t in types]
    pair = Pair(src, dst, pool)
    pair.canon = canon
    pair.names = [c.target for c in columns]
    pair.rows_hint = int(table.estimated_rows or 0)
    return pair


@contextmanager
def opened(src_conn: Any, dst_conn: Any, table: Any) -> Iterator[Pair]:
    """Both sides of ``table`` over the caller's (autocommit) connections, with the threads that query
    them at the same time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pair = open_pair(src_conn, dst_conn, table, pool)
        for side in (pair.src, pair.dst):
            side.conn.execute("SET enable_sort = off")  # partition sums: hash aggregation, never a sort of the table
        yield pair


def diff_table(pair: Pair, table: Any, partition_size: int, failure_max_count: int) -> Diff:
    """Compare one table (see the module docstring)."""
    (s_rows, s_sum), (t_rows, t_sum) = pair.both(
        lambda s: s.query(f"SELECT count(*), coalesce(sum({s.hash}), 0)::text {s.source()}")[0]
    )
    if (s_rows, s_sum) == (t_rows, t_sum):
        diff = Diff(int(s_rows), int(t_rows), partitions=1, method="table hash (equal: no partition needed)")
        diff.queries = pair.src.queries + pair.dst.queries
        return diff
    if table.primary_key:
        diff = diff_keyed(pair, partition_size, failure_max_count)
    else:
        diff = diff_keyless(pair, partition_size, failure_max_count)
    diff.failures.sort(key=lambda f: _natural(f.key if f.key is not None else [f.key_text]))
    if diff.failures:
        pair.small_queries()
        fill_details(pair, pair.names, pair.canon, diff.failures)
    diff.queries = pair.src.queries + pair.dst.queries
    if diff.failures_total > sum(f.copies for f in diff.failures) and not diff.unexamined_partitions:
        diff.notes.append(
            f"{diff.failures_total:,} rows differ; the first {len(diff.failures):,} are recorded"
            " (settings.validation.failure_max_count)"
        )
    if diff.unexamined_partitions:
        diff.notes.append(
            f"more than {failure_max_count:,} rows differ: {diff.unexamined_partitions:,} differing"
            " partitions were not examined (settings.validation.failure_max_count)"
        )
    return diff


def _natural(values: list[str]) -> list[tuple[int, Any]]:
    """Keys in a readable order: numbers by value, the rest by text."""
    out: list[tuple[int, Any]] = []
    for v in values:
        try:
            out.append((0, Decimal(v)))
        except (InvalidOperation, ValueError):
            out.append((1, v))
    return out
