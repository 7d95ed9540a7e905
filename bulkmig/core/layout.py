"""Every path on a volume and in the bucket.  Nobody else builds paths.

A volume is the same tree wherever it lives (a directory, a device's S3 adapter, the bucket after
import).  Keys are relative, '/'-separated, and look like this::

    plan.json                                           the plan (tables, columns, partitions, snapshot)
    schema/pre-data.sql                                 DDL applied before the data (types, tables, keys)
    schema/post-data.sql                                DDL applied after the data (indexes, FKs, triggers)
    schema/assessment.md, schema/assessment.json        schema conversion's report (foreign sources only)
    data/public/film/part-00000.parquet                 one partition of public.film
    data/public/film/part-00000.json                    its sidecar manifest, written after the part
    volume.json                                         written last by `volume seal`
    devices/b/device.json                               which device of the plan's devices this is (several devices)

A migration on several devices (task ``volumes:``) gives each device the plan, the schema, its
``devices/<name>/device.json`` and only the parts the plan assigned to it; each is sealed on its own.

In the bucket the tree sits under ``<prefix>/volumes/<volume-id>/`` and change batches under
``<prefix>/cdc/<stream-id>/batch-000000000042/``.  The devices of one plan are imported into the same
tree, each as it arrives; a device's ``volume.json`` goes to ``devices/<name>/volume.json`` there (a
single volume's stays at the root).

Schema and table names can hold anything a database allows (spaces, slashes, quotes, non-ASCII), so
each name is percent-encoded into one path segment: letters, digits, ``_`` ``-`` and ``.`` stay as they
are, every other byte of its UTF-8 form becomes ``%XX``.  ``"Order Items"`` becomes ``Order%20Items``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from urllib.parse import quote, unquote

PLAN = "plan.json"
VOLUME_MANIFEST = "volume.json"
SCHEMA_DIR = "schema"
PRE_DATA = f"{SCHEMA_DIR}/pre-data.sql"
POST_DATA = f"{SCHEMA_DIR}/post-data.sql"
# Foreign sources (MySQL, SQLite): the schema conversion's assessment report, for a person and for tools.
ASSESSMENT_MD = f"{SCHEMA_DIR}/assessment.md"
ASSESSMENT_JSON = f"{SCHEMA_DIR}/assessment.json"
DATA_DIR = "data"
PART_SUFFIX = ".parquet"
SIDECAR_SUFFIX = ".json"
# Work in progress is written under this suffix and renamed when complete; such files are never parts.
TEMP_SUFFIX = ".partial"

_SAFE = "_-."
_PART_RE = re.compile(r"^data/([^/]+)/([^/]+)/part-(\d{5,})\.(parquet|json)$")


DEVICES_DIR = "devices"


def device_marker(name: str) -> str:
    """``devices/b/device.json``: on each device, which device of the plan it is (written by ``plan``)."""
    return f"{DEVICES_DIR}/{encode_name(name)}/device.json"


def device_manifest(name: str) -> str:
    """``devices/b/volume.json``: in the bucket, the sealed manifest of device ``b`` (imported there)."""
    return f"{DEVICES_DIR}/{encode_name(name)}/{VOLUME_MANIFEST}"


def parse_device_key(key: str) -> tuple[str, str] | None:
    """``devices/b/volume.json`` -> ``("b", "volume.json")``; None for other keys."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == DEVICES_DIR and parts[2] in ("device.json", VOLUME_MANIFEST):
        return decode_name(parts[1]), parts[2]
    return None


def encode_name(name: str) -> str:
    """One path segment for a database identifier; reversible with :func:`decode_name`."""
    if name in ("", ".", ".."):
        # These would collapse a directory level; encode them so the tree stays unambiguous.
        return "".join(f"%{b:02X}" for b in name.encode()) or "%00"
    return quote(name, safe=_SAFE)


def decode_name(segment: str) -> str:
    if segment == "%00":
        return ""
    return unquote(segment)


def table_dir(schema: str, table: str) -> str:
    """``data/public/film``"""
    return f"{DATA_DIR}/{encode_name(schema)}/{encode_name(table)}"


def part_key(schema: str, table: str, index: int) -> str:
    """``data/public/film/part-00003.parquet``"""
    return f"{table_dir(schema, table)}/part-{index:05d}{PART_SUFFIX}"


def sidecar_key(schema: str, table: str, index: int) -> str:
    """``data/public/film/part-00003.json``"""
    return f"{table_dir(schema, table)}/part-{index:05d}{SIDECAR_SUFFIX}"


def sidecar_for(part: str) -> str:
    """The sidecar key of a part key."""
    assert part.endswith(PART_SUFFIX), part
    return part[: -len(PART_SUFFIX)] + SIDECAR_SUFFIX


def parse_data_key(key: str) -> tuple[str, str, int, str] | None:
    """``data/public/film/part-00003.json`` -> ``("public", "film", 3, "json")``; None for other keys."""
    m = _PART_RE.match(key)
    if not m:
        return None
    return decode_name(m.group(1)), decode_name(m.group(2)), int(m.group(3)), m.group(4)


def temp_key(key: str, tag: str) -> str:
    """Where ``key`` is written before it is complete: ``data/public/film/part-00003.parquet.<tag>.partial``."""
    return f"{key}.{tag}{TEMP_SUFFIX}"


def is_temp(key: str) -> bool:
    return key.endswith(TEMP_SUFFIX)


def bucket_volume_prefix(prefix: str, volume_id: str) -> str:
    """``shop/volumes/vol-20261127-0a1b2c`` for bucket prefix ``shop``."""
    return join(prefix, "volumes", volume_id)


# The change stream's documents under ``bucket_cdc_prefix`` (written by capture, read by replay and status).
STREAM_DOC = "stream.json"
PROGRESS_DOC = "progress.json"


def bucket_cdc_prefix(prefix: str, stream_id: str) -> str:
    """``shop/cdc/pg-slot-bulkmig_shop``"""
    return join(prefix, "cdc", stream_id)


def batch_dir(seq: int) -> str:
    """``batch-000000000042`` (12 digits keep lexical order equal to numeric order)."""
    return f"batch-{seq:012d}"


def join(*parts: str) -> str:
    """Join key segments with '/', ignoring empty ones and stray slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


# ============================================================================ the AWS DMS S3 target layout
#
# What DMS's S3 target writes (and what `bulkmig export --format dms` writes, and the `dms-s3://` source
# reads), relative to ``s3://<BucketName>/<BucketFolder>``; names are the database's own, never encoded
# (DMS refuses names holding a slash)::
#
#     hr/employee/LOAD00000001.parquet                  full load, an 8-digit upper-case hex counter
#     hr/employee/LOAD0000000A.csv                      (.csv, and .csv.gz with CompressionType GZIP)
#     hr/employee/20221023-013830913.parquet            a CDC file, named by time (ms)
#     hr/employee/2022/10/23/20221023-013830913.csv     the same with DatePartitionEnabled (YYYYMMDD, SLASH)
#
# Sources: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html (layout listing, the
# DatePartition* settings); real CDC file names have 9 digits after the dash (the docs' example has 10),
# so both are read.

DMS_LOAD_RE = re.compile(r"^(?:SEGMENT\d+_)?LOAD([0-9A-F]{8})\.(csv|parquet)(\.gz)?$")
DMS_CDC_RE = re.compile(r"^(\d{8}-\d{9,10})\.(csv|parquet)(\.gz)?$")
# DatePartitionSequence -> the strftime pieces of the folder, in order.
DMS_DATE_SEQUENCES = {
    "YYYYMMDD": ("%Y", "%m", "%d"),
    "YYYYMMDDHH": ("%Y", "%m", "%d", "%H"),
    "YYYYMM": ("%Y", "%m"),
    "MMYYYYDD": ("%m", "%Y", "%d"),
    "DDMMYYYY": ("%d", "%m", "%Y"),
}
DMS_DATE_DELIMITERS = {"SLASH": "/", "DASH": "-", "UNDERSCORE": "_", "NONE": ""}


# In bulkmig's own bucket: how far an export to a DMS layout got (one document per destination).
EXPORTS_DIR = "exports"


def dms_export_state(destination_id: str) -> str:
    """``exports/dms-3f2a9c0d1e4b5a6f.json``: the export to one destination (an id derived from its URL)."""
    return f"{EXPORTS_DIR}/dms-{destination_id}.json"


def dms_table_dir(schema: str, table: str) -> str:
    """``hr/employee``: a table's folder under the DMS bucket folder."""
    return f"{schema}/{table}"


def dms_load_name(counter: int, ext: str) -> str:
    """``LOAD0000000A.csv`` for counter 10 (counters start at 1)."""
    return f"LOAD{counter:08X}.{ext}"


def dms_cdc_name(ms_since_epoch: int, ext: str, tz: object = None) -> str:
    """``20221023-013830913.parquet``: the file's time to the millisecond, in ``tz`` (a tzinfo; None: UTC)."""
    return f"{_dms_time(ms_since_epoch, tz).strftime('%Y%m%d-%H%M%S')}{ms_since_epoch % 1000:03d}.{ext}"


def dms_date_folder(ms_since_epoch: int, sequence: str, delimiter: str, tz: object = None) -> str:
    """``2022/10/23`` (YYYYMMDD, SLASH), ``2022-10-23`` (DASH), ``20221023`` (NONE), ``10/2022/23`` (MMYYYYDD)."""
    when = _dms_time(ms_since_epoch, tz)
    return DMS_DATE_DELIMITERS[delimiter].join(when.strftime(p) for p in DMS_DATE_SEQUENCES[sequence])


def dms_cdc_key(schema: str, table: str, name: str, date_folder: str | None = None) -> str:
    """``hr/employee/[2022/10/23/]20221023-013830913.parquet``"""
    return join(dms_table_dir(schema, table), date_folder or "", name)


def parse_dms_key(key: str) -> tuple[str, str, str, str] | None:
    """``hr/employee/2022/10/23/20221023-013830913.csv`` -> ``("hr", "employee", "cdc", "20221023-013830913")``;
    ``("hr", "employee", "load", "<sub-folders/>LOAD00000001")`` for a full-load file (the sort key of its
    kind); None for anything else (a Glue crawler's marker, a ``.dfm``, a folder object)."""
    parts = key.split("/")
    if len(parts) < 3:
        return None
    name = parts[-1]
    if m := DMS_LOAD_RE.match(name):
        return parts[0], parts[1], "load", "/".join(parts[2:-1] + [name.rsplit(".", 2 if m.group(3) else 1)[0]])
    if m := DMS_CDC_RE.match(name):
        return parts[0], parts[1], "cdc", m.group(1)
    return None


def _dms_time(ms_since_epoch: int, tz: object) -> datetime:
    return datetime.fromtimestamp(ms_since_epoch // 1000, tz if isinstance(tz, tzinfo) else UTC)
