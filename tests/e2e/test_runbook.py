"""`bulkmig runbook` on a real database: the calculator's figures are there, and every command it prints
runs as printed, in order, and leaves the target equal to the source."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_runbook_commands_run_as_printed(make_flow, pg_source, source_db, tmp_path) -> None:  # noqa: ANN001
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
    assert "Devices of 80.0 TB: **1**" in text and "key-less: public.nokey" in text
    commands = re.findall(r"```sh\n(.+?)\n```", text)
    assert commands[0].startswith("bulkmig check") and any(c.startswith("bulkmig validate") for c in commands)
    env = {**flow.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{flow.env.get('PATH', '')}"}
    for command in commands:
        proc = subprocess.run(command, shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
