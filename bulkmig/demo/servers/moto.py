"""moto's S3 server as a real HTTP endpoint on loopback, in a child process."""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from botocore.client import BaseClient


from bulkmig.demo.servers.common import LOOPBACK, DevServerError, _ChildServer, _tail, free_port


class MotoS3Server(_ChildServer):
    """moto's S3 server as a real HTTP endpoint on loopback, in a child process.

    A child process rather than an in-process thread so the code under test talks to S3 exactly as it
    would in production (HTTP, signing, retries) and can itself be a subprocess pointed at ``env()``.
    Credentials are always dummies: a fake endpoint must never see a developer's real AWS keys.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        port: int | None = None,
        access_key: str = "testing",
        secret_key: str = "testing",
        region: str = "us-east-1",
        keep_log: bool = False,
    ) -> None:
        self.port: int = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.keep_log = keep_log
        self.keep = keep_log  # the log is all a moto server leaves behind
        self._fixed_port = port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def logfile(self) -> Path | None:
        return self._tmp / "moto.log" if self._tmp else None

    def env(self) -> dict[str, str]:
        """AWS variables pointing a subprocess (boto3 ≥ 1.28 honours AWS_ENDPOINT_URL_S3) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def start(self) -> Self:
        """Start ``python -m moto.server`` and return once it answers HTTP."""
        if self._proc is not None:
            return self
        if importlib.util.find_spec("moto") is None:
            raise DevServerError(
                "moto (the S3 server the demo and the tests run on loopback) is not installed",
                "pip install 'bulkmig[demo]' (or '.[test]' in a checkout)",
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="bulkmig-moto-"))
        attempts = 1 if self._fixed_port else 4
        try:
            for attempt in range(attempts):
                if not self._fixed_port:
                    self.port = free_port()
                if self._spawn_and_wait():
                    break
                log = _tail(self.logfile) if self.logfile else ""
                if attempt + 1 < attempts and "already in use" in log:
                    continue
                raise DevServerError(
                    f"moto S3 server did not start on port {self.port}\n--- tail of its log ---\n{log}",
                    "check that moto[server] (flask, werkzeug) is installed: pip install 'bulkmig[demo]'",
                )
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _spawn_and_wait(self, timeout: float = 60) -> bool:
        assert self.logfile is not None
        # MOTO_PORT is what moto puts into URLs it generates; an inherited one would point elsewhere.
        child_env = {**os.environ, **self.env(), "MOTO_PORT": str(self.port)}
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer means the server is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self._terminate()
        return False

    def client(self) -> BaseClient:
        """A boto3 S3 client for this server, with path-style addressing (no DNS for bucket names)."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<MotoS3Server {self.endpoint_url} {state}>"
