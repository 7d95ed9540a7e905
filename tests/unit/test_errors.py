"""Errors survive the trip to another process (a Dask worker's unit failing on another host)."""

from __future__ import annotations

import pickle
from pathlib import Path

from bulkmig.core.errors import EXIT_CONNECT, ConnectError, SourceError
from bulkmig.core.store import DiskFull


def test_an_error_keeps_its_hint_and_exit_code_across_pickling() -> None:
    again = pickle.loads(pickle.dumps(ConnectError("password authentication failed", "set BULKMIG_SOURCE_PASSWORD")))
    assert type(again) is ConnectError and again.exit_code == EXIT_CONNECT
    assert (again.message, again.hint) == ("password authentication failed", "set BULKMIG_SOURCE_PASSWORD")
    assert str(again) == "password authentication failed — set BULKMIG_SOURCE_PASSWORD"


def test_a_subclass_keeps_its_own_fields() -> None:
    full = DiskFull("the volume is full", "free space", mount=Path("/mnt/dev-a"), device="sdb1", free=0, needed=10)
    again = pickle.loads(pickle.dumps(full))
    assert (again.mount, again.device, again.free, again.needed) == (Path("/mnt/dev-a"), "sdb1", 0, 10)
    assert str(again) == str(full)


def test_plain_source_error_round_trips() -> None:
    assert str(pickle.loads(pickle.dumps(SourceError("gone")))) == "gone"
