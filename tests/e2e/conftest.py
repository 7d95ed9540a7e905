"""Whole-flow fixtures: a task file wired to the throwaway servers, and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Flow:
    """One migration's task file and the environment its commands run in."""

    task: Path
    env: dict[str, str]
    volume: Path
    bucket: str
    secrets: list[str]

    def run(self, *args: str, timeout: int = 300) -> Run:
        """The CLI's exit code and output; a command still running after ``timeout`` is killed and
        reported as exit -9 with what it printed, so a hang fails the test with its evidence."""
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bulkmig.cli", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:

            def text(value: str | bytes | None) -> str:
                return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

            return Run(-9, text(exc.stdout), text(exc.stderr) + f"\n[killed after {timeout}s]")
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def bulkmig(self, command: str, *args: str) -> Run:
        """``bulkmig <command> --task <task> ...`` (``command`` may be ``volume import``)."""
        return self.run(*command.split(), "--task", str(self.task), *args)


@pytest.fixture
def make_flow(pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path) -> Callable[..., Flow]:  # noqa: ANN001
    def make(**overrides: Any) -> Flow:
        doc: dict[str, Any] = {
            "source": pg_source.url(source_db),
            "target": pg_target.url(target_db),
            "migration_type": "full-load",
            "volume": "./volume",
            "bucket": f"s3://{bucket}/shop",
            "s3": {"endpoint_url": s3_server.endpoint_url, "region": "us-east-1"},
            "settings": {"workers": 2},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            elif value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        task = tmp_path / "task.yaml"
        task.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
        env.update(s3_server.env())
        env["BULKMIG_SOURCE_PASSWORD"] = pg_source.password
        env["BULKMIG_TARGET_PASSWORD"] = pg_target.password
        return Flow(task, env, tmp_path / "volume", doc["bucket"], [pg_source.password, pg_target.password])

    return make
