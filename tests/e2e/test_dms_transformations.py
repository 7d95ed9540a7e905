"""DMS transformation rules that change data, stacked in one table-mapping file, PostgreSQL -> PostgreSQL:
add-column (SQLite expressions, metadata and header variables), change-data-type, define-primary-key,
the three data masks, table and index tablespace renames, next to a column rename.

Every column of every target row is compared with what SQLite computes for the same expression over the
source row (Python's sqlite3), or with the expected mask; no unmasked value is anywhere on the volume, in
the bucket or in the commands' output; validation compares masked columns and reports what it skips."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import uuid
from datetime import date
from pathlib import Path
from typing import Any

ROWS = 300
SOURCE_SQL = f"""
CREATE TABLE people (
    id int PRIMARY KEY, first_name text, last_name varchar(40), passport varchar(20), phone text,
    ssn varchar(80), amount numeric(10,2), born date, note text
);
CREATE INDEX people_last ON people (last_name);
INSERT INTO people
SELECT g,
       CASE WHEN g % 17 = 0 THEN NULL ELSE (ARRAY['Ann', 'Bjørn', 'Zoë', 'li', '中'])[1 + g % 5] || g END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE 'Last' || (g * 7) % 101 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE 'C' || g || 'BGJ' || (g * 31) % 1000 || 'K' END,
       '+1 (555) ' || lpad(((g * 7919) % 10000)::text, 4, '0'),
       CASE WHEN g % 7 = 0 THEN NULL ELSE lpad(((g * 104729) % 1000000000)::text, 9, '0') END,
       CASE WHEN g % 19 = 0 THEN NULL ELSE round((g * 1.37)::numeric % 100, 2) END,
       CASE WHEN g % 23 = 0 THEN NULL ELSE date '1960-01-01' + g * 37 END,
       'note ' || g
FROM generate_series(1, {ROWS}) g;
CREATE TABLE keyless (code text NOT NULL, label text);
INSERT INTO keyless SELECT 'k' || g, 'label ' || g FROM generate_series(1, 50) g;
"""


def _tr(n: int, action: str, locator: dict[str, str], target: str = "column", **extra: Any) -> dict[str, Any]:
    return {
        "rule-type": "transformation",
        "rule-id": str(n),
        "rule-name": f"r{n}",
        "rule-target": target,
        "object-locator": {"schema-name": "public", **locator},
        "rule-action": action,
        **extra,
    }


# name -> (expression, data-type) of the added columns of people (keyless gets only "origin").
ADDED = {
    "full_name": ("$first_name || ' ' || upper($last_name)", {"type": "string", "length": 100}),
    "origin": ("$AR_M_SOURCE_SCHEMA || '.' || $AR_M_SOURCE_TABLE_NAME", {"type": "string", "length": 64}),
    "band": ("CASE WHEN $amount > 50 THEN 'high' WHEN $amount IS NULL THEN NULL ELSE 'low' END", {"type": "string"}),
    "cents": ("CAST(round($amount * 100) AS INTEGER)", {"type": "int8"}),
    "born_year": ("strftime('%Y', $born)", {"type": "string", "length": 4}),
    "next_day": ("date($born, '+1 day')", {"type": "date"}),
    "initials": ("substr($first_name, 1, 1) || substr($last_name, -2)", {"type": "string", "length": 10}),
    "op": ("operation_indicator('D', 'U', 'I')", {"type": "string", "length": 1}),
}


def _mappings(tablespace: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {
            "rule-type": "selection",
            "rule-id": "1",
            "rule-name": "all",
            "object-locator": {"schema-name": "public", "table-name": "%"},
            "rule-action": "include",
        },
        _tr(2, "rename", {"table-name": "people", "column-name": "note"}, value="remark"),
        _tr(3, "data-masking-digits-mask", {"table-name": "people", "column-name": "passport"}, value="#"),
        _tr(4, "data-masking-digits-randomize", {"table-name": "people", "column-name": "phone"}),
        _tr(5, "data-masking-hash-mask", {"table-name": "people", "column-name": "ssn"}),
        _tr(
            6,
            "change-data-type",
            {"table-name": "people", "column-name": "last_name"},
            **{"data-type": {"type": "string", "length": 100}},
        ),
        _tr(
            7,
            "define-primary-key",
            {"table-name": "keyless"},
            target="table",
            **{"primary-key-def": {"name": "keyless_code_pk", "columns": ["code"]}},
        ),
        _tr(
            8,
            "rename",
            {"table-name": "people", "table-tablespace-name": "pg_default"},
            "table-tablespace",
            value=tablespace,
        ),
        _tr(9, "rename", {"table-name": "people", "index-tablespace-name": "%"}, "index-tablespace", value=tablespace),
    ]
    for n, (name, (expression, data_type)) in enumerate(ADDED.items(), 20):
        table = "%" if name == "origin" else "people"
        rules.append(
            _tr(n, "add-column", {"table-name": table}, value=name, expression=expression, **{"data-type": data_type})
        )
    return {"rules": rules}


def _sqlite_expected(rows: list[tuple[Any, ...]]) -> dict[int, dict[str, Any]]:
    """What SQLite computes for each added column over the source rows (values as DMS's SQLite sees them:
    NUMERIC as REAL, dates as YYYY-MM-DD text)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE people (id, first_name, last_name, amount, born)")
    db.executemany(
        "INSERT INTO people VALUES (?, ?, ?, ?, ?)",
        [(i, f, ln, None if a is None else float(a), None if b is None else b.isoformat()) for i, f, ln, a, b in rows],
    )
    texts = {
        name: expression.replace("$AR_M_SOURCE_SCHEMA", "'public'")
        .replace("$AR_M_SOURCE_TABLE_NAME", "'people'")
        .replace("operation_indicator('D', 'U', 'I')", "'I'")
        .replace("$", "")
        for name, (expression, _) in ADDED.items()
    }
    select = ", ".join(f"{t} AS {n}" for n, t in texts.items())
    cur = db.execute(f"SELECT id, {select} FROM people")
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names[1:], r[1:], strict=True)) for r in cur.fetchall()}


def _tablespace(pg_target) -> str:  # noqa: ANN001
    """A tablespace on the target cluster, in a directory its server user owns."""
    name = f"ts_{uuid.uuid4().hex[:8]}"
    datadir = Path(pg_target.datadir)
    where = datadir.parent / name
    where.mkdir()
    st = os.stat(datadir)
    os.chown(where, st.st_uid, st.st_gid)
    pg_target.execute("postgres", f"CREATE TABLESPACE {name} LOCATION '{where}'")
    return name


def test_stacked_data_rules_pg_to_pg(make_flow, pg_source, pg_target, source_db, target_db, s3_server) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)
    space = _tablespace(pg_target)
    flow = make_flow(table_mappings=_mappings(space), settings={"compression": "none"})
    outputs = []
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
        outputs.append(run.text)
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
        outputs.append(run.text)

    src = pg_source.execute(
        source_db, "SELECT id, first_name, last_name, passport, phone, ssn, amount, born, note FROM people ORDER BY id"
    )
    dst = pg_target.execute(
        target_db,
        "SELECT id, first_name, last_name, passport, phone, ssn, amount, born, remark, "
        + ", ".join(ADDED)
        + " FROM people ORDER BY id",
    )
    assert len(dst) == len(src) == ROWS
    expected = _sqlite_expected([(r[0], r[1], r[2], r[6], r[7]) for r in src])
    for s, d in zip(src, dst, strict=True):
        sid, first, last, passport, phone, ssn, amount, born, note = s
        assert d[:3] == (sid, first, last) and d[6:9] == (amount, born, note)
        assert d[3] == (None if passport is None else re.sub("[0-9]", "#", passport))
        assert re.sub("[0-9]", "0", d[4]) == re.sub("[0-9]", "0", phone)  # digits replaced, the rest kept
        assert d[5] == (None if ssn is None else hashlib.sha256(ssn.encode()).hexdigest().upper())
        got = dict(zip(ADDED, d[9:], strict=True))
        want = dict(expected[sid])
        want["next_day"] = None if want["next_day"] is None else date.fromisoformat(want["next_day"])
        assert got == want, sid
    randomized = sum(1 for s, d in zip(src, dst, strict=True) if s[4] != d[4])
    assert randomized > ROWS * 0.9  # 4 random digits each: almost every phone number changed

    q = pg_target.execute
    assert q(target_db, "SELECT origin FROM keyless LIMIT 1") == [("public.keyless",)]
    assert q(
        target_db,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'people'::regclass "
        "AND attname = 'last_name'",
    ) == [("character varying(100)",)]
    assert q(target_db, "SELECT conname FROM pg_constraint WHERE conrelid = 'keyless'::regclass AND contype = 'p'") == [
        ("keyless_code_pk",)
    ]
    spaces = dict(
        q(
            target_db,
            "SELECT c.relname, t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE c.relname IN ('people', 'people_pkey', 'people_last')",
        )
    )
    assert spaces == {"people": space, "people_pkey": space, "people_last": space}

    # No unmasked value anywhere: volume files (uncompressed Parquet), bucket objects, command output.
    secrets = {v for r in src for v in (r[3], r[4], r[5]) if v and len(v) >= 8}
    blobs = [p.read_bytes() for p in flow.volume.rglob("*") if p.is_file()]
    client = s3_server.client()
    bucket = flow.bucket.split("/")[2]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        blobs += [client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in page.get("Contents", [])]
    assert any(b"C#BGJ" in b for b in blobs)  # the masked values are there, readable: the grep can see them
    leaked = [v for v in secrets if any(v.encode() in b for b in blobs) or any(v in out for out in outputs)]
    assert not leaked, leaked[:3]

    # Validation: masked columns compared with the same mask of the source (randomized: skipped, said so).
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True, check.out
    people = next(t for t in report["tables"] if t["table"] == "public.people")
    assert "not compared: phone (data-masking-digits-randomize" in people["note"], people
    assert f"added column(s) {', '.join(ADDED)} recomputed for {ROWS} rows: equal" in people["note"], people
    keyless = next(t for t in report["tables"] if t["table"] == "public.keyless")
    assert "not compared: origin (added columns of a table without a primary key)" in keyless["note"], keyless
    # An added value changed on the target is found by recomputing it from the source row.
    pg_target.execute(target_db, "UPDATE people SET band = 'tampered' WHERE id = 5")
    again = flow.bulkmig("validate", "--json")
    assert again.code == 5, again.text
    people = next(t for t in json.loads(again.out)["tables"] if t["table"] == "public.people")
    assert not people["equal"] and "1 row(s) differ" in people["note"] and "5" in people["differing_keys"], people
    rerun = flow.bulkmig("load")  # a rerun adds, casts and keys nothing twice
    assert rerun.code == 0, rerun.text


def test_masks_and_added_columns_hold_in_captured_changes(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, s3_server
) -> None:
    """full-load-and-cdc: capture masks new values and before images (REPLICA IDENTITY FULL) and computes the
    added columns (with the change header) before a batch is written; replay writes them; what CDC cannot
    honour (operation_indicator, change-data-type) is refused in one line."""
    pg_source.execute(
        source_db,
        "CREATE TABLE acct (id int PRIMARY KEY, card text, pin text, owner text);"
        "ALTER TABLE acct REPLICA IDENTITY FULL;"
        "INSERT INTO acct SELECT g, '4111-2222-' || (3000 + g), lpad(((g * 7919) % 10000)::text, 4, '0'), 'o' || g "
        "FROM generate_series(1, 40) g;",
    )
    select = _mappings("x")["rules"][:1]
    masks = [
        _tr(3, "data-masking-digits-mask", {"table-name": "acct", "column-name": "card"}, value="X"),
        _tr(5, "data-masking-hash-mask", {"table-name": "acct", "column-name": "pin"}),
    ]

    def add(n: int, name: str, expression: str, data_type: dict[str, Any]) -> dict[str, Any]:
        return _tr(
            n, "add-column", {"table-name": "acct"}, value=name, expression=expression, **{"data-type": data_type}
        )

    added = [
        add(20, "tag", "$owner || '@' || $AR_H_OPERATION", {"type": "string"}),
        add(21, "seen", "$AR_H_COMMIT_TIMESTAMP", {"type": "datetime"}),
        add(22, "tail", "substr($card, -4) || ':' || $id", {"type": "string", "length": 20}),
    ]
    for bad, named in (
        (add(23, "flag", "operation_indicator('D', 'U', 'I')", {"type": "string"}), "operation_indicator() with CDC"),
        (
            _tr(
                24,
                "change-data-type",
                {"table-name": "acct", "column-name": "owner"},
                **{"data-type": {"type": "string"}},
            ),
            "'r24' (change-data-type) is not honoured in CDC",
        ),
    ):
        refused = make_flow(table_mappings={"rules": [*select, *masks, bad]}, migration_type="full-load-and-cdc")
        run = refused.bulkmig("plan")
        assert run.code == 2 and named in run.err, run.text
        assert len([ln for ln in run.err.splitlines() if ln.startswith("error")]) == 1

    flow = make_flow(table_mappings={"rules": [*select, *masks, *added]}, migration_type="full-load-and-cdc")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    pg_source.execute(
        source_db,
        "UPDATE acct SET card = '5555-6666-7777', owner = 'new' WHERE id = 1; UPDATE acct SET owner = 'x' WHERE id = 2;"
        "DELETE FROM acct WHERE id = 3; INSERT INTO acct VALUES (100, '9999-0000-1234', '4321', 'late');",
    )
    cap = flow.bulkmig("capture", "--once")
    assert cap.code == 0, cap.text
    rep = flow.bulkmig("replay")
    assert rep.code == 0, rep.text

    src = pg_source.execute(source_db, "SELECT id, card, pin, owner FROM acct ORDER BY id")
    dst = pg_target.execute(target_db, "SELECT id, card, pin, owner, tag, tail FROM acct ORDER BY id")
    changed = {1: "UPDATE", 2: "UPDATE", 100: "INSERT"}
    want = [
        (i, re.sub("[0-9]", "X", c), hashlib.sha256(p.encode()).hexdigest().upper(), o)
        + (f"{o}@{changed.get(i, 'INSERT')}", re.sub("[0-9]", "X", c)[-4:] + f":{i}")
        for i, c, p, o in src
    ]
    assert dst == want
    seen = dict(pg_target.execute(target_db, "SELECT id, seen FROM acct"))
    loaded = {seen[i] for i in seen if i not in changed}
    assert len(loaded) == 1 and None not in loaded  # the plan's snapshot time, for every loaded row
    assert all(seen[i] > next(iter(loaded)) for i in changed)  # replayed rows: their commit time
    # Every value of every captured batch file, before images included: none unmasked.
    import pyarrow.parquet as pq

    client = s3_server.client()
    bucket = flow.bucket.split("/")[2]
    seen: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            if "/cdc/" in o["Key"] and o["Key"].endswith(".parquet"):
                body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                seen.append(json.dumps(pq.read_table(pa_buffer(body)).to_pylist(), default=str))
    assert seen and any("XXXX-XXXX-XXXX" in s for s in seen)  # the update of row 1 is there, masked
    # New values, and old rows sent whole (REPLICA IDENTITY FULL) by the updates and the delete.
    secrets = ["5555-6666-7777", "9999-0000-1234", "4111-2222-3001", "4111-2222-3002", "4111-2222-3003"]
    assert not [v for v in secrets if any(v in s for s in seen)]
    check = flow.bulkmig("validate")
    assert check.code == 0, check.text


def pa_buffer(body: bytes):  # noqa: ANN201
    import pyarrow as pa

    return pa.BufferReader(body)


def test_check_refuses_a_tablespace_the_target_lacks(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    rules = _mappings("x")["rules"][:1] + [
        _tr(8, "rename", {"table-name": "t", "table-tablespace-name": "%"}, "table-tablespace", value="no_such_ts")
    ]
    flow = make_flow(table_mappings={"rules": rules})
    run = flow.bulkmig("check")
    assert run.code != 0
    assert "'r8' moves objects into tablespace no_such_ts, which the target does not have" in run.text, run.text
