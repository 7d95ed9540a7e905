"""SQLite's NOCASE and RTRIM collations through conversion to a real PostgreSQL: a real SQLite file is
reflected and converted, pre-data applied, the file's rows inserted as the load would, post-data applied,
and then the target refuses what SQLite refused ('ABC' next to 'abc', 'x1 ' next to 'x1') — through unique
indexes on lower()/rtrim() — while the report says what changed for every such column, key and index.

The one place lower() is stricter than NOCASE (it folds 'É' and 'é', NOCASE does not) is shown too: the
index is refused on those rows, post-data goes on, and bulkmig.skipped_objects says so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bulkmig.config.task import Task
from bulkmig.convert import Conversion, convert, reflect_source
from bulkmig.core.catalog import ACTION, CHANGED
from bulkmig.demo.servers import PostgresServer
from bulkmig.engines.postgres.schema import apply_schema
from bulkmig.engines.postgres.target.skipped import skipped_objects
from bulkmig.engines.sqlite.reflect import reflect

SOURCE_SQL = """
CREATE TABLE account (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL COLLATE NOCASE UNIQUE,
    nick TEXT COLLATE NOCASE,
    code TEXT COLLATE RTRIM,
    name TEXT
);
CREATE INDEX account_nick ON account (nick);
CREATE UNIQUE INDEX account_code ON account (code);
CREATE UNIQUE INDEX account_name ON account (name COLLATE NOCASE);
CREATE TABLE country (code TEXT COLLATE NOCASE PRIMARY KEY, label TEXT);
CREATE TABLE city (id INTEGER PRIMARY KEY, country TEXT REFERENCES country (code));
CREATE TABLE word (w TEXT COLLATE NOCASE UNIQUE);
INSERT INTO account VALUES (1, 'a@x.org', 'bob', 'x1', 'Ann'), (2, 'B@x.org', 'Bob', 'x2', 'ben');
INSERT INTO country VALUES ('fr', 'France'), ('DE', 'Germany');
INSERT INTO city VALUES (1, 'fr'), (2, 'DE');
INSERT INTO word VALUES ('École'), ('école');
"""
TABLES = {"account": 5, "country": 2, "city": 2, "word": 1}  # table -> column count


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.executescript(SOURCE_SQL)
    conn.commit()
    # SQLite itself refuses these: the target must go on refusing them.
    for refused in (
        "INSERT INTO account (id, email) VALUES (3, 'A@X.ORG')",
        "INSERT INTO account (id, email, code) VALUES (3, 'c@x.org', 'x1  ')",
        "INSERT INTO account (id, email, name) VALUES (3, 'c@x.org', 'ANN')",
        "INSERT INTO country VALUES ('FR', 'again')",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(refused)
    conn.close()
    return path


def make_task(path: Path) -> Task:
    doc = {
        "source": f"sqlite:///{path}",
        "target": "postgresql://admin@127.0.0.1:1/unused",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/collations",
    }
    return Task.from_dict(doc, Path("."), env={})


@pytest.fixture
def pg(pg_target: PostgresServer, target_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_target.conninfo(target_db), autocommit=True) as conn:
        yield conn


def rows(conn: psycopg.Connection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def migrate(source: Path, pg_target: PostgresServer, target_db: str, pg: psycopg.Connection, tmp: Path) -> Conversion:
    """Convert, apply pre-data, copy every row as it is, apply post-data."""
    task = make_task(source)
    conv = convert(reflect_source(task), task)
    pre, post = tmp / "pre-data.sql", tmp / "post-data.sql"
    pre.write_text(conv.pre_data_sql)
    post.write_text(conv.post_data_sql)
    apply_schema(pg_target.env(), target_db, pre, "pre-data")
    lite = sqlite3.connect(source)
    with pg.cursor() as cur:
        for table, width in TABLES.items():
            marks = ", ".join(["%s"] * width)
            cur.executemany(f"INSERT INTO public.{table} VALUES ({marks})", lite.execute(f"SELECT * FROM {table}"))
    lite.close()
    apply_schema(pg_target.env(), target_db, post, "post-data")
    return conv


def notes(conv: Conversion, name: str, status: str = CHANGED) -> list[str]:
    o = next(o for o in conv.report["objects"] if o["name"] == name)
    return [n["message"] for n in o["notes"] if n["status"] == status]


def test_nocase_and_rtrim_keys_keep_refusing_on_postgresql(
    source_file: Path, pg_target: PostgresServer, target_db: str, pg: psycopg.Connection, tmp_path: Path
) -> None:
    conv = migrate(source_file, pg_target, target_db, pg, tmp_path)
    defs = dict(rows(pg, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert defs["account_email_key"] == (
        "CREATE UNIQUE INDEX account_email_key ON public.account USING btree (lower(email))"
    )
    assert defs["account_code"] == "CREATE UNIQUE INDEX account_code ON public.account USING btree (rtrim(code))"
    assert defs["account_name"] == "CREATE UNIQUE INDEX account_name ON public.account USING btree (lower(name))"
    assert defs["account_nick"] == "CREATE INDEX account_nick ON public.account USING btree (nick)"
    assert defs["country_pkey"] == "CREATE UNIQUE INDEX country_pkey ON public.country USING btree (code)"
    assert defs["country_code_lower_key"] == (
        "CREATE UNIQUE INDEX country_code_lower_key ON public.country USING btree (lower(code))"
    )
    # What SQLite refused, PostgreSQL refuses, each through the index that stands for the collation.
    for statement, index in (
        ("INSERT INTO public.account (id, email) VALUES (3, 'A@X.ORG')", "account_email_key"),
        ("INSERT INTO public.account (id, email, code) VALUES (3, 'c@x.org', 'x1  ')", "account_code"),
        ("INSERT INTO public.account (id, email, name) VALUES (3, 'c@x.org', 'ANN')", "account_name"),
        ("INSERT INTO public.country VALUES ('FR', 'again')", "country_code_lower_key"),
    ):
        with pytest.raises(psycopg.errors.UniqueViolation) as refused:
            pg.execute(statement)
        assert refused.value.diag.constraint_name == index
    # A plain index refuses nothing: SQLite held 'bob' and 'Bob' too.
    pg.execute("INSERT INTO public.account (id, email, nick) VALUES (4, 'd@x.org', 'BOB')")
    assert rows(pg, "SELECT nick FROM public.account WHERE lower(nick) = 'bob' ORDER BY id") == [
        ("bob",),
        ("Bob",),
        ("BOB",),
    ]
    # The primary key stays on the column, so the foreign key to it exists and holds.
    fks = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.city'::regclass"
    assert rows(pg, fks + " AND contype = 'f'") == [("FOREIGN KEY (country) REFERENCES country(code)",)]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        pg.execute("INSERT INTO public.city VALUES (3, 'de')")
    # lower() folds 'É' as NOCASE does not: SQLite held 'École' and 'école', PostgreSQL refuses the index,
    # post-data goes on without it, and the refusal is on record.
    [skipped] = skipped_objects(pg)
    assert (skipped.kind, skipped.schema, skipped.name) == ("index", "public", "word_w_key")
    assert "could not create unique index" in skipped.error
    assert rows(pg, 'SELECT w FROM public.word ORDER BY w COLLATE "C"') == [("École",), ("école",)]

    # The report says what changed, object by object.
    assert "collation NOCASE: SQLite compares ASCII letters case-insensitively" in notes(conv, "account.email")[-1]
    assert "collation RTRIM: SQLite ignores trailing spaces" in notes(conv, "account.code")[-1]
    assert notes(conv, "account.name") == []  # declared without a collation; its index says COLLATE NOCASE
    [email_key] = notes(conv, "account.account_email_key")
    assert email_key.startswith("unique index on lower(email) for SQLite's collation NOCASE")
    assert "folds all of Unicode" in email_key
    assert notes(conv, "account.account_code")[0].startswith("unique index on rtrim(code)")
    assert notes(conv, "account.account_nick") == [
        "nick compares with collation NOCASE in SQLite: comparisons become case-sensitive; use lower(nick) in "
        "queries or a citext/nondeterministic ICU collation"
    ]
    kept, folded = notes(conv, "country.PRIMARY")
    assert kept.startswith("kept on (code), exact for the rows there are") and "country_code_lower_key" in kept
    assert folded.startswith("unique index on lower(code)")
    assert conv.report["summary"]["needs_action"] == 0


def test_reflection_keeps_index_collations_and_finds_keys_matched_by_collation(tmp_path: Path) -> None:
    path = tmp_path / "reflect.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE t (a TEXT COLLATE nocase, b TEXT, c INTEGER COLLATE NOCASE, UNIQUE (b COLLATE NOCASE, c));
        CREATE INDEX t_a_binary ON t (a COLLATE BINARY, b COLLATE RTRIM, lower(b));
        CREATE TABLE parent (k TEXT COLLATE NOCASE PRIMARY KEY);
        CREATE TABLE kid (id INTEGER PRIMARY KEY, k TEXT REFERENCES parent (k));
        INSERT INTO parent VALUES ('abc'), ('x');
        INSERT INTO kid VALUES (1, 'abc'), (2, 'ABC'), (3, 'Abc'), (4, 'nope'), (5, NULL);
        """
    )
    catalog = reflect(conn)
    t = catalog.table("t")
    by_name = {i.name: i for i in t.indexes}
    assert by_name["t_b_c_key"].collations == ["NOCASE", "NOCASE"]
    assert by_name["t_a_binary"].collations == [None, "RTRIM", None]
    assert [c.collation for c in t.columns] == ["nocase", None, "NOCASE"]
    assert catalog.table("parent").indexes[0].collations == ["NOCASE"]
    kid_notes = catalog.table("kid").columns[1].mapping.notes
    [note] = [n for n in kid_notes if n.status == ACTION and "collation" in n.message]
    assert note.message == (
        "2 row(s) find their parent in parent only through its collation (k NOCASE), e.g. rowid 2: PostgreSQL "
        "compares exactly and will refuse foreign key kid_k_fkey; spell those values as their parent rows do"
    )
    # 'nope' has no parent at all: the foreign-key check reports it, once.
    assert sum("break foreign key" in n.message for n in kid_notes) == 1
    # A collation on an integer column is no note; on text it is a change.
    a = t.columns[0].mapping.notes
    assert [n.status for n in a if "NOCASE" in n.message] == [CHANGED]
    assert not any("collation" in n.message.lower() for n in t.columns[2].mapping.notes)
    conn.close()
