"""Schema conversion end to end: real MariaDB catalogs (sakila, chinook, an edge-case database) converted
and applied — pre-data, then post-data — to a real empty PostgreSQL database, then checked there.

Only the schema moves here (no rows): the load is another stage.  What is checked is what a user relies
on: every table and column exists with the mapped type, keys and foreign keys exist, identities continue
past the source's AUTO_INCREMENT, ON UPDATE triggers fire, translated views answer, and the report says
what was not converted.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pymysql
import pytest
import yaml

from bulkmig.config.task import Task
from bulkmig.convert import Conversion, convert, reflect_source
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, Catalog
from bulkmig.demo.servers import MariaDBServer, PostgresServer, load_dataset
from bulkmig.engines.mysql import reflect
from bulkmig.engines.postgres.schema import apply_schema
from bulkmig.engines.postgres.target.skipped import skipped_objects

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "manifests" / "assessment.schema.json"
SAKILA_TRANSLATED_VIEWS = [
    "customer_list",
    "film_list",
    "nicer_but_slower_film_list",
    "sales_by_film_category",
    "staff_list",
]


def make_task(source_url: str, settings: dict[str, Any] | None = None) -> Task:
    doc = {
        "source": source_url,
        "target": "postgresql://admin@127.0.0.1:1/unused",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/convert",
        "settings": settings or {},
    }
    return Task.from_dict(doc, Path("."), env={})


def reflect_db(mariadb: MariaDBServer, db: str) -> Catalog:
    with pymysql.connect(**mariadb.connect_args()) as conn:
        return reflect.reflect(conn, db)


def apply(conv: Conversion, pg: PostgresServer, dbname: str, tmp_path: Path) -> None:
    pre, post = tmp_path / "pre-data.sql", tmp_path / "post-data.sql"
    pre.write_text(conv.pre_data_sql)
    post.write_text(conv.post_data_sql)
    apply_schema(pg.env(), dbname, pre, "pre-data")
    apply_schema(pg.env(), dbname, post, "post-data")


@pytest.fixture
def pg(pg_target: PostgresServer, target_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_target.conninfo(target_db), autocommit=True) as conn:
        yield conn


def rows(conn: psycopg.Connection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def columns_of(conn: psycopg.Connection, schema: str) -> dict[tuple[str, str], str]:
    """(table, column) -> format_type of every user column in ``schema``."""
    found = rows(
        conn,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        schema,
    )
    return {(t, c): typ for t, c, typ in found}


_PG_SPELLING = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
    "varchar": "character varying",
    "char": "character",
    "bit": "bit",
}


def pg_type(target_type: str) -> str:
    """How format_type spells a conversion's target type (``timestamptz(0)`` → ``timestamp(0) with time zone``)."""
    name, _, mod = target_type.partition("(")
    mod = f"({mod}" if mod else ""
    if name in ("timestamptz", "timestamp", "time"):
        zone = " with time zone" if name == "timestamptz" else " without time zone"
        return f"{'timestamp' if name != 'time' else 'time'}{mod}{zone}"
    if name == "numeric" and "," not in mod:
        return f"numeric{mod[:-1]},0)"
    if name in _PG_SPELLING:
        return f"{_PG_SPELLING[name]}{mod}"
    return target_type.replace('"', "")


def check_tables(conn: psycopg.Connection, conv: Conversion) -> None:
    """Every converted table and column exists on the target with the type conversion announced."""
    for table in conv.tables:
        schema, name = table.target_qualified
        found = columns_of(conn, schema)
        for col in table.columns:
            assert col.target_type is not None
            want = pg_type(col.target_type)  # enums come schema-qualified: the schema is not on the search path
            assert found.get((name, col.target)) == want, (name, col.target, col.target_type)
        assert {c for t, c in found if t == name} == {c.target for c in table.columns}


def foreign_keys(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    return dict(
        rows(
            conn,
            "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s AND c.contype = 'f'",
            schema,
        )
    )


# ------------------------------------------------------------------------------------------------ sakila


@pytest.fixture(scope="module")
def sakila(mariadb: MariaDBServer, datasets: Path) -> Catalog:
    load_dataset(mariadb, "sakila-mysql", "sakila")
    return reflect_db(mariadb, "sakila")


def test_sakila_applies_to_postgresql(
    sakila: Catalog,
    mariadb: MariaDBServer,
    pg_target: PostgresServer,
    target_db: str,
    pg: psycopg.Connection,
    tmp_path: Path,
) -> None:
    conv = convert(sakila, make_task(mariadb.url("sakila")))
    apply(conv, pg_target, target_db, tmp_path)
    assert len(conv.tables) == 16
    check_tables(pg, conv)
    assert rows(pg, "SELECT enum_range(NULL::sakila.film_rating)::text") == [("{G,PG,PG-13,R,NC-17}",)]
    fks = foreign_keys(pg, "sakila")
    assert len(fks) == 22
    assert fks["fk_payment_rental"] == (
        "FOREIGN KEY (rental_id) REFERENCES sakila.rental(rental_id) ON UPDATE CASCADE ON DELETE SET NULL"
    )
    views = [r[0] for r in rows(pg, "SELECT viewname FROM pg_views WHERE schemaname = 'sakila' ORDER BY 1")]
    assert views == SAKILA_TRANSLATED_VIEWS
    for view in views:
        assert rows(pg, f"SELECT count(*) FROM sakila.{view}") == [(0,)]
    assert rows(pg, "SELECT * FROM bulkmig.skipped_objects") == []  # PostgreSQL refused no translated view
    # Identity continues past the source's AUTO_INCREMENT (201 for actor); ON UPDATE sets last_update.
    (actor_id, stamp) = rows(
        pg,
        "INSERT INTO sakila.actor (first_name, last_name, last_update) VALUES ('A', 'B', '2001-01-01') "
        "RETURNING actor_id, last_update",
    )[0]
    assert actor_id == sakila.table("actor").auto_increment == 201
    assert stamp.year == 2001
    pg.execute("UPDATE sakila.actor SET first_name = 'C' WHERE actor_id = 201")
    assert rows(pg, "SELECT last_update > now() - interval '1 minute' FROM sakila.actor")[0] == (True,)
    pg.execute("UPDATE sakila.actor SET first_name = 'D', last_update = '2002-02-02' WHERE actor_id = 201")
    assert rows(pg, "SELECT extract(year FROM last_update)::int FROM sakila.actor") == [(2002,)]
    # The unique key and the defaults came along.
    assert rows(pg, "SELECT count(*) FROM pg_constraint WHERE conname = 'rental_date' AND contype = 'u'") == [(1,)]
    film_defaults = dict(
        rows(
            pg,
            "SELECT column_name, column_default FROM information_schema.columns WHERE table_schema = 'sakila' "
            "AND table_name = 'film' AND column_default IS NOT NULL",
        )
    )
    assert film_defaults["rental_rate"] == "4.99" and film_defaults["rating"] == "'G'::sakila.film_rating"


def test_sakila_report(sakila: Catalog, mariadb: MariaDBServer) -> None:
    conv = convert(sakila, make_task(mariadb.url("sakila")))
    jsonschema.validate(json.loads(json.dumps(conv.report)), json.loads(SCHEMA_FILE.read_text()))
    objs = {(o["kind"], o["name"]): o for o in conv.report["objects"]}
    for trigger in ("customer_create_date", "del_film", "ins_film", "payment_date", "rental_date", "upd_film"):
        o = objs[("trigger", trigger)]
        assert o["status"] == ACTION and "TRIGGER" in o["source_sql"] and o["suggestion"]
    routines = [k for k in objs if k[0] in ("procedure", "function")]
    assert len(routines) == 6 and all(objs[k]["status"] == ACTION for k in routines)
    fulltext = objs[("index", "film_text.idx_title_description")]
    assert fulltext["status"] == ACTION and "USING gin (to_tsvector" in fulltext["suggestion"]
    assert objs[("index", "address.idx_location")]["status"] == ACTION  # SPATIAL without PostGIS
    for view in ("actor_info", "sales_by_store"):  # PostgreSQL would refuse sqlglot's translation
        assert objs[("view", view)]["status"] == ACTION and "CREATE" in objs[("view", view)]["source_sql"]
    for view in SAKILA_TRANSLATED_VIEWS:
        assert objs[("view", view)]["status"] == CHANGED
    s = conv.report["summary"]
    assert s["needs_action"] == 6 + 6 + 2 + 2
    assert s["by_kind"]["foreign_key"] == {"converted": 22, "converted with changes": 0, "needs action": 0, "total": 22}
    md = conv.render_markdown()
    assert md.index("**16 objects need action**") < md.index("## Needs action") < md.index("## Tables")
    # A table heading says what its columns and keys need, not only the table's own status.
    assert "### `film` → `sakila.film` — ✅ converted (columns and keys: 🟡 " in md
    assert "### `film_text` → `sakila.film_text` — ✅ converted (columns and keys: ❌ 1 need action)" in md


# ----------------------------------------------------------------------------------------------- chinook


def test_chinook_folds_names_and_keeps_the_self_reference(
    mariadb: MariaDBServer,
    datasets: Path,
    pg_target: PostgresServer,
    target_db: str,
    pg: psycopg.Connection,
    tmp_path: Path,
) -> None:
    load_dataset(mariadb, "chinook-mysql", "Chinook")
    cat = reflect_db(mariadb, "Chinook")
    conv = convert(cat, make_task(mariadb.url("Chinook")))
    apply(conv, pg_target, target_db, tmp_path)
    check_tables(pg, conv)
    names = {t.name: t.target_qualified for t in conv.tables}
    assert names["InvoiceLine"] == ("chinook", "invoiceline") and len(names) == 11
    fks = foreign_keys(pg, "chinook")
    assert len(fks) == 11
    assert fks["fk_employeereportsto"] == "FOREIGN KEY (reportsto) REFERENCES chinook.employee(employeeid)"
    assert conv.report["summary"]["needs_action"] == 0
    # Preserve keeps MySQL's spelling.
    kept = convert(cat, make_task(mariadb.url("Chinook"), {"identifiers": "preserve"}))
    assert {t.target_qualified for t in kept.tables} >= {("Chinook", "InvoiceLine")}


# ------------------------------------------------------------------------------------------- edge cases

EDGE_DDL = r"""
CREATE TABLE Parent (
  Id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  Boss bigint unsigned NULL,
  Doc json,
  Flags bit(5) NOT NULL DEFAULT b'00101',
  Price decimal(12,4) NOT NULL DEFAULT 0,
  Label varchar(20) DEFAULT 'a''b\\c',
  Born date DEFAULT '2000-01-01',
  Kind enum('x','y z','it''s') NOT NULL DEFAULT 'y z',
  Perms set('r','w','x') DEFAULT 'r,w',
  Yes tinyint(1) NOT NULL DEFAULT 1,
  Note text,
  Changed datetime(3) NOT NULL DEFAULT current_timestamp(3) ON UPDATE current_timestamp(3),
  Total decimal(13,4) AS (Price * 2) STORED,
  Half decimal(13,4) AS (Price / 2) VIRTUAL,
  CONSTRAINT price_positive CHECK (Price >= 0),
  CONSTRAINT parent_boss FOREIGN KEY (Boss) REFERENCES Parent (Id) ON DELETE SET NULL,
  UNIQUE KEY label_prefix (Label(5)),
  KEY price_desc (Price DESC),
  KEY note_prefix (Note(10)),
  FULLTEXT KEY note_ft (Note)
) ENGINE=InnoDB AUTO_INCREMENT=1000;
CREATE TABLE `odd ``name` (`col ``q` int PRIMARY KEY, `select` int, KEY price_desc (`select`)) ENGINE=InnoDB;
CREATE VIEW Cheap AS SELECT Id, Price FROM Parent WHERE Price < 10;
"""


def test_edge_cases_apply(
    mariadb: MariaDBServer,
    mysql_db: str,
    pg_target: PostgresServer,
    target_db: str,
    pg: psycopg.Connection,
    tmp_path: Path,
) -> None:
    mariadb.execute(mysql_db, EDGE_DDL)
    conv = convert(reflect_db(mariadb, mysql_db), make_task(mariadb.url(mysql_db)))
    apply(conv, pg_target, target_db, tmp_path)
    check_tables(pg, conv)
    schema = mysql_db.lower()
    pg.execute(f'SET search_path = "{schema}"')
    pg.execute("INSERT INTO parent (price) VALUES (3)")
    got = rows(pg, "SELECT id, flags::text, label, born::text, kind::text, perms, yes, total FROM parent")
    assert got == [(1000, "00101", "a'b\\c", "2000-01-01", "y z", ["r", "w"], True, 6)]
    assert rows(pg, "SELECT enum_range(NULL::parent_kind)::text") == [('{x,"y z",it\'s}',)]
    with pytest.raises(psycopg.errors.CheckViolation):
        pg.execute("INSERT INTO parent (price, label) VALUES (-1, 'neg')")
    pg.execute("INSERT INTO parent (price, boss, label) VALUES (1, 1000, 'child')")  # self-reference
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        pg.execute("INSERT INTO parent (price, boss, label) VALUES (1, 999, 'orphan')")
    with pytest.raises(psycopg.errors.UniqueViolation):  # the prefix stays unique: left(label, 5)
        pg.execute("INSERT INTO parent (price, label) VALUES (1, 'a''b\\cdef')")
    assert rows(pg, "SELECT id, price FROM cheap ORDER BY id") == [(1000, 3), (1002, 1)]  # 1001 went to the refused -1
    indexes = {
        (table, " ".join(d.split(" USING btree ")[1:]))
        for table, d in rows(pg, "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s", schema)
    }
    assert {("parent", "(price DESC)"), ("parent", '("left"(note, 10))'), ("odd `name", '("select")')} <= indexes
    # MySQL names indexes per table, PostgreSQL per schema: the two price_desc got two names.
    names = {o["target"] for o in conv.report["objects"] if o["kind"] == "index" and o["name"].endswith("price_desc")}
    assert len(names) == 2 and "price_desc" in names
    assert not any("to_tsvector" in d for _, d in indexes)  # FULLTEXT is reported, not created
    objs = {(o["kind"], o["name"]): o for o in conv.report["objects"]}
    assert objs[("column", "Parent.Half")]["status"] == CHANGED  # VIRTUAL becomes STORED
    assert objs[("column", "Parent.Changed")]["status"] == CHANGED  # ON UPDATE → trigger
    assert objs[("index", "Parent.note_ft")]["status"] == ACTION
    assert objs[("check", "Parent.Doc")]["target"] is None  # MariaDB's json_valid check: jsonb does it


# ----------------------------------------------------------------------------------------- SQLite indexes

SQLITE_INDEXES = """
CREATE TABLE Users (Id INTEGER PRIMARY KEY, Email TEXT NOT NULL, Active BOOLEAN NOT NULL DEFAULT 1,
                    DeletedAt DATETIME, Level INTEGER);
CREATE UNIQUE INDEX users_live_email ON Users (Email) WHERE DeletedAt IS NULL;
CREATE INDEX users_lower_email ON Users (lower(Email) DESC, Id);
CREATE UNIQUE INDEX one_active ON Users (lower(Email)) WHERE Active = 1 AND DeletedAt IS NULL;
CREATE INDEX users_at ON Users (instr(Email, '@'));
CREATE INDEX odd_level ON Users (Level) WHERE Active = 2;
INSERT INTO Users VALUES (1, 'a@x.org', 1, NULL, 1), (2, 'a@x.org', 0, '2024-01-01 00:00:00', 1),
                         (3, 'B@x.org', 1, NULL, 2), (4, 'b@x.org', 0, NULL, 3);
"""


def test_sqlite_partial_and_expression_indexes_apply(
    pg_target: PostgresServer, target_db: str, pg: psycopg.Connection, tmp_path: Path
) -> None:
    """A real SQLite file's partial unique index and expression indexes, converted and applied over the file's
    own rows: a partial UNIQUE index created without its WHERE would refuse them (two 'a@x.org')."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as lite:
        lite.executescript(SQLITE_INDEXES)
        data = lite.execute("SELECT Id, Email, Active, DeletedAt, Level FROM Users ORDER BY Id").fetchall()
    lite.close()
    task = make_task(f"sqlite:///{path}")
    conv = convert(reflect_source(task), task)
    pre, post = tmp_path / "pre-data.sql", tmp_path / "post-data.sql"
    pre.write_text(conv.pre_data_sql)
    post.write_text(conv.post_data_sql)
    apply_schema(pg_target.env(), target_db, pre, "pre-data")
    with pg.cursor() as cur:  # the rows as the load would bring them
        cur.executemany(
            "INSERT INTO public.users (id, email, active, deletedat, level) VALUES (%s, %s, %s::boolean, %s, %s)",
            [(i, e, bool(a), d, lv) for i, e, a, d, lv in data],
        )
    apply_schema(pg_target.env(), target_db, post, "post-data")
    defs = dict(rows(pg, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert defs["users_live_email"] == (
        "CREATE UNIQUE INDEX users_live_email ON public.users USING btree (email) WHERE (deletedat IS NULL)"
    )
    assert (
        defs["users_lower_email"]
        == "CREATE INDEX users_lower_email ON public.users USING btree (lower(email) DESC, id)"
    )
    assert defs["one_active"] == (
        "CREATE UNIQUE INDEX one_active ON public.users USING btree (lower(email)) "
        "WHERE ((active = true) AND (deletedat IS NULL))"
    )
    assert "users_at" not in defs  # instr(): no IMMUTABLE translation known, so reported, never approximated
    objs = {o["name"]: o for o in conv.report["objects"]}
    assert objs["Users.users_at"]["status"] == ACTION
    assert objs["Users.users_at"]["source_sql"] == 'CREATE INDEX "users_at" ON "Users" (instr(Email, \'@\'))'
    assert objs["Users.users_live_email"]["status"] == CONVERTED
    # Translated, but PostgreSQL refuses boolean = 2: post-data goes on and the refusal is on record.
    assert "odd_level" not in defs
    [refused] = skipped_objects(pg)
    assert (refused.kind, refused.schema, refused.name) == ("index", "public", "odd_level")
    assert "operator does not exist: boolean = integer" in refused.error
    assert "schema/assessment.md" in refused.line()
    # The indexes work as the source's did: one live row per address, deleted rows do not count.
    pg.execute("INSERT INTO public.users (id, email, active, deletedat) VALUES (5, 'a@x.org', false, now())")
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg.execute("INSERT INTO public.users (id, email, active) VALUES (6, 'a@x.org', false)")
    with pytest.raises(psycopg.errors.UniqueViolation):  # lower(): B@x.org is live and active
        pg.execute("INSERT INTO public.users (id, email, active) VALUES (7, 'b@X.org', true)")


# ------------------------------------------------------------------------------------------ refused views

REFUSED_VIEWS_DDL = """
CREATE TABLE item (id int PRIMARY KEY, kind varchar(10) NOT NULL, label varchar(20) NOT NULL, price double NOT NULL);
INSERT INTO item VALUES (1, 'a', 'one', 1.25), (2, 'a', 'two', 2.5), (3, 'b', 'three', 4);
-- PostgreSQL has no round(double precision, integer): sqlglot keeps ROUND(price, 1), PostgreSQL refuses it.
CREATE VIEW rounded AS SELECT id, ROUND(price, 1) AS p FROM item;
-- MariaDB orders a grouped query by any column; PostgreSQL wants it grouped (the static check reads the
-- SELECT list only, so this one reaches PostgreSQL).
CREATE VIEW kinds AS SELECT kind, count(*) AS n FROM item GROUP BY kind ORDER BY label;
CREATE VIEW cheap AS SELECT id, label FROM item WHERE price < 3;
"""


def test_refused_views_are_listed_by_load_and_status(
    make_mysql_flow: Any, mariadb: MariaDBServer, mysql_db: str, pg_target: PostgresServer, target_db: str
) -> None:
    """Views sqlglot translates but PostgreSQL refuses: the load finishes without them, ends with one line
    per view (the error and the fix), and ``status`` lists them until they exist."""
    mariadb.execute(mysql_db, REFUSED_VIEWS_DDL)
    flow = make_mysql_flow()
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
    run = flow.run("volume", "seal", str(flow.volume))
    assert run.code == 0, run.text
    assert flow.bulkmig("volume import").code == 0
    load = flow.bulkmig("load")
    assert load.code == 0, load.text
    schema = mysql_db.lower()
    fix = "create the view by hand from schema/assessment.md on the volume"
    lines = [line for line in load.err.splitlines() if line.startswith("load: view ")]
    assert len(lines) == 2, load.err
    assert f"load: view {schema}.rounded was not created: function round(double precision, integer) does not exist" in (
        lines[0] + lines[1]
    )
    assert any(f"load: view {schema}.kinds was not created: column" in line and "GROUP BY" in line for line in lines)
    assert all(fix in line for line in lines)
    # The rest of post-data is there: the view PostgreSQL took answers, the data is loaded.
    assert pg_target.execute(target_db, f'SELECT id, label FROM "{schema}".cheap ORDER BY id') == [
        (1, "one"),
        (2, "two"),
    ]
    status = flow.bulkmig("status", "--json")
    assert status.code == 0, status.text
    skipped = json.loads(status.out)["target"]["skipped_objects"]
    assert sorted((o["kind"], o["schema"], o["name"]) for o in skipped) == [
        ("view", schema, "kinds"),
        ("view", schema, "rounded"),
    ]
    rounded = next(o for o in skipped if o["name"] == "rounded")
    assert "round(double precision, integer) does not exist" in rounded["error"] and fix in rounded["fix"]
    text = flow.bulkmig("status")
    assert f"view {schema}.rounded NOT CREATED: function round(double precision, integer)" in text.out, text.text
    # Created by hand (as the fix says), the view leaves the list.
    pg_target.execute(
        target_db, f'CREATE VIEW "{schema}".rounded AS SELECT id, round(price::numeric, 1) AS p FROM "{schema}".item'
    )
    again = json.loads(flow.bulkmig("status", "--json").out)["target"]["skipped_objects"]
    assert [o["name"] for o in again] == ["kinds"]


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_convert_writes_the_four_files(sakila: Catalog, mariadb: MariaDBServer, tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    doc = {
        "name": "shop",
        "source": mariadb.url("sakila"),
        "target": "postgresql://admin@127.0.0.1:1/never-contacted",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://bucket-name/convert",
    }
    task.write_text(yaml.safe_dump(doc))
    env = {"PATH": "/usr/bin:/bin", "BULKMIG_SOURCE_PASSWORD": mariadb.password, "HOME": str(tmp_path)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", "convert", "--task", str(task)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "convert-shop"
    assert sorted(p.name for p in out.iterdir()) == [
        "assessment.json",
        "assessment.md",
        "post-data.sql",
        "pre-data.sql",
    ]
    report = json.loads((out / "assessment.json").read_text())
    assert report["summary"]["needs_action"] == 16
    assert "convert: 16 objects need action: see" in done.stdout
    assert done.stdout.startswith(f"convert: {report['summary']['total']} objects:")
    assert 'CREATE TABLE "sakila"."film" (' in (out / "pre-data.sql").read_text()
    assert mariadb.password not in done.stdout + done.stderr
    custom = tmp_path / "elsewhere"
    again = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", "convert", "--task", str(task), "--out", str(custom)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and (custom / "assessment.md").read_text() == (out / "assessment.md").read_text()
