"""The throwaway servers are the real thing: settings applied, passwords checked, S3 over HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError

from bulkmig.demo.servers import DevServerError, MotoS3Server, PostgresServer, load_dataset


def test_cluster_is_ready_for_logical_decoding(pg_source: PostgresServer) -> None:
    assert pg_source.execute("postgres", "SHOW wal_level") == [("logical",)]
    assert pg_source.execute("postgres", "SHOW max_replication_slots") == [("20",)]
    assert pg_source.execute("postgres", "SHOW fsync") == [("off",)]
    assert pg_source.execute("postgres", "SHOW listen_addresses") == [("127.0.0.1",)]


def test_source_and_target_are_separate_clusters(pg_source: PostgresServer, pg_target: PostgresServer) -> None:
    ident = "SELECT system_identifier FROM pg_control_system()"
    assert pg_source.port != pg_target.port
    assert pg_source.datadir != pg_target.datadir
    assert pg_source.execute("postgres", ident) != pg_target.execute("postgres", ident)


def test_wrong_password_is_refused_over_tcp(pg_source: PostgresServer, source_db: str) -> None:
    with psycopg.connect(pg_source.conninfo(source_db)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (source_db,)
    for params in ({}, {"replication": "database"}):
        bad = psycopg.conninfo.make_conninfo(pg_source.conninfo(source_db), password="not-the-password", **params)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(bad, autocommit=True)


def test_url_leaves_the_password_out(pg_source: PostgresServer) -> None:
    url = pg_source.url("some db")
    assert url == f"postgresql://postgres@127.0.0.1:{pg_source.port}/some%20db"
    assert pg_source.password not in url
    assert pg_source.env()["PGPASSWORD"] == pg_source.password


def test_drop_database_drops_its_replication_slots(pg_source: PostgresServer) -> None:
    """A slot pins its database even WITH (FORCE); teardown must not fail or leak slots after a capture test."""
    pg_source.create_database("slotted")
    pg_source.execute("slotted", "SELECT pg_create_logical_replication_slot('devservers_idle', 'pgoutput')")
    # A slot held by a live walsender (as during an exported snapshot) must be released too.
    walsender = psycopg.connect(pg_source.conninfo("slotted", replication="database"), autocommit=True)
    walsender.execute('CREATE_REPLICATION_SLOT "devservers_active" LOGICAL pgoutput EXPORT_SNAPSHOT')
    try:
        pg_source.drop_database("slotted")
    finally:
        walsender.close()
    slots = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'devservers_%'"
    assert pg_source.execute("postgres", slots) == [(0,)]
    assert pg_source.execute("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'slotted'") == [(0,)]


def test_psql_file_stops_at_the_first_error(pg_source: PostgresServer, source_db: str, tmp_path: Path) -> None:
    script = tmp_path / "broken.sql"
    script.write_text("CREATE TABLE before_error (i int);\nSELECT 1/0;\nCREATE TABLE after_error (i int);\n")
    with pytest.raises(DevServerError, match="division by zero"):
        pg_source.psql_file(source_db, script)
    tables = pg_source.execute(source_db, "SELECT relname FROM pg_class WHERE relname LIKE '%_error' ORDER BY 1")
    assert tables == [("before_error",)]


def test_moto_put_get_with_sha256_over_http(s3_server: MotoS3Server, bucket: str) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    body = b"part-00042 bytes \x00\xff" * 1000
    want = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s3 = s3_server.client()
    put = s3.put_object(Bucket=bucket, Key="data/a.parquet", Body=body, ChecksumAlgorithm="SHA256")
    assert put["ChecksumSHA256"] == want
    head = s3.head_object(Bucket=bucket, Key="data/a.parquet", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == want
    assert head["ContentLength"] == len(body)
    got = s3.get_object(Bucket=bucket, Key="data/a.parquet")
    assert got["Body"].read() == body


def test_moto_conditional_put_refuses_an_existing_key(s3_server: MotoS3Server, bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="volume.json", Body=b"{}", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="volume.json", Body=b"{ }", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"


def test_moto_credentials_stay_out_of_our_environment(s3_server: MotoS3Server) -> None:
    assert s3_server.env()["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    assert os.environ.get("AWS_ENDPOINT_URL_S3") != s3_server.endpoint_url


def test_load_dataset_pagila(pg_source: PostgresServer, source_db: str, datasets: Path) -> None:
    report = load_dataset(pg_source, "pagila", source_db)
    assert "film" in report
    assert pg_source.execute(source_db, "SELECT count(*) FROM public.film") == [(1000,)]
    assert pg_source.execute(source_db, "SELECT count(*) FROM public.payment") == [(16049,)]


def test_load_dataset_chinook_lands_in_the_given_database(
    pg_target: PostgresServer, target_db: str, datasets: Path
) -> None:
    load_dataset(pg_target, "chinook-postgres", target_db)
    assert pg_target.execute(target_db, "SELECT count(*) FROM track") == [(3503,)]
    assert pg_target.execute("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'chinook'") == [(0,)]
