"""full-load-and-cdc from MariaDB into PostgreSQL under a live write workload, through the real CLI.

sakila and chinook are loaded by their own loaders; a workload of our own writes during plan, extract,
import and load (inserts, updates, deletes, transactions over several tables, values of many types:
enums, sets, decimals, timestamps, geometry, blobs); ``bulkmig capture`` runs in the background from the
plan's binlog position; after ``replay --until-caught-up`` with the workload stopped, ``bulkmig validate``
(the cross-engine, value-by-value comparison) finds every table equal.  chinook's mixed-case names arrive
under their folded target names.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql

from bulkmig.demo.servers import MariaDBServer, load_dataset


class Workload:
    """Writes one transaction after another until stopped; ``step(cur, rng, i)`` is one transaction."""

    def __init__(self, mariadb: MariaDBServer, db: str, step: Callable[[Any, random.Random, int], None]) -> None:
        self.args = mariadb.connect_args(db)
        self.step = step
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.transactions = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(6)
        try:
            conn = pymysql.connect(**self.args, autocommit=False)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")
                    while not self.stop.is_set():
                        self.step(cur, rng, self.transactions)
                        conn.commit()
                        self.transactions += 1
                        time.sleep(0.003)
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


def sakila_step(cur: Any, rng: random.Random, i: int) -> None:
    k = rng.randrange(1, 1000)
    choice = i % 7
    if choice == 0:  # several tables in one transaction, a trigger's rows (film_text) among them
        cur.execute("INSERT INTO actor (first_name, last_name) VALUES (%s, %s)", (f"NEW{i}", f"ACTOR 'Q' {i}"))
        cur.execute("INSERT INTO film_actor (actor_id, film_id) VALUES (LAST_INSERT_ID(), %s)", (k,))
        cur.execute(
            "UPDATE film SET rental_rate = rental_rate + 0.01, rating = ELT(1 + %s, 'G','PG','PG-13','R','NC-17'), "
            "special_features = ELT(1 + %s, NULL, '', 'Trailers', 'Trailers,Deleted Scenes'), "
            "description = CONCAT('changed ', %s) WHERE film_id = %s",
            (k % 5, k % 4, i, k),
        )
    elif choice == 1:  # a rental and its payment
        cur.execute(
            "INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id) "
            "VALUES ('2030-01-01' + INTERVAL %s SECOND, %s, %s, 1)",
            (i, rng.randrange(1, 4582), rng.randrange(1, 600)),
        )
        cur.execute(
            "INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date) "
            "SELECT customer_id, 2, rental_id, %s, rental_date FROM rental WHERE rental_id = LAST_INSERT_ID()",
            (f"{rng.randrange(0, 1000) / 100:.2f}",),
        )
    elif choice == 2:
        cur.execute(
            "UPDATE customer SET active = 1 - active, email = %s WHERE customer_id = %s", (f"c{i}@x.org", k % 599 + 1)
        )
    elif choice == 3:  # a geometry column in the row image
        cur.execute("UPDATE address SET phone = %s, address2 = NULL WHERE address_id = %s", (str(i), k % 603 + 1))
    elif choice == 4:
        cur.execute("DELETE FROM payment WHERE payment_id = %s", (rng.randrange(1, 16050),))
    elif choice == 5:
        cur.execute("UPDATE rental SET return_date = NOW(6) WHERE rental_id = %s", (rng.randrange(1, 16050),))
    else:
        cur.execute("DELETE FROM film_actor WHERE actor_id > 200 AND film_id = %s", (k,))
        cur.execute("UPDATE staff SET picture = %s WHERE staff_id = 1", (bytes([i % 256, 0, 255]),))


def chinook_step(cur: Any, rng: random.Random, i: int) -> None:
    k = rng.randrange(1, 3504)
    choice = i % 4
    if choice == 0:  # an invoice and its lines (chinook's keys have no AUTO_INCREMENT)
        invoice = 100_000 + i
        cur.execute(
            "INSERT INTO Invoice (InvoiceId, CustomerId, InvoiceDate, BillingCity, Total) "
            "VALUES (%s, %s, NOW(), %s, 0)",
            (invoice, rng.randrange(1, 60), "Città"),
        )
        for line in range(rng.randrange(1, 4)):
            cur.execute(
                "INSERT INTO InvoiceLine (InvoiceLineId, InvoiceId, TrackId, UnitPrice, Quantity) "
                "VALUES (%s, %s, %s, 0.99, 1)",
                (invoice * 10 + line, invoice, k + line),
            )
    elif choice == 1:
        cur.execute("UPDATE Track SET UnitPrice = UnitPrice + 0.01, Name = CONCAT(Name, '·') WHERE TrackId = %s", (k,))
    elif choice == 2:
        cur.execute("DELETE FROM InvoiceLine WHERE InvoiceLineId = %s", (rng.randrange(1, 2241),))
    else:
        cur.execute("UPDATE Customer SET Fax = NULL, Company = %s WHERE CustomerId = %s", (f"Co {i}", k % 59 + 1))


def converge(flow: Any, workload: Workload) -> dict[str, Any]:
    """plan → capture in the background → extract → seal → import → load → replay, the workload writing all
    along; then the workload stops, replay catches up again, and ``bulkmig validate --json`` reports."""
    workload.thread.start()
    capture: subprocess.Popen[str] | None = None
    try:
        time.sleep(0.5)
        run = flow.bulkmig("plan")
        assert run.code == 0, run.text
        capture = subprocess.Popen(
            [sys.executable, "-m", "bulkmig.cli", "capture", "--task", str(flow.task)],
            env=flow.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run = flow.bulkmig("extract")
        assert run.code == 0, run.text
        run = flow.run("volume", "seal", str(flow.volume))
        assert run.code == 0, run.text
        for step in ("volume import", "load"):
            run = flow.bulkmig(step)
            assert run.code == 0, (step, run.text)
        time.sleep(1)  # changes keep flowing while replay starts
        first = flow.bulkmig("replay", "--until-caught-up")
        assert first.code == 0, first.text
    finally:
        workload.stop.set()
        workload.thread.join(timeout=30)
    assert not workload.thread.is_alive(), "the workload did not stop"
    assert not workload.errors, workload.errors
    assert workload.transactions > 100
    try:
        caught_up = flow.bulkmig("replay", "--until-caught-up")
        check = flow.bulkmig("validate", "--json")
    finally:
        if capture is not None:
            capture.terminate()
            _, capture_err = capture.communicate(timeout=60)
    assert caught_up.code == 0, caught_up.text
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True, check.out
    if capture is not None:
        assert capture.returncode == 0, capture_err
        assert "capture: batch" in capture_err
    return report


def test_sakila_full_load_and_cdc_converges_under_a_workload(make_mysql_flow, mariadb, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "sakila-mysql", "sakila")
    mariadb.execute("sakila", "ANALYZE TABLE payment, rental")
    flow = make_mysql_flow(database="sakila", migration_type="full-load-and-cdc", settings={"max_part_bytes": "256kB"})
    workload = Workload(mariadb, "sakila", sakila_step)
    report = converge(flow, workload)
    tables = {t["table"]: t for t in report["tables"]}
    assert len(tables) == 16
    assert tables["sakila.rental"]["source_rows"] > 16_044  # the workload's rentals arrived


def test_chinook_full_load_and_cdc_converges_under_folded_names(make_mysql_flow, mariadb, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "chinook-mysql", "Chinook")
    flow = make_mysql_flow(database="Chinook", migration_type="full-load-and-cdc", settings={"max_part_bytes": "64kB"})
    report = converge(flow, Workload(mariadb, "Chinook", chinook_step))
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["Chinook.Invoice"]["target"] == "chinook.invoice"
    assert tables["Chinook.Invoice"]["source_rows"] > 412  # the workload's invoices arrived


def test_renamed_tables_and_columns_receive_their_changes(  # noqa: ANN001
    make_mysql_flow, mariadb, mysql_db, pg_target, target_db
) -> None:
    """DMS rules rename ``a`` to ``alpha``, prefix every table and a column, and select ``a`` and ``b`` only.
    Capture writes the target names conversion decided; replay applies them as they are (mapping them
    again would prefix twice, and a selection rule would be matched against target names)."""
    mariadb.execute(
        mysql_db,
        "CREATE TABLE a (id int PRIMARY KEY, v varchar(20)); CREATE TABLE b (id int PRIMARY KEY, v varchar(20));"
        "CREATE TABLE c (id int PRIMARY KEY); INSERT INTO a VALUES (1, 'one'), (2, 'two');"
        "INSERT INTO b VALUES (1, 'b1')",
    )

    def rule(rid: str, **fields: Any) -> dict[str, Any]:
        return {"rule-id": rid, "rule-name": f"r{rid}", **fields}

    def locator(table: str, column: str | None = None) -> dict[str, str]:
        return {"schema-name": mysql_db, "table-name": table, **({"column-name": column} if column else {})}

    def transform(rid: str, action: str, target: str, where: dict[str, str], value: str) -> dict[str, Any]:
        fields = {"rule-action": action, "rule-target": target, "object-locator": where, "value": value}
        return rule(rid, **{"rule-type": "transformation", **fields})

    def select(rid: str, table: str) -> dict[str, Any]:
        return rule(rid, **{"rule-type": "selection", "rule-action": "include", "object-locator": locator(table)})

    mappings = {
        "rules": [
            select("1", "a"),
            select("2", "b"),
            transform("3", "rename", "table", locator("a"), "alpha"),
            transform("4", "add-prefix", "table", locator("%"), "t_"),
            transform("5", "add-prefix", "column", locator("%", "v"), "c_"),
        ]
    }
    flow = make_mysql_flow(migration_type="full-load-and-cdc", table_mappings=mappings)
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    schema = mysql_db.lower()
    tables = pg_target.execute(
        target_db, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
    )
    assert [t for (t,) in tables] == ["t_alpha", "t_b"]

    mariadb.execute(
        mysql_db,
        "INSERT INTO a VALUES (3, 'three'); UPDATE a SET v = 'uno' WHERE id = 1; DELETE FROM a WHERE id = 2;"
        "UPDATE b SET v = 'b-one' WHERE id = 1; INSERT INTO b VALUES (2, 'b2'); INSERT INTO c VALUES (1)",
    )
    for step in (("capture", "--once"), ("replay", "--until-caught-up")):
        run = flow.bulkmig(*step)
        assert run.code == 0, (step, run.text)
    alpha = pg_target.execute(target_db, f'SELECT id, c_v FROM "{schema}".t_alpha ORDER BY id')
    assert alpha == [(1, "uno"), (3, "three")]
    beta = pg_target.execute(target_db, f'SELECT id, c_v FROM "{schema}".t_b ORDER BY id')
    assert beta == [(1, "b-one"), (2, "b2")]
