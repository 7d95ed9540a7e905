"""Values between bulkmig's forms and DMS's files: Arrow columns typed as DMS writes them, PostgreSQL text
for the replay path, and the DMS CSV dialect (both ways), all vectorised where it matters (full-load files).

The CSV dialect (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html, endpoint settings
``CsvDelimiter`` ``,``, ``CsvRowDelimiter`` ``\\n``, ``Rfc4180`` true: "if the data has quotation marks or
newline characters in it, DMS encloses the entire column with an additional pair of double quotation marks
... every quotation mark within the data is repeated twice").  A NULL is an empty unquoted field, as in the
CSV DMS writes (``I,30004,1,11,,`` in AWS's own answer https://repost.aws/questions/QUfXtCkhI9SGepdNLbsqTzjQ),
or ``CsvNullValue`` when set.  Our choice where DMS leaves NULL and the empty string alike: an empty string
is written ``""``, so a round trip keeps the two apart; a reader of DMS's own files gets NULL for ``,,``.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bulkmig.core.errors import ConfigError, IntegrityError
from bulkmig.core.model import Column
from bulkmig.dms.settings import DmsFormat
from bulkmig.engines.postgres import types as pgtypes
from bulkmig.engines.postgres.writer import hex_encode, to_copy_text

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
MAX_FIELDS = 4096  # CSV fields are read as text, never inferred: typed by their target column


# ---------------------------------------------------------------------------------------- DMS's Arrow types


def dashed_uuid(arr: pa.Array) -> pa.Array:
    """uuid values as DMS writes them (text ``8-4-4-4-12``), without a Python loop."""
    hexed = hex_encode(arr, b"").cast(pa.string())
    pieces = [pc.utf8_slice_codeunits(hexed, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return pc.binary_join_element_wise(*pieces, "-")


def dms_column(arr: pa.Array | pa.ChunkedArray, fmt: DmsFormat) -> pa.Array | pa.ChunkedArray:
    """A column as DMS's Parquet holds it: uuid as STRING, timestamps in µs (ms with
    ``ParquetTimestampInMillisecond``), dictionaries and large types decoded."""
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([dms_column(c, fmt) for c in arr.chunks], dms_type(arr.type, fmt))
    t = arr.type
    if pa.types.is_dictionary(t):
        return dms_column(arr.dictionary_decode(), fmt)
    if isinstance(t, pa.UuidType):
        return dashed_uuid(arr)
    if pa.types.is_timestamp(t):
        return arr.cast(pa.timestamp("ms" if fmt.parquet_timestamp_ms else "us", t.tz), safe=False)
    if pa.types.is_large_string(t):
        return arr.cast(pa.string())
    if pa.types.is_large_binary(t):
        return arr.cast(pa.binary())
    return arr


_NUMERIC = re.compile(r"^\s*(?:numeric|decimal)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.I)


def column_type(column: Column, part_type: pa.DataType) -> pa.DataType:
    """The Arrow type a column has in DMS's files: its part type, except a ``numeric(p,s)`` that travels
    as exact text in bulkmig's parts, which DMS writes as DECIMAL (p up to 38)."""
    m = _NUMERIC.match(column.target_type or column.source_type or "")
    if pa.types.is_string(part_type) and column.logical_type == "decimal" and m and int(m.group(1)) <= 38:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return part_type


def as_type(arr: pa.Array | pa.ChunkedArray, t: pa.DataType, where: str) -> pa.Array | pa.ChunkedArray:
    """``arr`` cast to ``t`` (exact text to DECIMAL); a value without such a form is named."""
    if arr.type == t:
        return arr
    try:
        return pc.cast(arr, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise IntegrityError(
            f"{where}: a value has no {t} form ({str(exc).splitlines()[0]})",
            "write CSV (DataFormat csv), where every value keeps its text",
        ) from None


def dms_type(t: pa.DataType, fmt: DmsFormat) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return dms_type(t.value_type, fmt)
    if isinstance(t, pa.UuidType) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_timestamp(t):
        return pa.timestamp("ms" if fmt.parquet_timestamp_ms else "us", t.tz)
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


# ---------------------------------------------------------------------------------------- PostgreSQL text


def text_columns(batch: pa.RecordBatch) -> list[list[str | None]]:
    """Every column of ``batch`` as the PostgreSQL text its target column's input reads exactly (what replay's
    change rows carry): bytea as ``\\x`` hex, dates and timestamps exact, numbers as Arrow prints them."""
    arrays = []
    for arr in batch.columns:
        if pa.types.is_timestamp(arr.type) and arr.type.unit != "us":
            arr = arr.cast(pa.timestamp("us", arr.type.tz))
        elif pa.types.is_date64(arr.type):
            arr = arr.cast(pa.date32())
        elif pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        arrays.append(arr)
    texts = to_copy_text(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names))
    return [col.cast(pa.string()).to_pylist() for col in texts.columns]


def typed_column(values: Sequence[str | None], t: pa.DataType, where: str) -> pa.Array:
    """PostgreSQL text output (a change batch's values) as an Arrow column of type ``t`` (the part files'),
    so a CDC file has the same column types as the full-load files of its table."""
    try:
        if pa.types.is_string(t) or isinstance(t, pa.UuidType):
            return pa.array(values, pa.string())
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return pc.cast(pa.array(values, pa.string()), t)
        if pa.types.is_boolean(t):
            return pa.array([None if v is None else v in ("t", "true") for v in values], pa.bool_())
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return pa.array([None if v is None else bytes.fromhex(v[2:]) for v in values], t)
        if pa.types.is_date32(t):
            return pa.array([None if v is None else _days(v) for v in values], pa.int32()).cast(t)
        if pa.types.is_timestamp(t):
            micros = [None if v is None else _micros(v) for v in values]
            return pa.array(micros, pa.int64()).cast(pa.timestamp("us", t.tz))
    except (pa.ArrowInvalid, ValueError) as exc:
        raise IntegrityError(
            f"{where}: a changed value is not a {t} ({str(exc).splitlines()[0]})",
            "the change stream and the plan disagree on this column's type; re-plan after the schema change",
        ) from None
    return pa.array(values, pa.string())


def _days(text: str) -> int:
    if text == "infinity":
        return pgtypes.DATE_POS_INF
    if text == "-infinity":
        return pgtypes.DATE_NEG_INF
    return (dt.date.fromisoformat(text) - _EPOCH_DATE).days


def _micros(text: str) -> int:
    if text == "infinity":
        return pgtypes.TS_POS_INF
    if text == "-infinity":
        return pgtypes.TS_NEG_INF
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def python_text(value: object) -> str | None:
    """One Python value as PostgreSQL text (for the few values handled outside Arrow)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (int, float, Decimal, dt.date, dt.time)):
        return str(value)
    return str(value)


# ---------------------------------------------------------------------------------------- CSV


def csv_text(arr: pa.Array) -> pa.Array:
    """A typed column as the text of a DMS CSV field (before quoting)."""
    t = arr.type
    if isinstance(t, pa.UuidType):
        return dashed_uuid(arr)
    if pa.types.is_string(t):
        return arr
    batch = to_copy_text(pa.RecordBatch.from_arrays([dms_column(arr, _US)], names=["c"]))
    return batch.column(0).cast(pa.string())


_US = DmsFormat()  # µs timestamps: CSV timestamps are always µs (ParquetTimestampInMillisecond is Parquet only)


def encode_csv(columns: Sequence[pa.Array], fmt: DmsFormat, header: Sequence[str] | None = None) -> bytes:
    """Rows of ``columns`` (strings, or typed columns turned into text) as DMS CSV bytes."""
    delim, eol = fmt.csv_delimiter, fmt.csv_row_delimiter
    fields = [_field(csv_text(c) if not pa.types.is_string(c.type) else c, fmt) for c in columns]
    out = io.StringIO()
    if header is not None:
        out.write(delim.join(_quote_py(h, fmt) for h in header) + eol)
    if not fields or not len(fields[0]):
        return out.getvalue().encode()
    # Each record with its delimiter, then the records' bytes as they lie in the array's buffer (no nulls:
    # every field is filled), so a million-row file never becomes a million Python strings.
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, delim), "", eol).cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])]
    return out.getvalue().encode() + data


def _field(arr: pa.Array, fmt: DmsFormat) -> pa.Array:
    """Quoted as DMS quotes (RFC 4180): a value holding the delimiter, a quote or a line break, an empty
    string, and a value equal to the NULL marker; NULL itself becomes the marker (default: nothing)."""
    null = fmt.csv_null_value or ""
    special = pc.match_substring(arr, fmt.csv_delimiter)
    for ch in {'"', "\n", "\r"} - {fmt.csv_delimiter}:
        special = pc.or_(special, pc.match_substring(arr, ch))
    if not fmt.rfc4180:
        if pc.any(special).as_py():
            raise ConfigError(
                "a value holds the CSV delimiter, a quote or a line break, and Rfc4180 is false",
                "set Rfc4180 true (DMS's default) in the endpoint settings, or write Parquet",
            )
        return pc.fill_null(arr, null)
    needs = pc.or_(special, pc.equal(arr, ""))
    if null:
        needs = pc.or_(needs, pc.equal(arr, null))
    if not pc.any(needs).as_py():
        return pc.fill_null(arr, null)
    inner = pc.replace_substring(arr, '"', '""') if pc.any(special).as_py() else arr
    quoted = pc.binary_join_element_wise('"', inner, '"', "")
    return pc.fill_null(pc.if_else(needs, quoted, arr), null)


def _quote_py(value: str, fmt: DmsFormat) -> str:
    if fmt.rfc4180 and (any(ch in value for ch in (fmt.csv_delimiter, '"', "\n", "\r")) or not value):
        return '"' + value.replace('"', '""') + '"'
    return value


def decode_csv(data: bytes, fmt: DmsFormat, where: str, skip_rows: int = 0) -> pa.Table:
    """A DMS CSV file as a table of string columns ``f0, f1, …``: an unquoted empty field (or
    ``CsvNullValue``, unquoted) is NULL, a quoted one is the text.  Quoting off with ``Rfc4180`` false."""
    if not data.strip():
        return pa.table({})
    names = dict.fromkeys((f"f{i}" for i in range(MAX_FIELDS)), pa.string())
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, skip_rows=skip_rows, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.csv_delimiter,
                quote_char='"' if fmt.rfc4180 else False,
                double_quote=True,
                newlines_in_values=fmt.rfc4180,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=names,
                null_values=[fmt.csv_null_value or ""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise IntegrityError(
            f"{where} is not CSV as the endpoint settings describe it ({str(exc).splitlines()[0]})",
            "give the endpoint settings the files were written with (settings.dms.endpoint_settings)",
        ) from None
