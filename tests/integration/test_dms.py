"""The AWS DMS S3 target format both ways, against moto's S3 server over HTTP and a real PostgreSQL.

Read: folders written by hand exactly as the DMS documentation shows them, loaded through a ``dms-s3://``
source; every column of every row is compared with the table the files describe.  Write: a migrated
table and its change batches exported, the files checked name by name and column by column, then read
back with the reader.  The format facts, and where each comes from:

- [layout] ``<schema>/<table>/LOAD00000001.csv`` (8 upper-case hex digits), CDC files named by time in
  the same folder: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.S3.html (first section).
- [op] CDC rows start with ``I``/``U``/``D``; ``U`` is the row after the update, ``D`` the row before the
  delete; full-load files have no such field unless ``IncludeOpForFullLoad``; ``CdcInsertsOnly`` /
  ``CdcInsertsAndUpdates`` tables: same page, "Indicating source DB operations in migrated S3 data".
- [op-name] In Parquet the field is the column ``Op`` (a DMS table mapping renaming ``"column-name": "Op"``,
  ministryofjustice/modernisation-platform-environments, dms_s3 nomis-table-mappings.json.tpl).
- [ts] ``TimestampColumnName``: an extra STRING column, ``yyyy-MM-dd HH:mm:ss.SSSSSS``, the commit time in
  CDC: https://docs.aws.amazon.com/dms/latest/APIReference/API_S3Settings.html; in a real DMS Parquet file it
  comes before the table's columns (segmentio/parquet-go testdata/dms_test_table_LOAD00000001.parquet).
- [date] ``DatePartitionEnabled`` / ``DatePartitionSequence`` (YYYYMMDD) / ``DatePartitionDelimiter``
  (SLASH): CHAP_Target.S3.html "Using date-based folder partitioning"; ``…/2022/10/23/20221023-013830913``.
- [csv] ``CsvDelimiter`` ``,``, ``CsvRowDelimiter`` ``\\n``, ``Rfc4180`` true (quotes around a value holding
  quotes or line breaks, quotes doubled): API_S3Settings.html.  NULL as an empty field, and the before-image
  columns after the table's: ``I,30004,1,11,,`` / ``U,30004,66,11,30004,1`` in AWS's answer
  https://repost.aws/questions/QUfXtCkhI9SGepdNLbsqTzjQ (add-before-image-columns, prefix ``BI_``).
- [def] The external table definition (TableCount, Tables, TablePath ``hr/employee/``, TableOwner,
  TableColumns with ColumnType/ColumnLength/ColumnIsPk, TableColumnsTotal) and the rows
  ``101,Smith,Bob,2014-06-04,New York``: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.S3.html.
- [parquet] DMS type -> Parquet type (INT8 INT64, NUMERIC DECIMAL, DATETIME TIMESTAMP, BOOLEAN BOOL, BYTES
  BINARY, DATE DATE32, STRING STRING): CHAP_Target.S3.html "Target data types for S3 Parquet"; timestamps
  in µs unless ``ParquetTimestampInMillisecond`` (API_S3Settings.html).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, IntegrityError, PlanError
from bulkmig.demo.servers import MotoS3Server, PostgresServer
from bulkmig.dms.read import load_dms, replay_dms


@dataclass
class Dms:
    """A DMS S3 target folder in moto, a target database, and a task reading the one into the other."""

    s3: MotoS3Server
    bucket: str
    folder: str
    pg: PostgresServer
    db: str
    tmp: Path
    env: dict[str, str]

    def put(self, key: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.s3.client().put_object(Bucket=self.bucket, Key=f"{self.folder}/{key}", Body=body)

    def keys(self) -> list[str]:
        pages = self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.folder + "/")
        return sorted(o["Key"][len(self.folder) + 1 :] for p in pages for o in p.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.s3.client().get_object(Bucket=self.bucket, Key=f"{self.folder}/{key}")["Body"].read()

    def task(self, migration_type: str = "full-load-and-cdc", **settings: Any) -> Task:
        doc = self.doc(migration_type, **settings)
        path = self.tmp / "task.yaml"
        path.write_text(yaml.safe_dump(doc))
        return Task.from_dict(doc, self.tmp, path=path, env={"BULKMIG_TARGET_PASSWORD": self.pg.password})

    def doc(self, migration_type: str, **settings: Any) -> dict[str, Any]:
        dms: dict[str, Any] = {}
        for name in ("endpoint_settings", "table_definition"):
            if name in settings:
                file = self.tmp / f"{name}.json"
                file.write_text(json.dumps(settings.pop(name)))
                dms[name] = file.name
        return {
            "source": f"dms-s3://{self.bucket}/{self.folder}",
            "target": self.pg.url(self.db),
            "migration_type": migration_type,
            "s3": {"endpoint_url": self.s3.endpoint_url, "region": self.s3.region},
            "settings": {"dms": dms, **settings},
        }

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.pg.execute(self.db, sql)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bulkmig.cli", *args, "--task", str(self.tmp / "task.yaml")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def dms(
    s3_server: MotoS3Server,
    bucket: str,
    pg_target: PostgresServer,
    target_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Dms:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_"))}
    env.update({**s3_server.env(), "BULKMIG_TARGET_PASSWORD": pg_target.password})
    return Dms(s3_server, bucket, "dms-out", pg_target, target_db, tmp_path, env)


# ------------------------------------------------------------------------------------------ read: CSV

# [def] The DMS user guide's employee table, as the S3 source's external table definition.
EMPLOYEE_DEFINITION = {
    "TableCount": "1",
    "Tables": [
        {
            "TableName": "employee",
            "TablePath": "hr/employee/",
            "TableOwner": "hr",
            "TableColumns": [
                {"ColumnName": "Id", "ColumnType": "INT8", "ColumnNullable": "false", "ColumnIsPk": "true"},
                {"ColumnName": "LastName", "ColumnType": "STRING", "ColumnLength": "20"},
                {"ColumnName": "FirstName", "ColumnType": "STRING", "ColumnLength": "30"},
                {"ColumnName": "HireDate", "ColumnType": "DATETIME"},
                {"ColumnName": "OfficeLocation", "ColumnType": "STRING", "ColumnLength": "20"},
            ],
            "TableColumnsTotal": "5",
        }
    ],
}

# [layout] [csv] Full-load files: no Op field (IncludeOpForFullLoad false, the default), NULL as nothing,
# RFC 4180 quoting; [csv] with add-before-image-columns every row ends with the BI_Id field (empty here).
EMPLOYEE_LOAD = {
    "hr/employee/LOAD00000001.csv": (
        "101,Smith,Bob,2014-06-04 00:00:00,New York,\n"
        '102,"O""Brien",Alice,2015-01-01 09:30:00.123456,"Dallas, TX",\n'
        "103,Jones,Pat,,,\n"
    ),
    "hr/employee/LOAD00000002.csv": (
        '104,"Two\nLines",Kim,2016-02-29 23:59:59.999999,"",\n105,Lee,Sam,2017-07-01 12:00:00,Boston,\n'
    ),
}
# [layout] [op] CDC files named by time; U carries the row after the update, D the row before the delete;
# [csv] BI_Id holds the key before the update (a key update: 105 -> 205).
EMPLOYEE_CDC = {
    "hr/employee/20230101-120000001.csv": (
        "U,101,Smith,Bob,2015-10-08 00:00:00,Los Angeles,101\n"
        "I,106,New,Hire,2023-01-01 08:00:00,Remote,\n"
        'D,102,"O""Brien",Alice,2015-01-01 09:30:00.123456,"Dallas, TX",102\n'
    ),
    "hr/employee/20230101-120000123.csv": (
        "U,101,Smith,Bob,2017-03-13 00:00:00,Dallas,101\nU,205,Lee,Sam,2017-07-01 12:00:00,Boston,105\n"
    ),
    "hr/employee/20230101-120105000.csv": (  # the deleted key comes back, with other values
        'I,102,"O""Brien",Alice,2020-05-05 05:05:05,Austin,\nD,103,Jones,Pat,,,103\n'
    ),
    "hr/employee/20230102-000000000.csv": "D,101,Smith,Bob,2017-03-13 00:00:00,Dallas,101\n",
}
EMPLOYEE_AFTER = [
    (102, 'O"Brien', "Alice", dt.datetime(2020, 5, 5, 5, 5, 5), "Austin"),
    (104, "Two\nLines", "Kim", dt.datetime(2016, 2, 29, 23, 59, 59, 999999), ""),
    (106, "New", "Hire", dt.datetime(2023, 1, 1, 8), "Remote"),
    (205, "Lee", "Sam", dt.datetime(2017, 7, 1, 12), "Boston"),
]
EMPLOYEE_SQL = 'SELECT "Id", "LastName", "FirstName", "HireDate", "OfficeLocation" FROM hr.employee ORDER BY 1'


def test_csv_folder_loads_then_applies_every_change_exactly_once(dms: Dms) -> None:
    for key, body in {**EMPLOYEE_LOAD, **EMPLOYEE_CDC}.items():
        dms.put(key, body)
    dms.put("hr/employee/notes.txt", "not a DMS file")  # ignored, not an error
    task = dms.task(table_definition=EMPLOYEE_DEFINITION)
    report = load_dms(task, progress=False)
    assert (report.files_loaded, report.rows) == (2, 5)
    # [def] The table is created from the definition: types, NOT NULL, and the primary key.
    cols = dms.rows(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = 'hr.employee'::regclass AND attnum > 0 ORDER BY attnum"
    )
    assert cols == [
        ("Id", "bigint", True),
        ("LastName", "character varying(20)", False),
        ("FirstName", "character varying(30)", False),
        ("HireDate", "timestamp(6) without time zone", False),
        ("OfficeLocation", "character varying(20)", False),
    ]
    assert dms.rows(EMPLOYEE_SQL) == [
        (101, "Smith", "Bob", dt.datetime(2014, 6, 4), "New York"),
        (102, 'O"Brien', "Alice", dt.datetime(2015, 1, 1, 9, 30, 0, 123456), "Dallas, TX"),
        (103, "Jones", "Pat", None, None),
        (104, "Two\nLines", "Kim", dt.datetime(2016, 2, 29, 23, 59, 59, 999999), ""),
        (105, "Lee", "Sam", dt.datetime(2017, 7, 1, 12), "Boston"),
    ]
    first = replay_dms(task)
    assert (first.batches, first.applied_seq) == (4, 4)
    assert dms.rows(EMPLOYEE_SQL) == EMPLOYEE_AFTER
    # The second run of both finds everything done: nothing loaded or applied twice.
    again = load_dms(task, progress=False)
    assert (again.files_loaded, again.files_skipped) == (0, 2)
    assert replay_dms(task).batches == 0
    assert dms.rows(EMPLOYEE_SQL) == EMPLOYEE_AFTER
    assert dms.rows("SELECT count(*), sum(rows) FROM bulkmig.loaded_parts") == [(2, 5)]
    # A file DMS (or someone) adds *before* the applied position would be skipped by counting on: refused.
    dms.put("hr/employee/20230101-115959999.csv", "I,999,Late,File,,,\n")
    with pytest.raises(IntegrityError, match="a file was added before it"):
        replay_dms(task)


def test_replay_before_the_full_load_is_refused(dms: Dms) -> None:
    for key, body in {**EMPLOYEE_LOAD, **EMPLOYEE_CDC}.items():
        dms.put(key, body)
    with pytest.raises(PlanError, match="not loaded yet"):
        replay_dms(dms.task(table_definition=EMPLOYEE_DEFINITION))


def test_bad_settings_and_definitions_are_named(dms: Dms) -> None:
    dms.put("hr/employee/LOAD00000001.csv", "1,a\n")
    with pytest.raises(ConfigError, match=r"DataFomat: not an S3Settings key \(did you mean DataFormat\?\)"):
        load_dms(dms.task(endpoint_settings={"DataFomat": "csv"}), progress=False)
    with pytest.raises(ConfigError, match="CdcInsertsOnly and CdcInsertsAndUpdates"):
        load_dms(dms.task(endpoint_settings={"CdcInsertsOnly": True, "CdcInsertsAndUpdates": "y"}), progress=False)
    with pytest.raises(ConfigError, match="PreserveTransactions: transaction-ordered CDC"):
        load_dms(dms.task(endpoint_settings={"PreserveTransactions": True, "CdcPath": "x"}), progress=False)
    bad = json.loads(json.dumps(EMPLOYEE_DEFINITION))
    bad["Tables"][0]["TableColumnsTotal"] = "4"
    bad["Tables"][0]["TableColumns"][1]["ColumnType"] = "VARCHAR"
    with pytest.raises(ConfigError, match=r"TableColumnsTotal is 4 but 5.*ColumnType 'VARCHAR' is not one of"):
        load_dms(dms.task(table_definition=bad), progress=False)
    # CSV without a definition and no such table on the target: nothing says what the fields are.
    with pytest.raises(ConfigError, match="do not say which columns"):
        load_dms(dms.task(), progress=False)
