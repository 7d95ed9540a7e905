"""Bad input, one by one (issue 7, item 6), through the real CLI.

Each case runs the command an operator would run and asserts the documented exit code (``bulkmig.core.errors``)
and ONE error line that names the problem and the fix (``error: <what> — <what to do>``), without a
traceback, and, where the stage could have changed something, that it changed nothing a rerun would trust.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkmig.core.errors import EXIT_CONFIG, EXIT_CONNECT, EXIT_FAILED, EXIT_INTEGRITY
from bulkmig.demo.servers import PostgresServer, free_port

SMALL = "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 200) g;"


def rule(rule_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rule-type": "selection",
        "rule-id": rule_id,
        "rule-name": rule_id,
        "object-locator": {"schema-name": "public", "table-name": "%"},
        "rule-action": "include",
    }
    for key, value in fields.items():
        key = key.replace("_", "-")
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def sealed(flow: Any) -> None:
    """plan, extract and seal the flow's volume (each must succeed)."""
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    run = flow.run("volume", "seal", str(flow.volume))
    assert run.code == 0, run.text


# ------------------------------------------------------------------------------------------ task file


def test_malformed_yaml_names_line_and_column(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    flow = make_flow()
    text = flow.task.read_text().splitlines()
    text.insert(2, "settings: {workers: 2")  # an unclosed flow mapping on line 3
    flow.task.write_text("\n".join(text) + "\n")
    line = one_error(flow.bulkmig("plan"), EXIT_CONFIG, "not valid YAML at line", "column", "fix the YAML syntax")
    assert str(flow.task) in line


def test_unknown_keys_get_did_you_mean(make_flow, one_error) -> None:  # noqa: ANN001
    flow = make_flow(settings={"max_part_byte": "1MB"}, s3={"regoin": "us-east-1"}, migraton_type="full-load")
    one_error(
        flow.bulkmig("plan"),
        EXIT_CONFIG,
        "settings.max_part_byte: unknown key (did you mean 'max_part_bytes'?)",
        "s3.regoin: unknown key (did you mean 'region'?)",
        "migraton_type: unknown key (did you mean 'migration_type'?)",
    )


@pytest.mark.parametrize(
    ("rules", "needles"),
    [
        pytest.param(
            [rule("1", rule_type="selecton")],
            ["unknown rule-type 'selecton'", "did you mean 'selection'"],
            id="rule-type",
        ),
        pytest.param([rule("1", object_locator=None)], ["rule '1'", "object-locator"], id="no-object-locator"),
        pytest.param(
            [
                rule(
                    "1",
                    filters=[
                        {
                            "filter-type": "source",
                            "column-name": "id",
                            "filter-conditions": [{"filter-operator": "betwen", "start-value": "1", "end-value": "9"}],
                        }
                    ],
                )
            ],
            ["filter on 'id'", "unknown filter-operator 'betwen'", "did you mean 'between'"],
            id="filter-operator",
        ),
        pytest.param(
            [
                rule(
                    "1",
                    filters=[{"filter-type": "source", "filter-conditions": [{"filter-operator": "eq", "value": 1}]}],
                )
            ],
            ["rule '1', filter 1: column-name is missing"],
            id="filter-column",
        ),
        pytest.param([rule("1"), rule("1")], ["'1'"], id="duplicate-rule-id"),
    ],
)
def test_invalid_dms_rules(make_flow, rules: list[dict[str, Any]], needles: list[str], one_error) -> None:  # noqa: ANN001
    flow = make_flow(table_mappings={"rules": rules})
    one_error(flow.bulkmig("plan"), EXIT_CONFIG, "table_mappings", "fix the task file", *needles)
    assert not flow.volume.exists()


# ------------------------------------------------------------------------------------- reaching things


def test_unreachable_source_port(make_flow, one_error) -> None:  # noqa: ANN001
    port = free_port()  # nothing listens there: the connection is refused at once
    flow = make_flow(source=f"postgresql://postgres@127.0.0.1:{port}/shop")
    started = time.monotonic()
    one_error(flow.bulkmig("plan"), EXIT_CONNECT, f"source postgresql://postgres@127.0.0.1:{port}/shop", "cannot reach")
    assert time.monotonic() - started < 30
    assert not (flow.volume / "plan.json").exists()


def test_unreachable_s3_endpoint(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    flow = make_flow()
    sealed(flow)
    port = free_port()
    flow = make_flow(endpoint_url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    one_error(flow.bulkmig("volume import"), EXIT_CONNECT, f"cannot reach the S3 endpoint http://127.0.0.1:{port}")
    assert time.monotonic() - started < 60


def test_missing_bucket(make_flow, pg_source, source_db, s3_server, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    missing = f"bulkmig-missing-{uuid.uuid4().hex[:12]}"
    flow = make_flow(bucket=f"s3://{missing}/shop")
    sealed(flow)
    one_error(flow.bulkmig("volume import"), EXIT_CONFIG, f"bucket {missing} does not exist", "create it")
    one_error(flow.bulkmig("load"), EXIT_CONFIG, f"bucket {missing} does not exist")
    assert missing not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


def test_wrong_password_postgres(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    flow = make_flow()
    wrong = f"wrong-{secrets.token_hex(8)}"
    flow.env["BULKMIG_SOURCE_PASSWORD"] = wrong
    one_error(flow.bulkmig("plan"), EXIT_CONNECT, "refused the password for user 'postgres'", "BULKMIG_SOURCE_PASSWORD")
    assert wrong not in flow.bulkmig("plan").text


def test_wrong_password_mariadb(make_flow, mariadb, mysql_db, one_error) -> None:  # noqa: ANN001
    pytest.importorskip("bulkmig.engines.mysql.source", reason="the MySQL source engine (issue 5) is not there yet")
    mariadb.execute(mysql_db, "CREATE TABLE t (id int PRIMARY KEY)")
    flow = make_flow(source=mariadb.url(mysql_db))
    wrong = f"wrong-{secrets.token_hex(8)}"
    flow.env["BULKMIG_SOURCE_PASSWORD"] = wrong
    run = flow.bulkmig("plan")
    one_error(run, EXIT_CONNECT, f"access denied for {mariadb.user}@127.0.0.1", "BULKMIG_SOURCE_PASSWORD")
    assert wrong not in run.text


# ------------------------------------------------------------------------------------------ privileges


@pytest.fixture
def limited_role(pg_source: PostgresServer, source_db: str) -> Iterator[tuple[str, str]]:
    """A login role with no privileges of its own on ``source_db`` (name, password); dropped afterwards."""
    name = f"limited_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    pg_source.execute("postgres", f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    yield name, password
    pg_source.execute(source_db, f"DROP OWNED BY {name}")
    pg_source.execute("postgres", f"DROP ROLE {name}")


def test_missing_select_privilege_names_table_and_grant(
    make_flow, pg_source, source_db, limited_role, one_error
) -> None:  # noqa: ANN001
    name, password = limited_role
    pg_source.execute(
        source_db,
        f'{SMALL} CREATE TABLE secret_stuff (id int PRIMARY KEY); CREATE TABLE "Odd Name" (id int PRIMARY KEY);'
        f"GRANT SELECT ON t TO {name};",
    )
    flow = make_flow(source=pg_source.url(source_db, user=name))
    flow.env["BULKMIG_SOURCE_PASSWORD"] = password
    line = one_error(
        flow.bulkmig("plan"),
        EXIT_CONNECT,
        "no SELECT privilege",
        "public.secret_stuff",
        'public."Odd Name"',
        f'GRANT SELECT ON public."Odd Name", public.secret_stuff TO {name}',
    )
    assert "public.t," not in line
    assert not (flow.volume / "plan.json").exists()


def test_missing_replication_attribute_for_cdc(make_flow, pg_source, source_db, limited_role, one_error) -> None:  # noqa: ANN001
    name, password = limited_role
    pg_source.execute(source_db, f"{SMALL} ALTER TABLE t OWNER TO {name};")
    flow = make_flow(source=pg_source.url(source_db, user=name), migration_type="full-load-and-cdc")
    flow.env["BULKMIG_SOURCE_PASSWORD"] = password
    one_error(
        flow.bulkmig("plan"),
        EXIT_CONNECT,
        f"role {name} has no REPLICATION attribute",
        f"ALTER ROLE {name} REPLICATION",
    )
    # Refused before touching the source: no publication, no slot.
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_publication")[0][0] == 0
    assert pg_source.execute(source_db, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0
    # The same role may run a plain full load.
    plain = make_flow(source=pg_source.url(source_db, user=name))
    plain.env["BULKMIG_SOURCE_PASSWORD"] = password
    run = plain.bulkmig("plan")
    assert run.code == 0, run.text


def test_wal_level_not_logical(make_flow, tmp_path: Path, one_error) -> None:  # noqa: ANN001
    with PostgresServer(name="walreplica", settings={"wal_level": "replica"}) as server:
        server.create_database("shop")
        server.execute("shop", SMALL)
        flow = make_flow(source=server.url("shop"), migration_type="full-load-and-cdc")
        flow.env["BULKMIG_SOURCE_PASSWORD"] = server.password
        one_error(flow.bulkmig("plan"), EXIT_FAILED, "wal_level = replica", "set wal_level = logical")
        assert server.execute("shop", "SELECT count(*) FROM pg_publication")[0][0] == 0
        assert not (flow.volume / "plan.json").exists()


# -------------------------------------------------------------------------------------- the volume


def test_volume_of_another_migration(make_flow, pg_source, source_db, tmp_path: Path, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    flow = make_flow(name="shop-eu")
    assert flow.bulkmig("plan").code == 0
    plan = json.loads((flow.volume / "plan.json").read_text())
    other_db = f"other_{uuid.uuid4().hex[:8]}"
    pg_source.create_database(other_db)
    try:
        pg_source.execute(other_db, SMALL)
        other = make_flow(name="shop-us", source=pg_source.url(other_db))
        for step in ("plan", "extract", "volume import"):
            one_error(
                other.bulkmig(step), EXIT_INTEGRITY, f"volume {plan['volume_id']}", "'shop-eu'", "not of 'shop-us'"
            )
    finally:
        pg_source.drop_database(other_db)
    assert json.loads((flow.volume / "plan.json").read_text()) == plan


def test_newer_plan_format_is_refused(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    flow = make_flow()
    assert flow.bulkmig("plan").code == 0
    path = flow.volume / "plan.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "version": 99}))
    for step in ("plan", "extract"):
        one_error(
            flow.bulkmig(step), EXIT_INTEGRITY, "plan.json is format version 99", "reads up to 1", "upgrade bulkmig"
        )
    one_error(flow.run("volume", "seal", str(flow.volume)), EXIT_INTEGRITY, "format version 99")


def test_newer_volume_manifest_is_refused(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL)
    flow = make_flow()
    sealed(flow)
    path = flow.volume / "volume.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 7}))
    run = flow.run("volume", "verify", str(flow.volume))
    assert run.code == EXIT_INTEGRITY and "volume.json is format version 7" in run.text, run.text
    assert "Traceback" not in run.text
    one_error(flow.bulkmig("volume import"), EXIT_INTEGRITY, "volume.json is format version 7", "upgrade bulkmig")


# --------------------------------------------------------------------------------- changed task inputs


def _edit_task(flow, **changes: Any) -> None:  # noqa: ANN001
    """Replace top-level keys of the flow's task file (a section is replaced whole)."""
    doc = yaml.safe_load(flow.task.read_text())
    doc.update(changes)
    flow.task.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_changed_inputs_are_named_and_restart_starts_over(make_flow, pg_source, source_db, one_error) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SMALL + "CREATE TABLE u (id int PRIMARY KEY);")
    flow = make_flow(settings={"max_part_bytes": "256MiB", "workers": 2})
    sealed(flow)
    assert flow.bulkmig("volume import").code == 0
    before = json.loads((flow.volume / "plan.json").read_text())

    # Only the number of workers changes: that does not shape the volume, so the plan is reused.
    _edit_task(flow, settings={"max_part_bytes": "256MiB", "workers": 1})
    run = flow.bulkmig("extract")
    assert run.code == 0 and "already on the volume" in run.err, run.text

    _edit_task(flow, settings={"max_part_bytes": "1MB", "workers": 1, "compression": "snappy"})
    for step in ("plan", "extract", "volume import", "load"):
        one_error(
            flow.bulkmig(step),
            EXIT_INTEGRITY,
            f"volume {before['volume_id']} on ",
            "was planned from different task inputs; changed since: ",
            "settings.compression (zstd -> snappy)",
            "settings.max_part_bytes (268435456 -> 1000000)",
            "--restart",
        )

    _edit_task(
        flow,
        settings={"max_part_bytes": "256MiB", "workers": 1},
        table_mappings={"rules": [rule("1", object_locator={"schema-name": "public", "table-name": "t"})]},
    )
    line = one_error(flow.bulkmig("extract"), EXIT_INTEGRITY, "table_mappings", "--restart")
    assert "settings." not in line

    other_db = f"moved_{uuid.uuid4().hex[:8]}"
    _edit_task(flow, table_mappings=None, source=pg_source.url(other_db))
    line = one_error(flow.bulkmig("extract"), EXIT_INTEGRITY, f"source.database ({source_db} -> {other_db})")
    assert "table_mappings" not in line

    # --restart discards the plan and the parts and plans afresh from the task as it is now.
    _edit_task(flow, source=pg_source.url(source_db), settings={"max_part_bytes": "1MB", "workers": 1})
    run = flow.bulkmig("plan", "--restart")
    assert run.code == 0, run.text
    assert f"discarding volume {before['volume_id']}" in run.err
    after = json.loads((flow.volume / "plan.json").read_text())
    assert after["volume_id"] != before["volume_id"] and after["settings"]["max_part_bytes"] == 1_000_000
    assert not list(flow.volume.glob("data/**/*.parquet"))
    assert flow.bulkmig("extract").code == 0
