"""The DMS S3 endpoint settings document (``S3Settings``), read unchanged, for both directions.

Users keep the JSON their DMS S3 target endpoint was created with (``aws dms create-endpoint
--s3-settings file://s3.json``), or what ``aws dms describe-endpoints`` prints; :func:`load_settings`
takes either, so the export writes and the ``dms-s3://`` source reads exactly the layout that endpoint
produced.  Every key of the API's ``S3Settings`` is known: it is honoured, accepted with a warning (it only
tunes DMS itself), or refused with the reason; an unknown key or a wrong value is an error naming the key
and what is allowed, all problems at once.

Sources (also cited in tests/integration/test_dms.py):
https://docs.aws.amazon.com/dms/latest/APIReference/API_S3Settings.html (keys, values, defaults) and
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html (what each does to the files).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bulkmig.config.reading import read_text
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError

# Honoured: they shape the files written or change how they are read.
HONOURED = (
    "AddColumnName",
    "BucketFolder",
    "BucketName",
    "CdcInsertsAndUpdates",
    "CdcInsertsOnly",
    "CompressionType",
    "CsvDelimiter",
    "CsvNoSupValue",
    "CsvNullValue",
    "CsvRowDelimiter",
    "DataFormat",
    "DataPageSize",
    "DatePartitionDelimiter",
    "DatePartitionEnabled",
    "DatePartitionSequence",
    "DatePartitionTimezone",
    "DictPageSizeLimit",
    "EnableStatistics",
    "EncodingType",
    "ExternalTableDefinition",
    "IgnoreHeaderRows",
    "IncludeOpForFullLoad",
    "ParquetTimestampInMillisecond",
    "ParquetVersion",
    "Rfc4180",
    "RowGroupLength",
    "TimestampColumnName",
    "UseCsvNoSupValue",
    "UseTaskStartTimeForFullLoadTimestamp",
)
# Accepted with a warning: they tune DMS's own service (credentials, ACLs, flush timing, Glue), or are
# decided elsewhere in bulkmig.  Value: what bulkmig does instead.
WARNED = {
    "AddTrailingPaddingCharacter": "strings are written as they are (padding would change the values)",
    "CannedAclForObjects": "objects get the bucket's default ACL",
    "CdcMaxBatchInterval": "one CDC file is written per change batch and table",
    "CdcMinFileSize": "one CDC file is written per change batch and table",
    "EncryptionMode": "server-side encryption follows the task's s3.sse",
    "ExpectedBucketOwner": "the bucket owner is not checked",
    "GlueCatalogGeneration": "no Glue Data Catalog is created (run a crawler over the folder)",
    "MaxFileSize": "one full-load file is written per volume part (settings.max_part_bytes bounds it)",
    "ServerSideEncryptionKmsKeyId": "server-side encryption follows the task's s3.kms_key_id",
    "ServiceAccessRoleArn": "credentials come from boto3's chain (environment, profile, instance role)",
}
# Refused when set: bulkmig cannot write or read what they ask for.
REFUSED = {
    "PreserveTransactions": "transaction-ordered CDC (CDC_TXN-*.csv under CdcPath) is not supported",
    "CdcPath": "transaction-ordered CDC (CDC_TXN-*.csv under CdcPath) is not supported",
}
KNOWN = (*HONOURED, *WARNED, *REFUSED)

DATA_FORMATS = ("csv", "parquet")
COMPRESSIONS = ("NONE", "GZIP")
ENCODINGS = ("rle-dictionary", "plain", "plain-dictionary")
# The docs write PARQUET_1_0, the API parquet-1-0, the SDKs parquet_1_0: all three are read.
PARQUET_VERSIONS = {"parquet_1_0": "1.0", "parquet_2_0": "2.6"}


@dataclass(frozen=True)
class DmsFormat:
    """The resolved settings: what the files look like.  Defaults are DMS's own (API_S3Settings)."""

    data_format: str = "csv"
    gzip: bool = False
    include_op_for_full_load: bool = False
    cdc_inserts_only: bool = False
    cdc_inserts_and_updates: bool = False
    timestamp_column: str | None = None
    task_start_time_for_full_load: bool = False
    date_partition: bool = False
    date_sequence: str = "YYYYMMDD"
    date_delimiter: str = "SLASH"
    date_timezone: str | None = None
    csv_delimiter: str = ","
    csv_row_delimiter: str = "\n"
    csv_null_value: str | None = None  # None: a NULL is an empty unquoted field
    csv_no_sup_value: str | None = None  # UseCsvNoSupValue: the value of a column the change did not carry
    rfc4180: bool = True
    add_column_name: bool = False
    ignore_header_rows: int = 0
    parquet_version: str = "1.0"
    parquet_timestamp_ms: bool = False
    encoding: str = "rle-dictionary"
    dict_page_size: int = 1_024_000
    row_group_length: int = 10_024  # the user guide's figure (the API reference says 10,000)
    data_page_size: int = 1_024_000
    statistics: bool = True
    bucket_name: str | None = None
    bucket_folder: str | None = None
    table_definition: str | None = None  # ExternalTableDefinition, as DMS takes it (a JSON string)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ext(self) -> str:
        """``csv`` / ``parquet`` (``.gz`` is added to CSV files with CompressionType GZIP)."""
        return self.data_format

    @property
    def tz(self) -> ZoneInfo | None:
        return ZoneInfo(self.date_timezone) if self.date_timezone else None

    def cdc_ops(self) -> frozenset[str]:
        """The operations a CDC file holds (CdcInsertsOnly / CdcInsertsAndUpdates)."""
        if self.cdc_inserts_only:
            return frozenset("I")
        if self.cdc_inserts_and_updates:
            return frozenset("IU")
        return frozenset("IUD")

    def cdc_has_op(self) -> bool:
        """Whether CDC files carry the ``Op`` field.  The user guide's tables (section "Indicating source DB
        operations in migrated S3 data"): with CdcInsertsOnly the field follows IncludeOpForFullLoad ("DMS
        makes the record settings for a CDC load conform to ... the full load"); with CdcInsertsAndUpdates
        the table shows ``I or U`` whatever IncludeOpForFullLoad is (its prose says otherwise for .csv; the
        table is what we follow, and the reader finds the field either way)."""
        return self.include_op_for_full_load if self.cdc_inserts_only else True

    def date_folder(self, ms: int) -> str | None:
        if not self.date_partition:
            return None
        return layout.dms_date_folder(ms, self.date_sequence, self.date_delimiter, self.tz)


def load_settings(path: Path | None) -> DmsFormat:
    """The endpoint settings in ``path`` (None: DMS's defaults)."""
    if path is None:
        return DmsFormat()
    text = read_text(Path(path), "DMS endpoint settings", "check the path")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"DMS endpoint settings {path} is not JSON ({exc})", "fix the file") from None
    return parse_settings(doc, str(path))


def parse_settings(doc: Any, origin: str = "DMS endpoint settings") -> DmsFormat:
    """``S3Settings`` as a dict, ``{"S3Settings": {...}}`` or ``describe-endpoints`` output (one endpoint)."""
    if isinstance(doc, dict) and isinstance(doc.get("Endpoints"), list):
        if len(doc["Endpoints"]) != 1:
            raise ConfigError(
                f"{origin} describes {len(doc['Endpoints'])} endpoints", "keep the one S3 endpoint in the file"
            )
        doc = doc["Endpoints"][0]
    if isinstance(doc, dict) and isinstance(doc.get("S3Settings"), dict):
        doc = doc["S3Settings"]
    if not isinstance(doc, dict):
        raise ConfigError(f"{origin}: expected a JSON object of S3Settings keys", "see the DMS S3Settings reference")
    return _Reader(doc, origin).read()


class _Reader:
    def __init__(self, doc: dict[str, Any], origin: str) -> None:
        self.doc = doc
        self.origin = origin
        self.problems: list[str] = []

    def read(self) -> DmsFormat:
        for key in self.doc:
            if key not in KNOWN:
                close = difflib.get_close_matches(str(key), KNOWN, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problems.append(f"{key}: not an S3Settings key{hint}")
        for key, why in REFUSED.items():
            if self.doc.get(key) not in (None, "", False, "false", "n"):
                self.problems.append(f"{key}: {why}; remove it")
        warnings = tuple(f"{key}: accepted, not applied: {what}" for key, what in WARNED.items() if key in self.doc)
        d = DmsFormat()
        fmt = DmsFormat(
            data_format=self.choice("DataFormat", DATA_FORMATS, d.data_format, lower=True),
            gzip=self.choice("CompressionType", COMPRESSIONS, "NONE", upper=True) == "GZIP",
            include_op_for_full_load=self.bool_("IncludeOpForFullLoad"),
            cdc_inserts_only=self.bool_("CdcInsertsOnly"),
            cdc_inserts_and_updates=self.bool_("CdcInsertsAndUpdates"),
            timestamp_column=self.string("TimestampColumnName", allow_empty=True) or None,
            task_start_time_for_full_load=self.bool_("UseTaskStartTimeForFullLoadTimestamp"),
            date_partition=self.bool_("DatePartitionEnabled"),
            date_sequence=self.choice("DatePartitionSequence", tuple(layout.DMS_DATE_SEQUENCES), d.date_sequence),
            date_delimiter=self.choice("DatePartitionDelimiter", tuple(layout.DMS_DATE_DELIMITERS), d.date_delimiter),
            date_timezone=self.timezone(),
            csv_delimiter=self.string("CsvDelimiter") or d.csv_delimiter,
            csv_row_delimiter=self.string("CsvRowDelimiter") or d.csv_row_delimiter,
            csv_null_value=self.string("CsvNullValue", allow_empty=True),
            csv_no_sup_value=self.string("CsvNoSupValue", allow_empty=True) if self.bool_("UseCsvNoSupValue") else None,
            rfc4180=self.bool_("Rfc4180", True),
            add_column_name=self.bool_("AddColumnName"),
            ignore_header_rows=self.int_("IgnoreHeaderRows", 0, 0, 1),
            parquet_version=self.parquet_version(),
            parquet_timestamp_ms=self.bool_("ParquetTimestampInMillisecond"),
            encoding=self.choice("EncodingType", ENCODINGS, d.encoding, lower=True),
            dict_page_size=self.int_("DictPageSizeLimit", d.dict_page_size, 1),
            row_group_length=self.int_("RowGroupLength", d.row_group_length, 1),
            data_page_size=self.int_("DataPageSize", d.data_page_size, 1),
            statistics=self.bool_("EnableStatistics", True),
            bucket_name=self.string("BucketName"),
            bucket_folder=self.string("BucketFolder"),
            table_definition=self.table_definition(),
            warnings=warnings,
        )
        if fmt.cdc_inserts_only and fmt.cdc_inserts_and_updates:
            self.problems.append("CdcInsertsOnly and CdcInsertsAndUpdates can't both be true (DMS refuses it too)")
        if self.bool_("UseCsvNoSupValue") and "CsvNoSupValue" not in self.doc:
            self.problems.append("UseCsvNoSupValue: true needs CsvNoSupValue (the value written for such columns)")
        if len(fmt.csv_delimiter) != 1:
            self.problems.append(f"CsvDelimiter: {fmt.csv_delimiter!r}: only a one-character delimiter is supported")
        if fmt.csv_row_delimiter not in ("\n", "\r\n"):
            self.problems.append(f"CsvRowDelimiter: {fmt.csv_row_delimiter!r}: only \\n and \\r\\n are supported")
        if self.problems:
            raise ConfigError(
                f"{self.origin}: " + "; ".join(self.problems),
                "fix the DMS endpoint settings (keys and values as in the DMS S3Settings reference)",
            )
        return fmt

    def raw(self, key: str) -> Any:
        return self.doc.get(key)

    def bool_(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "y", "false", "n"):
            return value.lower() in ("true", "y")
        self.problems.append(f"{key}: {value!r} is not one of true, false, y, n")
        return default

    def string(self, key: str, *, allow_empty: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str) or (not value and not allow_empty):
            self.problems.append(f"{key}: must be a{'' if allow_empty else ' non-empty'} string")
            return None
        return value

    def choice(
        self, key: str, choices: tuple[str, ...], default: str, *, lower: bool = False, upper: bool = False
    ) -> str:
        value = self.raw(key)
        if value is None:
            return default
        text = str(value).lower() if lower else str(value).upper() if upper else str(value)
        if not isinstance(value, str) or text not in choices:
            self.problems.append(f"{key}: {value!r} is not one of {', '.join(choices)}")
            return default
        return text

    def int_(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
            top = f" to {maximum}" if maximum is not None else " or more"
            self.problems.append(f"{key}: {value!r} is not an integer from {minimum}{top}")
            return default
        return value

    def parquet_version(self) -> str:
        value = self.raw("ParquetVersion")
        if value is None:
            return "1.0"
        norm = str(value).lower().replace("-", "_")
        if not isinstance(value, str) or norm not in PARQUET_VERSIONS:
            self.problems.append(f"ParquetVersion: {value!r} is not one of PARQUET_1_0, PARQUET_2_0")
            return "1.0"
        return PARQUET_VERSIONS[norm]

    def timezone(self) -> str | None:
        value = self.string("DatePartitionTimezone")
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.problems.append(f"DatePartitionTimezone: {value!r} is not an Area/Location time zone (Asia/Seoul)")
            return None
        return value

    def table_definition(self) -> str | None:
        value = self.raw("ExternalTableDefinition")
        if value is None:
            return None
        if isinstance(value, dict):
            return json.dumps(value)
        if not isinstance(value, str):
            self.problems.append("ExternalTableDefinition: must be the table definition JSON (a string or object)")
            return None
        return value
