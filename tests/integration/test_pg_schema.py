"""The PostgreSQL -> PostgreSQL schema through pg_dump's sections, against real servers.

The promise checked here: after pre-data, the data, and post-data, the target's catalog equals the
source's — every relation, column, default, function, trigger, constraint, index, view, comment, enum
label and domain — while nothing that could fire or slow the load (triggers, foreign keys, secondary
indexes) exists before the data.  A table subset leaves out exactly what depends on the unselected
tables and says so.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bulkmig.core.errors import ConfigError, ConnectError, TargetError
from bulkmig.demo.servers import PostgresServer, load_dataset
from bulkmig.engines.postgres import schema

# Objects pagila lacks, in names that need quoting: identity and generated columns, a composite type,
# a NOT VALID check (pg_dump puts it in post-data), comments, a populated materialized view, a free
# sequence that was used, a trigger that would break the load if it existed while rows arrive, a foreign
# table whose user mapping holds a password, and an event trigger that refuses DDL once it exists.
EXTRAS = """
CREATE SCHEMA "Odd Schema";
COMMENT ON SCHEMA "Odd Schema" IS 'a schema whose name needs quotes';
CREATE TYPE "Odd Schema".pair AS (a integer, b text);
CREATE TYPE "Odd Schema".mood AS ENUM ('sad', 'ok', 'we''ird "one"');
CREATE TABLE "Odd Schema"."Mixed Case" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE,
    qty integer DEFAULT 1 CHECK (qty >= 0),
    twice integer GENERATED ALWAYS AS (qty * 2) STORED,
    p "Odd Schema".pair,
    m "Odd Schema".mood DEFAULT 'ok',
    film_id integer REFERENCES public.film (film_id)
);
COMMENT ON TABLE "Odd Schema"."Mixed Case" IS 'identity, generated, composite, enum';
COMMENT ON COLUMN "Odd Schema"."Mixed Case".qty IS 'how many';
CREATE INDEX "Mixed Case qty" ON "Odd Schema"."Mixed Case" (qty) WHERE qty > 0;
INSERT INTO "Odd Schema"."Mixed Case" (code, qty, p, film_id)
    SELECT 'c' || g, g, ROW(g, 'x' || g)::"Odd Schema".pair, g FROM generate_series(1, 5) g;
ALTER TABLE "Odd Schema"."Mixed Case" ADD CONSTRAINT code_not_empty CHECK (code <> '') NOT VALID;
CREATE FUNCTION "Odd Schema".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trigger fired while loading';
END $$;
COMMENT ON FUNCTION "Odd Schema".refuse() IS 'must not exist while rows arrive';
CREATE TRIGGER "refuse rows" BEFORE INSERT ON "Odd Schema"."Mixed Case"
    FOR EACH ROW EXECUTE FUNCTION "Odd Schema".refuse();
CREATE SEQUENCE "Odd Schema".free_seq START 100;
SELECT nextval('"Odd Schema".free_seq');
SELECT nextval('"Odd Schema".free_seq');
CREATE SEQUENCE "Odd Schema".unused_seq START 7;
CREATE VIEW "Odd Schema"."Film Titles" AS SELECT film_id, title FROM public.film;
COMMENT ON VIEW "Odd Schema"."Film Titles" IS 'a plain view';
CREATE MATERIALIZED VIEW "Odd Schema".film_counts AS
    SELECT rating, count(*) AS n FROM public.film GROUP BY rating;
CREATE UNIQUE INDEX film_counts_rating ON "Odd Schema".film_counts (rating);
CREATE EXTENSION postgres_fdw;
CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'localhost', dbname 'nowhere');
CREATE USER MAPPING FOR CURRENT_USER SERVER elsewhere OPTIONS (user 'remote', password '%(fdw_password)s');
CREATE FOREIGN TABLE "Odd Schema".remote_films (film_id integer, title text) SERVER elsewhere;
CREATE FUNCTION "Odd Schema".no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'DDL after the load: %%', tg_tag;
END $$;
CREATE EVENT TRIGGER no_ddl_after_load ON ddl_command_start
    WHEN TAG IN ('CREATE TABLE', 'CREATE SCHEMA', 'REFRESH MATERIALIZED VIEW') EXECUTE FUNCTION "Odd Schema".no_ddl();
"""
FDW_PASSWORD = "fdw-" + uuid.uuid4().hex
USER_MAPPING_SKIPPED = (
    "user mapping for postgres on server elsewhere: not migrated, its options may hold a password; "
    "recreate it on the target"
)

_USER = (
    "{n}.nspname NOT IN ('pg_catalog', 'information_schema', 'bulkmig') "
    "AND {n}.nspname NOT LIKE 'pg\\_toast%%' AND {n}.nspname NOT LIKE 'pg\\_temp%%'"
)
USER = _USER.format(n="n")

# What "the target's catalog matches the source's" means, one query per object kind.  Names, not
# OIDs: the two clusters number their objects differently.
CATALOG: dict[str, str] = {
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, pg_get_expr(c.relpartbound, c.oid),
               c.relpersistence::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER} AND c.relkind <> 't'""",
    "columns": f"""
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE {USER} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')""",
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind::text,
               pg_get_function_result(p.oid), md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER}""",
    "triggers": f"""
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER} AND NOT t.tgisinternal""",
    "constraints": f"""
        SELECT n.nspname, coalesce(c.relname, ty.typname), o.conname, o.contype::text, pg_get_constraintdef(o.oid),
               o.convalidated
        FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace
        LEFT JOIN pg_class c ON c.oid = o.conrelid LEFT JOIN pg_type ty ON ty.oid = o.contypid WHERE {USER}""",
    "indexes": f"""
        SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique, i.indisvalid
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER}""",
    "views": f"""
        SELECT n.nspname, c.relname, c.relkind::text, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER} AND c.relkind IN ('v', 'm')""",
    "comments": """
        SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
        FROM pg_description d WHERE d.objoid >= 16384""",
    "enums": f"""
        SELECT n.nspname, t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {USER} GROUP BY 1, 2""",
    "domains": f"""
        SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER} AND t.typtype = 'd'""",
    "types": f"""
        SELECT n.nspname, t.typname, t.typtype::text
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER}""",
    "sequences": """
        SELECT schemaname, sequencename, data_type::text, start_value, min_value, max_value, increment_by, cycle
        FROM pg_sequences WHERE schemaname <> 'bulkmig'""",
    "schemas": f"SELECT n.nspname FROM pg_namespace n WHERE {USER}",
    "event_triggers": """
        SELECT evtname, evtevent, evtenabled::text, evttags, evtfoid::regprocedure::text FROM pg_event_trigger""",
    "foreign_tables": """
        SELECT ftrelid::regclass::text, srvname, ftoptions FROM pg_foreign_table
        JOIN pg_foreign_server s ON s.oid = ftserver""",
}


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {kind: sorted(conn.execute(query).fetchall(), key=repr) for kind, query in CATALOG.items()}


def rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def one(conn: psycopg.Connection, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def pagila(pg_source: PostgresServer, datasets: Path) -> Iterator[str]:
    """pagila plus EXTRAS on the source, loaded once for the module (load.sh takes a few seconds)."""
    name = f"schema_src_{uuid.uuid4().hex[:8]}"
    load_dataset(pg_source, "pagila", name)
    pg_source.execute(name, EXTRAS % {"fdw_password": FDW_PASSWORD})
    yield name
    pg_source.drop_database(name)


@pytest.fixture(scope="module")
def pagila_files(
    pg_source: PostgresServer, pagila: str, tmp_path_factory: pytest.TempPathFactory
) -> schema.SchemaFiles:
    return schema.dump_schema(pg_source.env(), pagila, None, None, tmp_path_factory.mktemp("pagila-schema"))


def load_data(source: PostgresServer, src_db: str, target: PostgresServer, dst_db: str, work: Path) -> None:
    """Stand in for extract + load: the source's rows into the target, with pg_dump's data section.

    Materialized views are left out, so only post-data's REFRESH can populate them.
    """
    data = work / "data.sql"
    argv = [schema.find_tool("pg_dump"), "--data-only", "-f", str(data)]
    argv += ["--exclude-table-data=*.rental_by_category", '--exclude-table-data="Odd Schema".film_counts']
    subprocess.run(argv, env={**source.env(), "PGDATABASE": src_db}, check=True, capture_output=True)
    target.psql_file(dst_db, data)


def conn_to(server: PostgresServer, db: str) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(db), autocommit=True)


# ------------------------------------------------------------------------------------ the whole schema


def test_pagila_round_trips_through_the_sections(
    pg_source: PostgresServer,
    pg_target: PostgresServer,
    pagila: str,
    pagila_files: schema.SchemaFiles,
    target_db: str,
    tmp_path: Path,
) -> None:
    files = pagila_files
    assert files.skipped == [USER_MAPPING_SKIPPED]
    for path in (files.pre_data, files.post_data, files.toc):
        assert path is not None and FDW_PASSWORD not in path.read_text()
    assert files.archive.is_file() and files.toc is not None and files.toc.is_file()
    # pagila's own matview was never refreshed, so only ours is refreshed after the load.
    assert files.refreshed == ["Odd Schema.film_counts"]
    post_text = files.post_data.read_text()
    assert 'REFRESH MATERIALIZED VIEW "Odd Schema"."film_counts";' in post_text
    assert "rental_by_category" not in post_text.split("bulkmig: materialized views")[1]

    with conn_to(pg_source, pagila) as src:
        want = catalog(src)
        want_rows = {
            (s, t): one(src, f'SELECT count(*) FROM "{s}"."{t}"')
            for s, t in rows(
                src,
                f"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON "
                f"n.oid = c.relnamespace WHERE {USER} AND c.relkind = 'r'",
            )
        }
        want_counts = rows(src, 'SELECT * FROM "Odd Schema".film_counts ORDER BY 1')

    env = pg_target.env()
    schema.apply_schema(env, target_db, files.pre_data, "pre-data", volume_id="vol-1")
    with conn_to(pg_target, target_db) as dst:
        got = catalog(dst)
        # Every relation is there but the secondary indexes: tables, partitions, primary keys, sequences,
        # views; and nothing else that belongs after the data.
        secondary = {(r[0], r[1]) for r in want["indexes"] if not r[3]}
        assert secondary and got["relations"] == [r for r in want["relations"] if (r[0], r[1]) not in secondary]
        for s, t in want_rows:
            assert one(dst, f'SELECT count(*) FROM "{s}"."{t}"') == 0
        assert all(r[3] for r in got["indexes"]), "only primary key indexes before the data"
        assert {r[:3] for r in got["indexes"]} == {r[:3] for r in want["indexes"] if r[3]}
        assert [c for c in got["constraints"] if c[3] in ("f", "u")] == []
        assert got["triggers"] == []
        assert not any(c[2] == "code_not_empty" for c in got["constraints"])  # NOT VALID checks are post-data
        assert one(dst, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'film_counts'") is False

    load_data(pg_source, pagila, pg_target, target_db, tmp_path)  # the trigger "refuse rows" does not exist yet
    schema.apply_schema(env, target_db, files.post_data, "post-data", volume_id="vol-1")

    with conn_to(pg_target, target_db) as dst:
        got = catalog(dst)
        for kind in CATALOG:
            assert got[kind] == want[kind], kind
        assert {k: one(dst, f'SELECT count(*) FROM "{k[0]}"."{k[1]}"') for k in want_rows} == want_rows
        assert rows(dst, 'SELECT * FROM "Odd Schema".film_counts ORDER BY 1') == want_counts
        assert rows(dst, "SELECT section, volume_id FROM bulkmig.schema_applied ORDER BY 1") == [
            ("post-data", "vol-1"),
            ("pre-data", "vol-1"),
        ]

    # A resumed load reapplies nothing; another volume's schema is refused.
    schema.apply_schema(env, target_db, files.pre_data, "pre-data", volume_id="vol-1")
    schema.apply_schema(env, target_db, files.post_data, "post-data", volume_id="vol-1")
    with pytest.raises(TargetError, match="applied from volume 'vol-1', not 'vol-2'"):
        schema.apply_schema(env, target_db, files.pre_data, "pre-data", volume_id="vol-2")


def test_pg_dump_output_is_protected_with_restrict(pagila_files: schema.SchemaFiles) -> None:
    """pg_dump 15.14+ brackets plain output with \\restrict KEY / \\unrestrict KEY (psql-only commands)."""
    version = schema.tool_version(schema.find_tool("pg_dump"))
    for path in (pagila_files.pre_data, pagila_files.post_data):
        lines = path.read_text().splitlines()
        restrict = [ln for ln in lines if ln.startswith(("\\restrict ", "\\unrestrict "))]
        if schema._knows_restrict(version):
            assert len(restrict) == 2 and restrict[0].split()[1] == restrict[1].split()[1]
        else:
            assert restrict == []


# ------------------------------------------------------------------------------------------ a subset


def test_table_subset_leaves_out_dependents_and_says_so(
    pg_source: PostgresServer, pg_target: PostgresServer, pagila: str, target_db: str, tmp_path: Path
) -> None:
    chosen = [("public", "film"), ("public", "language"), ("public", "payment_p2022_01")]
    files = schema.dump_schema(pg_source.env(), pagila, None, chosen, tmp_path / "schema")

    skipped = "\n".join(files.skipped)
    assert "view public.actor_info: not migrated, it depends on tables public.actor, public.category" in skipped
    assert (
        "function public.rewards_report(integer,numeric): not migrated, it depends on table public.customer" in skipped
    )
    assert "materialized view public.rental_by_category: not migrated" in skipped
    # A foreign key of a selected table that points at an unselected one is reported, not silently lost.
    assert (
        "constraint payment_p2022_01_customer_id_fkey on table public.payment_p2022_01: not migrated, "
        "it depends on table public.customer, which is not selected" in skipped
    )
    # What belonged to an unselected table goes with it silently.
    assert "actor_pkey" not in skipped and "last_updated on table public.actor" not in skipped
    assert '"Mixed Case"' not in skipped
    assert USER_MAPPING_SKIPPED in files.skipped
    assert files.refreshed == ["Odd Schema.film_counts"]  # it depends on film only, so it stays
    assert files.toc is not None and "; bulkmig: left out, table not selected" in files.toc.read_text()

    env = pg_target.env()
    schema.apply_schema(env, target_db, files.pre_data, "pre-data", volume_id="vol-s")
    schema.apply_schema(env, target_db, files.post_data, "post-data", volume_id="vol-s")
    with conn_to(pg_target, target_db) as dst:
        tables = rows(
            dst,
            f"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE {USER} AND c.relkind IN ('r', 'p') ORDER BY 1, 2",
        )
        # payment comes along: a partition cannot exist without its parent.
        assert tables == [
            ("public", "film"),
            ("public", "language"),
            ("public", "payment"),
            ("public", "payment_p2022_01"),
        ]
        fks = rows(dst, "SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1")
        assert fks == [("film_language_id_fkey",), ("film_original_language_id_fkey",)]
        triggers = rows(
            dst, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.film'::regclass AND NOT tgisinternal ORDER BY 1"
        )
        assert triggers == [("film_fulltext_trigger",), ("last_updated",)]
        assert one(dst, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'film_counts'") is True
        assert one(dst, "SELECT to_regclass('public.actor_info')") is None
        # A foreign table has no rows to select: like a view, it stays while what it needs stays.
        assert one(dst, "SELECT to_regclass('\"Odd Schema\".remote_films')::text") == '"Odd Schema".remote_films'

    # Sequence values of the subset: those owned by unselected tables are not there to be set.
    with conn_to(pg_source, pagila) as src:
        values = schema.sequence_values(src, chosen)
    names = {(v["schema"], v["name"]) for v in values}
    assert ("Odd Schema", "Mixed Case_id_seq") not in names  # identity of an unselected table
    assert {"schema": "Odd Schema", "name": "free_seq", "last_value": 101, "is_called": True} in values
    assert {"schema": "Odd Schema", "name": "unused_seq", "last_value": 7, "is_called": False} in values
    with conn_to(pg_target, target_db) as dst:
        dst.execute(schema.set_sequences_sql(values))
        assert one(dst, "SELECT nextval('\"Odd Schema\".free_seq')") == 102
        assert one(dst, "SELECT nextval('\"Odd Schema\".unused_seq')") == 7
        film = next(v for v in values if v["name"] == "film_film_id_seq")
        assert one(dst, "SELECT last_value FROM public.film_film_id_seq") == film["last_value"]


def test_selecting_a_partitioned_table_selects_its_partitions(
    pg_source: PostgresServer, pagila: str, tmp_path: Path
) -> None:
    files = schema.dump_schema(pg_source.env(), pagila, None, [("public", "payment")], tmp_path)
    assert schema.created_tables(files.pre_data) == ['"Odd Schema".remote_films', "public.payment"] + [
        f"public.payment_p2022_0{month}" for month in range(1, 8)
    ]


def test_all_sequence_values_include_identity_ones(pg_source: PostgresServer, pagila: str) -> None:
    with conn_to(pg_source, pagila) as src:
        values = schema.sequence_values(src)
    mixed = next(v for v in values if v["name"] == "Mixed Case_id_seq")
    assert mixed == {"schema": "Odd Schema", "name": "Mixed Case_id_seq", "last_value": 5, "is_called": True}
    assert (
        schema.set_sequences_sql([mixed]) == 'SELECT pg_catalog.setval(\'"Odd Schema"."Mixed Case_id_seq"\', 5, true);'
    )
    assert schema.set_sequences_sql([]) == ""


def test_selected_table_that_needs_an_unselected_one_is_refused(
    pg_source: PostgresServer, source_db: str, tmp_path: Path
) -> None:
    pg_source.execute(source_db, "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY, x a);")
    with pytest.raises(ConfigError, match="table public.b cannot be created without table public.a"):
        schema.dump_schema(pg_source.env(), source_db, None, [("public", "b")], tmp_path)


def test_serial_of_an_unselected_table_stays_when_a_selected_one_uses_it(
    pg_source: PostgresServer, pg_target: PostgresServer, source_db: str, target_db: str, tmp_path: Path
) -> None:
    pg_source.execute(
        source_db,
        "CREATE TABLE a (id serial PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY DEFAULT nextval('a_id_seq'));"
        "CREATE TABLE c (id serial PRIMARY KEY); SELECT nextval('a_id_seq');",
    )
    files = schema.dump_schema(pg_source.env(), source_db, None, [("public", "b")], tmp_path)
    assert files.skipped == []
    assert schema.created_tables(files.pre_data) == ["public.b"]
    with conn_to(pg_source, source_db) as src:
        values = schema.sequence_values(src, [("public", "b")])
    assert values == [{"schema": "public", "name": "a_id_seq", "last_value": 1, "is_called": True}]
    schema.apply_schema(pg_target.env(), target_db, files.pre_data, "pre-data")
    schema.apply_schema(pg_target.env(), target_db, files.post_data, "post-data")
    with conn_to(pg_target, target_db) as dst:
        dst.execute(schema.set_sequences_sql(values))
        dst.execute("INSERT INTO b DEFAULT VALUES")
        assert one(dst, "SELECT id FROM b") == 2
        assert one(dst, "SELECT to_regclass('c_id_seq')") is None


# ---------------------------------------------------------------------------------- snapshot and errors


def test_dump_reads_in_the_given_snapshot(pg_source: PostgresServer, source_db: str, tmp_path: Path) -> None:
    pg_source.execute(source_db, "CREATE TABLE before_snapshot (id int PRIMARY KEY)")
    with conn_to(pg_source, source_db) as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = one(holder, "SELECT pg_export_snapshot()")
        pg_source.execute(source_db, "CREATE TABLE after_snapshot (id int PRIMARY KEY)")
        files = schema.dump_schema(pg_source.env(), source_db, snapshot, None, tmp_path)
        holder.execute("COMMIT")
    assert schema.created_tables(files.pre_data) == ["public.before_snapshot"]


def test_populated_target_is_refused_naming_its_tables(
    pg_target: PostgresServer, pagila_files: schema.SchemaFiles, target_db: str
) -> None:
    pg_target.execute(target_db, "CREATE TABLE public.film (x int); CREATE TABLE public.actor (y int)")
    env = pg_target.env()
    with pytest.raises(TargetError) as err:
        schema.apply_schema(env, target_db, pagila_files.pre_data, "pre-data", volume_id="v")
    assert "the target already holds public.actor, public.film" in str(err.value)
    assert "drop them or use a fresh database" in str(err.value)
    # existing="skip" trusts what is there and applies nothing.
    schema.apply_schema(env, target_db, pagila_files.pre_data, "pre-data", volume_id="v", existing="skip")
    with conn_to(pg_target, target_db) as dst:
        assert one(dst, "SELECT to_regclass('public.language')") is None
        assert one(dst, "SELECT to_regclass('bulkmig.schema_applied')") is None


def test_failing_post_data_names_the_statement_and_keeps_nothing(
    pg_target: PostgresServer, pagila_files: schema.SchemaFiles, target_db: str
) -> None:
    env = pg_target.env()
    schema.apply_schema(env, target_db, pagila_files.pre_data, "pre-data", volume_id="v")
    pg_target.execute(target_db, "INSERT INTO public.film_actor (actor_id, film_id) VALUES (999, 999)")
    with pytest.raises(TargetError) as err:
        schema.apply_schema(env, target_db, pagila_files.post_data, "post-data", volume_id="v")
    text = str(err.value)
    assert text.startswith(f"post-data failed on the target database {target_db!r} on 127.0.0.1:")
    assert "FK CONSTRAINT public.film_actor film_actor_" in text
    assert "ALTER TABLE ONLY public.film_actor" in text
    assert 'violates foreign key constraint "film_actor_' in text and "is not present in table" in text
    assert "nothing of post-data was kept" in text
    with conn_to(pg_target, target_db) as dst:
        assert one(dst, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0
        assert one(dst, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 0
        assert rows(dst, "SELECT section FROM bulkmig.schema_applied") == [("pre-data",)]


def test_wrong_password_is_one_line_without_the_password(
    pg_source: PostgresServer, pg_target: PostgresServer, source_db: str, tmp_path: Path
) -> None:
    secret = "not-the-password-" + uuid.uuid4().hex
    env = {**pg_source.env(), "PGPASSWORD": secret}
    with pytest.raises(ConnectError) as err:
        schema.dump_schema(env, source_db, None, None, tmp_path)
    text = str(err.value)
    assert secret not in text and "\n" not in text
    assert f"source database {source_db!r} on 127.0.0.1:{pg_source.port}" in text
    assert "password authentication failed" in text

    sql_file = tmp_path / "pre-data.sql"
    sql_file.write_text("SELECT 1;\n")
    closed = {**pg_target.env(), "PGPORT": "1"}
    with pytest.raises(ConnectError, match="cannot connect to the target database 'x' on 127.0.0.1:1"):
        schema.apply_schema(closed, "x", sql_file, "pre-data")


def test_missing_or_too_old_pg_dump_is_a_config_error(
    pg_source: PostgresServer, source_db: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="pg_dump not found"):
        schema.dump_schema(pg_source.env(), source_db, None, None, tmp_path, pg_dump=str(tmp_path / "nope"))
    old = tmp_path / "bin" / "pg_dump"
    old.parent.mkdir()
    old.write_text(f'#!{shutil.which("sh")}\necho "pg_dump (PostgreSQL) 9.6.24"\n')
    old.chmod(old.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(ConfigError, match=r"pg_dump 9\.6 is older than the source server"):
        schema.dump_schema(pg_source.env(), source_db, None, None, tmp_path / "out", pg_dump=str(old))


# ------------------------------------------------------------------------------ pure parts, no server


def test_statement_spans_follow_quotes_dollar_quotes_and_comments() -> None:
    text = """\\restrict abc
SET x = 1;
-- a comment; with a semicolon
CREATE FUNCTION f() RETURNS text
    LANGUAGE sql
    AS $_$ select 'a;b';

 select $$;$$ $_$;
COMMENT ON TABLE t IS 'it''s; fine';
SELECT E'\\';', "a;b" /* ; /* nested ; */ */ FROM t;
\\unrestrict abc"""
    assert list(schema.statement_spans(text.splitlines())) == [(0, 0), (1, 1), (3, 7), (8, 8), (9, 9), (10, 10)]


def test_parse_toc_reads_descriptions_and_dependencies() -> None:
    listing = """;
; Selected TOC Entries:
;
5; 2615 2200 SCHEMA - public postgres
217; 1259 16423 TABLE public actor postgres
;\tdepends on: 216 5
3486; 2606 16683 FK CONSTRAINT public address address_city_id_fkey postgres
;\tdepends on: 226 3418 228
3345; 0 0 TABLE ATTACH public payment_p2022_01 postgres
"""
    entries = schema.parse_toc(listing)
    assert [(e.dump_id, e.classid, e.objid, e.desc, e.deps) for e in entries] == [
        (5, 2615, 2200, "SCHEMA", []),
        (217, 1259, 16423, "TABLE", [216, 5]),
        (3486, 2606, 16683, "FK CONSTRAINT", [226, 3418, 228]),
        (3345, 0, 0, "TABLE ATTACH", []),
    ]
    assert entries[2].label == "public address address_city_id_fkey postgres"


def test_created_tables_reads_quoted_names(tmp_path: Path) -> None:
    f = tmp_path / "pre.sql"
    f.write_text(
        'CREATE TABLE public.film (\nCREATE UNLOGGED TABLE "Odd Schema"."Mixed ""Case""" (\n'
        "CREATE FOREIGN TABLE s.ft (\n    CREATE TABLE inside_a_function (\n"
    )
    assert schema.created_tables(f) == ["public.film", '"Odd Schema"."Mixed ""Case"""', "s.ft"]


def test_post_data_builds_indexes_with_the_servers_sort_memory_but_never_below_the_default(
    pg_target: PostgresServer, target_db: str, tmp_path: Path
) -> None:
    """Post-data's session raises maintenance_work_mem to PostgreSQL's default where the server gives less, and
    keeps what the server gives where it is more; pre-data's keeps the server's whatever it is."""
    env = pg_target.env()
    pg_target.execute(target_db, f"ALTER DATABASE \"{target_db}\" SET maintenance_work_mem = '16MB'")
    seen = "CREATE TABLE public.{0} AS SELECT pg_catalog.current_setting('maintenance_work_mem') AS m;\n"
    pre, post = tmp_path / "pre.sql", tmp_path / "post.sql"
    pre.write_text(seen.format("pre"))
    post.write_text(seen.format("post"))
    schema.apply_schema(env, target_db, pre, "pre-data", volume_id="v")
    schema.apply_schema(env, target_db, post, "post-data", volume_id="v")
    with conn_to(pg_target, target_db) as dst:
        assert one(dst, "SELECT m FROM public.pre") == "16MB"
        assert one(dst, "SELECT m FROM public.post") == schema.INDEX_BUILD_MEMORY == "64MB"
    pg_target.execute(target_db, f"ALTER DATABASE \"{target_db}\" SET maintenance_work_mem = '2GB'")
    pg_target.execute(
        target_db, "DROP TABLE public.post; DELETE FROM bulkmig.schema_applied WHERE section = 'post-data'"
    )
    schema.apply_schema(env, target_db, post, "post-data", volume_id="v")
    with conn_to(pg_target, target_db) as dst:
        assert one(dst, "SELECT m FROM public.post") == "2GB"


def test_post_data_builds_side_by_side_and_a_rerun_builds_only_what_is_missing(
    pg_source: PostgresServer,
    pg_target: PostgresServer,
    pagila: str,
    pagila_files: schema.SchemaFiles,
    target_db: str,
    tmp_path: Path,
) -> None:
    """Keys and indexes on two connections, each with its marker: a build that fails keeps the ones before it
    (and nothing of the rest), and the rerun builds only what is missing, ending with the source's schema."""
    with conn_to(pg_source, pagila) as src:
        want = catalog(src)
    env = pg_target.env()
    schema.apply_schema(env, target_db, pagila_files.pre_data, "pre-data", volume_id="v")
    load_data(pg_source, pagila, pg_target, target_db, tmp_path)
    # A second copy of one rental: the unique index over (rental_date, inventory_id, customer_id) refuses it.
    copy = "INSERT INTO public.rental (rental_id, rental_date, inventory_id, customer_id, staff_id) "
    pg_target.execute(
        target_db,
        copy + "SELECT 999999, rental_date, inventory_id, customer_id, staff_id FROM public.rental WHERE rental_id = 1",
    )
    failing = "INDEX public.idx_unq_rental_rental_date_inventory_id_customer_id"
    with pytest.raises(TargetError) as err:
        schema.apply_schema(env, target_db, pagila_files.post_data, "post-data", volume_id="v", jobs=2)
    assert str(err.value).startswith(f"post-data ({failing}) failed on the target database")
    assert "could not create unique index" in str(err.value)
    marked = "SELECT section, applied_at FROM bulkmig.schema_applied WHERE section LIKE 'post-data/%' ORDER BY 1"
    with conn_to(pg_target, target_db) as dst:
        built = rows(dst, marked)
        assert len(built) > 1 and f"post-data/{failing.replace(' public.', '/public/')}" not in {b[0] for b in built}
        assert one(dst, "SELECT count(*) FROM bulkmig.schema_applied WHERE section = 'post-data'") == 0
        assert one(dst, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 0  # the rest waits
        dst.execute("DELETE FROM public.rental WHERE rental_id = 999999")
    schema.apply_schema(env, target_db, pagila_files.post_data, "post-data", volume_id="v", jobs=2)
    with conn_to(pg_target, target_db) as dst:
        got = catalog(dst)
        for kind in CATALOG:
            assert got[kind] == want[kind], kind
        after = rows(dst, marked)
        assert set(built) < set(after)  # what was built before was not built again (same applied_at)
        assert one(dst, "SELECT count(*) FROM bulkmig.schema_applied WHERE section = 'post-data'") == 1
