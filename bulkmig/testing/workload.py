"""A write workload for fault tests that makes a lost or repeated change visible as a count.

Every transaction inserts the next ids into two tables: ``fw_keyed`` (primary key) and ``fw_log``
(no key, replica identity FULL).  A change batch applied twice leaves duplicate rows in ``fw_log``; a
batch skipped leaves ids missing in both; so after a fault the target's ``count(*)`` and
``count(DISTINCT id)`` per table, compared with the source's, prove "nothing lost, nothing twice" —
an upsert-style replay could hide a repeat on a keyed table, never on a keyless one.  Some
transactions also update an earlier row (``n = n + 1``), so updates travel too.

The writer outlives a source restart: a failed transaction is judged by whether its first id is on
the source after reconnecting (its rows commit together or not at all), so the writer knows exactly
which ids exist and never inserts one twice.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg

SCHEMA_SQL = """
CREATE TABLE fw_keyed (id bigint PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
CREATE TABLE fw_log (id bigint NOT NULL, v text NOT NULL);
ALTER TABLE fw_log REPLICA IDENTITY FULL;
"""
TABLES = ("fw_keyed", "fw_log")
# What is compared between source and target: rows, distinct ids, and every row's text.
FINGERPRINT_SQL = (
    "SELECT count(*), count(DISTINCT id), coalesce(max(id), 0),"
    " md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"
)


class InsertWorkload:
    """Unique inserts into ``fw_keyed`` and ``fw_log`` in a background thread until :meth:`stop`.

    ``conninfo`` should commit with ``synchronous_commit=on`` (logical decoding only sees flushed WAL).
    """

    def __init__(self, conninfo: str, *, rows_per_txn: int = 5, pause: float = 0.01, seed: int = 7) -> None:
        self.conninfo = conninfo
        self.rows_per_txn = rows_per_txn
        self.pause = pause
        self.rng = random.Random(seed)
        self.committed = 0  # the highest id known to be committed (every id up to it is)
        self.transactions = 0
        self.outages = 0  # transactions that failed because the source went away
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-workload", daemon=True)

    def start(self) -> InsertWorkload:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current transaction; raises what the writer failed with, if anything."""
        self._stop.set()
        self._thread.join(60)
        if self.errors:
            raise self.errors[0]

    def wait_for(self, transactions: int, timeout: float = 60.0) -> None:
        """Block until at least ``transactions`` have committed."""
        deadline = time.monotonic() + timeout
        while self.transactions < transactions:
            if self.errors:
                raise self.errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workload committed {self.transactions} of {transactions} transactions")
            time.sleep(0.02)

    def _connect(self) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + 120
        while True:
            try:
                return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError:
                if self._stop.is_set() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _transaction(self, conn: psycopg.Connection[Any], first: int) -> None:
        ids = list(range(first, first + self.rows_per_txn))
        with conn.transaction():
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO fw_keyed (id, v) VALUES (%s, %s)", [(i, f"row {i}") for i in ids])
                cur.executemany("INSERT INTO fw_log (id, v) VALUES (%s, %s)", [(i, f"log {i}") for i in ids])
            if first > 1 and self.rng.random() < 0.3:
                conn.execute("UPDATE fw_keyed SET n = n + 1 WHERE id = %s", (self.rng.randrange(1, first),))

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                if conn is None:
                    conn = self._connect()
                first = self.committed + 1
                try:
                    self._transaction(conn, first)
                except psycopg.OperationalError:
                    # The source went away: did the commit land before it did?  Its rows tell.
                    self.outages += 1
                    conn.close()
                    conn = self._connect()
                    if not conn.execute("SELECT 1 FROM fw_keyed WHERE id = %s", (first,)).fetchone():
                        continue
                self.committed = first + self.rows_per_txn - 1
                self.transactions += 1
                self._stop.wait(self.pause)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by stop()
            self.errors.append(exc)
        finally:
            if conn is not None:
                conn.close()


def fingerprints(execute: Any, db: str) -> dict[str, tuple[Any, ...]]:
    """Per workload table: (rows, distinct ids, max id, md5 of every row) via ``server.execute``."""
    return {t: tuple(execute(db, FINGERPRINT_SQL.format(table=t))[0]) for t in TABLES}
