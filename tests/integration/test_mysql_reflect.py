"""MySQL catalog reflection against a real MariaDB with the shared datasets loaded by their own loader.

The expected counts are the datasets' READMEs' (sakila-mysql: 16 tables, 22 FKs, 7 views, 6 triggers,
3 procedures + 3 functions; chinook: 11 tables, 11 FKs with one self-reference, no views/triggers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from bulkmig.demo.servers import MariaDBServer, load_dataset
from bulkmig.engines.mysql import reflect
from bulkmig.engines.mysql.types import ACTION, TypeSettings

SAKILA_ROWS = {
    "actor": 200,
    "address": 603,
    "category": 16,
    "city": 600,
    "country": 109,
    "customer": 599,
    "film": 1000,
    "film_actor": 5462,
    "film_category": 1000,
    "film_text": 1000,
    "inventory": 4581,
    "language": 6,
    "payment": 16049,
    "rental": 16044,
    "staff": 2,
    "store": 2,
}
CHINOOK_PKS = {
    "Album": ["AlbumId"],
    "Artist": ["ArtistId"],
    "Customer": ["CustomerId"],
    "Employee": ["EmployeeId"],
    "Genre": ["GenreId"],
    "Invoice": ["InvoiceId"],
    "InvoiceLine": ["InvoiceLineId"],
    "MediaType": ["MediaTypeId"],
    "Playlist": ["PlaylistId"],
    "PlaylistTrack": ["PlaylistId", "TrackId"],
    "Track": ["TrackId"],
}


@pytest.fixture
def conn(mariadb: MariaDBServer) -> Iterator[pymysql.connections.Connection]:
    c = pymysql.connect(**mariadb.connect_args())
    yield c
    c.close()


@pytest.fixture(scope="module")
def sakila(mariadb: MariaDBServer, datasets: Path) -> reflect.Catalog:
    load_dataset(mariadb, "sakila-mysql", "sakila")
    with pymysql.connect(**mariadb.connect_args()) as c:
        return reflect.reflect(c, "sakila")


@pytest.fixture(scope="module")
def chinook(mariadb: MariaDBServer, datasets: Path) -> reflect.Catalog:
    load_dataset(mariadb, "chinook-mysql", "Chinook")
    with pymysql.connect(**mariadb.connect_args()) as c:
        return reflect.reflect(c, "Chinook")


# ------------------------------------------------------------------------------------------- the server


def test_server_is_ready_for_row_based_capture(mariadb: MariaDBServer) -> None:
    rows = mariadb.execute(None, "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id, @@bind_address")
    assert rows == [(1, "ROW", "FULL", 1, "127.0.0.1")]
    assert mariadb.execute(None, "SELECT @@skip_name_resolve, @@port") == [(1, mariadb.port)]
    grants = " ".join(r[0] for r in mariadb.execute(None, "SHOW GRANTS"))
    assert "ALL PRIVILEGES ON *.*" in grants


def test_url_and_env_and_refused_logins(mariadb: MariaDBServer) -> None:
    url = mariadb.url("some db")
    assert url == f"mysql://bulkmig@127.0.0.1:{mariadb.port}/some%20db"
    assert mariadb.password not in url
    assert mariadb.env() == {
        "MYSQL_HOST": "127.0.0.1",
        "MYSQL_PORT": str(mariadb.port),
        "MYSQL_USER": "bulkmig",
        "MYSQL_PWD": mariadb.password,
    }
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(**{**mariadb.connect_args(), "password": "not-the-password"})
    # root has no password, so it must not be reachable over TCP at all.
    with pytest.raises(pymysql.err.OperationalError, match="Access denied|not allowed"):
        pymysql.connect(host=mariadb.host, port=mariadb.port, user="root", password="")


def test_mysql_db_is_fresh_and_execute_runs_several_statements(mariadb: MariaDBServer, mysql_db: str) -> None:
    assert mariadb.execute(
        mysql_db, "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    ) == [(0,)]
    rows = mariadb.execute(mysql_db, "CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2); SELECT sum(i) FROM t")
    assert int(rows[0][0]) == 3  # the last statement's rows; SUM() is a DECIMAL
    assert mariadb.execute(mysql_db, "SELECT %s + 1", (41,)) == [(42,)]


def test_load_dataset_refuses_another_database_name(mariadb: MariaDBServer) -> None:
    with pytest.raises(ValueError, match="always loads into database 'sakila'"):
        load_dataset(mariadb, "sakila-mysql", "elsewhere")
    with pytest.raises(ValueError, match="not a MySQL dataset"):
        load_dataset(mariadb, "pagila", "pagila")


# ------------------------------------------------------------------------------------------- sakila


def test_sakila_tables_keys_and_rows(sakila: reflect.Catalog, mariadb: MariaDBServer) -> None:
    assert sakila.mariadb and "MariaDB" in sakila.server_version
    assert sorted(t.table.name for t in sakila.tables) == sorted(SAKILA_ROWS)
    pks = {t.table.name: t.table.primary_key for t in sakila.tables}
    assert pks["film_actor"] == ["actor_id", "film_id"] and pks["film_category"] == ["film_id", "category_id"]
    assert all(pks.values())
    for name, n in SAKILA_ROWS.items():
        assert mariadb.execute("sakila", f"SELECT count(*) FROM `{name}`") == [(n,)]
    rental = sakila.table("rental")
    assert [(k.name, k.columns) for k in rental.unique_keys] == [
        ("rental_date", ["rental_date", "inventory_id", "customer_id"])
    ]
    assert [k.columns for k in sakila.table("store").unique_keys] == [["manager_staff_id"]]
    assert sakila.table("film").auto_increment == 1001


def test_sakila_fulltext_and_spatial_indexes_are_flagged(sakila: reflect.Catalog) -> None:
    fulltext = [(t.table.name, i.name) for t in sakila.tables for i in t.indexes if i.fulltext]
    spatial = [(t.table.name, i.name) for t in sakila.tables for i in t.indexes if i.spatial]
    assert fulltext == [("film_text", "idx_title_description")]
    assert spatial == [("address", "idx_location")]


def test_sakila_foreign_keys(sakila: reflect.Catalog) -> None:
    fks = {fk.name: fk for t in sakila.tables for fk in t.foreign_keys}
    assert len(fks) == 22
    lang = fks["fk_film_language_original"]
    assert (lang.columns, lang.ref_table, lang.ref_columns) == (["original_language_id"], "language", ["language_id"])
    assert {fk.on_update for fk in fks.values()} == {"CASCADE"}
    assert {fk.on_delete for fk in fks.values()} == {"RESTRICT", "SET NULL"}
    assert not any(fk.self_referencing for fk in fks.values())


def test_sakila_columns(sakila: reflect.Catalog) -> None:
    film = {c.name: c for c in sakila.table("film").columns}
    assert film["film_id"].auto_increment and film["film_id"].mapping.target_type == "integer"
    assert film["rating"].column_type == "enum('G','PG','PG-13','R','NC-17')"
    assert film["rating"].default == "'G'" and film["rating"].nullable
    assert film["rating"].mapping.enum_labels == ("G", "PG", "PG-13", "R", "NC-17")
    assert film["special_features"].mapping.target_type == "text[]"
    assert film["release_year"].column_type == "year(4)"
    assert film["rental_rate"].mapping.target_type == "numeric(4,2)" and film["rental_rate"].default == "4.99"
    assert film["title"].charset == "utf8mb3" and film["title"].collation == "utf8mb3_general_ci"
    last_update = film["last_update"]
    assert last_update.on_update_current_timestamp and last_update.default == "current_timestamp()"
    assert last_update.mapping.target_type == "timestamptz(0)" and last_update.mapping.status == ACTION
    customer = {c.name: c for c in sakila.table("customer").columns}
    assert customer["active"].mapping.target_type == "boolean"
    assert {c.name: c.mapping.target_type for c in sakila.table("address").columns}["location"] == "bytea"
    assert {c.name: c.mapping.target_type for c in sakila.table("staff").columns}["picture"] == "bytea"
    model_film = {c.name: c for c in sakila.table("film").table.columns}
    assert model_film["rating"].logical_type == "enum" and model_film["rental_rate"].arrow_type == "decimal128(4, 2)"


def test_every_sakila_column_is_mapped(sakila: reflect.Catalog) -> None:
    assert sakila.unmapped == []
    assert sum(len(t.columns) for t in sakila.tables) == 90
    for t in sakila.tables:
        assert [c.name for c in t.columns] == [c.name for c in t.table.columns]
        for c in t.columns:
            assert c.mapping.rule is not None and c.mapping.target_type and c.mapping.notes, (t.table.name, c.name)


def test_sakila_views_triggers_routines(sakila: reflect.Catalog) -> None:
    assert [v.name for v in sakila.views] == [
        "actor_info",
        "customer_list",
        "film_list",
        "nicer_but_slower_film_list",
        "sales_by_film_category",
        "sales_by_store",
        "staff_list",
    ]
    assert all(v.definition.lower().startswith("select") and "CREATE" in v.create_sql for v in sakila.views)
    assert {v.name for v in sakila.views if v.details["security"] == "INVOKER"} == {"actor_info"}
    triggers = {t.name: t for t in sakila.triggers}
    assert sorted(triggers) == [
        "customer_create_date",
        "del_film",
        "ins_film",
        "payment_date",
        "rental_date",
        "upd_film",
    ]
    assert (
        triggers["ins_film"].table,
        triggers["ins_film"].details["timing"],
        triggers["ins_film"].details["event"],
    ) == (
        "film",
        "AFTER",
        "INSERT",
    )
    assert "film_text" in triggers["ins_film"].definition and "TRIGGER" in triggers["ins_film"].create_sql
    routines = {(r.kind, r.name): r for r in sakila.routines}
    assert sorted(routines) == [
        ("function", "get_customer_balance"),
        ("function", "inventory_held_by_customer"),
        ("function", "inventory_in_stock"),
        ("procedure", "film_in_stock"),
        ("procedure", "film_not_in_stock"),
        ("procedure", "rewards_report"),
    ]
    balance = routines[("function", "get_customer_balance")]
    assert balance.details["returns"].startswith("decimal(5,2)")
    assert "FUNCTION" in balance.create_sql and "BEGIN" in balance.definition


def test_reflect_without_objects(conn: pymysql.connections.Connection, sakila: reflect.Catalog) -> None:
    bare = reflect.reflect(conn, "sakila", objects=False)
    assert len(bare.tables) == 16 and bare.views == bare.triggers == bare.routines == []


# ------------------------------------------------------------------------------------------- chinook


def test_chinook(chinook: reflect.Catalog) -> None:
    assert {t.table.name: t.table.primary_key for t in chinook.tables} == CHINOOK_PKS
    fks = [fk for t in chinook.tables for fk in t.foreign_keys]
    assert len(fks) == 11 and {fk.on_delete for fk in fks} == {"NO ACTION"}
    selfref = [fk for fk in fks if fk.self_referencing]
    assert [(fk.name, fk.columns, fk.ref_table, fk.ref_columns) for fk in selfref] == [
        ("FK_EmployeeReportsTo", ["ReportsTo"], "Employee", ["EmployeeId"])
    ]
    assert chinook.views == chinook.triggers == chinook.routines == []
    assert chinook.unmapped == []
    invoice = {c.name: c.mapping.target_type for c in chinook.table("Invoice").columns}
    assert invoice["Total"] == "numeric(10,2)" and invoice["InvoiceDate"] == "timestamp(0)"
    # NVARCHAR becomes utf8mb3 columns inside utf8mb4 tables on MariaDB (chinook README).
    assert {c.charset for c in chinook.table("Artist").columns if c.charset} == {"utf8mb3"}


# ------------------------------------------------------------------------------------------- edge cases


EDGE_DDL = """
CREATE TABLE parent (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  boss bigint unsigned NULL,
  doc json,
  flags bit(5) NOT NULL DEFAULT b'00101',
  price decimal(12,4) NOT NULL DEFAULT 0,
  label varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT 'a''b',
  d date DEFAULT '2000-01-01',
  t time(3),
  total decimal(13,4) AS (price * 2) STORED,
  half decimal(13,4) AS (price / 2) VIRTUAL,
  CONSTRAINT price_positive CHECK (price >= 0),
  CONSTRAINT parent_boss FOREIGN KEY (boss) REFERENCES parent (id) ON DELETE SET NULL,
  UNIQUE KEY label_prefix (label(5)),
  KEY price_desc (price DESC)
) ENGINE=InnoDB;
CREATE TABLE `odd ``name` (`col ``q` int PRIMARY KEY, pt point NOT NULL, SPATIAL KEY (pt)) ENGINE=InnoDB;
"""


def test_edge_cases(mariadb: MariaDBServer, mysql_db: str, conn: pymysql.connections.Connection) -> None:
    mariadb.execute(mysql_db, EDGE_DDL)
    cat = reflect.reflect(conn, mysql_db, TypeSettings(postgis=True))
    parent = cat.table("parent")
    cols = {c.name: c for c in parent.columns}
    assert cols["id"].auto_increment and cols["id"].mapping.target_type == "numeric(20)"
    assert cols["doc"].is_json and cols["doc"].mapping.target_type == "jsonb"  # MariaDB: longtext + json_valid
    assert cols["flags"].mapping.target_type == "bit(5)" and cols["flags"].default == "b'101'"
    assert cols["label"].default == "'a''b'" and cols["label"].charset == "latin1"
    assert any("transcoded" in n.message for n in cols["label"].mapping.notes)
    assert cols["t"].mapping.target_type == "time(3)"
    assert (cols["total"].generated, cols["half"].generated) == ("STORED", "VIRTUAL")
    assert "price" in (cols["total"].generation_expression or "") and cols["total"].default is None
    assert [c.name for c in parent.table.columns if c.generated] == ["total", "half"]
    assert {c.name: c.clause for c in parent.checks}["price_positive"] == "`price` >= 0"
    (fk,) = parent.foreign_keys
    assert fk.self_referencing and (fk.on_delete, fk.on_update) == ("SET NULL", "RESTRICT")
    idx = {i.name: i for i in parent.indexes}
    assert idx["label_prefix"].unique and idx["label_prefix"].prefix_lengths == [5]
    assert idx["price_desc"].descending == [True]
    odd = cat.table("odd `name")
    assert odd.table.primary_key == ["col `q"]
    assert [i.spatial for i in odd.indexes if not i.primary] == [True]
    assert {c.name: c.mapping.target_type for c in odd.columns}["pt"] == "geometry(Point)"


def test_a_server_that_cannot_start_says_why() -> None:
    from bulkmig.demo.servers import DevServerError

    with pytest.raises(
        DevServerError, match=r"(?s)did not start.*tail of server.log.*unknown variable .no-such-option"
    ):
        MariaDBServer(settings={"no_such_option": 1}, name="broken").start()
