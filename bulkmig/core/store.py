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

import base64
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, NoReturn

from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, ConfigError, ConnectError, IntegrityError, StoreError

if TYPE_CHECKING:
    from botocore.client import BaseClient

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


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


# ------------------------------------------------------------------------------------------- local


def _mount_point(path: Path) -> Path:
    """The mount point holding ``path`` (what an operator recognises: ``/mnt/snowball``)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def mount_device(path: Path) -> tuple[Path, str]:
    """The mount point holding ``path`` and its device as ``/proc/self/mounts`` names it (``/dev/sdb1``,
    ``tmpfs``, ``nas:/export``); the device is "" where that file does not exist."""
    mount = _mount_point(path)
    device = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].replace("\\040", " ") == str(mount):
                device = fields[0]  # the last entry wins: mounts stack on one point
    return mount, device


def no_space(path: Path, what: str, needed: int = 0) -> DiskFull:
    """The :class:`DiskFull` for a write under ``path`` (doing ``what``) that needed ``needed`` bytes."""
    mount, device = mount_device(path)
    free = shutil.disk_usage(mount).free
    on = f"device {device} mounted at {mount}" if device else str(mount)
    wanted = f"{needed:,} bytes needed, " if needed else ""
    return DiskFull(
        f"no space left on {on} {what}: {wanted}{free:,} free",
        "free space on that device or use a larger one, then rerun: the step resumes where it stopped",
        mount=mount,
        device=device,
        free=free,
        needed=needed,
    )


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new directory entry durable (POSIX needs the directory itself synced)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems (and Windows) cannot open directories; nothing more we can do
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStore(Store):
    """A volume on a mounted filesystem: a NAS share, a removable disk, a device mounted over NFS."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _makedirs(self, directory: Path) -> None:
        """Create missing directories, syncing each new entry into its parent so it survives a crash."""
        missing: list[Path] = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
            _fsync_dir(d.parent)

    def _no_space(self, key: str, needed: int) -> NoReturn:
        raise no_space(self.root, f"writing {key} into {self.url}", needed)

    def _os_error(self, exc: OSError, what: str, key: str, needed: int = 0) -> NoReturn:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._no_space(key, needed)
        raise StoreError(
            f"cannot {what} {key} in {self.url}: {exc.strerror or exc}",
            "check that the volume is mounted read-write and its permissions",
        ) from exc

    def _write_new(self, key: str, fill: Any, needed: int) -> Path:
        """Create ``<key>.<tag>.partial`` next to the final file, let ``fill(fd)`` write it, fsync it.
        Returns the temp path; removes it on any failure."""
        final = self._path(key)
        tmp = final.parent / Path(layout.temp_key(final.name, f"{os.getpid()}-{secrets.token_hex(4)}")).name
        try:
            self._makedirs(final.parent)
            free = shutil.disk_usage(final.parent).free
            if needed > free:
                self._no_space(key, needed)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                self._os_error(exc, "write", key, needed)
            raise
        return tmp

    def _publish(self, tmp: Path, key: str) -> None:
        final = self._path(key)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._os_error(exc, "publish", key)
        _fsync_dir(final.parent)

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, move: bool = False) -> tuple[str, int]:
        path = Path(path)
        size = path.stat().st_size
        final = self._path(key)
        if move and sha256 is None and self._same_device(path, final.parent):
            # The extractor writes parts next to the volume so publishing them is a rename, not a copy.
            # A rename reads no bytes, so this is the one hashing pass the caller's manifest needs.
            try:
                hashed = sha256_file(path)
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
                self._makedirs(final.parent)
                os.replace(path, final)
            except OSError as exc:
                self._os_error(exc, "publish", key, size)
            _fsync_dir(final.parent)
            return hashed

        digest = hashlib.sha256()
        copied = 0

        def fill(fd: int) -> None:
            nonlocal copied
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    copied += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ChecksumMismatch(
                    f"{path} (for {key}) has sha256 {digest.hexdigest()}, expected {sha256}",
                    "the source file changed or is damaged; nothing was stored",
                )

        self._publish(self._write_new(key, fill, size), key)
        if move:
            with contextlib.suppress(OSError):
                path.unlink()
        return digest.hexdigest(), copied

    @staticmethod
    def _same_device(path: Path, directory: Path) -> bool:
        d = directory
        while not d.exists():
            d = d.parent
        try:
            return path.stat().st_dev == d.stat().st_dev
        except OSError:
            return False

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        def fill(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        tmp = self._write_new(key, fill, len(data))
        if not if_absent:
            self._publish(tmp, key)
            return
        final = self._path(key)
        try:
            # link() refuses an existing name, so "create if absent" and "visible only when complete"
            # hold together.  Filesystems without hard links (exFAT, some FUSE) fall back to O_EXCL.
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise AlreadyExists(f"{key} already exists in {self.url}", "another writer got there first") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    self._os_error(exc, "write", key, len(data))
                self._put_exclusive(key, data)
            _fsync_dir(final.parent)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _put_exclusive(self, key: str, data: bytes) -> None:
        final = self._path(key)
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise AlreadyExists(f"{key} already exists in {self.url}", "another writer got there first") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                final.unlink()
            self._os_error(exc, "write", key, len(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path") from None
        except OSError as exc:
            self._os_error(exc, "read", key)

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=layout.TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if is_disk_full(exc):
                raise no_space(path.parent, f"copying {key} to {path}", src.stat().st_size) from None
            raise

    @contextlib.contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path")
        yield path

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._os_error(exc, "stat", key)
        return ObjectInfo(key, st.st_size) if S_ISREG(st.st_mode) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return iter(())
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=None):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # removed while we walked
                    st = os.stat(os.path.join(dirpath, name))
                    found.append(ObjectInfo(key, st.st_size))
        found.sort(key=lambda info: info.key)
        return iter(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._os_error(exc, "delete", key)
        _fsync_dir(path.parent)

    def sha256(self, key: str) -> str:
        try:
            return sha256_file(self._path(key))[0]
        except FileNotFoundError:
            raise NotFound(f"{key} does not exist in {self.url}", "check the volume path") from None
        except OSError as exc:
            self._os_error(exc, "read", key)

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(_mount_point(self.root)).free


# ---------------------------------------------------------------------------------------------- S3


def _hashes(path: Path, part_size: int) -> tuple[str, int, str, int]:
    """One pass over a file: (full hex sha256, size, composite base64 sha256, part count).

    The composite is what S3 keeps for a multipart upload with SHA256 checksums: sha256 over the
    concatenated binary sha256 of each part.  Computing it locally lets us check a multipart object
    against S3's own checksum, not only against the metadata we wrote ourselves.
    """
    full = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as f:
        while True:
            part = hashlib.sha256()
            left = part_size
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                full.update(chunk)
                part.update(chunk)
                size += len(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            parts.append(part.digest())
            if left:
                break
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return full.hexdigest(), size, composite, len(parts)


BODY_READ_ATTEMPTS = 5


def _is_broken_body(exc: BaseException) -> bool:
    """A connection that broke while the body streamed (botocore does not retry those)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ReadTimeoutError, ResponseStreamingError

    return isinstance(exc, ResponseStreamingError | ReadTimeoutError | BotoConnectionError | ConnectionError)


def _is_throttled(exc: BaseException) -> bool:
    """A busy or failing endpoint (503 SlowDown, 500) rather than a wrong one: worth retrying patiently."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _error_code(exc)[0] in ("SlowDown", "ServiceUnavailable", "InternalError") or status in (500, 503)


def _b64_to_hex(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def _error_code(exc: BaseException) -> tuple[str, str]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code, str(error.get("Message", "")).strip()


class S3Store(Store):
    """A bucket prefix on AWS S3 or anything speaking its API (a device's adapter, moto, LocalStack)."""

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client: BaseClient | None = None
        self._checked = False
        self._lock = threading.Lock()

    # -------------------------------------------------------------- plumbing

    def _make_client(self, attempts: int, connect_timeout: float) -> BaseClient:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": RETRY_MODE, "max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=120,
            max_pool_connections=64,
            # Only when S3 needs it (multipart part checks are ours); our own sha256 decides on reads.
            response_checksum_validation="when_required",
            # An explicit endpoint is a device, LocalStack or moto: path style needs no DNS per bucket.
            s3={"addressing_style": "path"} if self.options.endpoint_url else {},
        )
        # A fresh session per store: boto3's default session is not thread-safe to create clients from.
        session = boto3.session.Session(region_name=self.options.region)
        return session.client("s3", endpoint_url=self.options.endpoint_url or None, config=config)

    @property
    def endpoint(self) -> str:
        return self.options.endpoint_url or f"AWS S3 ({self.options.region or 'default region'})"

    @property
    def client(self) -> BaseClient:
        """The data-path client, after one fast check that the endpoint answers and the bucket exists.

        The check uses a client with a single retry so a wrong endpoint or bucket is reported in about
        a second; the data path then retries patiently (adaptive mode, 8 attempts), because a failure
        in the middle of a multi-terabyte import is far more likely to be transient.
        """
        if self._client is None or not self._checked:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client(RETRY_ATTEMPTS, 10)
                if not self._checked:
                    probe = self._make_client(2, 5)
                    try:
                        probe.head_bucket(Bucket=self.bucket)
                    except Exception as exc:  # noqa: BLE001 - mapped to a bulkmig error just below
                        if not _is_throttled(exc):
                            self._raise(exc, "open", None)
                        # The endpoint is there and busy (503 SlowDown, 500): be as patient as the data path.
                        try:
                            self._client.head_bucket(Bucket=self.bucket)
                        except Exception as again:  # noqa: BLE001
                            self._raise(again, "open", None)
                    self._checked = True
        return self._client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _raise(self, exc: BaseException, what: str, key: str | None) -> NoReturn:
        """Turn a boto/botocore exception into one bulkmig error line."""
        raise map_s3_error(exc, what, self.url if key is None else f"{self.url}/{key}", self.bucket, self.endpoint)

    def _extra_args(self, sha256: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if sha256:
            extra["Metadata"] = {METADATA_SHA256: sha256}
        if self.options.sse:
            extra["ServerSideEncryption"] = _SSE_MODES.get(self.options.sse, self.options.sse)
            if self.options.kms_key_id:
                extra["SSEKMSKeyId"] = self.options.kms_key_id
        return extra

    @staticmethod
    def _transfer_config() -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=TRANSFER_CONCURRENCY,
            use_threads=True,
        )

    # -------------------------------------------------------------- writes

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, move: bool = False) -> tuple[str, int]:
        from s3transfer.utils import ChunksizeAdjuster

        path = Path(path)
        size = path.stat().st_size
        # The part size s3transfer will really use (it doubles it for files beyond 10,000 parts).
        part_size = ChunksizeAdjuster().adjust_chunksize(MULTIPART_CHUNKSIZE, size)
        digest, size, composite, nparts = _hashes(path, part_size)
        if sha256 is not None and digest != sha256:
            raise ChecksumMismatch(
                f"{path} (for {key}) has sha256 {digest}, expected {sha256}",
                "the source file changed or is damaged; nothing was uploaded",
            )
        client = self.client
        full = self._full(key)
        try:
            client.upload_file(
                str(path), self.bucket, full, ExtraArgs=self._extra_args(digest), Config=self._transfer_config()
            )
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, "upload", key)
        multipart = size >= MULTIPART_THRESHOLD
        self._check_upload(key, size, digest, composite if multipart else None, nparts if multipart else None)
        if move:
            with contextlib.suppress(OSError):
                path.unlink()
        return digest, size

    def _check_upload(self, key: str, size: int, digest: str, composite: str | None, nparts: int | None) -> None:
        """Compare what S3 now holds with what we hashed locally; delete it and raise if it differs."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._full(key), ChecksumMode="ENABLED")
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, "check", key)
        stored = head.get("ChecksumSHA256")
        problem = None
        if head.get("ContentLength") != size:
            problem = f"S3 holds {head.get('ContentLength')} bytes, the file has {size}"
        elif stored and composite is None:
            if _b64_to_hex(stored) != digest:
                problem = f"S3's sha256 {_b64_to_hex(stored)} differs from the file's {digest}"
        elif stored:
            # Real S3 answers "<b64>-<parts>" for a composite; moto 5.2's HEAD omits the suffix.
            value, _, count = stored.partition("-")
            if value != composite or (count and int(count) != nparts):
                problem = f"S3's composite sha256 {stored} differs from the file's {composite}-{nparts}"
        elif self.sha256(key) != digest:
            # An endpoint that keeps no checksum (some device adapters): read the object back.
            problem = "the object read back differs from the file"
        if problem:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
            raise IntegrityError(
                f"upload of {key} to {self.url} did not verify ({problem}); the object was removed",
                "rerun: the upload is retried from scratch",
            )

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        digest = hashlib.sha256(data).hexdigest()
        kwargs = self._extra_args(digest)
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **kwargs)
        except Exception as exc:  # noqa: BLE001
            code, _ = _error_code(exc)
            if if_absent and code in ("PreconditionFailed", "412"):
                # Our own first attempt may have landed with its answer lost, and the automatic retry then
                # meets it: the same bytes are there, so the write did happen, exactly once.
                if self._holds(key, digest):
                    return
                raise AlreadyExists(f"{key} already exists in {self.url}", "another writer got there first") from None
            self._raise(exc, "write", key)
        self._check_upload(key, len(data), digest, None, None)

    def _holds(self, key: str, digest: str) -> bool:
        """Whether ``key`` exists with exactly the bytes whose sha256 is ``digest``."""
        try:
            info = self.stat(key)
            return info is not None and (info.sha256 or self.sha256(key)) == digest
        except StoreError:
            return False

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, "delete", key)

    # -------------------------------------------------------------- reads

    def _read_body(self, key: str, consume: Any) -> Any:
        """GET the object and hand its body to ``consume``, again from the start if the connection
        breaks mid-body: botocore retries a request only until its headers arrive, not while the body
        streams, so a cut there would otherwise fail the stage."""
        for attempt in range(1, BODY_READ_ATTEMPTS + 1):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
                return consume(response["Body"])
            except Exception as exc:  # noqa: BLE001
                if _error_code(exc)[0] in ("NoSuchKey", "404"):
                    raise NotFound(f"{key} does not exist in {self.url}", "check the bucket prefix") from None
                if attempt < BODY_READ_ATTEMPTS and _is_broken_body(exc):
                    time.sleep(min(0.2 * 2**attempt, 5.0))
                    continue
                self._raise(exc, "read", key)
        raise AssertionError("unreachable")

    def get_bytes(self, key: str) -> bytes:
        return self._read_body(key, lambda body: body.read())

    def download(self, key: str, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=layout.TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        try:
            self.client.download_file(self.bucket, self._full(key), tmp, Config=self._transfer_config())
            os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if is_disk_full(exc):
                size = 0
                with contextlib.suppress(Exception):
                    size = (self.stat(key) or ObjectInfo(key, 0)).size
                raise no_space(path.parent, f"downloading {key} to {path}", size) from None
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}", "check local disk space") from exc
            if _error_code(exc)[0] in ("NoSuchKey", "404"):
                raise NotFound(f"{key} does not exist in {self.url}", "check the bucket prefix") from None
            self._raise(exc, "download", key)

    @contextlib.contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="bulkmig-s3-") as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            self.download(key, path)
            yield path

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._full(key), ChecksumMode="ENABLED")
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc)[0] in ("404", "NoSuchKey", "NotFound"):
                return None
            self._raise(exc, "stat", key)
        return ObjectInfo(key, int(head["ContentLength"]), self._known_sha256(head))

    @staticmethod
    def _known_sha256(head: dict[str, Any]) -> str | None:
        """The file's sha256 from a HEAD answer: S3's own full-object checksum when it has one (a
        single-part upload), else the ``sha256`` metadata we wrote when uploading (multipart)."""
        stored = head.get("ChecksumSHA256") or ""
        multipart = (
            "-" in stored or head.get("ChecksumType") == "COMPOSITE" or "-" in str(head.get("ETag", "")).strip('"')
        )
        if stored and not multipart and (own := _b64_to_hex(stored)):
            return own
        meta = (head.get("Metadata") or {}).get(METADATA_SHA256)
        return meta.lower() if meta and len(meta) == 64 else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        found: list[ObjectInfo] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    found.append(ObjectInfo(self._rel(obj["Key"]), int(obj["Size"])))
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, "list", prefix or None)
        found.sort(key=lambda info: info.key)
        return iter(found)

    def sha256(self, key: str) -> str:
        def consume(body: Any) -> str:
            digest = hashlib.sha256()  # fresh per attempt: a retried read starts over
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
            return digest.hexdigest()

        return self._read_body(key, consume)

    def free_bytes(self) -> int | None:
        return None


def map_s3_error(exc: BaseException, what: str, where: str, bucket: str, endpoint: str) -> Exception:
    """The bulkmig error for a boto exception raised while doing ``what`` to ``where``.

    boto3's ``upload_file`` wraps a ClientError in S3UploadFailedError (a plain string); the original is
    its ``__context__``, so that is unwrapped first.
    """
    from botocore import exceptions as bx

    if isinstance(exc, BulkmigError):
        return exc  # already said clearly (e.g. by the bucket check on first use)
    if isinstance(exc, bx.BotoCoreError | bx.ClientError):
        pass
    elif isinstance(exc.__context__, bx.BotoCoreError | bx.ClientError):
        exc = exc.__context__
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return ConnectError(
            f"no AWS credentials for {endpoint}",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or run with an instance role)",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ConnectionClosedError):
        return ConnectError(
            f"cannot reach the S3 endpoint {endpoint} ({type(exc).__name__})",
            "check `endpoint_url` and that the endpoint (device, proxy, network) is up",
        )
    if isinstance(exc, bx.ClientError):
        code, message = _error_code(exc)
        if code == "NoSuchBucket" or (what == "open" and code in ("404", "NotFound")):
            return ConfigError(f"bucket {bucket} does not exist at {endpoint}", "create it or fix `bucket:`")
        if code in _CREDENTIAL_CODES:
            return ConnectError(
                f"{endpoint} refused our credentials for {where} ({code})",
                "check the AWS access key, secret and the bucket policy",
            )
        return StoreError(f"S3 {what} of {where} failed: {code} {message}".rstrip(), "rerun; the step resumes")
    if isinstance(exc, bx.BotoCoreError):
        return StoreError(f"S3 {what} of {where} failed: {exc}", "rerun; the step resumes")
    if isinstance(exc, OSError):
        return StoreError(f"S3 {what} of {where} failed locally: {exc.strerror or exc}", "check local disk and paths")
    return StoreError(f"S3 {what} of {where} failed: {exc}", "rerun; the step resumes")
