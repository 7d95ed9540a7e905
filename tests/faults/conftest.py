"""Fixtures for the fault-injection suite (issue 7): whole flows through the real CLI, with faults.

pytest shares conftest fixtures only downward, so the small ``Flow`` / ``make_flow`` of tests/e2e are
re-declared here (same shape, plus a way to point the task's S3 endpoint at a :class:`FaultProxy`, and
to start a stage as a subprocess that a test can kill).  The servers themselves (PostgreSQL, moto) come
from tests/conftest.py and are shared with the rest of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkmig.devservers import MotoS3Server
from bulkmig.testing.faultproxy import FaultProxy


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

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bulkmig.cli", *args]

    def run(self, *args: str, timeout: int = 300) -> Run:
        proc = subprocess.run(
            self.argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def bulkmig(self, command: str, *args: str, timeout: int = 300) -> Run:
        """``bulkmig <command> --task <task> ...`` (``command`` may be ``volume import``)."""
        return self.run(*command.split(), "--task", str(self.task), *args, timeout=timeout)

    def start(self, command: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``bulkmig <command> --task <task> ...`` in its own process group, output to ``log``.

        Its own group, so a kill takes the stage's helpers (pg_dump, psql) down with it, as a crash of
        the machine or the container would.
        """
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv("--quiet", *command.split(), "--task", str(self.task), *args),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture
def fault_proxy(s3_server: MotoS3Server) -> Iterator[FaultProxy]:
    """A transparent :class:`FaultProxy` in front of moto; tests arm it with a fault plan."""
    with FaultProxy(s3_server.endpoint_url, seed=7) as proxy:
        yield proxy


@pytest.fixture
def make_flow(pg_source, pg_target, source_db, target_db, s3_server, bucket, tmp_path) -> Callable[..., Flow]:  # noqa: ANN001
    """``make_flow(endpoint_url=..., **task_overrides)``: a task file wired to this test's databases and bucket."""

    def make(endpoint_url: str | None = None, **overrides: Any) -> Flow:
        doc: dict[str, Any] = {
            "source": pg_source.url(source_db),
            "target": pg_target.url(target_db),
            "migration_type": "full-load",
            "volume": "./volume",
            "bucket": f"s3://{bucket}/shop",
            "s3": {"endpoint_url": endpoint_url or s3_server.endpoint_url, "region": "us-east-1"},
            "settings": {"workers": 2},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        task = tmp_path / "task.yaml"
        task.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
        env.update(s3_server.env())
        env["AWS_ENDPOINT_URL_S3"] = doc["s3"]["endpoint_url"]  # no path around the proxy
        env["BULKMIG_SOURCE_PASSWORD"] = pg_source.password
        env["BULKMIG_TARGET_PASSWORD"] = pg_target.password
        return Flow(task, env, tmp_path / "volume", doc["bucket"])

    return make
