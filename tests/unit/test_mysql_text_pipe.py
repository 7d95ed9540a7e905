"""The FIFO that feeds LOAD DATA LOCAL INFILE (engines/mysql/target/pipe.py), with a real named pipe: every byte
through in order, an encoding error raised after the reader saw an early end, and a reader that never came or
stopped early never leaves the writer thread hanging."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkmig.core.errors import TargetError
from bulkmig.engines.mysql.target.pipe import TextPipe


def _chunks(n: int, size: int = 100_000) -> Iterator[bytes]:
    for i in range(n):
        yield bytes([65 + i % 26]) * size


def _read_all(path: Path) -> bytes:
    with path.open("rb") as f:  # as the client library reads it: open, read to EOF
        return f.read()


def test_every_byte_arrives_in_order_and_the_fifo_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "part.tsv"
    with TextPipe(path, _chunks(20)) as pipe:
        got = _read_all(path)
        pipe.check()
    assert got == b"".join(_chunks(20))
    assert not path.exists()


def test_an_encoding_error_ends_the_file_early_and_is_raised(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"1\tone\n"
        raise TargetError("column x: 1 value(s) are NaN or infinite, which MySQL cannot hold", "fix the source")

    path = tmp_path / "part.tsv"
    with TextPipe(path, failing()) as pipe:
        got = _read_all(path)
        with pytest.raises(TargetError, match="NaN or infinite"):
            pipe.check()
    assert got == b"1\tone\n"  # what the server read before the end; the caller rolls it back


def test_a_reader_that_never_opens_the_pipe_does_not_hang_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "part.tsv"
    pipe = TextPipe(path, _chunks(50))
    with pipe:
        pass  # the statement failed before the client library opened the file
    assert not pipe.thread.is_alive() and not path.exists()


def test_a_reader_that_stops_early_does_not_hang_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "part.tsv"
    pipe = TextPipe(path, _chunks(200))  # 20 MB: far more than a pipe buffers
    with pipe:
        fd = os.open(path, os.O_RDONLY)
        assert len(os.read(fd, 1000)) > 0
        os.close(fd)  # the server refused the statement part way through
        closer = threading.Thread(target=pipe.close)
        closer.start()
        closer.join(timeout=30)
        assert not closer.is_alive()
    assert not pipe.thread.is_alive() and not path.exists()
