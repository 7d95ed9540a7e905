"""Fixtures for the fault-injection suite (issue 7): whole flows through the real CLI, with faults.

``make_flow`` (tests/conftest.py) takes ``endpoint_url=`` to point a task's S3 endpoint at the
:class:`FaultProxy` below, and ``Flow.start`` starts a stage as a subprocess a test can kill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bulkmig.demo.servers import MotoS3Server
from bulkmig.testing.faultproxy import FaultProxy


@pytest.fixture
def fault_proxy(s3_server: MotoS3Server) -> Iterator[FaultProxy]:
    """A transparent :class:`FaultProxy` in front of moto; tests arm it with a fault plan."""
    with FaultProxy(s3_server.endpoint_url, seed=7) as proxy:
        yield proxy


def _one_error(run: Any, code: int, *needles: str) -> str:
    assert run.code == code, run.text
    assert "Traceback" not in run.text
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.err
    line = errors[0]
    assert run.err.strip().splitlines()[-1] == line, run.err
    assert " — " in line, f"no fix given: {line}"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


@pytest.fixture
def one_error() -> Callable[..., str]:
    """``one_error(run, code, *needles)``: assert a command failed as bulkmig promises — exit ``code`` and
    exactly ONE ``error: <what> — <what to do>`` line, last on stderr, holding every needle, no traceback.
    Returns that line."""
    return _one_error
