"""Import and load through the Dask executor (issue 13 item 1): the same stages, their units run by real
`dask worker` processes (as on loader hosts near the target), exactly once through the same ledger —
also when a worker is killed with -9 mid-load; and a PostgreSQL source into a MariaDB target with every stage
on the cluster (the MySQL target's load_part run in a worker process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from bulkmig.demo.servers import load_dataset

distributed = pytest.importorskip("distributed")

BIG_DIGEST = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || a || b, ',' ORDER BY id)) FROM big"


@pytest.fixture
def loader_cluster(s3_server, tmp_path: Path, free_port, processes) -> tuple[str, list[subprocess.Popen[bytes]]]:  # noqa: ANN001
    """A scheduler and two workers that reach the bucket (S3 credentials in their environment, as a loader
    host's instance role would give them); killed at teardown (tests/e2e/conftest.py)."""
    env = {**os.environ, **s3_server.env()}
    port = str(free_port())
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    processes([*dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], tmp_path / "s.log", env)
    workers = [
        processes(
            [*dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"loader-{n}"],
            tmp_path / f"loader-{n}.log",
            env,
        )
        for n in (1, 2)
    ]
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    return address, workers


def _units(address: str, prefix: str) -> dict[str, int]:
    """Worker name -> how many units named ``prefix-…`` it ran (its own transition log)."""

    def keys(dask_worker) -> list[str]:  # noqa: ANN001 - runs inside the worker process
        return sorted({str(e[0]) for e in dask_worker.state.log if str(e[0]).startswith(prefix)})

    with distributed.Client(address, timeout="20s") as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        return {names[a]: len(ks) for a, ks in client.run(keys).items()}


def test_import_and_load_on_dask_workers_exactly_once_with_a_worker_killed(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, loader_cluster, tmp_path
) -> None:
    address, workers = loader_cluster
    load_dataset(pg_source, "pagila", source_db)
    pg_source.execute(
        source_db,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 8) AS b "
        "FROM generate_series(1, 150000) g; ALTER TABLE big ADD PRIMARY KEY (id)",
    )
    flow = make_flow(settings={"max_part_bytes": "2MB"})
    for step in ("plan", "extract"):
        assert flow.bulkmig(step).code == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    sealed = json.loads((flow.volume / "volume.json").read_text())

    run = flow.bulkmig("volume import", "--executor", "dask", "--scheduler", address)
    assert run.code == 0, run.text
    imported = _units(address, "import-")
    assert sum(imported.values()) == len(sealed["files"]) and all(imported.values()), imported
    bucket_copy = f"{flow.bucket}/volumes/{sealed['volume_id']}"
    verify = flow.run("volume", "verify", bucket_copy, "--s3-endpoint-url", flow.env["AWS_ENDPOINT_URL_S3"])
    assert verify.code == 0, verify.text

    parts = sum(1 for f in sealed["files"] if f["key"].endswith(".parquet"))
    log = tmp_path / "load.log"
    proc = flow.start("load", "--executor", "dask", "--scheduler", address, log=log, quiet=False)
    deadline = time.monotonic() + 180
    ledger = "SELECT count(*) FROM bulkmig.loaded_parts"
    while True:  # until the first part is in the ledger: the cluster is mid-load
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        try:
            if pg_target.execute(target_db, ledger)[0][0] > 0:
                break
        except Exception:  # noqa: BLE001 - the ledger table is created by load itself
            pass
        time.sleep(0.1)
    os.killpg(workers[0].pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, log.read_text()
    assert f"{parts} parts on {address}" in log.read_text()

    assert pg_target.execute(target_db, ledger)[0][0] == parts
    assert _units(address, "load-")["loader-2"] > 0
    # None doubled: every source row exactly once, every value as it was.
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)

    # Validation through the executor too: one unit per table, and a changed row is found by it.
    check = flow.bulkmig("validate", "--json", "--executor", "dask", "--scheduler", address)
    assert check.code == 0, check.text
    tables = json.loads(check.out)["tables"]
    assert all(t["equal"] for t in tables) and len(tables) == _units(address, "validate-")["loader-2"]
    pg_target.execute(target_db, "UPDATE big SET a = 'changed' WHERE id = 4242")
    check = flow.bulkmig("validate", "--json", "--executor", "dask", "--scheduler", address)
    assert check.code == 5, check.text
    assert [t["table"] for t in json.loads(check.out)["tables"] if not t["equal"]] == ["public.big"]


# Every kind of value a PostgreSQL source has a MySQL form for, with the text LOAD DATA must escape (TAB, LF,
# backslash, a literal \\N, NUL in bytea), NULLs, and values at the ends of MySQL's ranges.
EDGE_SOURCE = r"""
CREATE TABLE m (id bigint PRIMARY KEY, t text, v varchar(40), n numeric(30,10), at timestamptz, ts timestamp(6),
  d date, b bytea, flag boolean, f float8, r real, i int, s smallint, j jsonb);
INSERT INTO m SELECT g,
  CASE WHEN g % 97 = 0 THEN NULL ELSE 'v' || g || E'\t😀 \\N back\\slash\n' || md5(g::text) END,
  CASE WHEN g % 89 = 0 THEN '' ELSE left(md5(g::text), g % 40) END,
  (g * 1.0000000001 - 50000)::numeric(30,10),
  timestamptz '2024-01-01 00:00:00+02' + g * interval '1.000001 second',
  timestamp '2000-01-01' + g * interval '1 minute 0.000007 second',
  date '1000-01-01' + g,
  CASE WHEN g % 83 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') || '\x000a095c'::bytea END,
  CASE WHEN g % 5 = 0 THEN NULL ELSE g % 3 = 0 END,
  g / 7.0::float8, (g / 3.0)::real, g % 1000 - 500, (g % 65535 - 32767)::smallint,
  jsonb_build_object('k', g, 's', 'x"y', 'a', jsonb_build_array(1, 2.50, null))
FROM generate_series(1, 30000) g;
INSERT INTO m VALUES
  (0, '', NULL, 0, NULL, NULL, NULL, '', false, -0.0, 0, 0, 0, 'null'),
  (-1, E'\\', 'x', '-99999999999999999999.9999999999', '1000-01-01 00:00:00.000001+00', '9999-12-31 23:59:59.999999',
   '9999-12-31', '\x00', true, 1.7976931348623157e308, 3.4028235e38, -2147483648, -32768, '{"z": [true]}'),
  (-2, NULL, NULL, '99999999999999999999.9999999999', NULL, '1000-01-01 00:00:00', '1000-01-01', NULL, NULL,
   2.2250738585072014e-308, -1.1754944e-38, 2147483647, 32767, NULL)
"""
COLUMNS = "id, t, v, CAST(n AS {text}), {at}, ts, d, b, {flag}, f, CAST(r AS {double}), i, s, {j}"


def _rows(rows: list[tuple]) -> list[tuple]:
    """Rows as Python values to compare exactly: a decimal by its text (scale included); a real is read as the
    double it widens to on both sides (MySQL's text protocol prints a FLOAT with 6 digits only)."""
    return [tuple(str(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


def test_postgresql_into_mariadb_on_dask_extract_and_load_every_value_once(  # noqa: ANN001
    make_flow, pg_source, source_db, mariadb, mysql_db, loader_cluster
) -> None:
    """``executor: dask`` for every stage into a MySQL target: each part extracted and loaded by a worker
    process, every row and column of the target as the source has it, and each part in the ledger once."""
    address, _ = loader_cluster
    pg_source.execute(source_db, EDGE_SOURCE)
    flow = make_flow(
        target=mariadb.url(mysql_db), settings={"max_part_bytes": "512kB", "executor": "dask", "scheduler": address}
    )
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    assert flow.bulkmig("plan").code == 0
    plan = json.loads((flow.volume / "plan.json").read_text())
    parts = sum(len(t["partitions"]) for t in plan["tables"])
    assert parts >= 4, parts
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    assert f"{parts} parts on {address}" in run.err, run.err
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    run = flow.bulkmig("volume import")
    assert run.code == 0, run.text
    run = flow.bulkmig("load")
    assert run.code == 0, run.text
    assert f"{parts} parts on {address}" in run.err and f"{30_003:,} rows loaded" in run.err, run.err
    # The units ran in the workers, not in the CLI: every part extracted once and loaded once by the cluster.
    ran = {prefix: _units(address, prefix) for prefix in ("extract-", "load-")}
    assert sum(ran["extract-"].values()) == parts and sum(ran["load-"].values()) == parts, ran

    # Every row and column exactly (read by each server's own driver, not by bulkmig).
    pg = pg_source.execute(
        source_db,
        "SELECT "
        + COLUMNS.format(text="text", at="at AT TIME ZONE 'UTC'", flag="flag::int", double="float8", j="j::text")
        + " FROM m ORDER BY id",
    )
    my = mariadb.execute(
        mysql_db,
        "SELECT " + COLUMNS.format(text="CHAR", at="at", flag="flag", double="DOUBLE", j="j") + " FROM m ORDER BY id",
    )
    assert len(pg) == len(my) == 30_003
    source, target = _rows(pg), _rows(my)
    bad = [(s, t) for s, t in zip(source, target, strict=True) if s != t]
    assert not bad, f"{len(bad)} rows differ; first: {bad[:2]}"

    # Exactly once: one ledger row per planned part, its rows the manifest's; a second load loads nothing.
    ledger = mariadb.execute(
        None,
        "SELECT COUNT(*), COUNT(DISTINCT part_key), SUM(part_rows), MIN(part_rows) FROM bulkmig.loaded_parts"
        " WHERE volume_id = %s",
        (plan["volume_id"],),
    )[0]
    assert (ledger[0], ledger[1], int(ledger[2])) == (parts, parts, 30_003) and ledger[3] > 0, ledger
    again = flow.bulkmig("load")
    assert again.code == 0 and f"{parts} of {parts} parts already loaded" in again.err, again.text
    assert mariadb.execute(mysql_db, "SELECT COUNT(*) FROM m")[0][0] == 30_003
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    assert json.loads(check.out)["equal"] is True
