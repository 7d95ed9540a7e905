"""MySQL/MariaDB as the target (issue 18): sakila MySQL → MariaDB through the real CLI, checked three ways —
bulkmig's own value-by-value validation, ``mysqldump --no-data`` of both databases (the schema as the source has
it), and ``CHECKSUM TABLE`` of every table (the server's own row checksum, independent of bulkmig).
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess

from bulkmig.devservers import load_dataset

SAKILA_TABLES = 16
SAKILA_ROWS = 47_273


def mysql_target_flow(make_mysql_flow, mariadb, target: str, database: str):  # noqa: ANN001, ANN201
    flow = make_mysql_flow(database=database, target=mariadb.url(target))
    flow.env["BULKMIG_TARGET_PASSWORD"] = mariadb.password
    return flow


def schema_dump(mariadb, database: str) -> str:  # noqa: ANN001
    """``mysqldump --no-data`` with what differs by construction taken out: comments, DEFINER clauses."""
    out = subprocess.run(
        [
            "mysqldump",
            "-h",
            mariadb.host,
            "-P",
            str(mariadb.port),
            "-u",
            mariadb.user,
            "--no-data",
            "--routines",
            "--triggers",
            "--skip-comments",
            "--skip-dump-date",
            database,
        ],
        env={"MYSQL_PWD": mariadb.password, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = re.sub(r"DEFINER=`[^`]*`@`[^`]*`\s*", "", out)
    return out


def checksums(mariadb, database: str, tables: list[str]) -> dict[str, int]:  # noqa: ANN001
    rows = mariadb.execute(database, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
    return {r[0].split(".", 1)[1]: r[1] for r in rows}


def test_sakila_mysql_to_mariadb_is_equal_in_schema_and_data(make_mysql_flow, mariadb, mysql_db, datasets) -> None:  # noqa: ANN001
    load_dataset(mariadb, "sakila-mysql", "sakila")
    flow = mysql_target_flow(make_mysql_flow, mariadb, mysql_db, "sakila")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert f"{SAKILA_ROWS:,} rows loaded" in run.err, run.err
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    report = json.loads(check.out)
    assert report["equal"] is True
    assert len(report["tables"]) == SAKILA_TABLES
    assert sum(t["target_rows"] for t in report["tables"]) == SAKILA_ROWS

    # Independent of bulkmig: the schema as mysqldump prints it, and the server's checksum of every table.
    source, target = schema_dump(mariadb, "sakila"), schema_dump(mariadb, mysql_db)
    diff = "\n".join(difflib.unified_diff(source.splitlines(), target.splitlines(), "source", "target", lineterm=""))
    assert not diff, diff[:6000]
    tables = [t["table"].split(".", 1)[1] for t in report["tables"]]
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, "sakila", tables)

    # Every object is in the assessment report; only DEFINER clauses changed.
    assessment = json.loads((flow.volume / "schema/assessment.json").read_text())
    assert assessment["summary"]["needs_action"] == 0
    changed = [o for o in assessment["objects"] if o["status"] != "converted"]
    assert changed and all("DEFINER dropped" in n["message"] for o in changed for n in o["notes"])

    # Exactly once: a second load finds every part in the ledger and loads nothing.
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert "already loaded (ledger)" in again.err and " 0 rows loaded" in again.err, again.err
    assert checksums(mariadb, mysql_db, tables) == checksums(mariadb, "sakila", tables)
