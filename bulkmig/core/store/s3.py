"""A volume or bucket as an S3 prefix: multipart uploads with SHA-256 checksums verified after each upload, retries."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, ConfigError, ConnectError, IntegrityError, StoreError
from bulkmig.core.store.base import (
    _CREDENTIAL_CODES,
    _SSE_MODES,
    CHUNK,
    METADATA_SHA256,
    MULTIPART_CHUNKSIZE,
    MULTIPART_THRESHOLD,
    RETRY_ATTEMPTS,
    RETRY_MODE,
    TRANSFER_CONCURRENCY,
    AlreadyExists,
    ChecksumMismatch,
    NotFound,
    ObjectInfo,
    S3Options,
    Store,
    check_key,
    is_disk_full,
)
from bulkmig.core.store.local import no_space

if TYPE_CHECKING:
    from botocore.client import BaseClient


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


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _shared_loader() -> Any:
    """botocore's loader of service models, one per process (it caches what it has read; no credentials)."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            import botocore.loaders

            _LOADER = botocore.loaders.create_loader()
        return _LOADER


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
        import botocore.session
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
        # A fresh session per store (boto3's default session is not thread-safe to create clients from, and a
        # session keeps the credentials it first found), sharing one loader of botocore's service models:
        # reading those JSON files was ~0.3 s per client, twice per store.
        core = botocore.session.Session()
        core.register_component("data_loader", _shared_loader())
        session = boto3.session.Session(botocore_session=core, region_name=self.options.region)
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

    def under(self, prefix: str) -> S3Store:
        child = S3Store(self.bucket, self._full(prefix), self.options)
        child._client, child._checked = self.client, True  # self.client checked the bucket
        return child

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
