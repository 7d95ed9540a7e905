"""SQLite as a source: reflection and reads of the real chinook file (every value of every table compared
with what sqlite3 itself returns), and a handmade file full of values that do not fit their declared
types: the catalog reports each with a count and an example row, and the reader refuses it by name."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from bulkmig.config.mappings import Mappings
from bulkmig.config.task import Endpoint
from bulkmig.core.catalog import ACTION, CHANGED, Catalog, CatalogTable
from bulkmig.core.errors import ConnectError, SourceError
from bulkmig.core.model import Table
from bulkmig.engines.postgres.reader import arrow_schema
from bulkmig.engines.sqlite import source
from bulkmig.engines.sqlite.types import TypeSettings

CHINOOK_ROWS = {
    "Album": 347,
    "Artist": 275,
    "Customer": 59,
    "Employee": 8,
    "Genre": 25,
    "Invoice": 412,
    "InvoiceLine": 2240,
    "MediaType": 5,
    "Playlist": 18,
    "PlaylistTrack": 8715,
    "Track": 3503,
}


def _task(path: Path, settings: TypeSettings | None = None, **more: Any) -> SimpleNamespace:
    options = {"max_part_bytes": 256 * 1024 * 1024, "workers": 2, "sqlite": settings, **more}
    return SimpleNamespace(
        source=Endpoint.parse(f"sqlite:///{path}", "source"),
        settings=SimpleNamespace(**options),
        mappings=Mappings.default(),
    )


def _planned(catalog: Catalog) -> list[Table]:
    """The tables as a plan holds them: conversion sets each column's target type from its mapping."""
    for ct in catalog.tables:
        for col, cc in zip(ct.table.columns, ct.columns, strict=True):
            col.target_type = cc.mapping.target_type
    return [ct.table for ct in catalog.tables]


def _read(task: SimpleNamespace, table: Table, workers: int = 1) -> pa.Table:
    with source.open_snapshot(task.source, workers) as snap:
        batches = [b for part in table.partitions for b in snap.readers[part.index % workers].batches(table, part)]
    return pa.Table.from_batches(batches, schema=arrow_schema(table))


def _notes(ct: CatalogTable, column: str, status: str) -> list[str]:
    col = next(c for c in ct.columns if c.name == column)
    return [n.message for n in col.mapping.notes if n.status == status]


# ------------------------------------------------------------------------------------------- chinook


@pytest.fixture
def chinook(datasets: Path, tmp_path: Path) -> Path:
    path = tmp_path / "Chinook_Sqlite.sqlite"
    shutil.copy(datasets / "chinook" / "Chinook_Sqlite.sqlite", path)
    path.chmod(0o644)
    return path


def test_chinook_catalog(chinook: Path) -> None:
    catalog, position = source.open_catalog(_task(chinook))
    assert (catalog.dialect, catalog.schema) == ("sqlite", "main")
    assert position["lsn"] is None and position["exported_by"] == source.EXPORTED_BY
    assert {t.table.name: t.table.estimated_rows for t in catalog.tables} == CHINOOK_ROWS
    assert all(t.table.estimated_bytes > 0 for t in catalog.tables)
    # Nothing in chinook needs action: every value fits its column's target type.
    assert [n for t in catalog.tables for c in t.columns for n in c.mapping.notes if n.status == ACTION] == []

    track = catalog.table("Track")
    assert track.table.primary_key == ["TrackId"]
    tid = track.columns[0]
    assert tid.auto_increment and not tid.nullable  # INTEGER PRIMARY KEY is the rowid: an identity
    assert track.auto_increment == 3504
    by_name = {c.name: c for c in track.columns}
    assert by_name["UnitPrice"].mapping.target_type == "numeric(10,2)"
    assert by_name["Name"].mapping.target_type == "varchar(200)"
    assert by_name["Composer"].nullable and not by_name["Name"].nullable
    assert {(fk.columns[0], fk.ref_table, fk.ref_columns[0]) for fk in track.foreign_keys} == {
        ("AlbumId", "Album", "AlbumId"),
        ("GenreId", "Genre", "GenreId"),
        ("MediaTypeId", "MediaType", "MediaTypeId"),
    }
    assert [fk.columns for fk in track.foreign_keys] == [["AlbumId"], ["GenreId"], ["MediaTypeId"]]  # as declared
    assert {i.name: (i.columns, i.primary, i.unique) for i in track.indexes} == {
        "PK_Track": (["TrackId"], True, True),
        "IFK_TrackAlbumId": (["AlbumId"], False, False),
        "IFK_TrackGenreId": (["GenreId"], False, False),
        "IFK_TrackMediaTypeId": (["MediaTypeId"], False, False),
    }
    employee = catalog.table("Employee")
    assert [fk.self_referencing for fk in employee.foreign_keys] == [True]
    assert {c.name: c.mapping.target_type for c in employee.columns}["HireDate"] == "timestamp"
    pt = catalog.table("PlaylistTrack")
    assert pt.table.primary_key == ["PlaylistId", "TrackId"] and pt.auto_increment is None
    assert [i.name for i in pt.indexes if i.primary] == ["PK_PlaylistTrack"]  # the autoindex, named as declared
    assert sum(len(t.foreign_keys) for t in catalog.tables) == 11
    assert (catalog.views, catalog.triggers, catalog.routines) == ([], [], [])


def _expected(declared: str, value: Any) -> Any:
    """What the target must hold, from sqlite3's raw value and the declared type, independently of the
    code under test."""
    if value is None:
        return None
    if declared == "NUMERIC(10,2)":
        assert isinstance(value, float)
        return Decimal(repr(value)).quantize(Decimal("0.01"))
    if declared == "DATETIME":
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return value


def test_chinook_every_value(chinook: Path) -> None:
    task = _task(chinook, max_part_bytes=20_000)  # small parts: the big tables are read as rowid ranges
    catalog, _ = source.open_catalog(task)
    tables = _planned(catalog)
    source.partition_tables(task, tables)
    assert len(catalog.table("Track").table.partitions) > 1
    raw = sqlite3.connect(chinook)
    for table in tables:
        got = _read(task, table, workers=2)
        assert got.schema == arrow_schema(table)
        declared = {c.name: c.source_type for c in table.columns}
        names = [c.name for c in table.columns]
        rows = raw.execute(f"SELECT {', '.join(f'[{n}]' for n in names)} FROM [{table.name}] ORDER BY rowid")
        expected = [{n: _expected(declared[n], v) for n, v in zip(names, row, strict=True)} for row in rows]
        assert got.to_pylist() == expected, table.name
    raw.close()


def test_chinook_autoincrement_next_values(datasets: Path, tmp_path: Path) -> None:
    path = tmp_path / "auto.sqlite"
    shutil.copy(datasets / "chinook" / "Chinook_Sqlite_AutoIncrementPKs.sqlite", path)
    with sqlite3.connect(path) as conn:  # AUTOINCREMENT never reuses a key: sqlite_sequence remembers
        conn.execute("DELETE FROM Genre WHERE GenreId = 25")
    catalog, _ = source.open_catalog(_task(path))
    assert catalog.table("Genre").auto_increment == 26
    assert catalog.table("Genre").columns[0].auto_increment
    assert catalog.table("PlaylistTrack").auto_increment is None
    assert {t.table.name for t in catalog.tables} == set(CHINOOK_ROWS)  # sqlite_sequence is not a table


# --------------------------------------------------------------------------------------- broken file

BROKEN_SQL = """
CREATE TABLE item (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    qty INTEGER,
    born DATE,
    price NUMERIC(5,2) CHECK (price >= 0),
    code VARCHAR(3),
    flag BOOLEAN,
    stuff,
    seen DATETIME DEFAULT CURRENT_TIMESTAMP,
    label TEXT COLLATE NOCASE,
    total REAL GENERATED ALWAYS AS (qty * price) VIRTUAL,
    CONSTRAINT ck_code CHECK (length(code) > 0)
);
INSERT INTO item (id, qty, born, price, code, flag, stuff, seen, label) VALUES
    (1, 5, '2024-01-31', 1.5, 'abc', 1, 'x', '2024-01-01 10:00:00', 'a'),
    (2, 'abc', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 2.5, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, 7, '2024-13-45', NULL, NULL, NULL, NULL, NULL, NULL),
    (5, 8, 2460000.5, NULL, NULL, NULL, NULL, 1704067200, NULL),
    (6, 9, NULL, 1.234, NULL, NULL, NULL, NULL, NULL),
    (7, 10, NULL, NULL, 'abcd', 2, x'00ff', NULL, NULL),
    (8, 'def', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE UNIQUE INDEX ix_label ON item (lower(label)) WHERE label IS NOT NULL;
CREATE INDEX ix_qty ON item (qty DESC);
CREATE TABLE pair (a INTEGER, b TEXT, CONSTRAINT uq_pair UNIQUE (b), PRIMARY KEY (a, b));
INSERT INTO pair VALUES (1, NULL), (2, 'x');
CREATE TABLE child (id INTEGER PRIMARY KEY, item_id INTEGER CONSTRAINT fk_item REFERENCES item (id));
INSERT INTO child VALUES (1, 1), (2, 999);
CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
INSERT INTO kv VALUES ('a', 'zz'), ('b', 2);
CREATE TABLE odd (rowid TEXT, v INTEGER);
INSERT INTO odd VALUES ('x', 1), ('y', 'bad');
CREATE TABLE Parent (ID INTEGER PRIMARY KEY);
CREATE TABLE kid (pid INTEGER REFERENCES parent (id));
CREATE VIRTUAL TABLE docs USING fts5(title, body);
INSERT INTO docs VALUES ('hello', 'world');
CREATE VIEW v_item AS SELECT id, qty FROM item WHERE qty > 0;
CREATE TRIGGER trg AFTER INSERT ON item BEGIN UPDATE item SET label = 'new' WHERE id = new.id; END;
"""


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.db"
    conn = sqlite3.connect(path)
    conn.executescript(BROKEN_SQL)
    conn.close()
    return path


def test_broken_values_are_reported(broken: Path) -> None:
    catalog, _ = source.open_catalog(_task(broken))
    item = catalog.table("item")
    assert _notes(item, "qty", ACTION) == [
        "3 value(s) do not fit bigint, e.g. rowid 2: text 'abc' is not an integer; the load refuses them: fix them, "
        "or read the column as another type (settings.sqlite.column_types: {'item.qty': 'TEXT'})"
    ]
    [born] = _notes(item, "born", ACTION)
    assert born.startswith("1 value(s) do not fit date, e.g. rowid 4: text '2024-13-45' is not a valid date")
    [numeric_date] = _notes(item, "born", CHANGED)[-1:]
    assert (
        "1 date(s) stored as numbers" in numeric_date and "rowid 5: 2460000.5 → 2023-02-25 00:00:00.000" in numeric_date
    )
    assert "rowid 5: 1704067200 → 2024-01-01 00:00:00.000" in _notes(item, "seen", CHANGED)[-1]
    assert "rowid 6: real 1.234 has more than 2 decimal places" in _notes(item, "price", ACTION)[0]
    assert "rowid 7: text 'abcd' has 4 characters, more than varchar(3)" in _notes(item, "code", ACTION)[0]
    assert "rowid 7: integer 2 is not a boolean" in _notes(item, "flag", ACTION)[0]
    stuff = next(c for c in item.columns if c.name == "stuff")
    assert stuff.mapping.target_type == "text"  # untyped, text and a blob: text, the blob reported
    assert "rowid 7: blob x'00ff' (2 bytes) is not text" in _notes(item, "stuff", ACTION)[0]
    assert _notes(item, "label", ACTION) == [] and any("NOCASE" in n for n in _notes(item, "label", CHANGED))
    total = next(c for c in item.columns if c.name == "total")
    assert (total.generated, total.generation_expression) == ("VIRTUAL", "qty * price")
    assert next(c for c in item.columns if c.name == "seen").default == "CURRENT_TIMESTAMP"
    assert [(c.name, c.clause) for c in item.checks] == [
        ("item_price_check", "price >= 0"),
        ("ck_code", "length(code) > 0"),
    ]
    assert item.auto_increment == 9
    indexes = {i.name: i for i in item.indexes}
    assert (indexes["ix_label"].columns, indexes["ix_label"].expressions, indexes["ix_label"].where) == (
        ["lower(label)"],
        [True],
        "label IS NOT NULL",
    )
    assert indexes["ix_label"].unique and indexes["ix_qty"].descending == [True] and indexes["ix_qty"].where is None

    pair = catalog.table("pair")
    assert "1 NULL(s) in primary-key column 'a'" not in " ".join(_notes(pair, "a", ACTION))
    assert _notes(pair, "b", ACTION)[0].startswith("1 NULL(s) in primary-key column 'b'")
    assert {i.name: (i.columns, i.unique, i.primary) for i in pair.indexes} == {
        "PRIMARY": (["a", "b"], True, True),
        "uq_pair": (["b"], True, False),
    }
    child = catalog.table("child")
    assert [fk.name for fk in child.foreign_keys] == ["fk_item"]
    assert "1 row(s) break foreign key fk_item (item_id → item), e.g. rowid 2" in _notes(child, "item_id", ACTION)[0]
    kv = catalog.table("kv")
    assert "e.g. key (k) = 'a': text 'zz' is not an integer" in _notes(kv, "v", ACTION)[0]
    odd = catalog.table("odd")
    assert "e.g. rowid 2: text 'bad'" in _notes(odd, "v", ACTION)[0]  # the rowid under another name
    [fk] = catalog.table("kid").foreign_keys  # names as the tables declare them, whatever the case written
    assert (fk.ref_table, fk.ref_columns, fk.name) == ("Parent", ["ID"], "kid_pid_fkey")
    docs = catalog.table("docs")  # FTS5: copied as a plain table, its shadow tables left out
    assert docs.engine == "virtual table (fts5)" and "virtual table (USING fts5)" in _notes(docs, "title", ACTION)[0]
    assert not [t.table.name for t in catalog.tables if t.table.name.startswith("docs_")]
    assert [(v.name, v.definition) for v in catalog.views] == [("v_item", "SELECT id, qty FROM item WHERE qty > 0")]
    [trg] = catalog.triggers
    assert (trg.name, trg.table, trg.details["timing"], trg.details["event"]) == ("trg", "item", "AFTER", "INSERT")
    assert trg.definition.startswith("BEGIN UPDATE item") and trg.create_sql.startswith("CREATE TRIGGER")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("item", "main.item part 0: rowid 2, column 'qty': text 'abc' is not an integer"),
        ("kv", "main.kv part 0: key (k) = 'a', column 'v': text 'zz' is not an integer"),
        ("odd", "main.odd part 0: rowid 2, column 'v': text 'bad' is not an integer"),
    ],
)
def test_reader_refuses_misfits_by_name(broken: Path, table: str, message: str) -> None:
    task = _task(broken)
    catalog, _ = source.open_catalog(task)
    tables = {t.name: t for t in _planned(catalog)}
    source.partition_tables(task, list(tables.values()))
    with pytest.raises(SourceError) as exc:
        _read(task, tables[table])
    assert exc.value.message == message
    assert f"{{'{table}." in exc.value.hint and "settings.sqlite.column_types" in exc.value.hint


def test_column_types_setting_is_the_fix(broken: Path) -> None:
    settings = TypeSettings(column_types={"kv.v": "TEXT", "item.born": "TEXT"})
    task = _task(broken, settings)
    catalog, _ = source.open_catalog(task)
    kv = catalog.table("kv")
    assert _notes(kv, "v", ACTION) == []
    assert "read as 'TEXT' instead of the declared 'INTEGER'" in _notes(kv, "v", CHANGED)[0]
    tables = {t.name: t for t in _planned(catalog)}
    source.partition_tables(task, list(tables.values()))
    assert _read(task, tables["kv"]).to_pylist() == [{"k": "a", "v": "zz"}, {"k": "b", "v": "2"}]
    assert _notes(catalog.table("item"), "born", ACTION) == []
    assert _read(task, tables["docs"]).to_pylist() == [{"title": "hello", "body": "world"}]


def test_numeric_dates_refuse(broken: Path) -> None:
    catalog, _ = source.open_catalog(_task(broken, TypeSettings(numeric_dates="refuse")))
    notes = _notes(catalog.table("item"), "seen", ACTION)
    assert "rowid 5: integer 1704067200 is a date stored as a number (numeric_dates: refuse)" in notes[0]


def test_reader_converts_every_kind(tmp_path: Path) -> None:
    path = tmp_path / "kinds.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE k (id INTEGER PRIMARY KEY, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, t TIME, j JSON, u UUID,
                        b BOOLEAN, n NUMERIC, r REAL, bl BLOB, raw);
        INSERT INTO k VALUES (1, '2024-02-29', 1704067200, '2024-01-01 10:00:00+02:00', '07:05', '{"a": 1}',
                              'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1, 1.5e300, 2, x'01', 12);
        INSERT INTO k VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, 0, 7, NULL, NULL, 'x');
        """
    )
    conn.close()
    task = _task(path)
    catalog, _ = source.open_catalog(task)
    [table] = _planned(catalog)
    source.partition_tables(task, [table])
    got = _read(task, table).to_pylist()
    assert got[0] == {
        "id": 1,
        "d": datetime(2024, 2, 29).date(),
        "ts": datetime(2024, 1, 1),
        "tz": datetime(2024, 1, 1, 8, tzinfo=UTC),  # the offset applied: the same instant in UTC
        "t": "07:05:00",
        "j": '{"a": 1}',
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "b": True,
        "n": "1.5e+300",  # a real in a NUMERIC column: its shortest exact decimal
        "r": 2.0,
        "bl": b"\x01",
        "raw": "12",
    }
    assert got[0]["tz"].isoformat() == "2024-01-01T08:00:00+00:00"
    assert (got[1]["b"], got[1]["n"], got[1]["raw"]) == (False, "7", "x")


def test_reader_refuses_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bytes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'ok'), (2, CAST(x'ff41' AS TEXT))")
    conn.commit()
    conn.close()
    task = _task(path)
    catalog, _ = source.open_catalog(task)
    [table] = _planned(catalog)
    source.partition_tables(task, [table])
    with pytest.raises(
        SourceError, match=r"main\.t part 0: rowid 2, column 's': text bytes x'ff41' .* not valid UTF-8"
    ):
        _read(task, table)


def test_readers_share_one_state_of_a_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    writer.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
    writer.commit()
    task = _task(path)
    catalog, _ = source.open_catalog(task)
    [table] = _planned(catalog)
    source.partition_tables(task, [table])
    with source.open_snapshot(task.source, 2) as snap:
        writer.execute("INSERT INTO t (v) VALUES ('c')")  # committed after the readers started
        writer.commit()
        for reader in snap.readers:
            rows = [r for b in reader.batches(table, table.partitions[0]) for r in b.to_pylist()]
            assert rows == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
        assert snap.position["file_version"] == snap.readers[0].source_position()["file_version"]
    with source.open_snapshot(task.source, 1) as later:
        assert later.snapshot_id != snap.snapshot_id
        assert sum(b.num_rows for b in later.readers[0].batches(table, table.partitions[0])) == 3
    writer.close()


def test_missing_file_and_changed_columns(tmp_path: Path, broken: Path) -> None:
    with pytest.raises(ConnectError, match="does not exist"):
        source.open_catalog(_task(tmp_path / "nope.db"))
    task = _task(broken)
    catalog, _ = source.open_catalog(task)
    tables = _planned(catalog)
    with sqlite3.connect(broken) as conn:
        conn.execute("ALTER TABLE kv RENAME COLUMN v TO w")
    with source.open_snapshot(task.source, 1) as snap, pytest.raises(SourceError, match=r"columns of main\.kv changed"):
        snap.check_columns(tables)
