"""The set-based compaction (``cdc.net``): pure, no server.

The property: applying a batch's net changes, in apply's order (read derived rows, deletes, updates, full
rows, derived inserts), to a table gives what applying every change one by one in ``seq`` order gives, and
what the source holds.  Checked on random source-like change streams against in-memory tables; the
cases before pin the rules one at a time.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bulkmig.cdc.batch import ChangeRow, TableChanges
from bulkmig.cdc.net import NetChanges, col, net_changes, old
from bulkmig.core.errors import IntegrityError

TS = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
Row = list[str | None]
Table = dict[tuple[str | None, ...], Row]


def change(op: str, seq: int, values: Row, unchanged: list[str] | None = None, before: Row | None = None) -> ChangeRow:
    return ChangeRow(op, "0/10", seq, 700 + seq, TS, values, unchanged or [], before)


def changes(columns: list[str], key: list[str], *rows: ChangeRow) -> TableChanges:
    return TableChanges("public", "t", columns, ["text"] * len(columns), key, "d", list(rows))


def apply_net(net: NetChanges, columns: list[str], key: list[str], table: Table) -> Table:
    """What apply does with ``net``, on an in-memory table (key tuple -> row)."""
    kidx = [columns.index(k) for k in key]
    t = {k: list(v) for k, v in table.items()}
    if net.truncated:
        t.clear()

    def rows(tab: object) -> list[Row]:
        d = tab.to_pydict()  # type: ignore[attr-defined]
        return [[d[col(j)][i] for j in range(len(columns))] for i in range(tab.num_rows)]  # type: ignore[attr-defined]

    found = []
    for inherit, tab in net.derived:
        d = tab.to_pydict()
        for i, r in enumerate(rows(tab)):
            origin = tuple(d[old(n)][i] for n in range(len(key)))
            if origin in t:
                found.append([t[origin][j] if c in inherit else r[j] for j, c in enumerate(columns)])
    if net.deletes is not None:
        d = net.deletes.to_pydict()
        for i in range(net.deletes.num_rows):
            t.pop(tuple(d[col(j)][i] for j in kidx), None)
    for unsent, tab in net.updates:
        for r in rows(tab):
            k = tuple(r[j] for j in kidx)
            if k in t:
                t[k] = [t[k][j] if c in unsent else r[j] for j, c in enumerate(columns)]
    if net.full is not None:
        for r in rows(net.full):
            t[tuple(r[j] for j in kidx)] = r
    for r in found:
        k = tuple(r[j] for j in kidx)
        assert k not in t, f"derived row {k} would hit a row already there"
        t[k] = r
    return t


def one_by_one(tc: TableChanges, key: list[str], table: Table) -> Table:
    """``Applier.apply_exact`` on an in-memory table."""
    columns = tc.columns
    kidx = [columns.index(k) for k in key]
    t = {k: list(v) for k, v in table.items()}
    for r in sorted(tc.rows, key=lambda r: r.seq):
        if r.op == "T":
            t.clear()
            continue
        sent = [c not in r.unchanged for c in columns]
        new = tuple(r.values[j] if sent[j] or r.before is None else r.before[j] for j in kidx)
        oldk = tuple((r.before or r.values)[j] for j in kidx) if r.op == "D" or r.before is not None else new
        if r.op == "D":
            t.pop(oldk, None)
        elif oldk != new:
            if oldk in t:
                moved = t.pop(oldk)
                t[new] = [r.values[j] if sent[j] else moved[j] for j in range(len(columns))]
                for j, v in zip(kidx, new, strict=True):
                    t[new][j] = v
            elif all(sent):
                t[new] = list(r.values)
        elif all(sent):
            t[new] = list(r.values)
        elif new in t:
            t[new] = [r.values[j] if sent[j] else t[new][j] for j in range(len(columns))]
    return t


def check(columns: list[str], key: list[str], start: Table, *rows: ChangeRow) -> Table:
    tc = changes(columns, key, *rows)
    net = net_changes(tc, key)
    assert net is not None
    got = apply_net(net, columns, key, start)
    assert got == one_by_one(tc, key, start)
    return got


COLS = ["id", "name", "big"]


def test_insert_then_partial_update_takes_the_insert_s_value() -> None:
    got = check(COLS, ["id"], {}, change("I", 1, ["1", "a", "BIG"]), change("U", 2, ["1", "b", None], ["big"]))
    assert got == {("1",): ["1", "b", "BIG"]}


def test_partial_updates_keep_the_target_s_unsent_values_and_null_is_a_value() -> None:
    start = {("1",): ["1", "a", "TOAST"], ("2",): ["2", "b", "TOAST2"]}
    got = check(
        COLS,
        ["id"],
        start,
        change("U", 1, ["1", None, None], ["big"]),
        change("U", 2, ["2", None, "new"], ["name"]),
        change("U", 3, ["2", "c", None], ["big"]),
    )
    assert got == {("1",): ["1", None, "TOAST"], ("2",): ["2", "c", "new"]}


def test_insert_then_delete_leaves_nothing_and_delete_then_insert_is_a_new_row() -> None:
    tc = changes(
        COLS,
        ["id"],
        change("I", 1, ["5", "a", "b"]),
        change("D", 2, ["5", None, None]),
        change("D", 3, ["1", None, None]),
        change("I", 4, ["1", "new", "row"]),
    )
    net = net_changes(tc, ["id"])
    assert net is not None and net.full is not None and net.deletes is not None
    assert sorted(net.deletes.column("c0").to_pylist()) == ["1", "5"]  # 1: deleted before its new insert
    assert net.full.to_pydict() == {"c0": ["1"], "c1": ["new"], "c2": ["row"]}
    assert apply_net(net, COLS, ["id"], {("1",): ["1", "old", "x"]}) == {("1",): ["1", "new", "row"]}


def test_partial_update_after_a_delete_finds_no_row() -> None:
    start = {("1",): ["1", "a", "T"]}
    tc = changes(COLS, ["id"], change("D", 1, ["1", None, None]), change("U", 2, ["1", "b", None], ["big"]))
    net = net_changes(tc, ["id"])
    assert net is not None and net.missing == 1 and apply_net(net, COLS, ["id"], start) == {}


def test_a_key_updated_to_another_key_s_old_value() -> None:
    start = {("1",): ["1", "one", "T1"], ("2",): ["2", "two", "T2"]}
    got = check(
        COLS,
        ["id"],
        start,
        change("D", 1, ["2", None, None]),
        change("U", 2, ["2", "was one", None], ["big"], before=["1", None, None]),  # 1 -> 2, body kept
    )
    assert got == {("2",): ["2", "was one", "T1"]}


def test_keys_swapped_through_a_third_keep_their_unsent_values() -> None:
    start = {("1",): ["1", "a", "T1"], ("2",): ["2", "b", "T2"]}
    got = check(
        COLS,
        ["id"],
        start,
        change("U", 1, ["3", "a", None], ["big"], before=["1", None, None]),
        change("U", 2, ["1", "b", None], ["big"], before=["2", None, None]),
        change("U", 3, ["2", "a", None], ["big"], before=["3", None, None]),
    )
    assert got == {("1",): ["1", "b", "T2"], ("2",): ["2", "a", "T1"]}


def test_truncate_drops_what_came_before() -> None:
    got = check(
        COLS,
        ["id"],
        {("1",): ["1", "a", "b"]},
        change("I", 1, ["2", "x", "y"]),
        change("T", 2, [None, None, None]),
        change("I", 3, ["3", "z", "w"]),
    )
    assert got == {("3",): ["3", "z", "w"]}


def test_unsent_key_column_comes_from_before_and_missing_before_is_refused() -> None:
    cols = ["a", "b", "v"]
    start = {("1", "x"): ["1", "x", "old"]}
    got = check(cols, ["a", "b"], start, change("U", 1, ["1", None, "new"], ["b"], before=["1", "x", None]))
    assert got == {("1", "x"): ["1", "x", "new"]}
    with pytest.raises(IntegrityError, match="does not identify its row"):
        net_changes(changes(cols, ["a", "b"], change("U", 1, ["1", None, "new"], ["b"])), ["a", "b"])


def test_a_key_change_where_it_cannot_be_exact_gives_none() -> None:
    tc = changes(COLS, ["id"], change("U", 1, ["2", "a", "b"], before=["1", None, None]))
    assert net_changes(tc, ["id"], carried=True) is None
    assert net_changes(tc, ["id"], first_wins=["big"]) is None
    assert net_changes(tc, ["id"]) is not None


def test_first_wins_columns_keep_the_insert_s_value() -> None:
    tc = changes(COLS, ["id"], change("I", 1, ["1", "a", "v1"]), change("U", 2, ["1", "b", "v2"]))
    net = net_changes(tc, ["id"], first_wins=["big"])
    assert net is not None and net.full is not None
    assert net.full.to_pydict() == {"c0": ["1"], "c1": ["b"], "c2": ["v1"]}


def test_bad_op_is_refused() -> None:
    with pytest.raises(IntegrityError, match="has op 'X'"):
        net_changes(changes(COLS, ["id"], change("X", 1, ["1", "a", "b"])), ["id"])


# ------------------------------------------------------------------------------------ random streams


def source_stream(
    rng: random.Random, columns: list[str], key: list[str], start: Table, n: int, moves: float = 0.25
) -> tuple[list[ChangeRow], Table]:
    """Changes a source could make from ``start`` (kept as it goes): what a real stream looks like."""
    kidx = [columns.index(k) for k in key]
    src = {k: list(v) for k, v in start.items()}
    out: list[ChangeRow] = []

    def value() -> str | None:
        return rng.choice([None, "", "x", "tab\t", f"v{rng.randrange(50)}"])

    def new_key() -> tuple[str, ...]:
        return tuple(str(rng.randrange(12)) for _ in key)

    for seq in range(n):
        r = rng.random()
        if r < 0.03:
            src.clear()
            out.append(change("T", seq, [None] * len(columns)))
            continue
        if r < 0.3 or not src:
            k = new_key()
            if k in src:
                continue
            row = [value() for _ in columns]
            for j, v in zip(kidx, k, strict=True):
                row[j] = v
            src[k] = row
            out.append(change("I", seq, list(row)))
            continue
        k = rng.choice(sorted(src))
        if r < 0.45:
            before = [k[kidx.index(j)] if j in kidx else None for j in range(len(columns))]
            del src[k]
            out.append(change("D", seq, before if rng.random() < 0.5 else list(before), [], before))
            continue
        unsent = [c for j, c in enumerate(columns) if j not in kidx and rng.random() < 0.4]
        row = [value() for _ in columns]
        nk = new_key() if rng.random() < moves else k
        if nk in src and nk != k:
            continue
        for j, v in zip(kidx, nk, strict=True):
            row[j] = v
        kept = src.pop(k)
        src[nk] = [kept[j] if c in unsent else row[j] for j, c in enumerate(columns)]
        sent_row = [None if c in unsent else row[j] for j, c in enumerate(columns)]
        before = [k[kidx.index(j)] if j in kidx else None for j in range(len(columns))] if nk != k else None
        if before is None and rng.random() < 0.2:
            before = [k[kidx.index(j)] if j in kidx else None for j in range(len(columns))]  # same key sent
        out.append(change("U", seq, sent_row, unsent, before))
    return out, src


@pytest.mark.parametrize("moves", [0.0, 0.03, 0.4], ids=["no key changes", "few key changes", "many"])
@pytest.mark.parametrize("key", [["id"], ["id", "name"]], ids=["one-column key", "composite key"])
def test_random_streams_fold_to_what_one_by_one_gives(key: list[str], moves: float) -> None:
    columns = ["id", "name", "big", "n"]
    rng = random.Random(20261127 + int(moves * 100))
    for _ in range(200):
        start: Table = {}
        for _ in range(rng.randrange(8)):
            k = tuple(str(rng.randrange(12)) for _ in key)
            row: Row = [rng.choice([None, "a", "b"]) for _ in columns]
            for j, v in zip([columns.index(c) for c in key], k, strict=True):
                row[j] = v
            start[k] = row
        stream, source = source_stream(rng, columns, key, start, rng.randrange(1, 40), moves)
        rng.shuffle(stream)  # file order is not seq order
        tc = changes(columns, key, *stream)
        net = net_changes(tc, key)
        assert net is not None
        got = apply_net(net, columns, key, start)
        assert got == one_by_one(tc, key, start) == source
