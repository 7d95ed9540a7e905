"""Fixtures for the fault-injection suite (issue 7): whole flows through the real CLI, with faults.

``make_flow`` (tests/conftest.py) takes ``endpoint_url=`` to point a task's S3 endpoint at the
:class:`FaultProxy` below, and ``Flow.start`` starts a stage as a subprocess a test can kill.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bulkmig.devservers import MotoS3Server
from bulkmig.testing.faultproxy import FaultProxy


@pytest.fixture
def fault_proxy(s3_server: MotoS3Server) -> Iterator[FaultProxy]:
    """A transparent :class:`FaultProxy` in front of moto; tests arm it with a fault plan."""
    with FaultProxy(s3_server.endpoint_url, seed=7) as proxy:
        yield proxy
