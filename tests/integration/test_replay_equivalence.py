"""Set-based replay gives exactly what one-by-one replay gives, on a real PostgreSQL, for random streams.

A source model makes change streams a real source could send (inserts, updates, deletes on several
tables with several types and NULLs; updates that leave TOASTed columns unsent; rows deleted and inserted
again; keys updated to another key's old value, swaps and chains; a secondary unique value handed from
one row to another; a TRUNCATE).  The same batches, from moto's S3 over HTTP, are replayed set-based into
one target database and change by change (``set_based=False``) into another, both seeded with the same
full load; then every row of every table is compared exactly, through each column's text output, between
the two and with the source model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, write_batch
from bulkmig.cdc.position import format_lsn
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.store import S3Options, open_store
from bulkmig.demo.servers import MotoS3Server, PostgresServer, free_port
from bulkmig.engines.postgres.sql import ident
from bulkmig.replay import replay

STREAM = "pg-slot-bulkmig_equivalence"
BIG = 300_000  # past the TOAST threshold: the columns pgoutput leaves unsent when unchanged

DDL = """
CREATE TABLE public.acct (id integer PRIMARY KEY, name text, balance numeric(12,2), note text,
                          seen timestamptz, active boolean, doc jsonb, tags text[], raw bytea);
CREATE TABLE public.pair (a integer, b text, v text, n bigint, code text UNIQUE, PRIMARY KEY (a, b));
CREATE TABLE public.ident (id bigint PRIMARY KEY, serial bigint GENERATED ALWAYS AS IDENTITY, v text, big text);
CREATE TABLE public.child (id integer PRIMARY KEY, acct_id integer REFERENCES public.acct (id), qty integer,
                           twice integer GENERATED ALWAYS AS (qty * 2) STORED);
"""


@dataclass
class Spec:
    columns: list[str]
    types: list[str]
    key: list[str]
    toast: list[str]  # columns an update may leave unsent (unchanged TOAST)


SPECS = {
    "acct": Spec(
        ["id", "name", "balance", "note", "seen", "active", "doc", "tags", "raw"],
        ["integer", "text", "numeric(12,2)", "text", "timestamp with time zone", "boolean", "jsonb", "text[]", "bytea"],
        ["id"],
        ["note", "doc"],
    ),
    "pair": Spec(["a", "b", "v", "n", "code"], ["integer", "text", "text", "bigint", "text"], ["a", "b"], ["v"]),
    "ident": Spec(["id", "serial", "v", "big"], ["bigint", "bigint", "text", "text"], ["id"], ["big"]),
    "child": Spec(["id", "acct_id", "qty"], ["integer", "integer", "integer"], ["id"], []),
}
ORDER = ("acct", "pair", "ident", "child")  # full-load order (foreign keys)
NASTY = ["", "tab\there", "new\nline", "back\\slash", 'quo"te', "it's", "ünï ☃", "\\N", "NULL", "a,b", "\\."]

Key = tuple[str, ...]
Row = list[str | None]


@dataclass
class Source:
    """The source database: what every table holds now, and the changes that got it there."""

    rng: random.Random
    tables: dict[str, dict[Key, Row]] = field(default_factory=lambda: {n: {} for n in SPECS})
    serial: int = 0
    code: int = 0
    lsn: int = 0x3000000
    seq: int = 0
    batch_no: int = 0

    # ------------------------------------------------------------------ values

    def text(self) -> str | None:
        r = self.rng.random()
        if r < 0.15:
            return None
        return self.rng.choice(NASTY) if r < 0.45 else f"t{self.rng.randrange(10**6)}"

    def big(self) -> str:
        return self.rng.choice("abcdef") * BIG if self.rng.random() < 0.3 else f"small {self.rng.randrange(999)}"

    def value(self, table: str, column: str) -> str | None:
        r = self.rng
        if table == "acct":
            if column == "balance":
                return None if r.random() < 0.1 else f"{r.randrange(-99999, 99999) / 100:.2f}"
            if column == "note":
                return None if r.random() < 0.1 else self.big()
            if column == "seen":
                t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=r.randrange(10**7))
                return None if r.random() < 0.1 else t.strftime("%Y-%m-%d %H:%M:%S+00")
            if column == "active":
                return r.choice(["true", "false", None])
            if column == "doc":
                return r.choice([None, '{"k": 1}', '{"a": [1, 2], "s": "x\\ty"}', "[]", '"str"'])
            if column == "tags":
                return r.choice([None, "{}", "{a,b}", '{"x y",NULL}'])
            if column == "raw":
                return r.choice([None, "\\x", "\\x00ff10", "\\x5c4e"])
        if table == "pair":
            if column == "n":
                return r.choice([None, str(r.randrange(-(2**40), 2**40))])
            if column == "code":
                self.code += 1
                return None if r.random() < 0.3 else f"code-{self.code}"
        if table == "ident" and column == "big":
            return self.big()
        if table == "child" and column == "qty":
            return r.choice([None, str(r.randrange(1000))])
        return self.text()

    def new_key(self, table: str) -> Key:
        r = self.rng
        if table == "pair":
            return (str(r.randrange(1, 30)), r.choice(["x", "y", "z", "", "\\N"]))
        return (str(r.randrange(1, {"acct": 120, "ident": 80, "child": 150}[table])),)

    def new_row(self, table: str, key: Key) -> Row:
        spec = SPECS[table]
        row = [self.value(table, c) for c in spec.columns]
        for c, v in zip(spec.key, key, strict=True):
            row[spec.columns.index(c)] = v
        if table == "ident":
            self.serial += 1
            row[1] = str(self.serial)  # what the source's identity generated
        if table == "child":
            row[1] = self.rng.choice(sorted(self.tables["acct"]))[0] if self.tables["acct"] else None
        return row

    # ------------------------------------------------------------------ changes

    def emit(self, out: dict[str, list[ChangeRow]], table: str, op: str, values: Row, **kw: object) -> None:
        self.seq += 1
        self.lsn += 0x38
        ts = datetime(2026, 11, 27, tzinfo=UTC) + timedelta(microseconds=self.seq)
        out.setdefault(table, []).append(ChangeRow(op, format_lsn(self.lsn), self.seq, self.seq, ts, values, **kw))  # type: ignore[arg-type]

    def key_only(self, table: str, key: Key) -> Row:
        spec = SPECS[table]
        return [key[spec.key.index(c)] if c in spec.key else None for c in spec.columns]

    def insert(self, out: dict[str, list[ChangeRow]], table: str, key: Key | None = None) -> None:
        key = key or self.new_key(table)
        if key in self.tables[table] or (table == "child" and not self.tables["acct"]):
            return
        row = self.new_row(table, key)
        self.tables[table][key] = row
        self.emit(out, table, "I", list(row))

    def delete(self, out: dict[str, list[ChangeRow]], table: str, key: Key) -> None:
        if table == "acct":  # the source's foreign key: its children go first
            for ck, crow in sorted(self.tables["child"].items()):
                if crow[1] == key[0]:
                    self.delete(out, "child", ck)
        del self.tables[table][key]
        before = self.key_only(table, key)
        self.emit(out, table, "D", list(before), before=before if self.rng.random() < 0.5 else None)

    def update(self, out: dict[str, list[ChangeRow]], table: str, key: Key, new_key: Key | None = None) -> None:
        spec, rows = SPECS[table], self.tables[table]
        if new_key is not None and (new_key in rows or (table == "acct" and self.referenced(key))):
            return
        new_key = new_key or key
        old = rows.pop(key)
        fresh = self.new_row(table, new_key)
        if table == "ident":
            fresh[1] = old[1]  # an update does not touch the identity
            self.serial -= 1
        unsent = [c for c in spec.toast if self.rng.random() < 0.5]
        if table == "pair" and self.rng.random() < 0.6:
            fresh[4] = old[4]  # most updates leave the unique code alone
        row = [old[j] if c in unsent else fresh[j] for j, c in enumerate(spec.columns)]
        rows[new_key] = row
        sent = [None if c in unsent else v for c, v in zip(spec.columns, row, strict=True)]
        before = self.key_only(table, key) if new_key != key else None
        self.emit(out, table, "U", sent, unchanged=unsent, before=before)

    def referenced(self, key: Key) -> bool:
        return any(crow[1] == key[0] for crow in self.tables["child"].values())

    def batch(self, changes: int, *, truncate: bool = False) -> Batch:
        out: dict[str, list[ChangeRow]] = {}
        freed: dict[str, list[Key]] = {n: [] for n in SPECS}  # keys vacated in this batch
        first = self.lsn
        start = self.seq
        while self.seq - start < changes:
            table = self.rng.choice(ORDER)
            rows, r = self.tables[table], self.rng.random()
            if truncate and self.seq - start >= changes // 2:
                truncate = False
                rows = self.tables["pair"]
                rows.clear()
                self.emit(out, "pair", "T", [None] * len(SPECS["pair"].columns))
                continue
            if not rows or r < 0.3:
                again = freed[table] and self.rng.random() < 0.3
                self.insert(out, table, self.rng.choice(freed[table]) if again else None)  # deleted, inserted again
            elif r < 0.45:
                key = self.rng.choice(sorted(rows))
                self.delete(out, table, key)
                freed[table].append(key)
            elif r < 0.55 and table != "child":  # a key change, often to a key vacated just before
                key = self.rng.choice(sorted(rows))
                target = self.rng.choice(freed[table]) if freed[table] and self.rng.random() < 0.6 else None
                if target is None and self.rng.random() < 0.3 and len(rows) > 1:  # a swap, through a third key
                    other = self.rng.choice(sorted(rows))
                    spare = self.new_key(table)
                    pinned = table == "acct" and (self.referenced(key) or self.referenced(other))
                    if other != key and spare not in rows and not pinned:
                        self.update(out, table, key, spare)
                        self.update(out, table, other, key)
                        self.update(out, table, spare, other)
                        continue
                self.update(out, table, key, target or self.new_key(table))
                if key not in self.tables[table]:  # it moved
                    freed[table].append(key)
                    if target in freed[table]:
                        freed[table].remove(target)
            elif r < 0.58 and table == "pair" and len(rows) > 1:  # a unique code handed to another row
                giver, taker = self.rng.sample(sorted(rows), 2)
                code = rows[giver][4]
                if code is not None:
                    rows[giver][4] = None
                    self.emit(out, "pair", "U", list(rows[giver]))
                    rows[taker][4] = code
                    sent = [None if c == "v" else v for c, v in zip(SPECS["pair"].columns, rows[taker], strict=True)]
                    self.emit(out, "pair", "U", sent, unchanged=["v"])
            else:
                self.update(out, table, self.rng.choice(sorted(rows)))
        self.batch_no += 1
        tables = [
            TableChanges("public", n, SPECS[n].columns, SPECS[n].types, SPECS[n].key, "d", rows)
            for n, rows in out.items()
        ]
        self.lsn += 0x100
        return Batch(STREAM, self.batch_no, format_lsn(first), format_lsn(self.lsn), changes // 4, tables)

    def seed(self, rows: int) -> None:
        for table in ORDER:
            for _ in range(rows):
                self.insert({}, table)


def load(pg: PostgresServer, db: str, source: Source) -> None:
    """The full load: the source's rows as they are now (identity values included)."""
    pg.execute(db, DDL)
    with psycopg.connect(pg.conninfo(db), autocommit=True) as conn:
        for table in ORDER:
            cols = ", ".join(ident(c) for c in SPECS[table].columns)
            with conn.cursor().copy(f"COPY public.{ident(table)} ({cols}) FROM STDIN") as copy:
                for row in source.tables[table].values():
                    copy.write_row(row)


def contents(pg: PostgresServer, db: str, table: str) -> list[tuple[str | None, ...]]:
    """Every row, every column (generated and identity included) as the target's text output."""
    with psycopg.connect(pg.conninfo(db), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (f"public.{table}",),
            )
        ]
        cols = ", ".join(f"{ident(c)}::text" for c in names)
        return sorted(conn.execute(f"SELECT {cols} FROM public.{ident(table)}").fetchall(), key=repr)


def model(source: Source, table: str) -> list[tuple[str | None, ...]]:
    rows = [tuple(r) for r in source.tables[table].values()]
    if table == "child":  # the generated column, as the target computes it
        rows = [(*r, str(int(r[2]) * 2) if r[2] is not None else None) for r in rows]
    return sorted(rows, key=repr)


def task_for(pg: PostgresServer, db: str, s3: MotoS3Server, bucket: str, tmp: Path) -> Task:
    doc = {
        "source": f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere",  # only read for the lag figure
        "target": pg.url(db),
        "migration_type": "cdc",
        "volume": "./volume",
        "bucket": f"s3://{bucket}/eq",
        "s3": {"endpoint_url": s3.endpoint_url, "region": s3.region},
    }
    return Task.from_dict(doc, tmp, env={"BULKMIG_TARGET_PASSWORD": pg.password})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_set_based_replay_equals_one_by_one_row_for_row(
    seed: int,
    pg_target: PostgresServer,
    target_db: str,
    s3_server: MotoS3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    exact_db = f"{target_db}_exact"
    pg_target.create_database(exact_db)
    try:
        source = Source(random.Random(seed))
        source.seed(60)
        for db in (target_db, exact_db):
            load(pg_target, db, source)
        store = open_store(f"s3://{bucket}/eq", S3Options(endpoint_url=s3_server.endpoint_url, region=s3_server.region))
        batches = [source.batch(1500, truncate=(i == 3)) for i in range(6)] + [source.batch(40)]
        for b in batches:
            write_batch(store, layout.join("cdc", STREAM), b)
        kinds = {r.op for b in batches for t in b.tables for r in t.rows}
        moves = sum(1 for b in batches for t in b.tables for r in t.rows if r.op == "U" and r.before is not None)
        assert kinds == {"I", "U", "D", "T"} and moves > 20, "the generator should make every kind of change"

        fast = replay(task_for(pg_target, target_db, s3_server, bucket, tmp_path))
        slow = replay(task_for(pg_target, exact_db, s3_server, bucket, tmp_path), set_based=False)
        assert fast.batches == slow.batches == len(batches)
        assert fast.exact_batches <= 3, "most batches must go set-based, or this compares one-by-one with itself"
        for table in ORDER:
            got, want = contents(pg_target, target_db, table), contents(pg_target, exact_db, table)
            assert len(got) == len(want), f"{table}: {len(got)} rows set-based, {len(want)} one by one"
            for g, w in zip(got, want, strict=True):
                assert g == w, f"{table}: set-based {str(g)[:300]} != one-by-one {str(w)[:300]}"
            assert got == model(source, table), f"{table}: the targets differ from the source"
        big = pg_target.execute(target_db, "SELECT count(*) FROM public.acct WHERE length(note) >= %s", (BIG,))
        assert big[0][0] > 0, "some TOASTed notes should be there, kept through updates that did not send them"
    finally:
        pg_target.drop_database(exact_db)
