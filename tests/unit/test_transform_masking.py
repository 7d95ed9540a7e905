"""DMS data masking: the DMS guide's own example, digits of every kind of text, NULLs, and no digit left."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pyarrow as pa
import pytest

from bulkmig.config.data_types import mask_character_problem
from bulkmig.transform.masking import DIGITS_MASK, DIGITS_RANDOMIZE, HASH_MASK, mask

VALUES = ["C6BGJ566669K", None, "", "no digits", "中文 2024-12-07 é9", "0000", "a\\1"]


def test_digits_mask_is_the_dms_example() -> None:
    # The DMS guide: "C6BGJ566669K" masked with '#' is written as "C#BGJ######K".
    assert mask(pa.array(["C6BGJ566669K"]), DIGITS_MASK, "#").to_pylist() == ["C#BGJ######K"]


def test_digits_mask_keeps_everything_but_digits() -> None:
    got = mask(pa.array(VALUES), DIGITS_MASK, "\\").to_pylist()
    assert got == [None if v is None else re.sub("[0-9]", lambda _: "\\", v) for v in VALUES]


def test_digits_randomize_changes_only_digits_and_is_random() -> None:
    values = [v for v in VALUES] * 50
    arr = pa.array(values).slice(3)  # an offset array too
    got = mask(arr, DIGITS_RANDOMIZE).to_pylist()
    for before, after in zip(values[3:], got, strict=True):
        if before is None:
            assert after is None
            continue
        assert len(after) == len(before)
        assert re.sub("[0-9]", "0", after) == re.sub("[0-9]", "0", before)
    joined = "".join(v for v in got if v)
    assert set(re.findall("[0-9]", joined)) == set("0123456789")  # ~1000 random digits hit every digit
    assert mask(pa.array(values), DIGITS_RANDOMIZE).to_pylist() != mask(pa.array(values), DIGITS_RANDOMIZE).to_pylist()


def test_hash_mask_is_sha256_hex() -> None:
    got = mask(pa.array(VALUES), HASH_MASK).to_pylist()
    assert got == [None if v is None else hashlib.sha256(v.encode()).hexdigest().upper() for v in VALUES]
    assert all(len(v) == 64 for v in got if v is not None)


@pytest.mark.parametrize("bad", [None, "", " ", "##", "é", "\t"])
def test_mask_character_must_be_one_printable_ascii(bad: str | None) -> None:
    assert mask_character_problem(bad) is not None


def test_mask_character_ok() -> None:
    assert mask_character_problem("#") is None and mask_character_problem("X") is None


def test_captured_changes_masked_in_values_and_before_images() -> None:
    from bulkmig.cdc.batch import TableColumns, as_arrow, meta_column, user_columns
    from bulkmig.transform.changes import mask_frame

    t = TableColumns("public", "acct", ["id", "card", "note"], ["integer", "text", "text"], ["id"], "f")
    rows = [
        ("I", ("1", "4111-22", "n1"), None),
        ("U", ("2", "5555-66", None), ("2", "4111-99", "old")),
        ("D", ("3", None, None), ("3", "7777-00", "gone")),
    ]
    for n, (op, values, before) in enumerate(rows):
        t.ops.append(op)
        t.pos.append("0/1")
        t.seq.append(n)
        t.xid.append(9)
        t.commit_us.append(0)
        t.values.append(values)
        t.unchanged.append(())
        t.before.append(before)
    frame = mask_frame(as_arrow(t), [(1, DIGITS_MASK, "#")])
    assert [c.to_pylist() for c in user_columns(frame)] == [
        ["1", "2", "3"],
        ["####-##", "####-##", None],
        ["n1", None, None],
    ]
    assert meta_column(frame, "before").to_pylist() == [None, ["2", "####-##", "old"], ["3", "####-##", "gone"]]
    assert meta_column(frame, "op").to_pylist() == ["I", "U", "D"]


def test_captured_changes_get_the_added_columns() -> None:
    from datetime import UTC, datetime

    from bulkmig.cdc.batch import Batch, TableColumns, epoch_micros, meta_column, user_columns
    from bulkmig.config.mappings import Mappings
    from bulkmig.transform.changes import transform_batch

    t = TableColumns("public", "acct", ["id", "big", "n"], ["integer", "text", "numeric(6,2)"], ["id"], "d")
    when = datetime(2026, 12, 7, 13, 1, 2, 340000, tzinfo=UTC)
    rows = [
        ("I", ("1", "aa", "2.50"), (), None),
        ("U", ("1", None, "3.25"), ("big",), ["1", None, None]),  # big unchanged (TOAST): not sent
        ("D", ("2", None, None), (), None),
    ]
    for n, (op, values, unchanged, before) in enumerate(rows):
        t.ops.append(op)
        t.pos.append("0/16B3748")
        t.seq.append(n + 7)
        t.xid.append(901)
        t.commit_us.append(epoch_micros(when))
        t.values.append(values)
        t.unchanged.append(unchanged)
        t.before.append(before)

    def add(n: int, name: str, expression: str, dtype: str) -> dict[str, Any]:
        return {
            "rule-type": "transformation", "rule-id": str(n), "rule-name": f"r{n}", "rule-action": "add-column",
            "rule-target": "column", "object-locator": {"schema-name": "public", "table-name": "acct"},
            "value": name, "expression": expression, "data-type": {"type": dtype},
        }  # fmt: skip

    select = {
        "rule-type": "selection", "rule-id": "1", "rule-name": "1", "rule-action": "include",
        "object-locator": {"schema-name": "%", "table-name": "%"},
    }  # fmt: skip
    mappings = Mappings.from_doc(
        {
            "rules": [
                select,
                add(
                    2,
                    "what",
                    "$AR_H_OPERATION || ' ' || $AR_H_STREAM_POSITION || ' ' || $AR_H_TRANSACTION_ID",
                    "string",
                ),
                add(3, "up", "upper($big)", "string"),
                add(4, "twice", "$n * 2", "real8"),
                add(5, "seq", "$AR_H_CHANGE_SEQ", "string"),
            ]
        }
    )
    out = transform_batch(Batch("s", 1, "0/1", "0/2", 1, [t]), mappings, {}).tables[0]
    frame = out.arrow()
    assert out.columns == ["id", "big", "n", "what", "up", "twice", "seq"]
    cols = [c.to_pylist() for c in user_columns(frame)]
    assert cols[3] == ["INSERT 0/16B3748 901", "UPDATE 0/16B3748 901", None]  # a delete carries NULL
    assert cols[4] == ["AA", None, None]
    assert cols[5] == ["5", "6.5", None]
    assert cols[6][0] == "20261207130102" + "34" + "7".rjust(19, "0") and len(cols[6][0]) == 35
    assert meta_column(frame, "unchanged").to_pylist() == [[], ["big", "up"], []]  # up keeps the target's value
    assert meta_column(frame, "before").to_pylist() == [None, ["1", None, None, None, None, None, None], None]
