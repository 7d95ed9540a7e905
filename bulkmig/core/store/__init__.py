"""One small interface over a volume or bucket: a local directory or an S3 prefix.

Every stage reads and writes the volume tree through a :class:`Store`, so the same code runs against a
NAS directory, a device's S3 adapter and the real bucket.  Keys are relative and '/'-separated, exactly
as :mod:`bulkmig.core.layout` builds them.

The promises every implementation keeps (DESIGN §4):

- A file appears under its final key only when complete.  Locally: write ``<key>.<tag>.partial`` in
  the same directory, fsync it, rename it, fsync the directory.  In S3 an object is atomic anyway.
- Uploads carry ``ChecksumAlgorithm=SHA256`` (S3 checks each request body against it) plus our own
  full-file sha256 as user metadata ``sha256``, because a multipart object's S3 checksum is a
  *composite* (sha256 over the parts' sha256s), not the file's.  After every upload the object's
  size and S3-side checksum are compared with the local file; a mismatch deletes the object.
- Errors become bulkmig errors with one clear line: a missing bucket is a :class:`ConfigError`, an
  unreachable endpoint or refused credentials a :class:`ConnectError`, anything else a
  :class:`StoreError`.  Messages never contain secrets (only bucket, prefix, endpoint and key).

moto 5.2 (the test endpoint) stores whatever checksum a client *claims* without checking it, so the
upload path never sends a precomputed checksum: botocore computes it from the bytes it actually sends,
and we compare the stored result with our own hash.  Against real S3 the same call is also verified by
the service (a wrong body is refused with BadDigest).
"""

from __future__ import annotations

from pathlib import Path

from bulkmig.core.errors import ConfigError
from bulkmig.core.store.base import (
    CHUNK,
    MULTIPART_THRESHOLD,
    AlreadyExists,
    ChecksumMismatch,
    DiskFull,
    NotFound,
    ObjectInfo,
    S3Options,
    Store,
    check_key,
    is_disk_full,
    sha256_file,
)
from bulkmig.core.store.local import LocalStore, mount_device, no_space
from bulkmig.core.store.s3 import BODY_READ_ATTEMPTS, S3Store, map_s3_error

__all__ = [
    "AlreadyExists",
    "BODY_READ_ATTEMPTS",
    "CHUNK",
    "ChecksumMismatch",
    "DiskFull",
    "LocalStore",
    "MULTIPART_THRESHOLD",
    "NotFound",
    "ObjectInfo",
    "S3Options",
    "S3Store",
    "Store",
    "check_key",
    "is_disk_full",
    "map_s3_error",
    "mount_device",
    "no_space",
    "open_store",
    "sha256_file",
]


def open_store(url: str, s3: S3Options | None = None) -> Store:
    """A store for ``url``: a local directory path (or ``file://`` URL) or ``s3://bucket[/prefix]``."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"{url!r} names no bucket", "write it like s3://my-bucket/prefix")
        return S3Store(bucket, prefix.strip("/"), s3 or S3Options())
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        raise ConfigError(f"{url!r} is neither a local path nor an s3:// URL", "use a directory or s3://bucket/prefix")
    if not url:
        raise ConfigError("empty volume path", "give a directory or s3://bucket/prefix")
    return LocalStore(Path(url).expanduser().absolute())
