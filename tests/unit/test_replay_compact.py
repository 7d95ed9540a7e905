"""Compaction of a batch's changes per key: pure, no server.

The property that matters: applying the compacted steps gives the same table as applying every change
one by one in ``seq`` order.  The cases below pin the rules; the last test checks that property against
a tiny in-memory model on random change sequences.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bulkmig.cdc.batch import ChangeRow, TableChanges
from bulkmig.cdc.compact import (
    RowChange,
    RowInsert,
    Segment,
    Step,
    Truncate,
    compact,
    keyless_steps,
)
from bulkmig.core.errors import IntegrityError

TS = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
COLUMNS = ["id", "name", "big"]


def row(op: str, seq: int, values: list[str | None], unchanged: list[str] | None = None, before=None) -> ChangeRow:  # noqa: ANN001
    return ChangeRow(op, "0/10", seq, 700 + seq, TS, values, unchanged or [], before)


def table(*rows: ChangeRow, columns: list[str] = COLUMNS, key: list[str] | None = None) -> TableChanges:  # noqa: B006
    return TableChanges(
        "public", "t", columns, ["integer", "text", "text"], ["id"] if key is None else key, "d", list(rows)
    )


def only_segment(steps: list[Step]) -> dict:
    """The entries of the one segment in ``steps``."""
    assert len(steps) == 1 and isinstance(steps[0], Segment), steps
    return {k: (e.kind, e.values, set(e.unchanged)) for k, e in steps[0].entries.items()}


def test_insert_then_update_with_unchanged_toast_takes_the_value_from_the_insert() -> None:
    steps = compact(table(row("I", 1, ["1", "a", "BIG"]), row("U", 2, ["1", "b", None], unchanged=["big"])), ["id"])
    assert only_segment(steps) == {("1",): ("upsert", ["1", "b", "BIG"], set())}


def test_update_with_unchanged_after_a_full_update_is_merged_into_a_full_row() -> None:
    steps = compact(table(row("U", 1, ["1", "a", "v1"]), row("U", 2, ["1", "b", None], unchanged=["big"])), ["id"])
    assert only_segment(steps) == {("1",): ("upsert", ["1", "b", "v1"], set())}


def test_two_partial_updates_merge_and_keep_only_what_neither_sent() -> None:
    cols = ["id", "a", "b", "c"]
    steps = compact(
        table(
            row("U", 1, ["1", None, "b1", None], unchanged=["a", "c"]),
            row("U", 2, ["1", "a2", None, None], unchanged=["b", "c"]),
            columns=cols,
        ),
        ["id"],
    )
    assert only_segment(steps) == {("1",): ("update", ["1", "a2", "b1", None], {"c"})}


def test_partial_update_alone_stays_partial() -> None:
    steps = compact(table(row("U", 1, ["1", "x", None], unchanged=["big"])), ["id"])
    assert only_segment(steps) == {("1",): ("update", ["1", "x", None], {"big"})}


def test_insert_then_delete_is_a_delete() -> None:
    steps = compact(table(row("I", 1, ["1", "a", "b"]), row("D", 2, ["1", None, None])), ["id"])
    assert only_segment(steps)[("1",)][0] == "delete"


def test_delete_then_insert_is_the_insert() -> None:
    steps = compact(table(row("D", 1, ["1", None, None]), row("I", 2, ["1", "new", "x"])), ["id"])
    assert only_segment(steps) == {("1",): ("upsert", ["1", "new", "x"], set())}


def test_delete_identifies_its_row_by_before_when_sent() -> None:
    steps = compact(table(row("D", 1, [None, None, None], before=["7", None, None])), ["id"])
    assert list(only_segment(steps)) == [("7",)]


def test_last_change_wins_per_key_and_keys_stay_apart() -> None:
    steps = compact(
        table(
            row("I", 1, ["1", "a", "x"]),
            row("I", 2, ["2", "b", "y"]),
            row("U", 3, ["1", "a2", "x2"]),
            row("D", 4, ["2", None, None]),
        ),
        ["id"],
    )
    got = only_segment(steps)
    assert got == {("1",): ("upsert", ["1", "a2", "x2"], set()), ("2",): ("delete", ["2", None, None], set())}


def test_truncate_is_a_barrier_and_what_came_before_it_is_gone() -> None:
    steps = compact(
        table(
            row("I", 1, ["1", "a", "x"]),
            row("T", 2, [None, None, None]),
            row("I", 3, ["2", "b", "y"]),
            row("T", 4, [None, None, None]),
            row("I", 5, ["3", "c", "z"]),
            row("U", 6, ["3", "c2", None], unchanged=["big"]),
        ),
        ["id"],
    )
    assert isinstance(steps[0], Truncate)
    assert only_segment(steps[1:]) == {("3",): ("upsert", ["3", "c2", "z"], set())}
    assert [type(s) for s in compact(table(row("T", 1, [None] * 3)), ["id"])] == [Truncate]


def test_key_change_is_a_barrier_for_the_keys_it_moves() -> None:
    steps = compact(
        table(
            row("I", 1, ["1", "a", "x"]),
            row("U", 2, ["2", "a", None], unchanged=["big"], before=["1", None, None]),
            row("U", 3, ["2", "b", None], unchanged=["big"]),
            row("I", 4, ["1", "reused", "r"]),
            row("U", 5, ["3", "b", None], unchanged=["big"], before=["2", None, None]),
        ),
        ["id"],
    )
    # The insert of 1 is applied before 1 moves to 2; what touches 1 or 2 afterwards comes after the
    # move; moving 2 again needs a new segment.
    assert [type(s) for s in steps] == [Segment, Segment, Segment]
    assert only_segment(steps[:1]) == {("1",): ("upsert", ["1", "a", "x"], set())}
    second = steps[1]
    assert [(m.old_key, m.values[0], m.unchanged) for m in second.moves] == [(("1",), "2", {"big"})]
    assert only_segment(steps[1:2]) == {
        ("2",): ("update", ["2", "b", None], {"big"}),
        ("1",): ("upsert", ["1", "reused", "r"], set()),
    }
    assert [(m.old_key, m.values[0]) for m in steps[2].moves] == [(("2",), "3")] and not steps[2].entries


def test_key_changes_of_unrelated_keys_share_a_segment() -> None:
    steps = compact(
        table(
            row("U", 1, ["10", "a", "x"], before=["1", None, None]),
            row("U", 2, ["20", "b", "y"], before=["2", None, None]),
            row("I", 3, ["5", "c", "z"]),
        ),
        ["id"],
    )
    assert len(steps) == 1 and [m.old_key for m in steps[0].moves] == [("1",), ("2",)]


def test_before_with_the_same_key_is_not_a_key_change() -> None:
    # REPLICA IDENTITY FULL sends the old row on every update; only a different key is a barrier.
    steps = compact(table(row("U", 1, ["1", "b", "x"], before=["1", "a", "x"])), ["id"])
    assert only_segment(steps) == {("1",): ("upsert", ["1", "b", "x"], set())}


def test_composite_keys() -> None:
    cols = ["a", "b", "v"]
    steps = compact(
        table(
            row("I", 1, ["1", "x", "v1"]),
            row("I", 2, ["1", "y", "v2"]),
            row("U", 3, ["1", "x", "v3"]),
            columns=cols,
            key=["a", "b"],
        ),
        ["a", "b"],
    )
    assert only_segment(steps) == {
        ("1", "x"): ("upsert", ["1", "x", "v3"], set()),
        ("1", "y"): ("upsert", ["1", "y", "v2"], set()),
    }


def test_partial_update_after_delete_is_not_merged() -> None:
    steps = compact(table(row("D", 1, ["1", None, None]), row("U", 2, ["1", "x", None], unchanged=["big"])), ["id"])
    assert [type(s) for s in steps] == [Segment, Segment]
    assert only_segment(steps[:1])[("1",)][0] == "delete"
    assert only_segment(steps[1:])[("1",)][0] == "update"


def test_changes_are_taken_in_seq_order_not_file_order() -> None:
    steps = compact(table(row("D", 9, ["1", None, None]), row("I", 3, ["1", "a", "x"])), ["id"])
    assert only_segment(steps)[("1",)][0] == "delete"


def test_unsent_key_column_is_taken_from_before() -> None:
    steps = compact(table(row("U", 1, [None, "x", "y"], unchanged=["id"], before=["5", None, None])), ["id"])
    assert list(only_segment(steps)) == [("5",)]
    with pytest.raises(IntegrityError, match="does not identify its row"):
        compact(table(row("U", 1, [None, "x", "y"], unchanged=["id"])), ["id"])


def test_keyless_tables_keep_every_change_in_order() -> None:
    t = table(
        row("I", 1, ["1", "a", "x"]),
        row("I", 2, ["1", "a", "x"]),
        row("U", 3, ["1", "b", None], unchanged=["big"], before=["1", "a", "x"]),
        row("I", 4, ["2", "c", "z"]),
        row("D", 5, [None, None, None], before=["1", "a", "x"]),
        key=[],
    )
    steps = keyless_steps(t)
    assert [type(s) for s in steps] == [RowInsert, RowChange, RowInsert, RowChange]
    assert steps[0].rows == [["1", "a", "x"], ["1", "a", "x"]]
    assert steps[1].values == ["1", "b", None] and steps[1].unchanged == {"big"}
    assert steps[3].values is None and steps[3].before == ["1", "a", "x"]
    assert [type(s) for s in keyless_steps(table(row("I", 1, ["1", "a", "x"]), row("T", 2, [None] * 3)))] == [Truncate]
    with pytest.raises(IntegrityError, match="without its old row"):
        keyless_steps(table(row("U", 1, ["1", "b", "c"]), key=[]))


# ------------------------------------------------------------------------------------- equivalence


def apply_one_by_one(state: dict[str, list[str | None]], rows: list[ChangeRow]) -> dict[str, list[str | None]]:
    """The reference: every change in seq order, unchanged columns keep the current value."""
    state = {k: list(v) for k, v in state.items()}
    for r in sorted(rows, key=lambda r: r.seq):
        if r.op == "T":
            state.clear()
        elif r.op == "D":
            state.pop((r.before or r.values)[0], None)
        elif r.op == "I":
            state[r.values[0]] = list(r.values)
        else:
            old_key = r.before[0] if r.before else r.values[0]
            old = state.pop(old_key, None)
            if old is None:
                if not r.unchanged:
                    state[r.values[0]] = list(r.values)
                continue
            state[r.values[0]] = [old[i] if c in r.unchanged else r.values[i] for i, c in enumerate(COLUMNS)]
    return state


def apply_steps(state: dict[str, list[str | None]], steps: list[Step]) -> dict[str, list[str | None]]:
    """What replay's SQL does with the steps: per segment the key changes (all at once, as one UPDATE
    does), then deletes, then whole rows, then partial updates."""
    state = {k: list(v) for k, v in state.items()}
    for step in steps:
        if isinstance(step, Truncate):
            state.clear()
        else:
            assert isinstance(step, Segment)
            touched = [m.old_key[0] for m in step.moves] + [m.values[0] for m in step.moves]
            assert len(set(touched)) == len(touched), "no key may be touched by two moves of a segment"
            moved = {m.old_key[0]: m for m in step.moves}
            olds = {k: state.pop(k, None) for k in moved}
            for k, m in moved.items():
                if olds[k] is not None:
                    state[m.values[0]] = [
                        olds[k][i] if c in m.unchanged else m.values[i] for i, c in enumerate(COLUMNS)
                    ]
                elif not m.unchanged:
                    state[m.values[0]] = list(m.values)
            entries = step.entries.items()
            for (k,), e in entries:
                if e.kind == "delete":
                    state.pop(k, None)
            for (k,), e in entries:
                if e.kind == "upsert":
                    state[k] = list(e.values)
            for (k,), e in entries:
                if e.kind == "update" and k in state:
                    state[k] = [state[k][i] if c in e.unchanged else e.values[i] for i, c in enumerate(COLUMNS)]
    return state


def random_changes(rng: random.Random, n: int) -> tuple[dict[str, list[str | None]], list[ChangeRow]]:
    """A change sequence the source could have produced from a random starting table."""
    keys = [str(i) for i in range(6)]
    start = {k: [k, f"n{k}", f"big{k}"] for k in keys if rng.random() < 0.5}
    live = {k: list(v) for k, v in start.items()}
    rows = []
    for seq in range(n):
        choice = rng.random()
        if choice < 0.03:
            rows.append(row("T", seq, [None] * 3))
            live.clear()
        elif not live or choice < 0.3:
            k = rng.choice([k for k in keys if k not in live] or keys)
            if k in live:
                continue
            live[k] = [k, f"i{seq}", f"b{seq}"]
            rows.append(row("I", seq, list(live[k])))
        elif choice < 0.45:
            k = rng.choice(sorted(live))
            rows.append(row("D", seq, [k, None, None]))
            del live[k]
        elif choice < 0.55:
            k = rng.choice(sorted(live))
            free = [x for x in keys if x not in live]
            if not free:
                continue
            new = rng.choice(free)
            old = live.pop(k)
            live[new] = [new, f"m{seq}", old[2]]
            rows.append(row("U", seq, [new, f"m{seq}", None], unchanged=["big"], before=[k, None, None]))
        else:
            k = rng.choice(sorted(live))
            if rng.random() < 0.5:
                live[k] = [k, f"u{seq}", live[k][2]]
                rows.append(row("U", seq, [k, f"u{seq}", None], unchanged=["big"]))
            else:
                live[k] = [k, f"u{seq}", f"B{seq}"]
                rows.append(row("U", seq, list(live[k])))
    rng.shuffle(rows)  # the file's order does not matter, seq does
    return start, rows


def test_compacted_steps_give_the_same_table_as_one_by_one() -> None:
    for seed in range(1000):
        rng = random.Random(seed)
        start, rows = random_changes(rng, rng.randint(1, 40))
        want = apply_one_by_one(start, rows)
        got = apply_steps(start, compact(table(*rows), ["id"]))
        assert got == want, f"seed {seed}"
