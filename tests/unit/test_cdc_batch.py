"""The change batch format: round trip, metadata names that never shadow user columns, write-once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bulkmig.cdc.batch import (
    Batch,
    ChangeRow,
    TableChanges,
    TableColumns,
    epoch_micros,
    list_batches,
    read_batch,
    write_batch,
    write_captured_batch,
)
from bulkmig.core.errors import IntegrityError, StoreError
from bulkmig.core.store import AlreadyExists, open_store

TS = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_batch(seq: int) -> Batch:
    users = TableChanges(
        "public",
        "users",
        ["id", "__op", "Op", "big"],
        ["integer", "text", "text", "text"],
        ["id"],
        "d",
        [
            ChangeRow("I", "0/16B3748", 0, 740, TS, ["1", "user op", "x", "v" * 10]),
            ChangeRow("U", "0/16B3800", 2, 741, TS, ["1", None, "y", None], unchanged=["big"]),
            ChangeRow("D", "0/16B3900", 3, 742, TS, ["1", None, None, None], before=["1", None, None, None]),
        ],
    )
    odd = TableChanges(
        "Odd Schema", 'T "q"/ü', ["k"], ["text"], [], "f", [ChangeRow("T", "0/16B3800", 1, 741, TS, [None])]
    )
    return Batch("pg-slot", seq, "0/16B3748", "0/16B3930", 3, [users, odd])


def test_round_trip_keeps_values_nulls_unchanged_and_names(tmp_path) -> None:  # noqa: ANN001
    store = open_store(str(tmp_path))
    doc = write_batch(store, "cdc/pg-slot", make_batch(7))
    assert doc["rows"] == 4 and [t["rows"] for t in doc["tables"]] == [3, 1]
    assert list_batches(store, "cdc/pg-slot") == [7]
    got = read_batch(store, "cdc/pg-slot", 7)
    want = make_batch(7)
    assert got.last_pos == "0/16B3930" and got.transactions == 3
    assert got.tables[0].columns == ["id", "__op", "Op", "big"]  # the user's "__op" is data, ours is renamed
    assert got.tables[0].rows == want.tables[0].rows
    assert got.tables[1].schema == "Odd Schema" and got.tables[1].table == 'T "q"/ü'
    assert got.tables[1].rows[0].op == "T" and got.tables[1].identity == "f"


def test_a_second_capture_on_one_stream_is_told_to_run_only_one(tmp_path) -> None:  # noqa: ANN001
    store = open_store(str(tmp_path))
    write_captured_batch(store, "cdc/s", make_batch(1))
    with pytest.raises(StoreError) as caught:
        write_captured_batch(store, "cdc/s", make_batch(1))
    assert "change batch 1 of stream" in str(caught.value) and "run only one per stream" in str(caught.value)


def test_a_written_batch_is_final_and_damage_is_refused(tmp_path) -> None:  # noqa: ANN001
    store = open_store(str(tmp_path))
    write_batch(store, "cdc/s", make_batch(1))
    with pytest.raises(AlreadyExists):
        write_batch(store, "cdc/s", make_batch(1))
    victim = next(p for p in tmp_path.rglob("*.parquet"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        read_batch(store, "cdc/s", 1)


def test_a_batch_without_its_manifest_does_not_exist(tmp_path) -> None:  # noqa: ANN001
    store = open_store(str(tmp_path))
    write_batch(store, "cdc/s", make_batch(1))
    write_batch(store, "cdc/s", make_batch(2))
    (tmp_path / "cdc/s/batch-000000000002/batch.json").unlink()
    assert list_batches(store, "cdc/s") == [1]


def test_columns_as_capture_builds_them_are_written_as_the_rows_would_be(tmp_path) -> None:  # noqa: ANN001
    """Capture builds TableColumns (no object per row); what it writes must read back as the same rows."""
    rows = make_batch(1).tables[0].rows
    columns = TableColumns(
        "public", "users", ["id", "__op", "Op", "big"], ["integer", "text", "text", "text"], ["id"], "d"
    )
    for r in rows:
        columns.ops.append(r.op)
        columns.pos.append(r.pos)
        columns.seq.append(r.seq)
        columns.xid.append(r.xid)
        columns.commit_us.append(epoch_micros(r.commit_ts))
        columns.values.append(tuple(r.values))
        columns.unchanged.append(tuple(r.unchanged))
        columns.before.append(tuple(r.before) if r.before is not None else None)
    assert columns.rows == rows and columns.row_count == 3
    store = open_store(str(tmp_path))
    write_batch(store, "cdc/a", Batch("pg-slot", 1, "0/16B3748", "0/16B3930", 3, [columns]))
    write_batch(store, "cdc/b", Batch("pg-slot", 1, "0/16B3748", "0/16B3930", 3, [make_batch(1).tables[0]]))
    a, b = read_batch(store, "cdc/a", 1).tables[0], read_batch(store, "cdc/b", 1).tables[0]
    assert (a.schema, a.table, a.columns, a.types, a.key, a.identity) == (
        b.schema,
        b.table,
        b.columns,
        b.types,
        b.key,
        b.identity,
    )
    assert a.arrow().equals(b.arrow())
    assert read_batch(store, "cdc/a", 1).tables[0].rows == rows
