"""Replay's set-based compaction: a keyed table's changes in one batch folded to one net change per key.

Part of :mod:`bulkmig.replay`; the why of replay is in :mod:`bulkmig.replay.runner`.  Pure: no server.

The batch file's Arrow columns are compacted with pyarrow and numpy, never a Python object per change, so a
batch of 100k changes is folded in milliseconds.  Every key the batch touches ends in exactly one of:

- **absent**: delete it if present (its last change deleted it, or moved its row to another key).  An insert
  later deleted in the same batch cancels to this, not to nothing: a delete of a key that is not there costs
  an index probe, and it stays right where the target already held the row (changes applied again over rows
  that already hold them, see :class:`~bulkmig.replay.marks.TableMark`).
- **full**: the whole row is known (an insert, or an update that sent every column, then any partial
  updates merged in, last image wins): upserted.  When the key's row was deleted (or moved away) earlier in
  the batch it is in ``deletes`` too, and the delete runs first: a row deleted and inserted again is a new
  row, as it was on the source (a GENERATED ALWAYS identity column takes the new insert's value).
- **update**: only updates that did not send some (TOASTed, unchanged) columns touched the row the target
  has: those columns are never written, the others take the last value sent.
- **derived**: a row that an update moved to this key from another (a key change), whose unsent columns
  come from the target's row at its ``origin`` key as the batch found it.  Apply reads those values before
  it deletes anything, so a key updated to another key's old value, swaps and chains need no order.

Key changes are rare, so the keys they touch (either side of any key change, and every other change of
those keys) are folded by :func:`_fold_moves`, an exact step-by-step model in Python; all other keys are
folded column-wise by :func:`_fold_simple`.  Keys are compared as the text the source sent, so apply uses
this only for key types whose equality is equality of that text (``apply.text_key_safe``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.cdc.batch import TableChanges, meta_column, user_columns
from bulkmig.core.errors import IntegrityError


def col(j: int) -> str:
    """The name of stream column ``j`` in the tables of :class:`NetChanges` (positional: no clash)."""
    return f"c{j}"


def old(j: int) -> str:
    """The name of key column ``j`` of a derived row's origin key."""
    return f"o{j}"


@dataclass
class NetChanges:
    """A table's net changes in one batch; tables have text columns ``c0…`` (the stream's columns, in
    order) and ``o0…`` (the origin key's columns).  Apply order: read ``derived`` values, ``deletes``,
    ``updates``, ``full``, insert ``derived``."""

    truncated: bool = False  # a TRUNCATE in the batch: everything before the last one is dropped here
    deletes: pa.Table | None = None  # key columns (c<j> of the key's columns): delete if present
    full: pa.Table | None = None  # whole rows: upsert
    updates: list[tuple[frozenset[str], pa.Table]] = field(default_factory=list)  # unsent columns, rows
    derived: list[tuple[frozenset[str], pa.Table]] = field(default_factory=list)  # columns from the origin
    missing: int = 0  # partial updates that certainly find no row (their row was deleted before them)
    key_changes: int = 0


class _Prepared:
    """The changes after the last TRUNCATE, in seq order, as numpy masks and Arrow columns."""

    def __init__(self, changes: TableChanges, key: Sequence[str]) -> None:
        frame = changes.arrow().combine_chunks()
        seq = meta_column(frame, "seq").to_numpy()
        if len(seq) > 1 and not bool(np.all(seq[1:] > seq[:-1])):
            frame = frame.take(pa.array(np.argsort(seq, kind="stable")))
            seq = meta_column(frame, "seq").to_numpy()
        op = meta_column(frame, "op")
        is_t = _mask(pc.equal(op, "T"))
        self.truncated = bool(is_t.any())
        if self.truncated:
            frame = frame.slice(int(np.flatnonzero(is_t)[-1]) + 1)
            seq, op = seq[len(seq) - frame.num_rows :], meta_column(frame, "op")
        self.n = n = frame.num_rows
        self.seq = seq
        self.is_i, self.is_u, self.is_d = (_mask(pc.equal(op, o)) for o in ("I", "U", "D"))
        bad = ~(self.is_i | self.is_u | self.is_d | _mask(pc.equal(op, "T")))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise IntegrityError(f"a change (seq {seq[i]}) has op {op[i].as_py()!r}", "expected I, U, D or T")
        self.columns = list(changes.columns)
        key_idx = [self.columns.index(k) for k in key]
        self.key_idx = key_idx
        values = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in user_columns(frame)]
        unchanged = meta_column(frame, "unchanged").combine_chunks()
        before = meta_column(frame, "before").combine_chunks()
        # unsent[j]: rows that did not send column j (unchanged TOAST); only the columns some row names.
        self.unsent: dict[int, np.ndarray] = {}
        if n:
            lengths = pc.fill_null(pc.list_value_length(unchanged), 0).to_numpy()
            self.any_unsent = lengths > 0
            if self.any_unsent.any():
                flat = pc.list_flatten(unchanged)
                parents = pc.list_parent_indices(unchanged).to_numpy()
                for name in pc.unique(flat).to_pylist():
                    if name in self.columns:
                        m = np.zeros(n, bool)
                        m[parents[_mask(pc.equal(flat, name))]] = True
                        self.unsent[self.columns.index(name)] = m
        else:
            self.any_unsent = np.zeros(0, bool)
        has_before = _mask(pc.is_valid(before))
        self.has_before = has_before
        # New key (I, U) and old key (U, D): like compact._key_values, a key column not sent comes from before.
        new_key: list[pa.Array] = []
        old_key: list[pa.Array] = []
        for j in key_idx:
            prior = pc.list_element(before, j) if n else pa.array([], pa.string())
            new = values[j]
            if j in self.unsent:
                lost = self.unsent[j] & ~has_before & ~self.is_d
                if lost.any():
                    i = int(np.flatnonzero(lost)[0])
                    raise IntegrityError(
                        f"a change (seq {seq[i]}) does not identify its row: "
                        f"key column {self.columns[j]!r} was not sent",
                        "the change stream is incomplete; capture must send the old key for such updates",
                    )
                new = pc.if_else(pa.array(self.unsent[j]), prior, new)
            new_key.append(new)
            old_key.append(pc.if_else(pa.array(has_before), prior, new))
        # The key columns of a row's values are its new key, always sent.
        for j, new in zip(key_idx, new_key, strict=True):
            values[j] = new
            self.unsent.pop(j, None)
        self.values = values
        self.key_text, ids = _key_ids(new_key + old_key, len(key_idx), n)
        self.new_id, self.old_id = ids[:n], ids[n:]
        self.move = self.is_u & has_before & (self.new_id != self.old_id)
        self.any_unsent = np.zeros(n, bool) if not self.unsent else np.logical_or.reduce(list(self.unsent.values()))
        # The key a change that is not a move acts on.
        self.at = np.where(self.is_d, self.old_id, self.new_id)

    def unsent_names(self, i: int) -> frozenset[str]:
        return frozenset(self.columns[j] for j, m in self.unsent.items() if m[i])


def only_inserts(changes: TableChanges) -> pa.Table | None:
    """The user columns of the inserts after the last TRUNCATE, in seq order, when the batch holds nothing
    but inserts (and truncates) for this table; else None."""
    frame = changes.arrow()
    op = meta_column(frame, "op")
    if not (_mask(pc.equal(op, "I")) | _mask(pc.equal(op, "T"))).all():
        return None
    frame = frame.take(pc.sort_indices(meta_column(frame, "seq")))
    is_t = _mask(pc.equal(meta_column(frame, "op"), "T"))
    if is_t.any():
        frame = frame.slice(int(np.flatnonzero(is_t)[-1]) + 1)
    return pa.table(user_columns(frame), names=[col(j) for j in range(len(changes.columns))])


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _key_ids(arrays: list[pa.Array], width: int, n: int) -> tuple[list[pa.Array], np.ndarray]:
    """Dense ids of the keys in ``arrays`` (``width`` new-key columns, then as many old-key ones, ``n`` rows
    each; NULL is a value like any other), and the key text of each id, one array per key column."""
    stacked = [pa.concat_arrays([arrays[i], arrays[width + i]]) for i in range(width)]
    codes = []
    for a in stacked:
        enc = pc.dictionary_encode(a, null_encoding="encode")
        codes.append(enc.indices.to_numpy().astype(np.int64))
    combined = codes[0] if codes else np.zeros(2 * n, np.int64)
    for c in codes[1:]:  # densified after each column, so the product never overflows
        combined = np.unique(combined * (int(c.max(initial=0)) + 1) + c, return_inverse=True)[1].reshape(-1)
    _, first, ids = np.unique(combined, return_index=True, return_inverse=True)
    take = pa.array(first)
    return [a.take(take) for a in stacked], ids.reshape(-1)


def net_changes(
    changes: TableChanges, key: Sequence[str], *, first_wins: Sequence[str] = (), carried: bool = False
) -> NetChanges | None:
    """The net change of every key the batch touches (see the module docstring), or None when the batch
    changes a key and that cannot be folded exactly.

    ``first_wins``: columns an update never writes (GENERATED ALWAYS identity columns: replay never SETs
    them), so a full row takes their value from the insert that created it, not from a later update.
    ``carried``: the target has columns the stream does not write.  Both make a key change differ from a
    delete and an insert (the one-by-one path's ``UPDATE … SET <key>`` keeps those columns' values), so
    a batch with key changes of such a table gets None.
    """
    p = _Prepared(changes, key)
    out = NetChanges(truncated=p.truncated, key_changes=int(p.move.sum()))
    if not p.n:
        return out
    if out.key_changes and (first_wins or carried):
        return None
    moved = np.union1d(p.old_id[p.move], p.new_id[p.move])
    tangled = p.move | np.isin(p.at, moved) if len(moved) else np.zeros(p.n, bool)
    parts = [_fold_simple(p, np.flatnonzero(~tangled), [p.columns.index(c) for c in first_wins])]
    if tangled.any():
        parts.append(_fold_moves(p, np.flatnonzero(tangled)))
    deletes, full = [], []
    updates: dict[frozenset[str], list[pa.Table]] = {}
    derived: dict[frozenset[str], list[pa.Table]] = {}
    for part in parts:
        deletes += [part.deletes] if part.deletes is not None and part.deletes.num_rows else []
        full += [part.full] if part.full is not None and part.full.num_rows else []
        for u, t in part.updates:
            updates.setdefault(u, []).append(t)
        for u, t in part.derived:
            derived.setdefault(u, []).append(t)
        out.missing += part.missing
    out.deletes = pa.concat_tables(deletes) if deletes else None
    out.full = pa.concat_tables(full) if full else None
    out.updates = [(u, pa.concat_tables(ts)) for u, ts in updates.items()]
    out.derived = [(u, pa.concat_tables(ts)) for u, ts in derived.items()]
    return out


def _keys_table(p: _Prepared, ids: np.ndarray) -> pa.Table:
    take = pa.array(ids)
    return pa.table({col(j): p.key_text[i].take(take) for i, j in enumerate(p.key_idx)})


def _fold_simple(p: _Prepared, rows: np.ndarray, first_wins: list[int]) -> NetChanges:
    """Keys no key change touches: every change acts on one key; folded column-wise.

    Per key: its last delete D, the last change after D that sent the whole row (insert or full update: the
    founder F), its last change L.  L is D: absent.  F exists: full row, each column the last value sent at
    or after F (F sent them all); deleted first when D exists.  No F but D: absent (the partial updates after
    D found no row).  Neither: an update of the row the target has, each column the last value sent, the
    columns no change sent left alone.
    """
    out = NetChanges()
    if not len(rows):
        return out
    groups, g = np.unique(p.at[rows], return_inverse=True)
    g = g.reshape(-1)
    ng = len(groups)
    pos = np.arange(len(rows))
    is_d = p.is_d[rows]
    founds = (p.is_i[rows] | p.is_u[rows]) & ~p.any_unsent[rows]
    last_d = np.full(ng, -1)
    np.maximum.at(last_d, g[is_d], pos[is_d])
    last = np.full(ng, -1)
    np.maximum.at(last, g, pos)
    founder_rows = founds & (pos > last_d[g])
    founder = np.full(ng, -1)
    np.maximum.at(founder, g[founder_rows], pos[founder_rows])
    absent = last_d == last
    full = ~absent & (founder >= 0)
    emptied = ~absent & ~full & (last_d >= 0)  # only partial updates after the delete: they found nothing
    partial = ~absent & ~full & ~emptied
    out.missing = int(np.sum(emptied[g] & (pos > last_d[g])))
    dele = absent | emptied | (full & (last_d >= 0))
    if dele.any():
        out.deletes = _keys_table(p, groups[dele])
    start = np.where(full, founder, -1)
    relevant = ~is_d & (pos >= start[g]) & (full | partial)[g]
    last_rel = np.full(ng, -1)
    np.maximum.at(last_rel, g[relevant], pos[relevant])
    n_cols = len(p.columns)
    src = [last_rel] * n_cols
    for j, m in p.unsent.items():
        sent = relevant & ~m[rows]
        s = np.full(ng, -1)
        np.maximum.at(s, g[sent], pos[sent])
        src[j] = s
    if first_wins and full.any():
        first = np.full(ng, len(rows))
        np.minimum.at(first, g[founder_rows], pos[founder_rows])
        for j in first_wins:
            if j not in p.key_idx:
                src[j] = np.where(full, first, src[j])

    def gather(which: np.ndarray) -> pa.Table:
        cols = {}
        for j in range(n_cols):
            s = src[j][which]
            cols[col(j)] = p.values[j].take(pa.array(rows[np.maximum(s, 0)], mask=s < 0))
        return pa.table(cols)

    if full.any():
        out.full = gather(np.flatnonzero(full))
    if partial.any():
        which = np.flatnonzero(partial)
        unsent_cols = sorted(p.unsent)
        if unsent_cols:
            pattern = np.stack([src[j][which] < 0 for j in unsent_cols], axis=1)
            shapes, shape_of = np.unique(pattern, axis=0, return_inverse=True)
            shape_of = shape_of.reshape(-1)
        else:
            shapes, shape_of = np.zeros((1, 0), bool), np.zeros(len(which), np.int64)
        for s, shape in enumerate(shapes):
            names = frozenset(p.columns[j] for j, flag in zip(unsent_cols, shape, strict=True) if flag)
            out.updates.append((names, gather(which[shape_of == s])))
    return out


@dataclass
class _Row:
    """A key's row in :func:`_fold_moves`: ``values`` in column order; ``inherit`` the columns whose value is
    the target's row at ``origin`` as the batch found it; ``cond``: the row exists only if that one did."""

    values: list[str | None]
    inherit: frozenset[int]
    origin: int | None
    cond: bool


_ABSENT = None


def _fold_moves(p: _Prepared, rows: np.ndarray) -> NetChanges:
    """Keys touched by key changes: the changes applied one at a time to a model of those keys, as the
    one-by-one path would apply them (an update of a missing row changes nothing; a key change of a
    missing row with every column sent upserts the new row)."""
    values = [p.values[j].take(pa.array(rows)).to_pylist() for j in range(len(p.columns))]
    unsent = {j: m[rows] for j, m in p.unsent.items()}
    state: dict[int, _Row | None] = {}
    reset: set[int] = set()
    missing = 0
    for r in range(len(rows)):
        i = int(rows[r])
        vals = [v[r] for v in values]
        keep = frozenset(j for j, m in unsent.items() if m[r])
        if p.is_d[i]:
            k = int(p.old_id[i])
            state[k] = _ABSENT
            reset.add(k)
            continue
        if p.move[i]:
            src, dst = int(p.old_id[i]), int(p.new_id[i])
        else:
            src = dst = int(p.new_id[i])
        prev = state.get(src, "start")
        if not keep:  # every column sent: the row is known, whether or not it was there (upsert)
            row = _Row(vals, frozenset(), None, False)
        elif prev == "start":
            row = _Row(vals, keep, src, True)
        elif prev is _ABSENT:  # an update of a row that is not there: nothing happens
            missing += 1
            continue
        else:
            assert isinstance(prev, _Row)
            merged = [prev.values[j] if j in keep else vals[j] for j in range(len(vals))]
            row = _Row(merged, prev.inherit & keep, prev.origin, prev.cond)
        if src != dst:
            state[src] = _ABSENT
            reset.add(src)
        state[dst] = row
    out = NetChanges(missing=missing)
    dels: list[int] = []
    full: list[list[str | None]] = []
    updates: dict[frozenset[str], list[list[str | None]]] = {}
    derived: dict[frozenset[str], list[tuple[int, list[str | None]]]] = {}
    for k, row in state.items():
        if row is _ABSENT:
            dels.append(k)
            continue
        assert isinstance(row, _Row)
        names = frozenset(p.columns[j] for j in row.inherit)
        if not row.cond:
            full.append(row.values)
            if k in reset:
                dels.append(k)
        elif row.origin == k and k not in reset:
            updates.setdefault(names, []).append([None if j in row.inherit else v for j, v in enumerate(row.values)])
        else:
            derived.setdefault(names, []).append((int(row.origin or 0), row.values))
            if k in reset:
                dels.append(k)
    if dels:
        out.deletes = _keys_table(p, np.array(sorted(dels)))
    out.full = _rows_table(full, len(p.columns)) if full else None
    out.updates = [(u, _rows_table(rs, len(p.columns))) for u, rs in updates.items()]
    for names, items in derived.items():
        origins = _keys_table(p, np.array([o for o, _ in items]))
        rows_t = _rows_table([v for _, v in items], len(p.columns))
        origin_cols = {old(i): origins.column(col(j)) for i, j in enumerate(p.key_idx)}
        out.derived.append((names, pa.table({**origin_cols, **{n: rows_t.column(n) for n in rows_t.column_names}})))
    return out


def _rows_table(rows: list[list[str | None]], width: int) -> pa.Table:
    return pa.table({col(j): pa.array([r[j] for r in rows], pa.string()) for j in range(width)})


__all__ = ["NetChanges", "col", "net_changes", "old", "only_inserts"]
