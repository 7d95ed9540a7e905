"""Encryption of parts at rest: whole-part AES-256-GCM in chunks, with a key from a key file.

A volume travels on a device that can be lost, so with ``settings.encryption.key_file`` every part is
written encrypted as it is produced — no plaintext byte of a row ever reaches the device, not even in a
temp file a crash leaves behind — and is decrypted only by ``load``, in memory, chunk by chunk.

Why whole-part encryption rather than Parquet modular encryption: it hides everything in a part, the
footer's min/max statistics (which are row values), column names and row counts included, with one
key and no KMS client class; its format is small enough to decrypt with a 30-line script should bulkmig
be gone; and it does not depend on how a Parquet library was built.  What stays readable is what holds
names, not rows: plan.json (tables, columns, partition bounds, sequence values), the schema files and
the sidecars (row counts, sha256).  Checksums are over the encrypted bytes, so ``volume verify`` and
``volume import`` work without the key, and the key never travels with the volume.

Key file: 32 random bytes written as 64 hexadecimal characters (``openssl rand -hex 32 > volume.key``),
mode 0600.  The plan records the key's id (an HMAC of the key, which reveals nothing about it), so a
wrong key is refused by name before a byte is decrypted.

Format of an encrypted part (integers big-endian)::

    header   magic "BULKMIG-ENC1" (12) | key id (8) | chunk size (4) | nonce prefix (8, random per file)
    chunks   AES-256-GCM(key, nonce = prefix | chunk index (4), aad = header | last (1)) -> ciphertext | tag (16)

Every chunk holds exactly ``chunk size`` plaintext bytes except the last, which holds 0 to ``chunk size``
and is marked last in its associated data: a file cut short (even at a chunk boundary), chunks swapped or
spliced in from another file, and any flipped bit fail to authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bulkmig.core.errors import ConfigError, IntegrityError
from bulkmig.core.log import say

MAGIC = b"BULKMIG-ENC1"
CIPHER = "AES-256-GCM"
FORMAT = "bulkmig-enc1"
CHUNK = 1024 * 1024  # plaintext bytes per chunk: one chunk is the unit of random access when reading
TAG = 16
HEADER = struct.Struct(">12s8sI8s")  # magic, key id, chunk size, nonce prefix
KEY_HEX_CHARS = 64
MAX_CHUNKS = 2**32  # the chunk index is 4 bytes of the nonce
NEW_KEY_HINT = "create one with `openssl rand -hex 32 > FILE && chmod 600 FILE` and keep a copy off the volume"


@dataclass(frozen=True)
class Key:
    """A 256-bit key and its id.  The key material never appears in ``repr`` or any message."""

    material: bytes = field(repr=False)
    id: str  # 16 hex chars: HMAC-SHA256(key, "bulkmig key id"), truncated
    path: str

    @classmethod
    def from_bytes(cls, material: bytes, path: str = "(memory)") -> Key:
        if len(material) != 32:
            raise ValueError("an AES-256 key is 32 bytes")
        kid = hmac.new(material, b"bulkmig key id", hashlib.sha256).hexdigest()[:16]
        return cls(material, kid, path)


def load_key(path: str | os.PathLike[str], what: str = "settings.encryption.key_file") -> Key:
    """The key in ``path`` (64 hex characters); ConfigError naming the file otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"{what}: the key file {p} does not exist",
            "this stage needs the volume's key: copy the key file here (it never travels with the volume); "
            f"for a new volume {NEW_KEY_HINT}",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
        raise ConfigError(
            f"{what}: cannot read the key file {p} ({reason})", "check its path and permissions"
        ) from None
    try:
        material = bytes.fromhex(text)
    except ValueError:
        material = b""
    if len(text) != KEY_HEX_CHARS or len(material) != 32:
        raise ConfigError(
            f"{what}: {p} does not hold a key ({KEY_HEX_CHARS} hexadecimal characters, i.e. 32 bytes)",
            NEW_KEY_HINT,
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        say(f"warning: the key file {p} is readable by other users; chmod 600 it")
    return Key.from_bytes(material, str(p))


def task_key(key_file: str | None) -> Key | None:
    """The key a task's ``settings.encryption.key_file`` names, or None when parts are not encrypted."""
    return load_key(key_file) if key_file else None


def plan_settings(key: Key | None) -> dict[str, Any]:
    """What the plan records about encryption (nothing when the volume is not encrypted)."""
    if key is None:
        return {}
    return {"encryption": {"cipher": CIPHER, "format": FORMAT, "chunk_bytes": CHUNK, "key_id": key.id}}


def key_for_plan(key_file: str | None, settings: dict[str, Any], volume_id: str) -> Key | None:
    """The key a stage needs for a plan's parts (``settings`` is the plan's): None for an unencrypted
    volume; otherwise the key in ``key_file``, refused unless it is the one the volume was encrypted with."""
    recorded = settings.get("encryption")
    if not recorded:
        return None
    if not key_file:
        raise ConfigError(
            f"volume {volume_id} is encrypted (key id {recorded['key_id']}) and the task names no key",
            "set settings.encryption.key_file in the task to the volume's key file",
        )
    key = load_key(key_file)
    if key.id != recorded["key_id"]:
        raise ConfigError(
            f"settings.encryption.key_file: {key.path} holds key {key.id}, but volume {volume_id} was encrypted "
            f"with key {recorded['key_id']}",
            "use the key file the volume was planned with",
        )
    return key


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= MAX_CHUNKS:
        raise ValueError("too many chunks for one file")
    return prefix + struct.pack(">I", index)


class EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts what is written into ``out`` (an open binary file).

    ``close()`` writes the last chunk and closes ``out``; without it the file does not decrypt (a writer
    killed half-way leaves a file that is refused, never half a part that is trusted).
    """

    def __init__(self, out: BinaryIO, key: Key, chunk: int = CHUNK) -> None:
        super().__init__()
        self._out = out
        self._aead = AESGCM(key.material)
        self._header = HEADER.pack(MAGIC, bytes.fromhex(key.id), chunk, secrets.token_bytes(8))
        self._prefix = self._header[-8:]
        self._chunk = chunk
        self._buffer = bytearray()
        self._index = 0
        self._written = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        # Keep at least one byte buffered: the last chunk must be sealed as last, at close().
        while len(self._buffer) > self._chunk:
            self._seal(bytes(self._buffer[: self._chunk]), last=False)
            del self._buffer[: self._chunk]
        return len(view)

    def _seal(self, plain: bytes, last: bool) -> None:
        aad = self._header + (b"\x01" if last else b"\x00")
        self._out.write(self._aead.encrypt(_nonce(self._prefix, self._index), plain, aad))
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            try:
                self._seal(bytes(self._buffer), last=True)
                self._buffer.clear()
            finally:
                self._out.close()
        super().close()

    def abort(self) -> None:
        """Close without sealing the last chunk: what was written will never decrypt."""
        if not self.closed:
            self._buffer.clear()
            self._out.close()
            super().close()


class DecryptingReader(io.RawIOBase):
    """A seekable read-only view of an encrypted file's plaintext, decrypting one chunk at a time in
    memory (Parquet readers seek to the footer first, then to column chunks).  ``name`` is used in errors."""

    def __init__(self, raw: BinaryIO, key: Key, name: str) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        header = raw.read(HEADER.size)
        if len(header) < HEADER.size or not header.startswith(MAGIC):
            raise IntegrityError(
                f"{name} is not an encrypted bulkmig part", "the volume's plan says it is: re-extract that part"
            )
        _, kid, self._chunk, self._prefix = HEADER.unpack(header)
        if kid.hex() != key.id:
            raise ConfigError(
                f"{name} was encrypted with key {kid.hex()}, not with key {key.id} in {key.path}",
                "use the key file the volume was planned with",
            )
        self._header = header
        self._aead = AESGCM(key.material)
        body = raw.seek(0, io.SEEK_END) - HEADER.size
        step = self._chunk + TAG
        self._chunks = max(1, -(-body // step))
        last_plain = body - (self._chunks - 1) * step - TAG
        if body < TAG or last_plain < 0:
            raise self._damaged()
        self._size = (self._chunks - 1) * self._chunk + last_plain
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def _damaged(self) -> IntegrityError:
        return IntegrityError(
            f"{self._name} does not decrypt: it was altered or cut short after it was written",
            "run `bulkmig volume verify`, then re-import the volume or re-extract that part",
        )

    def _plain(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        step = self._chunk + TAG
        self._raw.seek(HEADER.size + index * step)
        sealed = self._raw.read(step)
        last = index == self._chunks - 1
        try:
            plain = self._aead.decrypt(
                _nonce(self._prefix, index), sealed, self._header + (b"\x01" if last else b"\x00")
            )
        except InvalidTag:
            raise self._damaged() from None
        self._cached = (index, plain)
        return plain

    @property
    def size(self) -> int:
        """Plaintext bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._size:
            index, offset = divmod(self._pos, self._chunk)
            plain = self._plain(index)
            take = min(len(out) - done, len(plain) - offset)
            out[done : done + take] = plain[offset : offset + take]
            done += take
            self._pos += take
        return done

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_encrypted(path: str | os.PathLike[str], key: Key, name: str | None = None) -> DecryptingReader:
    """The plaintext of the encrypted file at ``path`` as a seekable file (close it when done)."""
    raw = open(path, "rb")  # noqa: SIM115 - owned and closed by the reader
    try:
        return DecryptingReader(raw, key, name or str(path))
    except BaseException:
        raw.close()
        raise


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC
