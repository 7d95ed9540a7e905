"""Turn Arrow record batches from part files into COPY input for a PostgreSQL target.

CSV COPY, built by Arrow's C++ CSV writer: strings are always quoted and NULLs are written as nothing,
which is exactly PostgreSQL's CSV rule (quoted empty = empty string, unquoted empty = NULL).  Columns
whose Arrow text form PostgreSQL would not read back exactly are rewritten first, vectorised:
bytea as ``\\x`` hex, uuid as hex, dates and timestamps outside years 1–9999 and the infinities by a
small exact formatter.  Everything else (numbers, text, values that travelled as text) goes as is.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bulkmig.engines.postgres import types

_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint8).reshape(256, 2)
_US_PER_DAY = 86_400_000_000
# Arrow's own string cast is exact between these bounds (years 1 to 9999).
_TS_MIN = -62_135_596_800_000_000
_TS_MAX = 253_402_300_799_999_999
_DATE_MIN = -719_162
_DATE_MAX = 2_932_896

_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=65536)


def hex_encode(arr: pa.Array, prefix: bytes) -> pa.Array:
    """Binary values as hex strings (``prefix`` + hex digits), without a Python loop.

    The hex digits of all values, concatenated, are the hex of the concatenated data buffer, so one
    table lookup over the buffer does the work; the prefix is joined on in C++ afterwards.
    """
    if pa.types.is_fixed_size_binary(arr.type) or isinstance(arr.type, pa.UuidType):
        storage = arr.storage if isinstance(arr.type, pa.ExtensionType) else arr
        arr = storage.cast(pa.binary())
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    start = int(offsets[0])
    data = np.frombuffer(data_buf, dtype=np.uint8)[start : int(offsets[-1])] if data_buf else np.empty(0, np.uint8)
    hexed = _HEX[data]
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    out = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(((offsets - start) * 2).tobytes()), pa.py_buffer(hexed.tobytes()), validity, arr.null_count
    )
    if not prefix:
        return out
    return pc.binary_join_element_wise(
        pa.scalar(prefix.decode(), pa.large_string()), out, pa.scalar("", pa.large_string())
    )


def _civil(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) for days since 1970-01-01, any sign (H. Hinnant)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def format_date(days: int) -> str:
    """PostgreSQL input text for a date32 value, including infinities and BC dates."""
    if days == types.DATE_POS_INF:
        return "infinity"
    if days == types.DATE_NEG_INF:
        return "-infinity"
    y, m, d = _civil(days)
    return f"{y:04d}-{m:02d}-{d:02d}" if y > 0 else f"{1 - y:04d}-{m:02d}-{d:02d} BC"


def format_timestamp(us: int, with_tz: bool) -> str:
    """PostgreSQL input text for a timestamp[us] value, including infinities and BC timestamps."""
    if us == types.TS_POS_INF:
        return "infinity"
    if us == types.TS_NEG_INF:
        return "-infinity"
    days, rest = divmod(us, _US_PER_DAY)
    y, m, d = _civil(days)
    secs, micros = divmod(rest, 1_000_000)
    hh, rem = divmod(secs, 3600)
    mi, ss = divmod(rem, 60)
    tz = "+00" if with_tz else ""
    clock = f"{hh:02d}:{mi:02d}:{ss:02d}.{micros:06d}{tz}"
    if y > 0:
        return f"{y:04d}-{m:02d}-{d:02d} {clock}"
    return f"{1 - y:04d}-{m:02d}-{d:02d} {clock} BC"


def _temporal_text(arr: pa.Array) -> pa.Array:
    is_date = pa.types.is_date32(arr.type)
    raw = arr.cast(pa.int32() if is_date else pa.int64())
    lo, hi = (_DATE_MIN, _DATE_MAX) if is_date else (_TS_MIN, _TS_MAX)
    outside = pc.fill_null(pc.or_(pc.less(raw, lo), pc.greater(raw, hi)), False)
    with_tz = not is_date and arr.type.tz is not None
    # Arrow formats a zoned timestamp ~20x slower than a naive one; the loading session's TimeZone is UTC
    # (sql.CANONICAL_SETTINGS), so the naive UTC text means the same instant.
    naive = pa.date32() if is_date else pa.timestamp("us")
    if not pc.any(outside).as_py():
        return raw.cast(naive).cast(pa.string())
    text = pc.if_else(outside, pa.scalar(0, raw.type), raw).cast(naive).cast(pa.string())
    specials = [
        format_date(v) if is_date else format_timestamp(v, with_tz) for v in pc.filter(raw, outside).to_pylist()
    ]
    return pc.replace_with_mask(text, outside, pa.array(specials, pa.string()))


def to_copy_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every column in a form PostgreSQL's CSV COPY reads back exactly."""
    arrays = []
    for arr in batch.columns:
        t = arr.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            arr = hex_encode(arr, b"\\x")
        elif isinstance(t, pa.UuidType) or pa.types.is_fixed_size_binary(t):
            arr = hex_encode(arr, b"")
        elif pa.types.is_date32(t) or pa.types.is_timestamp(t):
            arr = _temporal_text(arr)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def to_copy_csv(batch: pa.RecordBatch) -> bytes:
    """CSV bytes for ``COPY … FROM STDIN (FORMAT csv)``."""
    sink = io.BytesIO()
    pacsv.write_csv(to_copy_text(batch), sink, _CSV_OPTIONS)
    return sink.getvalue()
