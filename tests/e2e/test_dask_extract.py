"""Extraction on a real Dask cluster: a `dask scheduler` and two `dask worker` processes (as on two
extraction-agent hosts), pagila through plan -> extract on the cluster -> seal/verify -> import -> load ->
validate, and a worker killed with -9 mid-extract."""

from __future__ import annotations

import os
import signal

import pytest

from bulkmig.demo.servers import load_dataset

distributed = pytest.importorskip("distributed")

BIG_DIGEST = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || a || b, ',' ORDER BY id)) FROM big"


def _big_table_planned(make_flow, pg_source, source_db: str, cluster, planned_parts):  # noqa: ANN001, ANN202
    """A 300,000-row table planned into at least 8 parts of 4 MB for the cluster."""
    pg_source.execute(
        source_db,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 8) AS b "
        "FROM generate_series(1, 300000) g; ALTER TABLE big ADD PRIMARY KEY (id)",
    )
    flow = make_flow(settings={"max_part_bytes": "4MB", "executor": "dask", "scheduler": cluster.address})
    assert flow.bulkmig("plan").code == 0
    assert len(planned_parts(flow)) >= 8
    return flow


def test_pagila_extracted_on_two_dask_workers(  # noqa: ANN001
    make_flow, pg_source, source_db, cluster, planned_parts, finish_migration
) -> None:
    load_dataset(pg_source, "pagila", source_db)
    flow = make_flow(settings={"max_part_bytes": "256kB", "executor": "dask", "scheduler": cluster.address})
    assert flow.bulkmig("plan").code == 0
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    parts = planned_parts(flow)
    assert f"{len(parts)} parts on {cluster.address}" in run.err

    # Every part was read by a worker process, not by the CLI, and both agents took a share.
    ran = cluster.units_run()
    assert len(ran) == 2 and all(ran.values()), ran
    assert sum(len(keys) for keys in ran.values()) == len(parts)
    assert set.isdisjoint(*ran.values())

    # A rerun finds every part on the volume and sends nothing to the cluster.
    again = flow.bulkmig("extract")
    assert again.code == 0 and "already on the volume" in again.err, again.text
    finish_migration(flow)


def test_worker_killed_mid_extract_is_redone_elsewhere(  # noqa: ANN001
    make_flow,
    pg_source,
    pg_target,
    source_db,
    target_db,
    cluster,
    tmp_path,
    planned_parts,
    finish_migration,
    wait_for_first_part,
) -> None:
    flow = _big_table_planned(make_flow, pg_source, source_db, cluster, planned_parts)
    proc = flow.start("extract", log=tmp_path / "extract.log", quiet=False)
    wait_for_first_part(flow)
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, (tmp_path / "extract.log").read_text()
    finish_migration(flow)
    # None doubled: the target holds each source row exactly once, every value as it was.
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)


def test_unreachable_scheduler_is_one_clear_line(make_flow, pg_source, source_db, free_port) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    flow = make_flow(settings={"executor": "dask", "scheduler": f"tcp://127.0.0.1:{free_port()}"})
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
    make_flow,
    pg_source,
    pg_target,
    source_db,
    target_db,
    cluster,
    tmp_path,
    planned_parts,
    finish_migration,
    wait_for_first_part,
    free_port,
    start_dask,
) -> None:
    flow = _big_table_planned(make_flow, pg_source, source_db, cluster, planned_parts)
    log = tmp_path / "extract.log"
    proc = flow.start("extract", log=log, quiet=False)
    wait_for_first_part(flow)
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    said = log.read_text()
    assert "lost the Dask scheduler" in said and "rerun `bulkmig extract`" in said, said
    assert "Traceback" not in said

    # A new scheduler (the old workers went with the old one: start them again), and the rerun resumes.
    for proc_ in cluster.workers:
        os.killpg(proc_.pid, signal.SIGKILL)
    port = str(free_port())
    start_dask("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log=tmp_path / "s2.log")
    address = f"tcp://127.0.0.1:{port}"
    start_dask("worker", address, "--nthreads", "1", "--no-dashboard", log=tmp_path / "w3.log")  # killed at teardown
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(1, timeout=120)
    again = flow.bulkmig("extract", "--scheduler", address)
    assert again.code == 0, again.text
    assert "already on the volume" in again.err
    finish_migration(flow)
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)
