"""The bench reads each command's own step times from its last line; a change of that line must not go unseen."""

from __future__ import annotations

from bench.methods import _LOAD_DONE, parse_migrate_steps

LOAD = (
    "load: 1 of 2 parts already loaded (ledger); skipping them\n"
    "load: 2 parts, 4,000,000 rows loaded into postgresql://postgres@127.0.0.1:5432/t "
    "(find volume 0.4s, pre-data 0.1s, parts 2.2s, post-data 3.5s, analyze 0.2s)\n"
    "load: skipped INDEX public.x (needs an extension)\n"
)


def test_load_steps_are_read_from_its_closing_line() -> None:
    steps = parse_migrate_steps(LOAD, _LOAD_DONE)
    assert steps == {"find volume": 0.4, "pre-data": 0.1, "parts": 2.2, "post-data": 3.5, "analyze": 0.2}


def test_migrate_steps_are_read_from_its_closing_line() -> None:
    line = "migrate: done in 1m02s (plan 0.4s, extract 20.1s, validate 3.0s); target is current\n"
    assert parse_migrate_steps(line) == {"plan": 0.4, "extract": 20.1, "validate": 3.0}
    assert parse_migrate_steps(LOAD) == {}  # a load's line is not a migrate's
