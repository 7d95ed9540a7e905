"""PostgreSQL -> Parquet volume -> S3 (moto over HTTP) -> PostgreSQL, through the real CLI."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

import jsonschema
import pytest

from bulkmig.config.task import load_task
from bulkmig.core import layout
from bulkmig.core.manifest import validate_document
from bulkmig.demo.servers import load_dataset
from bulkmig.engines.postgres import schema
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.target.ledger import LEDGER_DDL
from bulkmig.engines.postgres.target.load import load_part
from bulkmig.fullload.load import _schema_file, find_volume

CATALOG_QUERIES = {
    "relations": """SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'bulkmig', 'pg_toast')
                    ORDER BY 1, 2""",
    "functions": """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'public' ORDER BY 1""",
    "triggers": """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
                   WHERE NOT tgisinternal ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "views": """SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1""",
    "sequences": "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    "comments": """SELECT objoid::regclass::text, objsubid, description FROM pg_description d
                   JOIN pg_class c ON c.oid = d.objoid WHERE d.classoid = 'pg_class'::regclass ORDER BY 1, 2""",
}


def catalog(server, db: str) -> dict[str, list]:  # noqa: ANN001
    return {name: server.execute(db, sql) for name, sql in CATALOG_QUERIES.items()}


def test_pagila_round_trip(make_flow, pg_source, pg_target, source_db, target_db, datasets) -> None:  # noqa: ANN001
    load_dataset(pg_source, "pagila", source_db)
    flow = make_flow(settings={"max_part_bytes": "256kB"})
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "all equal" in run.err

    # The whole schema is there: every relation, view, function, trigger, constraint, index, sequence value.
    want, got = catalog(pg_source, source_db), catalog(pg_target, target_db)
    for name in CATALOG_QUERIES:
        assert got[name] == want[name], name
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.payment")[0][0] == 16049

    # Several parts per large table, each loaded exactly once.
    ledger = pg_target.execute(target_db, "SELECT part_key, count(*) FROM bulkmig.loaded_parts GROUP BY 1")
    assert len(ledger) > 25 and all(n == 1 for _, n in ledger)
    assert any(k.startswith("data/public/rental/part-00001") for k, _ in ledger)
    # Binary COPY where every column has an exact binary form, CSV where one travelled as text (tsvector).
    formats = dict(
        pg_target.execute(target_db, "SELECT table_name, min(copy_format) FROM bulkmig.loaded_parts GROUP BY 1")
    )
    assert formats["rental"] == "binary" and formats["film"] == "csv"

    # Rerunning load loads nothing twice; validate still says equal.
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert "already loaded" in again.err
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    plan = json.loads((flow.volume / "plan.json").read_text())
    assert report["equal"] is True
    assert sorted(t["table"] for t in report["tables"]) == sorted(f"{t['schema']}.{t['name']}" for t in plan["tables"])
    assert all(t["equal"] and t["source_rows"] == t["target_rows"] for t in report["tables"])

    # Every file bulkmig wrote matches its JSON Schema in manifests/.
    schemas = Path(__file__).parents[2] / "manifests"
    jsonschema.validate(plan, json.loads((schemas / "plan.schema.json").read_text()))
    jsonschema.validate(
        json.loads((flow.volume / "volume.json").read_text()), json.loads((schemas / "volume.schema.json").read_text())
    )
    validate_document(report, "validate")  # validate --json
    verify = flow.run("volume", "verify", "--json", str(flow.volume))
    assert verify.code == 0, verify.text
    validate_document(json.loads(verify.out), "verify")
    sidecars = sorted(flow.volume.glob("data/public/rental/part-*.json"))
    assert len(sidecars) > 1
    for sidecar in sidecars:
        jsonschema.validate(json.loads(sidecar.read_text()), json.loads((schemas / "part.schema.json").read_text()))

    # Triggers did not fire during the load: last_update kept the source's values.
    q = "SELECT md5(string_agg(last_update::text, ',' ORDER BY actor_id)) FROM actor"
    assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q)


EDGE_SQL = (Path(__file__).parent / "edge_tables.sql").read_text()


def test_edge_tables_and_identifiers(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, EDGE_SQL)
    flow = make_flow(settings={"max_part_bytes": "32kB"})
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    for table in ("no_key", "composite", "text_key", "empty_one", "parted", '"Odd Schema"."Order Items/ü ""q"""'):
        q = f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q), table
    # The key-less table was split by ctid ranges, the text-keyed one too, the composite one as well.
    plan = json.loads((flow.volume / "plan.json").read_text())
    methods = {t["name"]: t["split"]["method"] for t in plan["tables"]}
    assert methods["no_key"] == "ctid-range" and methods["text_key"] == "ctid-range"
    assert {t["name"] for t in plan["tables"]} >= {"parted_2024", "parted_2025", "empty_one"}


def test_million_rows_in_parts(make_flow, pg_source, pg_target, source_db, target_db, monkeypatch) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE big (id bigint PRIMARY KEY, n int, t text, ts timestamptz, x numeric(12,2));"
        "INSERT INTO big SELECT g, g % 1000, 'text ' || g, '2020-01-01'::timestamptz + g * interval '1 second',"
        " g / 100.0 FROM generate_series(1, 1000000) g; ANALYZE big;",
    )
    flow = make_flow(settings={"max_part_bytes": "16MB", "workers": 2})
    assert flow.bulkmig("plan").code == 0
    plan = json.loads((flow.volume / "plan.json").read_text())
    big = next(t for t in plan["tables"] if t["name"] == "big")
    assert big["split"] == {"method": "key-range", "column": "id"} and len(big["partitions"]) >= 4
    run = flow.bulkmig("extract", "--workers", "2")
    assert run.code == 0, run.text
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 0, verify.text
    assert flow.bulkmig("volume import").code == 0
    first = race_one_part(flow, monkeypatch, "big")
    load = flow.bulkmig("load")
    assert load.code == 0, load.text
    assert f"1 of {len(big['partitions'])} parts already loaded (ledger)" in load.text
    validate = flow.bulkmig("validate")
    assert validate.code == 0, validate.text
    q = "SELECT count(*), sum(n), md5(string_agg(t || ts::text || x::text, ',' ORDER BY id)) FROM big"
    assert pg_target.execute(target_db, q) == pg_source.execute(source_db, q)
    # The key is built after the data by default: built at all, it proves no row came twice.
    assert pg_target.execute(target_db, "SELECT contype FROM pg_constraint WHERE conrelid = 'big'::regclass") == [
        ("p",)
    ]
    assert first > 0


def race_one_part(flow, monkeypatch, name: str) -> int:  # noqa: ANN001
    """Two loaders take part 0 of table ``name`` at the same moment, each on its own connection, with the key
    not built yet (primary keys after the data): the ledger alone lets exactly one of them in.  Returns the
    part's rows."""
    for key, value in flow.env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    task = load_task(flow.task, env=flow.env)
    store, manifest, plan = find_volume(task)
    table = next(t for t in plan.tables if t.name == name)
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        pre = _schema_file(store, manifest, layout.PRE_DATA, tmp / "pre-data.sql")
        schema.apply_schema(task.target.libpq_env(), task.target.database, pre, "pre-data", volume_id=plan.volume_id)
        with connect(task.target, autocommit=True) as conn:
            conn.execute(LEDGER_DDL)
        barrier = threading.Barrier(2)
        loaded: list[int] = []

        def loader(n: int) -> None:
            with connect(task.target, autocommit=True) as conn:
                (tmp / str(n)).mkdir()
                barrier.wait()
                loaded.append(load_part(conn, store, manifest, plan, table, 0, tmp / str(n)))

        threads = [threading.Thread(target=loader, args=(n,)) for n in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        rows = manifest.entry(layout.part_key(table.schema, table.name, 0)).rows
        assert sorted(loaded) == [0, rows]
        with connect(task.target, autocommit=True) as conn:
            assert conn.execute(f"SELECT count(*) FROM {table.qualified}").fetchone() == (rows,)
            ledger = "SELECT count(*) FROM bulkmig.loaded_parts WHERE volume_id = %s"
            assert conn.execute(ledger, (plan.volume_id,)).fetchone() == (1,)
    return rows


def test_no_secret_is_written_anywhere(make_flow, pg_source, source_db, s3_server, bucket) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'x');")
    flow = make_flow()
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    blobs = [run.text.encode()]
    blobs += [p.read_bytes() for p in flow.volume.rglob("*") if p.is_file()]
    s3 = s3_server.client()
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        blobs.append(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    assert len(blobs) > 5
    for secret in flow.secrets:
        assert all(secret.encode() not in blob for blob in blobs)


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"settings": {"max_part_byte": "1MB"}}, 2, "did you mean 'max_part_bytes'"),
        ({"migration_typ": "full-load"}, 2, "did you mean 'migration_type'"),
        ({"source": "postgresql://postgres@127.0.0.1:1/nowhere"}, 3, "cannot reach"),
        ({"bucket": "s3://no-such-bucket-here/x"}, 2, "does not exist"),
        (
            {
                "table_mappings": {
                    "rules": [
                        {
                            "rule-type": "selection",
                            "rule-id": "1",
                            "rule-name": "ghost",
                            "object-locator": {"schema-name": "public", "table-name": "nothing_like_this"},
                            "rule-action": "include",
                        }
                    ]
                }
            },
            2,
            "ghost",
        ),
    ],
)
def test_bad_input_gets_one_line(make_flow, pg_source, source_db, change, code, needle) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    flow = make_flow(**change)
    run = flow.bulkmig("migrate")
    assert run.code == code, run.text
    assert needle in run.err
    assert "Traceback" not in run.text
    assert run.err.strip().splitlines()[-1].startswith("error: ")


def test_wrong_password_is_refused_without_echo(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    flow = make_flow()
    flow.env["BULKMIG_SOURCE_PASSWORD"] = "not-the-password-123"
    run = flow.bulkmig("plan")
    assert run.code == 3, run.text
    assert "refused the password" in run.err and "BULKMIG_SOURCE_PASSWORD" in run.err
    assert "not-the-password-123" not in run.text and "Traceback" not in run.text


def test_volume_of_another_migration_is_refused(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY)")
    flow = make_flow()
    assert flow.bulkmig("plan").code == 0
    other = make_flow(
        table_mappings={
            "rules": [
                {
                    "rule-type": "selection",
                    "rule-id": "1",
                    "rule-name": "only-t",
                    "object-locator": {"schema-name": "public", "table-name": "t"},
                    "rule-action": "include",
                }
            ]
        }
    )
    run = other.bulkmig("plan")
    assert run.code == 4, run.text
    assert "different task inputs" in run.err and "--force" in run.err


def test_agents_share_resume_and_refuse_damage(
    make_flow, pg_source, pg_target, source_db, target_db, s3_server
) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; ANALYZE t;",
    )
    flow = make_flow(settings={"max_part_bytes": "512kB"})
    assert flow.bulkmig("plan").code == 0
    # Two agents split the parts between them; together they cover the plan.
    one = flow.bulkmig("extract", "--agent", "1/2")
    assert one.code == 0, one.text
    parts_after_one = sorted(flow.volume.glob("data/public/t/part-*.parquet"))
    two = flow.bulkmig("extract", "--agent", "2/2")
    assert two.code == 0, two.text
    # Each agent exported its own snapshot here: the operator is told the volume is not one moment.
    assert "is not one moment of a live source" in two.err
    parts = sorted(flow.volume.glob("data/public/t/part-*.parquet"))
    assert 0 < len(parts_after_one) < len(parts) >= 4

    # A part lost before sealing is re-extracted alone; the others are kept.
    lost = parts[1]
    lost.unlink()
    kept_mtime = parts[0].stat().st_mtime_ns
    again = flow.bulkmig("extract")
    assert again.code == 0, again.text
    assert f"{len(parts) - 1} of {len(parts)} parts already on the volume" in again.err
    assert lost.exists() and parts[0].stat().st_mtime_ns == kept_mtime

    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    assert flow.bulkmig("volume import").code == 0
    # Damage one part in the bucket: load refuses it by name and loads nothing of it.
    s3 = s3_server.client()
    bucket, prefix = flow.bucket[len("s3://") :].split("/", 1)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith("part-00002.parquet")]
    assert len(keys) == 1
    body = bytearray(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=keys[0], Body=bytes(body))
    bad = flow.bulkmig("load")
    assert bad.code == 4, bad.text
    assert "part-00002.parquet" in bad.err and "damaged" in bad.err
    bucket_verify = flow.run(
        "volume",
        "verify",
        f"{flow.bucket}/volumes/{keys[0].split('/')[2]}",
        "--s3-endpoint-url",
        s3_server.endpoint_url,
    )
    assert bucket_verify.code == 4 and "part-00002.parquet" in bucket_verify.text
    # Re-import from the (intact) volume repairs the bucket; load then finishes and validate says equal.
    assert flow.bulkmig("volume import").code == 0
    good = flow.bulkmig("load")
    assert good.code == 0, good.text
    assert flow.bulkmig("validate").code == 0
    # A second migrate over the finished volume redoes nothing and still ends equal.
    rerun = flow.bulkmig("migrate")
    assert rerun.code == 0, rerun.text
    assert "reusing it" in rerun.err and "already loaded" in rerun.err
    assert pg_target.execute(target_db, "SELECT count(*) FROM t")[0][0] == 20000


def test_validate_names_what_differs(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE k (id int PRIMARY KEY, v text); INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 1000) g;"
        "CREATE TABLE nokey (v text); INSERT INTO nokey SELECT 'n' || g FROM generate_series(1, 100) g;",
    )
    flow = make_flow()
    assert flow.bulkmig("migrate").code == 0
    # One value changed, one row gone, one row extra, and a key-less table with a changed row.
    pg_target.execute(
        target_db,
        "UPDATE k SET v = 'changed' WHERE id = 17; DELETE FROM k WHERE id = 400; INSERT INTO k VALUES (5000, 'x');"
        "UPDATE nokey SET v = 'other' WHERE v = 'n3';",
    )
    run = flow.bulkmig("validate", "--json")
    assert run.code == 5, run.text
    report = {t["table"]: t for t in json.loads(run.out)["tables"]}
    assert report["public.k"]["equal"] is False
    assert report["public.k"]["differing_keys"] == ["(17)", "(400)", "(5000)"]
    assert report["public.nokey"]["equal"] is False and "no primary key" in report["public.nokey"]["note"]
    assert "2 of 2 tables differ" in run.err


def test_status_follows_the_stages(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)")
    flow = make_flow()
    first = flow.bulkmig("status")
    assert first.code == 0, first.text
    assert "not planned yet" in first.out
    assert flow.bulkmig("plan").code == 0 and flow.bulkmig("extract").code == 0
    mid = flow.bulkmig("status", "--json")
    report = json.loads(mid.out)
    assert report["volume"]["extracted"] == report["volume"]["parts"] == 1
    assert report["volume"]["sealed"] is False and report["target"]["loaded"] == 0
    assert flow.bulkmig("migrate").code == 0
    done = json.loads(flow.bulkmig("status", "--json").out)
    assert done["volume"]["sealed"] and done["bucket"]["imported"] and done["target"]["loaded"] == 1
    assert done["target"]["schema_applied"] == ["post-data", "pre-data"]
