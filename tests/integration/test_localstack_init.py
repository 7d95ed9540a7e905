"""localstack/'s init script creates the bucket and the KMS key: run against moto's server over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "localstack" / "init" / "ready.d" / "bulkmig-init.py"


def test_init_script_creates_bucket_and_key_idempotently(s3_server) -> None:  # noqa: ANN001
    bucket = f"bulkmig-ls-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, **s3_server.env(), "AWS_ENDPOINT_URL": s3_server.endpoint_url, "BULKMIG_BUCKET": bucket}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    first = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    key = first.stdout.split("KMS key ")[1].split()[0]
    assert f"KMS key {key}" in again.stdout  # the same key, not a second one
    assert bucket in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
