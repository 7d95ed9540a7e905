"""`bulkmig runbook` on a real database: the calculator's figures are there, and every command it prints
runs as printed, in order, and leaves the target equal to the source."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bulkmig.demo.servers import load_dataset


def test_runbook_commands_run_as_printed(
    make_flow, pg_source, pg_target, source_db, target_db, datasets, tmp_path
) -> None:  # noqa: ANN001, E501
    load_dataset(pg_source, "pagila", source_db)
    pg_source.execute(
        source_db,
        "CREATE TABLE big (id bigint PRIMARY KEY, payload text, n numeric);"
        "INSERT INTO big SELECT g, md5(g::text) || repeat('x', g % 50), g / 7.0 FROM generate_series(1, 50000) g;"
        "CREATE TABLE nokey (a int, b text); INSERT INTO nokey SELECT g, 'b' || g FROM generate_series(1, 100) g;"
        "ANALYZE",
    )
    flow = make_flow()
    out = tmp_path / "runbook.md"
    run = flow.bulkmig(
        "runbook", "--network", "1000", "--device-capacity", "80TB", "--sample-seconds", "1", "-o", str(out)
    )
    assert run.code == 0, run.text
    text = out.read_text()
    assert "public.big" in text and "50,000" in text and "(measured)" in text and "estimate" in text
    assert "| public.rental | 16,044" in text and "| public.payment_p2022_01 |" in text  # pagila, partitions too
    assert "the schema is copied as pg_dump writes it" in text
    assert "Devices of 80.0 TB: **1**" in text and "key-less: public.nokey" in text
    commands = re.findall(r"```sh\n(.+?)\n```", text)
    assert commands[0].startswith("bulkmig check") and any(c.startswith("bulkmig validate") for c in commands)
    env = {**flow.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{flow.env.get('PATH', '')}"}
    for command in commands:
        proc = subprocess.run(command, shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    # The commands left the target equal to the source (validate said so; the rows say it too).
    for table in ("payment", "rental", "big"):
        sql = f"SELECT count(*), sum(hashtext(t::text)) FROM public.{table} t"
        assert pg_target.execute(target_db, sql) == pg_source.execute(source_db, sql), table


def test_runbook_of_a_sqlite_source_lists_its_tables_and_conversion(make_flow, datasets, tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "chinook.db"
    shutil.copyfile(datasets / "chinook" / "Chinook_Sqlite.sqlite", db)
    flow = make_flow(source=f"sqlite:///{db}")
    run = flow.bulkmig("runbook", "--sample-seconds", "0")
    assert run.code == 0, run.text
    text = run.out
    for table in ("Track", "Invoice", "InvoiceLine", "Customer"):
        assert f"| main.{table} |" in text or f"| {table} |" in text, table
    assert "Schema conversion (sqlite to postgresql):" in text and "convert: " in text and "need action" in text
    assert "sqlite sources are not sampled" in text and "bulkmig convert --task" in text
    assert "Tables whose conversion needs action:" in text
