"""The progress output an operator watches: tqdm bars on a terminal, one plain line at a time elsewhere."""

from __future__ import annotations

import io
import re

from bulkmig.core.log import Progress, close_bar, open_bar, tick


def test_terminal_bar_is_tqdm_with_parts_rows_bytes_and_rates() -> None:
    out = io.StringIO()
    bar = Progress("load", 4, 4_000_000, stream=out, tty=True)
    bar.started -= 2.0  # two seconds of work so far: rates are not 0
    bar.advance(parts=1, rows=50_000, nbytes=1_000_000)
    bar.advance(parts=3, rows=150_000, nbytes=3_000_000)  # the last part: the bar closes
    text = out.getvalue()
    assert "\r" in text  # tqdm redraws in place
    assert "load" in text and "4/4 parts" in text and "200,000 rows" in text
    assert "4.00M/4.00M" in text  # tqdm's own byte counter, scaled by 1000
    byte_rate = re.findall(r"([\d.]+)([kMG]?)B/s", text)[-1]  # tqdm's rate over the two seconds: ~2 MB/s
    assert byte_rate[1] == "M" and 1.0 < float(byte_rate[0]) < 3.0
    rate = re.search(r"([\d,]+) rows/s", text)
    assert rate and int(rate.group(1).replace(",", "")) > 0


def test_import_counts_objects_and_shows_no_rows() -> None:
    out = io.StringIO()
    bar = Progress("import", 0, unit="objects", rows=None, stream=out, tty=False, interval=0)
    report = bar.callback()
    report(500, 1000, 1, 2)
    report(1000, 1000, 2, 2)
    lines = out.getvalue().splitlines()
    assert lines and all("rows" not in line for line in lines)
    assert "2/2 objects" in lines[-1] and "1.0 kB" in lines[-1]


def test_plain_lines_are_throttled() -> None:
    out = io.StringIO()
    bar = Progress("extract", 1000, stream=out, tty=False, interval=3600)
    for _ in range(999):
        bar.advance(parts=1, rows=10)
    assert out.getvalue().count("\n") == 1  # the first advance only; the next is an hour away
    bar.advance(parts=1, rows=10)  # the last part always prints
    last = out.getvalue().splitlines()[-1]
    assert "1,000/1,000 parts" in last and "10,000 rows" in last and "elapsed" in last


def test_tick_advances_only_the_open_bar_of_its_stage() -> None:
    out = io.StringIO()
    open_bar(Progress("replay", 0, unit="batches", rows="changes", stream=out, tty=False, interval=0))
    tick("capture", parts=1, rows=5)  # no capture bar open: nothing happens
    tick("replay", parts=1, rows=7, note="applied through 0/16B3740")
    close_bar("replay")
    tick("replay", parts=1, rows=7)  # closed: ignored
    text = out.getvalue()
    assert "1 batches  7 changes" in text and "applied through 0/16B3740" in text
    assert "capture" not in text  # (not "5 changes": the rate, e.g. "1,745 changes/s", may hold that)
