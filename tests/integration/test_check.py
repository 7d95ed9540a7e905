"""`bulkmig check` through the real CLI against real servers: every check runs even when some fail, each
FAIL line names its fix, the exit code is the first failure's class, and nothing is created anywhere
(no publication, no slot, no volume directory, no bucket)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

from bulkmig.core.errors import EXIT_CONNECT, EXIT_FAILED
from bulkmig.core.manifest import validate_document
from bulkmig.demo.servers import PostgresServer

SMALL = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;"


def lines(run: Any) -> dict[str, tuple[str, str]]:
    """check name -> (status, rest of the line), from the report on stdout."""
    out: dict[str, tuple[str, str]] = {}
    for line in run.out.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("ok", "FAIL", "skip"):
            name, _, text = rest.strip().partition(" ")
            out[name] = (status.strip(), text.strip())
    return out


def failed(run: Any) -> dict[str, str]:
    return {name: text for name, (status, text) in lines(run).items() if status == "FAIL"}


def no_stream_objects(server: PostgresServer, db: str) -> None:
    assert server.execute(db, "SELECT count(*) FROM pg_publication")[0][0] == 0
    assert server.execute(db, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_all_ok_for_a_postgres_full_load_and_cdc_task(make_flow, pg_source, source_db) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    flow = make_flow(migration_type="full-load-and-cdc")
    run = flow.bulkmig("check")
    assert run.code == 0, run.text
    found = lines(run)
    assert {name for name, (status, _) in found.items() if status == "ok"} == {
        "source.connect",
        "source.tables",
        "source.select_privilege",
        "source.wal_level",
        "source.cdc_privileges",
        "source.replica_identity",
        "target.connect",
        "bucket.reachable",
        "volume.writable",
        "volume.free_space",
        "volume.plan",
    }, run.out
    assert found["task.encryption_key"][0] == "skip"
    assert "select 1 of 1 tables" in found["source.tables"][1]
    assert "check: 11 ok, 0 failed, 1 skipped" in run.out
    assert "error:" not in run.err
    # Read-only: nothing on the source, no volume directory, nothing in the bucket.
    no_stream_objects(pg_source, source_db)
    assert not flow.volume.exists()
    assert all(s not in run.text for s in flow.secrets)

    as_json = json.loads(flow.bulkmig("check", "--json").out)
    assert [r["status"] for r in as_json].count("ok") == 11
    assert {"name", "status", "detail", "fix", "exit_code"} <= set(as_json[0])
    validate_document(as_json, "check")


def test_three_failures_in_one_run_each_with_its_fix(make_flow, s3_server) -> None:  # noqa: ANN001
    missing = f"bulkmig-missing-{uuid.uuid4().hex[:12]}"
    with PostgresServer(name="checkwal", settings={"wal_level": "replica"}) as server:
        server.create_database("shop")
        server.execute("shop", SMALL)
        flow = make_flow(source=server.url("shop"), migration_type="full-load-and-cdc", bucket=f"s3://{missing}/x")
        flow.env["BULKMIG_SOURCE_PASSWORD"] = server.password
        wrong = f"wrong-{secrets.token_hex(8)}"
        flow.env["BULKMIG_TARGET_PASSWORD"] = wrong
        run = flow.bulkmig("check")
        bad = failed(run)
        assert set(bad) == {"source.wal_level", "target.connect", "bucket.reachable"}, run.out
        assert "wal_level = replica" in bad["source.wal_level"]
        assert "set wal_level = logical" in bad["source.wal_level"]
        assert "refused the password" in bad["target.connect"] and "BULKMIG_TARGET_PASSWORD" in bad["target.connect"]
        assert f"bucket {missing} does not exist" in bad["bucket.reachable"]
        assert "create it or fix `bucket:`" in bad["bucket.reachable"]
        # The checks after a failure still ran; the exit code is the first failure's class (SourceError).
        assert lines(run)["source.cdc_privileges"][0] == lines(run)["source.replica_identity"][0] == "ok"
        assert run.code == EXIT_FAILED and "Traceback" not in run.text
        assert run.err.strip().splitlines()[-1].startswith("error: 3 checks failed (source.wal_level, target.connect")
        assert wrong not in run.text and server.password not in run.text
        # Nothing was created: no publication, no slot, no bucket, no volume.
        no_stream_objects(server, "shop")
        assert missing not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
        assert not flow.volume.exists()


def test_mariadb_statement_binlog_names_binlog_format_row(make_mysql_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY, v varchar(10))")
    flow = make_mysql_flow(migration_type="full-load-and-cdc")
    saved = mariadb.execute(None, "SELECT @@GLOBAL.binlog_format")[0][0]
    mariadb.execute(None, "SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        run = flow.bulkmig("check")
    finally:
        mariadb.execute(None, "SET GLOBAL binlog_format = %s", (saved,))
    assert run.code == EXIT_FAILED, run.text
    bad = failed(run)
    assert set(bad) == {"source.binlog"}, run.out
    assert "binlog_format is STATEMENT" in bad["source.binlog"]
    assert "SET GLOBAL binlog_format = 'ROW'" in bad["source.binlog"]
    found = lines(run)
    assert found["source.connect"][0] == found["source.tables"][0] == found["source.reload_privilege"][0] == "ok"
    assert found["target.connect"][0] == "ok" and found["bucket.reachable"][0] == "ok"


def test_mariadb_user_without_replication_and_reload_grants(make_flow, mariadb, mysql_db) -> None:  # noqa: ANN001
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY)")
    user, password = f"nogrant_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    mariadb.execute(None, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    try:
        mariadb.execute(None, f"GRANT SELECT ON `{mysql_db}`.* TO '{user}'@'127.0.0.1'")
        flow = make_flow(source=mariadb.url(mysql_db, user=user), migration_type="full-load-and-cdc")
        flow.env["BULKMIG_SOURCE_PASSWORD"] = password
        run = flow.bulkmig("check")
    finally:
        mariadb.execute(None, f"DROP USER '{user}'@'127.0.0.1'")
    assert run.code == EXIT_CONNECT, run.text  # PrivilegeError, like the stage
    bad = failed(run)
    assert set(bad) == {"source.reload_privilege", "source.binlog"}, run.out
    assert f"GRANT RELOAD ON *.* TO '{user}'@'<host>'" in bad["source.reload_privilege"]
    assert "REPLICATION SLAVE and REPLICATION CLIENT" in bad["source.binlog"]
    assert f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'<host>'" in bad["source.binlog"]
    assert password not in run.text


def test_sqlite_file_that_does_not_exist(make_flow, tmp_path: Path) -> None:  # noqa: ANN001
    missing = tmp_path / "nowhere" / "shop.db"
    run = make_flow(source=f"sqlite:///{missing}").bulkmig("check")
    assert run.code == EXIT_CONNECT, run.text
    found = lines(run)
    assert found["source.connect"][0] == "FAIL" and "does not exist" in found["source.connect"][1], run.out
    assert found["source.tables"] == ("skip", "needs source.connect, which did not pass")
    assert found["source.cdc"][0] == "skip"
    assert found["target.connect"][0] == "ok"
    assert not missing.exists() and not missing.parent.exists()


def test_volume_too_small_then_read_only(make_flow, pg_source, source_db, tmp_path: Path, unavailable) -> None:  # noqa: ANN001
    def _mount(*argv: str) -> None:
        done = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root (CI runs as root)")
    pg_source.execute(
        source_db,
        "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, repeat('x', 200) "
        "FROM generate_series(1, 20000) g;",
    )
    mnt = tmp_path / "small"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=1m,mode=0777", f"bulkmig-{uuid.uuid4().hex[:6]}", str(mnt))
    try:
        flow = make_flow(volume=str(mnt / "volume"))
        bad = failed(flow.bulkmig("check"))
        assert set(bad) == {"volume.free_space"}
        assert (
            f"volume {mnt / 'volume'}: " in bad["volume.free_space"] and "free on bulkmig-" in bad["volume.free_space"]
        )
        assert "lower settings.workers / settings.max_part_bytes" in bad["volume.free_space"]
        _mount("-o", "remount,ro", str(mnt))
        run = flow.bulkmig("check")
        assert run.code == EXIT_FAILED, run.text  # StoreError
        bad = failed(run)
        assert set(bad) == {"volume.writable"}, run.out
        assert "read-only filesystem" in bad["volume.writable"] and "remount it read-write" in bad["volume.writable"]
        assert lines(run)["volume.free_space"] == ("skip", "needs volume.writable, which did not pass")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
