"""``settings.sqlite`` in the task file: parsed into the SQLite engine's TypeSettings, checked strictly (with a
"did you mean"), and part of the fingerprint of SQLite tasks only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError
from bulkmig.engines.sqlite import source
from bulkmig.engines.sqlite.types import TypeSettings


def make(tmp_path: Path, sqlite: Any = None, source_url: str | None = None) -> Task:
    doc: dict[str, Any] = {
        "source": source_url or f"sqlite:///{tmp_path / 'app.db'}",
        "target": "postgresql://admin@127.0.0.1:5433/shop",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://migration/shop",
    }
    if sqlite is not None:
        doc["settings"] = {"sqlite": sqlite}
    return Task.from_dict(doc, tmp_path, env={})


def problems(tmp_path: Path, sqlite: Any) -> str:
    with pytest.raises(ConfigError) as info:
        make(tmp_path, sqlite)
    return str(info.value)


def test_defaults_when_absent(tmp_path: Path) -> None:
    assert make(tmp_path).settings.sqlite == TypeSettings()
    assert make(tmp_path, {}).settings.sqlite == TypeSettings("auto", {})


def test_values_are_parsed(tmp_path: Path) -> None:
    task = make(
        tmp_path,
        {"numeric_dates": "unixepoch_ms", "column_types": {"orders.total": "TEXT", "Invoice.Note": " VARCHAR(20) "}},
    )
    assert task.settings.sqlite == TypeSettings("unixepoch_ms", {"orders.total": "TEXT", "Invoice.Note": "VARCHAR(20)"})
    assert task.settings.sqlite.declared("orders", "total", "NUMERIC") == "TEXT"
    assert task.settings.sqlite.declared("orders", "placed", "DATE") == "DATE"


@pytest.mark.parametrize("value", ["auto", "julianday", "unixepoch", "unixepoch_ms", "refuse"])
def test_every_numeric_dates_choice(tmp_path: Path, value: str) -> None:
    assert make(tmp_path, {"numeric_dates": value}).settings.sqlite.numeric_dates == value


def test_unknown_key_gets_did_you_mean(tmp_path: Path) -> None:
    text = problems(tmp_path, {"numeric_date": "auto", "column_type": {}})
    assert "settings.sqlite.numeric_date: unknown key (did you mean 'numeric_dates'?)" in text
    assert "settings.sqlite.column_type: unknown key (did you mean 'column_types'?)" in text


def test_bad_numeric_dates(tmp_path: Path) -> None:
    text = problems(tmp_path, {"numeric_dates": "unixepochms"})
    assert (
        "settings.sqlite.numeric_dates: 'unixepochms' is not one of auto, julianday, unixepoch, unixepoch_ms, refuse "
        "(did you mean 'unixepoch_ms'?)"
    ) in text


def test_bad_column_types(tmp_path: Path) -> None:
    assert "settings.sqlite.column_types: must be a mapping" in problems(tmp_path, {"column_types": ["a.b"]})
    text = problems(tmp_path, {"column_types": {"total": "TEXT", "t.c": "", "t.d": 5, ".x": "TEXT"}})
    assert "settings.sqlite.column_types: 'total' must name a column as table.column" in text
    assert "settings.sqlite.column_types: '.x' must name a column as table.column" in text
    assert "settings.sqlite.column_types.t.c: must be a declared type such as TEXT, not ''" in text
    assert "settings.sqlite.column_types.t.d: must be a declared type such as TEXT, not 5" in text


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    assert "settings.sqlite: must be a mapping" in problems(tmp_path, "julianday")


def test_fingerprint_of_sqlite_tasks_follows_the_settings(tmp_path: Path) -> None:
    base = make(tmp_path)
    assert base.fingerprint_inputs()["settings"]["sqlite"] == {"numeric_dates": "auto", "column_types": {}}
    assert make(tmp_path, {"numeric_dates": "julianday"}).fingerprint() != base.fingerprint()
    assert make(tmp_path, {"column_types": {"t.c": "TEXT"}}).fingerprint() != base.fingerprint()
    # Key order in the file does not matter.
    a = make(tmp_path, {"column_types": {"t.c": "TEXT", "t.d": "BLOB"}})
    b = make(tmp_path, {"column_types": {"t.d": "BLOB", "t.c": "TEXT"}})
    assert a.fingerprint() == b.fingerprint()


def test_postgres_and_mysql_fingerprints_ignore_the_section(tmp_path: Path) -> None:
    for url in ("postgresql://app@127.0.0.1:5432/shop", "mysql://app@127.0.0.1/shop"):
        plain = make(tmp_path, source_url=url)
        assert "sqlite" not in plain.fingerprint_inputs()["settings"]
        # A task file written before settings.sqlite existed keeps its fingerprint.
        changed = make(tmp_path, {"numeric_dates": "refuse", "column_types": {"t.c": "TEXT"}}, source_url=url)
        assert changed.fingerprint() == plain.fingerprint()


def test_source_reads_with_the_task_settings(tmp_path: Path) -> None:
    """The SQLite engine takes the task's settings: an override changes the column's type, numeric_dates
    how a number in a DATE column is read."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC, placed DATE)")
        conn.execute("INSERT INTO orders VALUES (1, 'n/a', 0)")
    conn.close()
    task = make(tmp_path, {"numeric_dates": "unixepoch", "column_types": {"orders.total": "TEXT"}})
    assert source.type_settings(task) is task.settings.sqlite
    catalog, _position = source.open_catalog(task)
    orders = catalog.table("orders")
    total = next(c for c in orders.columns if c.name == "total")
    placed = next(c for c in orders.columns if c.name == "placed")
    assert total.mapping.target_type == "text"
    assert any("settings.sqlite.column_types" in n.message for n in total.mapping.notes)
    assert placed.mapping.read_as is not None and "'unixepoch'" in placed.mapping.read_as
    assert "5373484" not in placed.mapping.read_as  # not the auto rule
