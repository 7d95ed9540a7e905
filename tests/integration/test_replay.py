"""Replay against a real PostgreSQL target and moto's S3 server over HTTP.

Batches are written by hand with ``write_batch`` (no capture needed), from a workload generator that
also keeps a reference model of what every table must hold: every change applied one by one in seq
order.  The target is then compared with the model value by value, through the columns' text output.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, write_batch
from bulkmig.cdc.position import format_lsn
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError, TargetError
from bulkmig.core.store import S3Options, Store, open_store
from bulkmig.demo.servers import MotoS3Server, PostgresServer, free_port
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.postgres.target import replay as pg_target
from bulkmig.replay import replay, replay_status
from bulkmig.replay import runner as replay_mod

STREAM = "pg-slot-bulkmig_test"
PREFIX = layout.join("cdc", STREAM)
BIG = 3 * 1024 * 1024  # a multi-megabyte TOASTed text value

TARGET_DDL = """
CREATE TABLE public.docs (id bigint PRIMARY KEY, title text NOT NULL, body text, n integer);
-- A trigger that would rewrite every row it saw: replay must not fire it (session_replication_role).
CREATE FUNCTION public.docs_touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.title := 'TRIGGER FIRED'; RETURN NEW; END$$;
CREATE TRIGGER docs_touch BEFORE INSERT OR UPDATE ON public.docs FOR EACH ROW EXECUTE FUNCTION public.docs_touch();
CREATE TABLE public.lines (order_id integer, line_no integer, sku text, qty integer, PRIMARY KEY (order_id, line_no));
CREATE TABLE public.log (ts text, msg text, payload jsonb);
CREATE TABLE public."Odd Names" ("k__" integer PRIMARY KEY, "Op" text, op text, "__op" text, "select" text,
                                 s text, t text);
CREATE TABLE public.calc (id integer PRIMARY KEY, a integer, b integer,
                          total integer GENERATED ALWAYS AS (a + b) STORED);
"""


@dataclass
class Spec:
    """A source table as the change stream describes it."""

    name: str
    columns: list[str]
    types: list[str]
    key: list[str]  # what identifies a row in the model ([] = a multiset)
    identity: str = "d"

    @property
    def stream_key(self) -> list[str]:
        """The key capture sends: under REPLICA IDENTITY FULL pgoutput flags every column as key."""
        return list(self.columns) if self.identity == "f" else self.key


SPECS = {
    "docs": Spec("docs", ["id", "title", "body", "n"], ["bigint", "text", "text", "integer"], ["id"]),
    "lines": Spec(
        "lines",
        ["order_id", "line_no", "sku", "qty"],
        ["integer", "integer", "text", "integer"],
        ["order_id", "line_no"],
    ),
    "log": Spec("log", ["ts", "msg", "payload"], ["text", "text", "jsonb"], [], "f"),
    "Odd Names": Spec(
        "Odd Names", ["k__", "Op", "op", "__op", "select", "s", "t"], ["integer"] + ["text"] * 6, ["k__"]
    ),
    # REPLICA IDENTITY FULL on the source, a primary key on the target: replay keys it by that.
    "calc": Spec("calc", ["id", "a", "b"], ["integer", "integer", "integer"], ["id"], "f"),
}

NASTY = ["plain", "", "tab\there", "new\nline", "back\\slash", 'quo"te', "it's", "ünï ☃", "\\N", "NULL", "a,b"]


@dataclass
class Workload:
    """Generates source-like change batches and keeps the expected target state.

    Keyed tables: key tuple -> values.  The key-less ``log``: a list of rows (a multiset).
    """

    seed: int = 0
    big_every: int = 0  # 1 in N docs inserts carries a multi-megabyte body (0: never)
    key_changes: float = 0.08  # share of the changes of docs and lines that move a row to a new key
    state: dict[str, Any] = field(default_factory=dict)
    seq_pos: int = 0x1000000
    next_seq: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        for name, spec in SPECS.items():
            self.state[name] = [] if not spec.key else {}

    # -------------------------------------------------------------- values

    def text(self) -> str | None:
        r = self.rng.random()
        if r < 0.1:
            return None
        if r < 0.4:
            return self.rng.choice(NASTY)
        return f"v{self.rng.randrange(10**6)}"

    def body(self) -> str:
        if self.big_every and self.rng.randrange(self.big_every) == 0:
            return os.urandom(BIG // 2).hex()
        return f"body {self.rng.randrange(10**9)} " + self.rng.choice(NASTY)

    def new_row(self, name: str, key: tuple[str, ...] | None = None) -> list[str | None]:
        r = self.rng
        if name == "docs":
            k = key or (str(r.randrange(1, 400)),)
            return [k[0], f"title {r.randrange(1000)}", self.body(), str(r.randrange(-5, 5))]
        if name == "lines":
            k = key or (str(r.randrange(1, 40)), str(r.randrange(1, 8)))
            return [k[0], k[1], self.text(), str(r.randrange(100))]
        if name == "log":
            return [f"t{r.randrange(5)}", r.choice(["a", "b", None, "tab\t"]), f'{{"k": {r.randrange(4)}}}']
        if name == "Odd Names":
            k = key or (str(r.randrange(1, 200)),)
            return [k[0]] + [self.text() for _ in range(6)]
        k = key or (str(r.randrange(1, 200)),)
        return [k[0], str(r.randrange(100)), str(r.randrange(100))]

    # -------------------------------------------------------------- changes

    def key_of(self, name: str, values: list[str | None]) -> tuple[str | None, ...]:
        spec = SPECS[name]
        return tuple(values[spec.columns.index(k)] for k in spec.key)

    def change(self, name: str, seq: int) -> ChangeRow | None:
        """One change the source could make now, applied to the model."""
        spec, r, st = SPECS[name], self.rng, self.state[name]
        ts = datetime(2026, 11, 27, tzinfo=UTC) + timedelta(microseconds=seq)
        pos = format_lsn(self.seq_pos)
        n = len(spec.columns)
        choice = r.random()
        if not spec.key:  # key-less: whole-row identity
            if not st or choice < 0.5:
                values = self.new_row(name)
                st.append(list(values))
                return ChangeRow("I", pos, seq, seq, ts, values)
            i = r.randrange(len(st))
            before = list(st[i])
            if choice < 0.75:
                values = self.new_row(name)
                unchanged = ["payload"] if r.random() < 0.3 else []
                if unchanged:
                    values[2] = None
                    st[i] = values[:2] + [before[2]]
                else:
                    st[i] = list(values)
                return ChangeRow("U", pos, seq, seq, ts, values, unchanged, before)
            del st[i]
            return ChangeRow("D", pos, seq, seq, ts, [None] * n, [], before)
        if not st or choice < 0.35:
            values = self.new_row(name)
            k = self.key_of(name, values)
            if k in st:
                return None
            st[k] = list(values)
            return ChangeRow("I", pos, seq, seq, ts, values)
        k = r.choice(sorted(st))
        full = list(st[k]) if spec.identity == "f" else None  # the whole old row, as pgoutput sends it
        if choice < 0.5:
            del st[k]
            if full is not None:
                return ChangeRow("D", pos, seq, seq, ts, full, [], full)
            values = [k[spec.key.index(c)] if c in spec.key else None for c in spec.columns]
            return ChangeRow("D", pos, seq, seq, ts, values, [], values if r.random() < 0.5 else None)
        if choice < 0.5 + self.key_changes and name in ("lines", "docs"):  # the key changes
            new = self.new_row(name)
            nk = self.key_of(name, new)
            if nk in st:
                return None
            old = st.pop(k)
            unchanged = ["body"] if name == "docs" and r.random() < 0.5 else []
            if unchanged:
                new[2] = None
                st[nk] = new[:2] + [old[2]] + new[3:]
            else:
                st[nk] = list(new)
            before = [k[spec.key.index(c)] if c in spec.key else None for c in spec.columns]
            return ChangeRow("U", pos, seq, seq, ts, new, unchanged, before)
        new = self.new_row(name, k)
        if name == "docs" and choice < 0.85:  # the multi-megabyte body not sent: keep it
            new[2] = None
            st[k] = new[:2] + [st[k][2]] + new[3:]
            return ChangeRow("U", pos, seq, seq, ts, new, ["body"])
        st[k] = list(new)
        return ChangeRow("U", pos, seq, seq, ts, new, [], full)

    def batch(self, changes: int, *, tables: tuple[str, ...] = tuple(SPECS), truncate: str | None = None) -> Batch:
        rows: dict[str, list[ChangeRow]] = {name: [] for name in tables}
        seq = 0
        while seq < changes:
            name = self.rng.choice(tables)
            if truncate == name and seq == changes // 2:
                self.state[name] = [] if not SPECS[name].key else {}
                ts = datetime(2026, 11, 27, tzinfo=UTC)
                rows[name].append(
                    ChangeRow("T", format_lsn(self.seq_pos), seq, seq, ts, [None] * len(SPECS[name].columns))
                )
                seq += 1
                continue
            row = self.change(name, seq)
            if row is not None:
                rows[name].append(row)
                seq += 1
                self.seq_pos += 0x40
        first = self.seq_pos
        self.seq_pos += 0x100
        tcs = [
            TableChanges(
                "public", name, SPECS[name].columns, SPECS[name].types, SPECS[name].stream_key, SPECS[name].identity, r
            )
            for name, r in rows.items()
            if r
        ]
        b = Batch(STREAM, self.next_seq, format_lsn(first), format_lsn(self.seq_pos), max(changes // 3, 1), tcs)
        self.next_seq += 1
        return b

    def seed_target(self, pg: PostgresServer, db: str, rows: int = 60) -> None:
        """The full load: a starting state, in the target and in the model (one connection: thousands of
        rows, one connection each, took most of a test's time)."""
        with psycopg.connect(pg.conninfo(db), autocommit=True) as conn, conn.cursor() as cur:
            for name, spec in SPECS.items():
                for _ in range(rows):
                    values = self.new_row(name)
                    if spec.key:
                        k = self.key_of(name, values)
                        if k in self.state[name]:
                            continue
                        self.state[name][k] = values
                    else:
                        self.state[name].append(values)
                    cols = ", ".join(ident(c) for c in spec.columns)
                    marks = ", ".join(["%s"] * len(values))
                    cur.execute(f"INSERT INTO public.{ident(name)} ({cols}) VALUES ({marks})", values)
            cur.execute("UPDATE public.docs SET title = title")  # the trigger fires here, on purpose
        for values in self.state["docs"].values():
            values[1] = "TRIGGER FIRED"


def target_rows(pg: PostgresServer, db: str, name: str, columns: list[str]) -> list[tuple[str | None, ...]]:
    cols = ", ".join(f"{ident(c)}::text" for c in columns)
    return sorted(pg.execute(db, f"SELECT {cols} FROM public.{ident(name)}"), key=repr)


def assert_target_equals_model(pg: PostgresServer, db: str, work: Workload) -> None:
    for name, spec in SPECS.items():
        got = target_rows(pg, db, name, spec.columns)
        st = work.state[name]
        want = sorted((tuple(v) for v in (st.values() if spec.key else st)), key=repr)
        assert len(got) == len(want), f"{name}: {len(got)} rows on the target, {len(want)} expected"
        for g, w in zip(got, want, strict=True):
            assert g == w, f"{name}: target has {str(g)[:200]}, expected {str(w)[:200]}"


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Env:
    pg: PostgresServer
    db: str
    task: Task
    task_file: Path
    store: Store
    env: dict[str, str]

    def position(self) -> tuple[int, str] | None:
        if not self.pg.execute(self.db, "SELECT to_regclass('bulkmig.replay_position') IS NOT NULL")[0][0]:
            return None
        rows = self.pg.execute(self.db, "SELECT seq, pos FROM bulkmig.replay_position WHERE stream_id = %s", (STREAM,))
        return (rows[0][0], rows[0][1]) if rows else None

    def write(self, batch: Batch) -> None:
        write_batch(self.store, PREFIX, batch)


@pytest.fixture
def env(
    pg_target: PostgresServer,
    target_db: str,
    s3_server: MotoS3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    pg_target.execute(target_db, TARGET_DDL)
    doc = {
        # Nothing listens there: replay only reads the source's position for the lag figure.
        "source": f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere",
        "target": pg_target.url(target_db),
        "migration_type": "cdc",
        "volume": "./volume",
        "bucket": f"s3://{bucket}/shop",
        "s3": {"endpoint_url": s3_server.endpoint_url, "region": s3_server.region},
    }
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump(doc))
    secrets = {"BULKMIG_TARGET_PASSWORD": pg_target.password}
    task = Task.from_dict(doc, tmp_path, path=task_file, env=secrets)
    store = open_store(task.bucket, S3Options(endpoint_url=s3_server.endpoint_url, region=s3_server.region))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
    child_env.update({**s3_server.env(), **secrets})
    return Env(pg_target, target_db, task, task_file, store, child_env)


# ---------------------------------------------------------------------------------------------- tests


def test_replay_applies_every_change_value_by_value_and_never_twice(env: Env) -> None:
    work = Workload(seed=1, big_every=25)
    work.seed_target(env.pg, env.db)
    batches = [work.batch(400), work.batch(400, truncate="lines"), work.batch(400), work.batch(5, tables=("calc",))]
    for b in batches:
        env.write(b)
    report = replay(env.task)
    assert report.batches == 4 and report.changes == sum(b.rows for b in batches)
    assert report.applied_seq == 4 and report.applied_pos == batches[-1].last_pos
    assert env.position() == (4, batches[-1].last_pos)
    assert_target_equals_model(env.pg, env.db, work)
    # Generated column computed by the target, never written; trigger never fired for replayed rows.
    assert env.pg.execute(env.db, "SELECT count(*) FROM public.calc WHERE total IS DISTINCT FROM a + b")[0][0] == 0
    bigs = env.pg.execute(
        env.db, "SELECT count(*), min(length(body)) FROM public.docs WHERE length(body) >= %s", (BIG,)
    )
    assert bigs[0][0] > 0, "the workload should leave some multi-megabyte bodies"

    again = replay(env.task)  # nothing pending: nothing applied twice
    assert again.batches == 0 and env.position() == (4, batches[-1].last_pos)
    assert_target_equals_model(env.pg, env.db, work)

    env.write(work.batch(300))
    assert replay(env.task).batches == 1
    assert_target_equals_model(env.pg, env.db, work)
    status = replay_status(env.task)
    assert status["applied_seq"] == 5 and status["pending_batches"] == 0 and status["stream_id"] == STREAM


def test_unchanged_toast_is_kept_never_nulled(env: Env) -> None:
    big = os.urandom(BIG // 2).hex()
    env.pg.execute(env.db, "INSERT INTO public.docs VALUES (1, 'a', %s, 1), (2, 'b', %s, 2)", (big, big))
    ts = datetime(2026, 11, 27, tzinfo=UTC)

    def upd(seq: int, key: str, title: str) -> ChangeRow:
        return ChangeRow("U", "0/100", seq, 1, ts, [key, title, None, "7"], ["body"])

    spec = SPECS["docs"]
    rows = [
        upd(0, "1", "a1"),
        upd(1, "1", "a2"),  # two partial updates of one key in a batch
        ChangeRow("I", "0/100", 2, 1, ts, ["3", "c", "small", "3"]),
        upd(3, "3", "c2"),  # partial update after an insert in the same batch: the insert's body
        upd(4, "2", "b1"),
    ]
    env.write(
        Batch(
            STREAM,
            1,
            "0/100",
            "0/200",
            1,
            [TableChanges("public", "docs", spec.columns, spec.types, ["id"], "d", rows)],
        )
    )
    replay(env.task)
    got = env.pg.execute(env.db, "SELECT id, title, md5(body), n FROM public.docs ORDER BY id")
    md5 = env.pg.execute(env.db, "SELECT md5(%s)", (big,))[0][0]
    small = env.pg.execute(env.db, "SELECT md5('small')")[0][0]
    assert got == [(1, "a2", md5, 7), (2, "b1", md5, 7), (3, "c2", small, 7)]


def test_kill_9_in_the_middle_and_restart_applies_each_batch_exactly_once(env: Env) -> None:
    work = Workload(seed=7)
    work.seed_target(env.pg, env.db)
    total = 24
    for _ in range(total):
        last = work.batch(3000)
        env.write(last)
    code = (
        "import sys; from bulkmig.config.task import load_task; from bulkmig.replay import replay; "
        "replay(load_task(sys.argv[1]))"
    )

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(env.task_file)],
            env=env.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def in_transaction() -> bool:
        """Whether the replayer's session is inside a batch's transaction right now."""
        states = env.pg.execute(
            env.db,
            "SELECT state FROM pg_stat_activity WHERE datname = %s AND application_name = 'bulkmig'",
            (env.db,),
        )
        return any(state in ("active", "idle in transaction") for (state,) in states)

    kills = mid_transaction = 0
    for goal, wait_for_transaction in ((2, False), (8, True), (15, True)):
        proc = start()
        deadline = time.monotonic() + 120
        while (env.position() or (0,))[0] < goal and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if wait_for_transaction:
            while not in_transaction() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(random.Random(goal).uniform(0.0, 0.3))  # anywhere: reading, applying, between
        if proc.poll() is None:
            mid_transaction += wait_for_transaction and in_transaction()
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode() if proc.stderr else ""
    assert mid_transaction >= 1, "no kill landed inside a batch's transaction"
    assert kills >= 2, "the replays finished before they could be killed; make the batches bigger"
    proc = start()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert env.position() == (total, last.last_pos)
    assert_target_equals_model(env.pg, env.db, work)


def added(column: str, typ: str, default: str | None = None, not_null: bool = False) -> dict[str, object]:
    """A ``column_added`` drift record of public.calc, as capture writes it."""
    detail = f"column {column!r} added ({typ})" + (f" default {default}" if default else "")
    return {
        "schema": "public",
        "table": "calc",
        "kind": "column_added",
        "column": column,
        "type": typ,
        "detail": detail,
        "default": default,
        "not_null": not_null,
    }


def test_column_added_on_the_source_is_added_and_filled(env: Env) -> None:
    env.pg.execute(env.db, "INSERT INTO public.calc (id, a, b) VALUES (100, 1, 1)")  # a row from the full load
    ts = datetime(2026, 11, 27, tzinfo=UTC)
    cols = ["id", "a", "b", "Note Added", "score"]
    rows = [
        ChangeRow("I", "0/100", 0, 1, ts, ["1", "1", "2", "hello", "5"]),
        ChangeRow("I", "0/100", 1, 1, ts, ["2", "3", "4", None, "0"]),
    ]
    # ADD COLUMN score integer DEFAULT 0 NOT NULL gave row 100 its 0 on the source without any change.
    drift = [added("Note Added", "text"), added("score", "integer", "0", True)]
    types = ["integer", "integer", "integer", "text", "integer"]
    env.write(
        Batch(STREAM, 1, "0/100", "0/200", 1, [TableChanges("public", "calc", cols, types, ["id"], "d", rows)], drift)
    )
    replay(env.task)
    assert env.pg.execute(env.db, 'SELECT id, total, "Note Added", score FROM public.calc ORDER BY id') == [
        (1, 3, "hello", 5),
        (2, 7, None, 0),
        (100, 2, None, 0),
    ]


def test_column_added_with_a_volatile_default_stops_until_added_by_hand(env: Env) -> None:
    ts = datetime(2026, 11, 27, tzinfo=UTC)
    cols = ["id", "a", "b", "seen"]
    rows = [ChangeRow("I", "0/100", 0, 1, ts, ["1", "1", "2", "2026-11-27 00:00:00+00"])]
    types = ["integer", "integer", "integer", "timestamp with time zone"]
    drift = [added("seen", "timestamp with time zone", "now()")]
    env.write(
        Batch(STREAM, 1, "0/100", "0/200", 1, [TableChanges("public", "calc", cols, types, ["id"], "d", rows)], drift)
    )
    with pytest.raises(TargetError, match=r"public\.calc: column 'seen' was added with DEFAULT now\(\)"):
        replay(env.task)
    assert env.position() is None and env.pg.execute(env.db, "SELECT count(*) FROM public.calc") == [(0,)]
    env.pg.execute(env.db, "ALTER TABLE public.calc ADD COLUMN seen timestamptz DEFAULT '2026-01-01'")
    assert replay(env.task, skip_drift_check=True).batches == 1
    assert env.pg.execute(env.db, "SELECT id, seen::text FROM public.calc") == [(1, "2026-11-27 00:00:00+00")]


def test_column_dropped_stops_naming_the_table_and_applies_nothing_of_that_batch(env: Env) -> None:
    ts = datetime(2026, 11, 27, tzinfo=UTC)
    spec = SPECS["lines"]
    first = TableChanges(
        "public",
        "lines",
        spec.columns,
        spec.types,
        spec.key,
        "d",
        [ChangeRow("I", "0/100", 0, 1, ts, ["1", "1", "x", "5"])],
    )
    env.write(Batch(STREAM, 1, "0/100", "0/180", 1, [first]))
    cols = ["order_id", "line_no", "qty"]  # sku dropped on the source
    rows = [ChangeRow("I", "0/200", 0, 2, ts, ["2", "1", "9"]), ChangeRow("U", "0/200", 1, 2, ts, ["1", "1", "6"])]
    second = TableChanges("public", "lines", cols, ["integer"] * 3, spec.key, "d", rows)
    drift = [
        {"schema": "public", "table": "lines", "kind": "column_dropped", "column": "sku", "type": "text", "detail": ""}
    ]
    env.write(Batch(STREAM, 2, "0/200", "0/280", 1, [second], drift))
    with pytest.raises(TargetError) as info:
        replay(env.task)
    text = str(info.value)
    assert "public.lines" in text and "'sku' dropped" in text and "--skip-drift-check" in text
    assert env.position() == (1, "0/180")
    assert env.pg.execute(env.db, "SELECT order_id, line_no, sku, qty FROM public.lines") == [(1, 1, "x", 5)]

    # The operator applies the change by hand and accepts that batch's drift.
    env.pg.execute(env.db, "ALTER TABLE public.lines DROP COLUMN sku")
    report = replay(env.task, skip_drift_check=True)
    assert report.batches == 1 and env.position() == (2, "0/280")
    assert env.pg.execute(env.db, "SELECT order_id, line_no, qty FROM public.lines ORDER BY 1") == [
        (1, 1, 6),
        (2, 1, 9),
    ]


def test_a_column_the_target_lacks_stops_replay(env: Env) -> None:
    ts = datetime(2026, 11, 27, tzinfo=UTC)
    tc = TableChanges(
        "public",
        "calc",
        ["id", "a", "zzz"],
        ["integer"] * 3,
        ["id"],
        "d",
        [ChangeRow("I", "0/1", 0, 1, ts, ["1", "2", "3"])],
    )
    env.write(Batch(STREAM, 1, "0/1", "0/2", 1, [tc]))
    with pytest.raises(TargetError, match="has no column 'zzz'"):
        replay(env.task)
    assert env.position() is None


def test_a_missing_batch_stops_replay_by_name(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "GAP_GRACE_SECONDS", 0.0)
    work = Workload(seed=3)
    batches = [work.batch(20) for _ in range(4)]
    for b in batches:
        if b.seq != 3:
            env.write(b)
    with pytest.raises(IntegrityError, match="batch 3 of stream .* is missing"):
        replay(env.task, poll_interval=0.01)
    assert env.position() == (2, batches[1].last_pos)


def test_bulk_conflict_on_a_secondary_unique_index_is_replayed_change_by_change(env: Env) -> None:
    env.pg.execute(env.db, "CREATE TABLE public.users (id int PRIMARY KEY, email text UNIQUE, bio text)")
    env.pg.execute(env.db, "INSERT INTO public.users VALUES (1, 'x@example.org', 'long bio'), (3, 'z@x', 'b3')")
    ts = datetime(2026, 11, 27, tzinfo=UTC)
    rows = [
        # id 1 gives its email away (bio not sent), then id 2 takes it: set-based, the partial updates run
        # before the inserts, so this one passes without a conflict.
        ChangeRow("U", "0/1", 0, 1, ts, ["1", "y@example.org", None], ["bio"]),
        ChangeRow("I", "0/1", 1, 1, ts, ["2", "x@example.org", "new"]),
    ]
    tc = TableChanges("public", "users", ["id", "email", "bio"], ["integer", "text", "text"], ["id"], "d", rows)
    env.write(Batch(STREAM, 1, "0/1", "0/2", 1, [tc]))
    report = replay(env.task)
    assert report.exact_batches == 0
    # id 3 gives its email away in a whole-row update, then id 1 takes it in a partial one: set-based,
    # the partial update runs first and hits the unique index; the batch is replayed change by change.
    rows = [
        ChangeRow("U", "0/3", 0, 2, ts, ["3", "w@x", "b3 new"]),
        ChangeRow("U", "0/3", 1, 2, ts, ["1", "z@x", None], ["bio"]),
    ]
    tc = TableChanges("public", "users", ["id", "email", "bio"], ["integer", "text", "text"], ["id"], "d", rows)
    env.write(Batch(STREAM, 2, "0/3", "0/4", 1, [tc]))
    report = replay(env.task)
    assert report.exact_batches == 1
    assert env.pg.execute(env.db, "SELECT * FROM public.users ORDER BY id") == [
        (1, "z@x", "long bio"),
        (2, "x@example.org", "new"),
        (3, "w@x", "b3 new"),
    ]


def test_second_replayer_is_refused(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_target, "LOCK_WAIT_SECONDS", 0.5)
    env.write(Workload(seed=4).batch(10))
    with psycopg.connect(env.pg.conninfo(env.db), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"bulkmig.replay:{STREAM}",))
        with pytest.raises(TargetError, match="another `bulkmig replay`"):
            replay(env.task)


def test_until_caught_up_waits_for_capture(
    env: Env, pg_source: PostgresServer, source_db: str, s3_server: MotoS3Server, tmp_path: Path
) -> None:
    doc = yaml.safe_load(env.task_file.read_text())
    doc["source"] = pg_source.url(source_db)
    task = Task.from_dict(
        doc,
        tmp_path,
        env={"BULKMIG_TARGET_PASSWORD": env.pg.password, "BULKMIG_SOURCE_PASSWORD": pg_source.password},
    )
    work = Workload(seed=5)
    env.write(work.batch(50))
    progress_key = layout.join(PREFIX, "progress.json")
    env.store.put_bytes(progress_key, json.dumps({"captured_through": "0/1"}).encode())
    late = work.batch(50)

    def capture_catches_up() -> None:
        time.sleep(1.0)
        env.write(late)
        # The source's position now, after replay read its goal (the server may have written WAL since the
        # test began: a checkpoint after an earlier test restarted it).
        lsn = pg_source.execute(source_db, "SELECT pg_current_wal_lsn()::text")[0][0]
        env.store.put_bytes(progress_key, json.dumps({"captured_through": lsn}).encode())

    thread = threading.Thread(target=capture_catches_up)
    thread.start()
    started = time.monotonic()
    report = replay(task, until_caught_up=True, poll_interval=0.1)
    thread.join()
    assert time.monotonic() - started >= 0.9
    assert report.batches == 2 and report.applied_seq == 2
    assert report.source_pos is not None and report.lag_bytes is not None


def test_follow_survives_a_lost_connection_and_stops_on_request(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "RECONNECT_DELAYS", (0.1,))
    work = Workload(seed=6)
    env.write(work.batch(30))
    stop = threading.Event()
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(r=replay(env.task, follow=True, poll_interval=0.05, stop=stop)))
    thread.start()

    def wait_for(seq: int) -> None:
        deadline = time.monotonic() + 20
        while (env.position() or (0,))[0] < seq and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (env.position() or (0,))[0] >= seq

    wait_for(1)
    killed = env.pg.execute(
        env.db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = 'bulkmig'",
        (env.db,),
    )
    assert killed == [(True,)]
    env.write(work.batch(30))
    wait_for(2)
    stop.set()
    thread.join(timeout=20)
    assert not thread.is_alive() and box["r"].batches == 2
    assert_target_equals_model(env.pg, env.db, work)


@pytest.mark.parametrize("key_changes", [0.001, 0.08], ids=["realistic", "many-key-changes"])
def test_100k_mixed_changes_in_one_batch_equal_the_model(env: Env, key_changes: float) -> None:
    """100k changes in one batch over 4 keyed tables: 35% inserts, 15% deletes, the rest updates (with
    unchanged TOAST, key changes at the given rate), values with tabs, quotes, backslashes, NULLs.  Big
    enough that every change kind meets every other on the same keys within one batch; the rate is
    measured by ``python -m bench.replay``, not here."""
    work = Workload(seed=11, key_changes=key_changes)
    work.seed_target(env.pg, env.db, rows=2000)
    env.write(work.batch(100_000, tables=("docs", "lines", "Odd Names", "calc")))
    report = replay(env.task)
    assert report.changes == 100_000
    assert_target_equals_model(env.pg, env.db, work)
