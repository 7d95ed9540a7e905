"""The local directory store: atomic writes, conditional puts, out-of-space handling, listing, keys."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from bulkmig.core import layout, store
from bulkmig.core.errors import ConfigError, StoreError
from bulkmig.core.store import (
    AlreadyExists,
    ChecksumMismatch,
    LocalStore,
    NotFound,
    ObjectInfo,
    S3Options,
    S3Store,
    open_store,
    sha256_file,
)

KEY = "data/public/film/part-00000.parquet"


@pytest.fixture
def vol(tmp_path: Path) -> LocalStore:
    s = open_store(str(tmp_path / "volume"))
    assert isinstance(s, LocalStore)
    return s


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_put_get_stat_list_delete(vol: LocalStore, tmp_path: Path) -> None:
    src = write(tmp_path / "src.bin", b"x" * 5000)
    # put_file returns the digest and size of what it published (callers do not hash the file again).
    assert vol.put_file(KEY, src) == (hashlib.sha256(b"x" * 5000).hexdigest(), 5000)
    moved = write(tmp_path / "moved.bin", b"y" * 300)
    assert vol.put_file("data/public/film/part-00007.parquet", moved, move=True) == (
        hashlib.sha256(b"y" * 300).hexdigest(),
        300,
    )
    assert not moved.exists()
    vol.delete("data/public/film/part-00007.parquet")
    vol.put_bytes("plan.json", b"{}\n")
    vol.put_bytes("data/public/actor/part-00001.json", b"{}")
    assert vol.get_bytes(KEY) == b"x" * 5000
    assert src.exists(), "put_file copies unless asked to move"
    assert vol.stat(KEY) == ObjectInfo(KEY, 5000, None)
    assert vol.stat("data/public/film/part-00099.parquet") is None
    assert vol.stat("data/public") is None, "a directory is not a file"
    keys = [i.key for i in vol.list()]
    assert keys == sorted(keys) == ["data/public/actor/part-00001.json", KEY, "plan.json"]
    assert [i.key for i in vol.list("data/public/f")] == [KEY]
    assert vol.sha256(KEY) == hashlib.sha256(b"x" * 5000).hexdigest()
    # No temp file is left behind next to the published ones.
    assert not [k for k in files_under(vol.root) if layout.is_temp(k)]
    vol.delete(KEY)
    vol.delete(KEY)  # idempotent
    assert not vol.exists(KEY)


def test_replace_is_atomic_when_the_disk_fills(
    vol: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol.put_bytes(KEY, b"old complete content")
    src = write(tmp_path / "new.bin", os.urandom(3 * store.CHUNK))
    real_write = os.write
    calls = 0

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first chunk lands, then the device is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(store.local.os, "write", full_disk)
    with pytest.raises(StoreError) as info:
        vol.put_file(KEY, src)
    message = str(info.value)
    assert "no space left on" in message and f"{3 * store.CHUNK:,} bytes needed" in message and KEY in message
    monkeypatch.undo()
    # The old version is still there, whole, and no half-written file remains under any name.
    assert vol.get_bytes(KEY) == b"old complete content"
    assert files_under(vol.root) == [KEY]


def test_too_big_for_the_free_space_is_refused_before_writing(
    vol: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write(tmp_path / "big.bin", b"y" * 10_000)
    real = store.local.shutil.disk_usage
    monkeypatch.setattr(store.local.shutil, "disk_usage", lambda p: real(p)._replace(free=1_000))
    with pytest.raises(StoreError, match=r"10,000 bytes needed, 1,000 free"):
        vol.put_file(KEY, src)
    assert not vol.exists(KEY) and files_under(vol.root) == []


def test_expected_sha256_mismatch_stores_nothing(vol: LocalStore, tmp_path: Path) -> None:
    vol.put_bytes(KEY, b"sealed")
    src = write(tmp_path / "part.bin", b"tampered")
    with pytest.raises(ChecksumMismatch, match="expected " + "0" * 64):
        vol.put_file(KEY, src, sha256="0" * 64)
    assert vol.get_bytes(KEY) == b"sealed" and files_under(vol.root) == [KEY]
    vol.put_file(KEY, src, sha256=hashlib.sha256(b"tampered").hexdigest())
    assert vol.get_bytes(KEY) == b"tampered"


def test_move_renames_on_the_same_filesystem(vol: LocalStore, tmp_path: Path) -> None:
    vol.root.mkdir(parents=True)
    src = write(vol.root / "part-1.partial", b"parquet bytes")
    inode = src.stat().st_ino
    vol.put_file(KEY, src, move=True)
    assert not src.exists()
    assert vol.get_bytes(KEY) == b"parquet bytes"
    assert (vol.root / KEY).stat().st_ino == inode, "same filesystem: a rename, not a copy"


def test_put_if_absent(vol: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    vol.put_bytes(layout.VOLUME_MANIFEST, b"first", if_absent=True)
    with pytest.raises(AlreadyExists):
        vol.put_bytes(layout.VOLUME_MANIFEST, b"second", if_absent=True)
    assert vol.get_bytes(layout.VOLUME_MANIFEST) == b"first"
    assert files_under(vol.root) == [layout.VOLUME_MANIFEST]

    # A filesystem without hard links (exFAT) falls back to O_EXCL with the same outcome.
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(store.local.os, "link", no_links)
    vol.put_bytes("other.json", b"a", if_absent=True)
    with pytest.raises(AlreadyExists):
        vol.put_bytes("other.json", b"b", if_absent=True)
    assert vol.get_bytes("other.json") == b"a"
    assert files_under(vol.root) == ["other.json", layout.VOLUME_MANIFEST]


def test_put_if_absent_has_exactly_one_winner(vol: LocalStore) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        barrier.wait()
        try:
            vol.put_bytes("batch.json", f"writer {n}".encode(), if_absent=True)
            winners.append(n)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert vol.get_bytes("batch.json") == f"writer {winners[0]}".encode()


@pytest.mark.parametrize("key", ["../escape", "/abs/key", "a//b", "a/./b", "a/../b", "dir/", "", "a\\b"])
def test_bad_keys_refused(vol: LocalStore, key: str) -> None:
    with pytest.raises(StoreError, match="not a valid store key"):
        vol.put_bytes(key, b"x")


def test_open_local_and_download(vol: LocalStore, tmp_path: Path) -> None:
    vol.put_bytes(KEY, b"abc")
    with vol.open_local(KEY) as path:
        assert path == vol.root / KEY and path.read_bytes() == b"abc"
    dest = tmp_path / "out" / "copy.parquet"
    vol.download(KEY, dest)
    assert dest.read_bytes() == b"abc"
    assert os.listdir(dest.parent) == ["copy.parquet"]
    with pytest.raises(NotFound):
        vol.download("data/x/y/part-00000.parquet", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(NotFound), vol.open_local("missing.json"):
        pass
    with pytest.raises(NotFound):
        vol.get_bytes("missing.json")


def test_missing_volume_directory_reads_as_empty(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "not" / "yet"))
    assert list(s.list()) == []
    assert s.stat("plan.json") is None
    free = s.free_bytes()
    assert isinstance(free, int) and free > 0


def test_sha256_file_streams(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty", b"")
    assert sha256_file(empty) == (hashlib.sha256(b"").hexdigest(), 0)
    data = os.urandom(2 * store.CHUNK + 17)
    assert sha256_file(write(tmp_path / "big", data)) == (hashlib.sha256(data).hexdigest(), len(data))


def test_open_store_urls(tmp_path: Path) -> None:
    s3 = open_store("s3://my-bucket/shop/volumes/", S3Options(endpoint_url="http://127.0.0.1:9"))
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.url) == ("my-bucket", "shop/volumes", "s3://my-bucket/shop/volumes")
    assert open_store("s3://my-bucket").url == "s3://my-bucket"
    local = open_store(f"file://{tmp_path}")
    assert isinstance(local, LocalStore) and local.root == tmp_path
    with pytest.raises(ConfigError):
        open_store("s3:///prefix")
    with pytest.raises(ConfigError):
        open_store("gs://bucket/x")
