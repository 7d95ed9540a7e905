"""The thread pool that extract and load share: every worker's error is kept, and the one reported is the cause."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bulkmig.core.errors import TargetError
from bulkmig.core.store.base import DiskFull
from bulkmig.core.workers import Pool, cause


def _full(needed: int) -> DiskFull:
    return DiskFull(f"needed {needed}", "free space", mount=Path("/tmp"), device="tmpfs", free=500, needed=needed)


def test_of_several_out_of_space_errors_the_largest_need_is_reported() -> None:
    small, big = _full(2_456), _full(2_159_893)
    assert cause([small, big]) is big
    assert cause([TargetError("a", "b"), small, big]) is big  # a full disk explains the rest


def test_other_errors_report_the_first() -> None:
    first, second = TargetError("first", "x"), TargetError("second", "y")
    assert cause([first, second]) is first


def test_pool_waits_for_every_worker_and_raises_the_cause() -> None:
    """Both workers fail; the small part's failure comes first, the big part's need is what is raised."""
    small_failed = threading.Event()

    def work(_worker: None, item: int) -> None:
        if item == 1:
            small_failed.set()
            raise _full(1)
        small_failed.wait(5)  # the big write fails after the small one
        raise _full(item)

    pool: Pool[int, None] = Pool("t", lambda: None, lambda _w: None)
    with pytest.raises(DiskFull) as caught:
        pool.run([5_000, 1], 2, work)
    assert caught.value.needed == 5_000
