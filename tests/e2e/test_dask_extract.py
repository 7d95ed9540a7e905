"""Extraction on a real Dask cluster: a `dask scheduler` and two `dask worker` processes (as on two
extraction-agent hosts), pagila through plan -> extract on the cluster -> seal/verify -> import -> load ->
validate, and a worker killed with -9 mid-extract."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulkmig.demo.servers import load_dataset

distributed = pytest.importorskip("distributed")


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def units_run(self) -> dict[str, set[str]]:
        """The extract units each worker has run, from the workers' own transition logs."""

        def keys(dask_worker) -> list[str]:  # noqa: ANN001 - runs inside the worker process
            return sorted({str(e[0]) for e in dask_worker.state.log if str(e[0]).startswith("extract-")})

        with distributed.Client(self.address, timeout="20s") as client:
            return {w: set(ks) for w, ks in client.run(keys).items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log=tmp_path / "sched.log")
    workers = [
        _dask(
            "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"agent-{n}",
            "--local-directory", str(tmp_path / f"agent-{n}"), log=tmp_path / f"agent-{n}.log",
        )
        for n in (1, 2)
    ]  # fmt: skip
    try:
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield Cluster(address, scheduler, workers)
    finally:
        for proc in [*workers, scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _migrate_rest(flow) -> None:  # noqa: ANN001
    """Seal, verify (every part against its sidecar), import, load, validate: all equal."""
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 0, verify.text
    for step in ("volume import", "load"):
        run = flow.bulkmig(step)
        assert run.code == 0, f"{step}: {run.text}"
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True
    assert all(t["equal"] and t["source_rows"] == t["target_rows"] for t in report["tables"])


def _parts(flow) -> list[str]:  # noqa: ANN001
    plan = json.loads((flow.volume / "plan.json").read_text())
    return [f"{t['schema']}.{t['name']}/{i}" for t in plan["tables"] for i in range(len(t["partitions"]))]


BIG_DIGEST = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || a || b, ',' ORDER BY id)) FROM big"


def _big_table_planned(make_flow, pg_source, source_db: str, cluster: Cluster):  # noqa: ANN001, ANN202
    """A 300,000-row table planned into at least 8 parts of 4 MB for the cluster."""
    pg_source.execute(
        source_db,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 8) AS b "
        "FROM generate_series(1, 300000) g; ALTER TABLE big ADD PRIMARY KEY (id)",
    )
    flow = make_flow(settings={"max_part_bytes": "4MB", "executor": "dask", "scheduler": cluster.address})
    assert flow.bulkmig("plan").code == 0
    assert len(_parts(flow)) >= 8
    return flow


def _wait_for_first_part(flow) -> None:  # noqa: ANN001
    """Until the first sidecar is on the volume: the cluster is mid-extract."""
    deadline = time.monotonic() + 120
    while not list((flow.volume / "data").rglob("*.json")):
        assert time.monotonic() < deadline, "no part on the volume after 120 s"
        time.sleep(0.2)


def test_pagila_extracted_on_two_dask_workers(make_flow, pg_source, source_db, cluster) -> None:  # noqa: ANN001
    load_dataset(pg_source, "pagila", source_db)
    flow = make_flow(settings={"max_part_bytes": "256kB", "executor": "dask", "scheduler": cluster.address})
    assert flow.bulkmig("plan").code == 0
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    parts = _parts(flow)
    assert f"{len(parts)} parts on {cluster.address}" in run.err

    # Every part was read by a worker process, not by the CLI, and both agents took a share.
    ran = cluster.units_run()
    assert len(ran) == 2 and all(ran.values()), ran
    assert sum(len(keys) for keys in ran.values()) == len(parts)
    assert set.isdisjoint(*ran.values())

    # A rerun finds every part on the volume and sends nothing to the cluster.
    again = flow.bulkmig("extract")
    assert again.code == 0 and "already on the volume" in again.err, again.text
    _migrate_rest(flow)


def test_worker_killed_mid_extract_is_redone_elsewhere(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, cluster, tmp_path
) -> None:
    flow = _big_table_planned(make_flow, pg_source, source_db, cluster)
    proc = flow.start("extract", log=tmp_path / "extract.log", quiet=False)
    _wait_for_first_part(flow)
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, (tmp_path / "extract.log").read_text()
    _migrate_rest(flow)
    # None doubled: the target holds each source row exactly once, every value as it was.
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)


def test_unreachable_scheduler_is_one_clear_line(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    flow = make_flow(settings={"executor": "dask", "scheduler": f"tcp://127.0.0.1:{_free_port()}"})
    assert flow.bulkmig("plan").code == 0
    run = flow.bulkmig("extract", timeout=180)
    assert run.code != 0
    assert "cannot reach the Dask scheduler" in run.err and "dask scheduler" in run.err, run.err
    assert "Traceback" not in run.err
    assert not list((flow.volume / "data").rglob("*.parquet"))


def test_mysql_source_on_dask_is_refused_before_any_read(make_mysql_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    """One snapshot across hosts is only offered for PostgreSQL: a MySQL task asking for Dask is told so
    (before a part is read), not quietly run with one snapshot per worker."""
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    flow = make_mysql_flow(settings={"executor": "dask", "scheduler": "tcp://127.0.0.1:1"})
    assert flow.bulkmig("plan").code == 0
    run = flow.bulkmig("extract")
    assert run.code == 2, run.text
    assert "settings.executor: dask extracts PostgreSQL sources only; this source is mysql" in run.err
    assert "settings.executor: local" in run.err
    assert not list((flow.volume / "data").rglob("*.parquet"))


def test_scheduler_lost_mid_extract_stops_and_a_new_cluster_resumes(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, cluster, tmp_path
) -> None:
    flow = _big_table_planned(make_flow, pg_source, source_db, cluster)
    log = tmp_path / "extract.log"
    proc = flow.start("extract", log=log, quiet=False)
    _wait_for_first_part(flow)
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    said = log.read_text()
    assert "lost the Dask scheduler" in said and "rerun `bulkmig extract`" in said, said
    assert "Traceback" not in said

    # A new scheduler (the old workers went with the old one: start them again), and the rerun resumes.
    for proc_ in cluster.workers:
        os.killpg(proc_.pid, signal.SIGKILL)
    port = str(_free_port())
    new = [_dask("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log=tmp_path / "s2.log")]
    address = f"tcp://127.0.0.1:{port}"
    new.append(_dask("worker", address, "--nthreads", "1", "--no-dashboard", log=tmp_path / "w3.log"))
    cluster.workers.extend(new)  # the fixture kills them
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(1, timeout=120)
    again = flow.bulkmig("extract", "--scheduler", address)
    assert again.code == 0, again.text
    assert "already on the volume" in again.err
    _migrate_rest(flow)
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)
