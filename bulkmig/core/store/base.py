"""The Store interface every volume and bucket implements, its errors, and the checksums (see the package docstring)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bulkmig.core.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    pass


CHUNK = 1024 * 1024  # read/hash granularity: big enough to stream at disk speed, small enough for RAM

# Files at or above this size go up as multipart uploads of this part size (S3's minimum part is
# 5 MiB).  16 MiB keeps a 256 MB part at 16 requests, each retried on its own.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
# Threads one upload or download uses for its parts; callers add their own pool of files on top.
TRANSFER_CONCURRENCY = 4
# botocore retries throttling, 5xx and dropped connections with backoff; a migration outlives blips.
RETRY_MODE = "adaptive"
RETRY_ATTEMPTS = 8
METADATA_SHA256 = "sha256"

_SSE_MODES = {"SSE_S3": "AES256", "AES256": "AES256", "SSE_KMS": "aws:kms", "aws:kms": "aws:kms"}
_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "403",
    "Forbidden",
}


class AlreadyExists(StoreError):
    """``put_bytes(..., if_absent=True)`` found the key already there (someone else wrote it first)."""


class NotFound(StoreError):
    """The key is not in the store."""


class ChecksumMismatch(IntegrityError):
    """A file's bytes are not the ones the caller (or the manifest) said they would be."""


class DiskFull(StoreError):
    """A local filesystem ran out of space (ENOSPC, EDQUOT); says which device, and how much was needed.

    ``mount`` / ``device`` name the filesystem as an operator knows it (``/mnt/snowball`` on ``/dev/sdb1``),
    ``free`` is what it has left, ``needed`` what the failed write wanted (0 when unknown)."""

    def __init__(self, message: str, hint: str, *, mount: Path, device: str, free: int, needed: int) -> None:
        super().__init__(message, hint)
        self.mount = mount
        self.device = device
        self.free = free
        self.needed = needed


def is_disk_full(exc: BaseException) -> bool:
    """An OSError (pyarrow's included) saying the device is full or the quota is used up."""
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3 endpoint.  No ``endpoint_url`` means AWS itself; credentials always come
    from boto3's own chain (environment, profile, instance role), never from here."""

    endpoint_url: str | None = None
    region: str | None = None
    sse: str | None = None  # "AES256" | "aws:kms" (DMS spellings SSE_S3 / SSE_KMS accepted)
    kms_key_id: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """One stored file.  ``sha256`` is the full-file hex digest when the store knows it without reading
    the bytes (S3: its own checksum or our metadata); None otherwise (always None from ``list``)."""

    key: str
    size: int
    sha256: str | None = None


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex sha256, size) of a local file, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_key(key: str) -> str:
    """Refuse keys that could escape the store or mean different files on different backends."""
    bad = (
        not key
        or key.startswith("/")
        or key.endswith("/")
        or "\\" in key
        or "\0" in key
        or any(seg in ("", ".", "..") for seg in key.split("/"))
    )
    if bad:
        raise StoreError(f"{key!r} is not a valid store key", "keys are relative, '/'-separated paths (see layout.py)")
    return key


class Store(ABC):
    """A volume tree or bucket prefix.  Thread-safe: stages share one store between worker threads."""

    url: str  # for display: a local path or s3://bucket/prefix, never credentials

    @abstractmethod
    def put_file(self, key: str, path: Path, *, sha256: str | None = None, move: bool = False) -> tuple[str, int]:
        """Store a local file under ``key``, atomically; returns the (hex sha256, size) of what was stored.

        ``sha256``: the digest the file must have (e.g. from a manifest); a file that differs raises
        :class:`ChecksumMismatch` and nothing is stored.  ``move``: the caller's file may be consumed
        (a local store then renames instead of copying when on the same filesystem).

        The digest comes from the pass the store makes over the bytes anyway (copy loop, upload
        hashes), so a caller recording a part's sha256 in its manifest needs no hashing pass of its own.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        """Store small content atomically; with ``if_absent`` raise :class:`AlreadyExists` rather than
        replace an existing key (S3: a conditional put, so two writers cannot both win)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole content of a (small) file; :class:`NotFound` if absent."""

    @abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy ``key`` to a local file; ``path`` appears only when complete."""

    @abstractmethod
    def open_local(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A local path holding ``key``'s bytes for the duration of the ``with`` block (read only)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size (and sha256 when known without reading) of ``key``, or None if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every file whose key starts with ``prefix``, recursively, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; absent is fine (deleting is idempotent)."""

    @abstractmethod
    def sha256(self, key: str) -> str:
        """Recompute the hex sha256 from the stored bytes (S3: streamed, nothing kept on disk)."""

    @abstractmethod
    def free_bytes(self) -> int | None:
        """Free space for new files, or None when the backend has no such limit to report."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abstractmethod
    def under(self, prefix: str) -> Store:
        """The store of the tree at ``prefix`` inside this one (a bucket's ``volumes/<id>``): S3 shares this
        store's checked client, which takes a tenth of a second to make, instead of making two more."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
