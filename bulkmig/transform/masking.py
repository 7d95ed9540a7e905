"""DMS data masking (``data-masking-digits-mask``, ``-digits-randomize``, ``-hash-mask``) over Arrow batches.

Applied where extract reads the rows, before a part is written: an unmasked value never reaches the volume,
the bucket, the target or a log line.  What the DMS guide shows (Using data masking to hide sensitive
information): digits mask replaces every digit with the rule's character ("C6BGJ566669K" with '#' becomes
"C#BGJ######K"); digits randomize replaces every digit with a random digit; hashing mask replaces the value
with its SHA-256 hash.  Chosen where it is silent: "digit" means the ASCII digits 0-9; the hash is the
upper-case hex SHA-256 of the value's UTF-8 text (64 characters); NULL stays NULL; random digits come from
the operating system's CSPRNG, so a masked value cannot be recomputed from its neighbours.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from bulkmig.config.mapping_rules import DIGITS_MASK, DIGITS_RANDOMIZE, HASH_MASK
from bulkmig.transform.kernels import sha256_hex

__all__ = ["DETERMINISTIC", "DIGITS_MASK", "DIGITS_RANDOMIZE", "HASH_MASK", "mask"]

HASH_LENGTH = 64
# Which masks give the same output for the same input (validation recomputes those on the source).
DETERMINISTIC = frozenset({DIGITS_MASK, HASH_MASK})


def mask(arr: pa.Array, action: str, value: str | None = None) -> pa.Array:
    """``arr`` (a string array) masked as ``action`` says."""
    if action == DIGITS_MASK:
        assert value is not None
        return _replace_digits(arr, lambda count: np.full(count, ord(value), dtype=np.uint8))
    if action == DIGITS_RANDOMIZE:
        return _replace_digits(arr, _random_digits)
    if action == HASH_MASK:
        return sha256_hex(arr)
    raise AssertionError(action)


def _random_digits(count: int) -> np.ndarray:
    """``count`` ASCII digits from the OS's CSPRNG, each equally likely (rejection of bytes >= 250 = 25 x 10)."""
    fresh = np.empty(0, dtype=np.uint8)
    while len(fresh) < count:
        more = np.frombuffer(os.urandom(count + count // 8 + 16), dtype=np.uint8)
        fresh = np.concatenate([fresh, more[more < 250]])
    return 0x30 + fresh[:count] % 10


def _replace_digits(arr: pa.Array, replacement: Callable[[int], np.ndarray]) -> pa.Array:
    """Every ASCII digit replaced by ``replacement(count)``'s bytes, on the UTF-8 bytes at once: in UTF-8 the
    bytes 0x30-0x39 only ever are those digits (a multi-byte character's bytes are all >= 0x80), and a
    one-byte replacement keeps every offset, so no character is cut and no length changes."""
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([_replace_digits(c, replacement) for c in arr.chunks], arr.type)
    validity, offsets, data = arr.buffers()
    if data is None or len(arr) == 0:
        return arr
    raw = np.frombuffer(data, dtype=np.uint8).copy()
    digits = (raw >= 0x30) & (raw <= 0x39)
    count = int(digits.sum())
    if count:
        raw[digits] = replacement(count)
    buffers = [validity, offsets, pa.py_buffer(raw.tobytes())]
    return pa.Array.from_buffers(arr.type, len(arr), buffers, arr.null_count, arr.offset)
