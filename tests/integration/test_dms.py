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
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
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
from bulkmig.dms.changes import replay_dms
from bulkmig.dms.read import load_dms


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

    client: Any = None

    def put(self, key: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.client.put_object(Bucket=self.bucket, Key=f"{self.folder}/{key}", Body=body)

    def listing(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.folder + "/")
        return sorted(o["Key"][len(self.folder) + 1 :] for p in pages for o in p.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.folder}/{key}")["Body"].read()

    def task(self, migration_type: str = "full-load-and-cdc", **settings: Any) -> Task:
        doc = self.doc(migration_type, **settings)
        path = self.task_file
        path.write_text(yaml.safe_dump(doc))
        return Task.from_dict(doc, self.tmp, path=path, env={"BULKMIG_TARGET_PASSWORD": self.pg.password})

    @property
    def task_file(self) -> Path:
        return self.tmp / f"task-{self.folder}.yaml"

    def doc(self, migration_type: str, **settings: Any) -> dict[str, Any]:
        dms: dict[str, Any] = {}
        for name in ("endpoint_settings", "table_definition"):
            if name in settings:
                file = self.tmp / f"{self.folder}-{name}.json"
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
            [sys.executable, "-m", "bulkmig.cli", *args, "--task", str(self.task_file)],
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
    return Dms(s3_server, bucket, "dms-out", pg_target, target_db, tmp_path, env, s3_server.client())


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


def test_follow_applies_the_files_dms_writes_while_it_runs(dms: Dms) -> None:
    for key, body in {**EMPLOYEE_LOAD, **EMPLOYEE_CDC}.items():
        dms.put(key, body)
    task = dms.task(table_definition=EMPLOYEE_DEFINITION)
    load_dms(task, progress=False)
    stop = threading.Event()
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(replay_dms(task, follow=True, stop=stop)), daemon=True)
    worker.start()
    try:
        _wait_for(lambda: dms.rows(EMPLOYEE_SQL) == EMPLOYEE_AFTER)
        dms.put("hr/employee/20230103-000000000.csv", "I,107,Late,Comer,2023-01-03 00:00:00,Oslo,\n")
        _wait_for(lambda: dms.rows('SELECT "FirstName" FROM hr.employee WHERE "Id" = 107') == [("Comer",)])
    finally:
        stop.set()
        worker.join(30)
    assert result and result[0].applied_seq == 5
    assert dms.rows("SELECT pos FROM bulkmig.replay_position") == [("hr/employee/20230103-000000000.csv",)]


def _wait_for(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


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


# ------------------------------------------------------------------------------------------ read: Parquet

# [parquet] [ts] [date] [op-name] A Parquet endpoint: DataFormat parquet, the timestamp column, the Op field
# in full-load files too (IncludeOpForFullLoad, Parquet from DMS 3.4.7), CDC files in commit-date folders.
PARQUET_SETTINGS = {
    "DataFormat": "parquet",
    "TimestampColumnName": "DMS_TIMESTAMP",
    "IncludeOpForFullLoad": True,
    "DatePartitionEnabled": True,
    "DatePartitionSequence": "YYYYMMDD",
    "DatePartitionDelimiter": "SLASH",
}
ORDERS_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),  # INT8 -> INT64
        ("amount", pa.decimal128(12, 2)),  # NUMERIC -> DECIMAL
        ("placed", pa.timestamp("us", tz="UTC")),  # DATETIME -> TIMESTAMP (isAdjustedToUTC, µs)
        ("paid", pa.bool_()),  # BOOLEAN -> BOOL
        ("note", pa.string()),  # STRING -> STRING
        ("blob", pa.binary()),  # BYTES -> BINARY
        ("day", pa.date32()),  # DATE -> DATE32
    ]
)
UTC = dt.UTC


def order(i: int, amount: str, paid: bool | None, note: str | None, blob: bytes | None) -> dict[str, Any]:
    return {
        "order_id": i,
        "amount": Decimal(amount),
        "placed": dt.datetime(2022, 12, 31, 23, 59, i % 60, 1000 * i, tzinfo=UTC),
        "paid": paid,
        "note": note,
        "blob": blob,
        "day": dt.date(2022, 12, 1 + i % 28),
    }


def dms_parquet(rows: list[dict[str, Any]], ops: list[str], stamp: str, bi: list[int | None] | None = None) -> bytes:
    """A Parquet file laid out as DMS writes one: Op, then the timestamp column (required STRING), then the
    table's columns, then the before-image columns; Parquet 1.0, uncompressed, no Arrow schema stored."""
    fields = [pa.field("Op", pa.string()), pa.field("DMS_TIMESTAMP", pa.string(), nullable=False), *ORDERS_SCHEMA]
    data = {
        "Op": ops,
        "DMS_TIMESTAMP": [stamp] * len(rows),
        **{f.name: [r[f.name] for r in rows] for f in ORDERS_SCHEMA},
    }
    if bi is not None:
        fields.append(pa.field("BI_order_id", pa.int64()))
        data["BI_order_id"] = bi
    sink = io.BytesIO()
    table = pa.table(data, schema=pa.schema(fields))
    pq.write_table(table, sink, version="1.0", compression="NONE", store_schema=False, use_dictionary=False)
    return sink.getvalue()


ORDERS_DDL = (
    "CREATE SCHEMA sales; CREATE TABLE sales.orders (order_id bigint PRIMARY KEY, amount numeric(12,2), "
    "placed timestamp, paid boolean, note text, blob bytea, day date)"
)
ORDERS_SQL = "SELECT order_id, amount, placed, paid, note, blob, day FROM sales.orders ORDER BY 1"


def as_row(r: dict[str, Any]) -> tuple[Any, ...]:
    placed = r["placed"].astimezone(UTC).replace(tzinfo=None)
    return (r["order_id"], r["amount"], placed, r["paid"], r["note"], r["blob"], r["day"])


def test_parquet_folder_with_timestamp_op_and_date_folders(dms: Dms) -> None:
    load1 = [order(1, "10.50", True, "first", b"\x00\x01"), order(2, "-0.01", None, None, None)]
    load2 = [order(3, "9999999999.99", False, "", b""), order(4, "0.00", True, 'quo"te, comma\nline', b"\xff")]
    stamp = "2023-01-01 00:00:00.000001"  # [ts] the time of the transfer, in DMS's format
    dms.put("sales/orders/LOAD00000001.parquet", dms_parquet(load1, ["I", "I"], stamp))
    dms.put("sales/orders/LOAD00000002.parquet", dms_parquet(load2, ["I", "I"], stamp))
    upd1 = order(1, "11.00", True, "first, updated", b"\x00\x02")
    moved = {**order(4, "0.00", True, "moved", b"\xff"), "order_id": 40}
    back = order(2, "2.22", False, "back again", b"\x10")
    cdc = {
        "sales/orders/2023/01/01/20230101-100000000.parquet": dms_parquet(
            [upd1, order(2, "-0.01", None, None, None), order(5, "5.55", None, "new", None)],
            ["U", "D", "I"],
            "2023-01-01 10:00:00.000000",
            [1, 2, None],
        ),
        "sales/orders/2023/01/02/20230102-080000000.parquet": dms_parquet(
            [moved, back], ["U", "I"], "2023-01-02 08:00:00.000000", [4, None]
        ),
        "sales/orders/2023/01/02/20230102-090000000.parquet": dms_parquet(
            [order(3, "9999999999.99", False, "", b"")], ["D"], "2023-01-02 09:00:00.000000", [3]
        ),
    }
    for key, body in cdc.items():
        dms.put(key, body)
    # A table without a key, full load only: created from the Parquet schema (no definition given).
    events = pa.table({"Op": ["I", "I", "I"], "DMS_TIMESTAMP": [stamp] * 3, "kind": ["a", "a", None], "n": [1, 1, 2]})
    sink = io.BytesIO()
    pq.write_table(events, sink, version="1.0", store_schema=False)
    dms.put("sales/events/LOAD00000001.parquet", sink.getvalue())
    dms.rows(ORDERS_DDL)
    task = dms.task(endpoint_settings=PARQUET_SETTINGS)
    assert load_dms(task, progress=False).rows == 7
    assert dms.rows(ORDERS_SQL) == [as_row(r) for r in load1 + load2]
    assert dms.rows("SELECT kind, n FROM sales.events ORDER BY n, kind") == [("a", 1), ("a", 1), (None, 2)]
    assert dms.rows(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'sales.events'::regclass AND attnum > 0 ORDER BY attnum"
    ) == [("kind", "text"), ("n", "bigint")]
    report = replay_dms(task)
    assert report.batches == 3
    assert report.last_commit_ts == dt.datetime(2023, 1, 2, 9, tzinfo=UTC)  # [ts] the commit time column
    expected = [upd1, back, order(5, "5.55", None, "new", None), moved]
    assert dms.rows(ORDERS_SQL) == sorted((as_row(r) for r in expected), key=lambda r: r[0])
    assert replay_dms(task).batches == 0
    assert dms.rows(ORDERS_SQL) == sorted((as_row(r) for r in expected), key=lambda r: r[0])


# ------------------------------------------------------------------------------------------ read: killed midway

LOG_DEFINITION = {
    "TableCount": "2",
    "Tables": [
        {  # no key: a file loaded twice would show as doubled rows
            "TableName": "log",
            "TablePath": "app/log/",
            "TableOwner": "app",
            "TableColumns": [
                {"ColumnName": "file", "ColumnType": "INT4"},
                {"ColumnName": "line", "ColumnType": "INT4"},
                {"ColumnName": "msg", "ColumnType": "STRING"},
            ],
            "TableColumnsTotal": "3",
        },
        {
            "TableName": "acct",
            "TablePath": "app/acct/",
            "TableOwner": "app",
            "TableColumns": [
                {"ColumnName": "id", "ColumnType": "INT4", "ColumnIsPk": "true"},
                {"ColumnName": "balance", "ColumnType": "INT8"},
            ],
            "TableColumnsTotal": "2",
        },
    ],
}
LOG_FILES, LOG_LINES, CDC_FILES, ACCOUNTS = 30, 5_000, 40, 200


def _wait_and_kill(proc: subprocess.Popen[bytes], dms: Dms, sql: str, at_least: int, below: int) -> int:
    """kill -9 the process group once ``sql`` counts at least ``at_least`` (and less than ``below``)."""
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen = dms.rows(sql)[0][0] or 0
        except Exception:  # noqa: BLE001 - the ledger table may not exist yet
            seen = 0
        if seen >= at_least:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert at_least <= seen < below, f"the process was not caught midway (it got to {seen})"
    return seen


def test_killed_midway_then_rerun_loads_and_applies_each_file_once(dms: Dms) -> None:
    for f in range(1, LOG_FILES + 1):
        body = "".join(f"{f},{i},line {i} of file {f}\n" for i in range(LOG_LINES))
        dms.put(f"app/log/LOAD{f:08X}.csv", body)
    dms.put("app/acct/LOAD00000001.csv", "".join(f"{i},0\n" for i in range(ACCOUNTS)))
    # Every CDC file moves money on ten accounts of its own and deletes or re-creates one more, so each row
    # changes one existing row: an audit trigger that fires even while replaying counts applications.
    expected = {i: 0 for i in range(ACCOUNTS)}
    rows_total = 0
    for f in range(CDC_FILES):
        lines = []
        for j in range(10):
            acct = (f * 10 + j) % (ACCOUNTS - 10)
            expected[acct] += f + 1
            lines.append(f"U,{acct},{expected[acct]}")
        extra = ACCOUNTS - 10 + f % 10
        if extra in expected:
            lines.append(f"D,{extra},{expected.pop(extra)}")
        else:
            expected[extra] = f
            lines.append(f"I,{extra},{f}")
        rows_total += len(lines)
        dms.put(f"app/acct/20240101-00{f:02d}00000.csv", "\n".join(lines) + "\n")
    dms.task(table_definition=LOG_DEFINITION)
    dms.rows(
        "CREATE SCHEMA app; CREATE TABLE app.acct (id integer PRIMARY KEY, balance bigint);"
        "CREATE TABLE app.audit (n int); CREATE FUNCTION app.count() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN INSERT INTO app.audit VALUES (1); RETURN NULL; END$$;"
        "CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON app.acct FOR EACH ROW EXECUTE FUNCTION app.count();"
        "ALTER TABLE app.acct ENABLE ALWAYS TRIGGER audit"
    )
    argv = [sys.executable, "-m", "bulkmig.cli", "--quiet", "load", "--task", str(dms.task_file)]
    proc = subprocess.Popen(argv, env=dms.env, start_new_session=True, stdin=subprocess.DEVNULL)
    _wait_and_kill(proc, dms, "SELECT count(*) FROM bulkmig.loaded_parts", 3, LOG_FILES + 1)
    run = dms.cli("load")
    assert run.returncode == 0, run.stderr
    assert dms.rows("SELECT count(*), count(DISTINCT (file, line)) FROM app.log") == [(LOG_FILES * LOG_LINES,) * 2]
    assert dms.rows("SELECT count(*) FROM bulkmig.loaded_parts") == [(LOG_FILES + 1,)]
    dms.rows("TRUNCATE app.audit")  # the full load's own rows
    argv[argv.index("load")] = "replay"
    proc = subprocess.Popen(argv, env=dms.env, start_new_session=True, stdin=subprocess.DEVNULL)
    _wait_and_kill(proc, dms, "SELECT max(seq) FROM bulkmig.replay_position", 5, CDC_FILES)
    run = dms.cli("replay")
    assert run.returncode == 0, run.stderr
    assert f"{CDC_FILES} batches" not in run.stdout  # the rerun applied only what the killed run had not
    assert dms.rows("SELECT seq FROM bulkmig.replay_position") == [(CDC_FILES,)]
    assert dict(dms.rows("SELECT id, balance FROM app.acct")) == expected
    assert dms.rows("SELECT count(*) FROM app.audit") == [(rows_total,)]  # no change applied twice
    run = dms.cli("replay")
    assert run.returncode == 0 and "replay: 0 batches" in run.stdout, run.stdout + run.stderr


# ------------------------------------------------------------------------------------------ write, and read back

SOURCE_DDL = (
    "CREATE TABLE t (id int PRIMARY KEY, name text, price numeric(12,2), seen timestamptz, day date, flag boolean,"
    " raw bytea, u uuid)"
)
SOURCE_ROWS = (
    "INSERT INTO t SELECT g, CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'say \"hi\", ok' "
    "WHEN 3 THEN E'two\\nlines' ELSE 'plain ' || g END, g * 1.25, '2024-01-01 00:00:00+00'::timestamptz "
    "+ g * interval '1 hour 1.000001 second', DATE '2024-02-01' + g, CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,"
    " CASE WHEN g % 4 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END, md5(g::text)::uuid"
    " FROM generate_series(1, 40) g"
)
CHANGES = (
    "UPDATE t SET name = 'upd \"q\", c', price = 0.01 WHERE id = 1;"
    "UPDATE t SET id = 100 WHERE id = 2;"  # a key update
    "DELETE FROM t WHERE id = 3; INSERT INTO t (id, name) VALUES (3, 'back');"  # delete, then reinsert
    "INSERT INTO t VALUES (41, 'new', -5.5, '2025-06-30 23:59:59.999999+00', '2025-07-01', true, '\\x00ff', "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');"
    "DELETE FROM t WHERE id = 4"
)
ROW_SQL = "SELECT id, name, price, seen, day, flag, raw, u FROM t ORDER BY id"
CDC_NAME = r"\d{8}-\d{9}\.(parquet|csv)"


def _read_back(dms: Dms, pg: PostgresServer, db: str, folder: str, **settings: Any) -> list[tuple[Any, ...]]:
    """Load an exported folder into database ``db`` through a dms-s3:// source, and return its table ``t``."""
    reader = Dms(dms.s3, dms.bucket, folder, pg, db, dms.tmp, dms.env, dms.client)
    task = reader.task(**settings)
    load_dms(task, progress=False)
    replay_dms(task)
    return pg.execute(db, "SELECT id, name, price, seen, day, flag, raw, u FROM public.t ORDER BY id")


def _loaded_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """A DMS Parquet file's table columns as the source query returns them (uuid text as uuid)."""
    cols = ["id", "name", "price", "seen", "day", "flag", "raw", "u"]
    return [
        tuple(uuid.UUID(v) if c == "u" and v is not None else v for c, v in r.items())
        for r in table.select(cols).to_pylist()
    ]


def test_export_writes_what_dms_writes_and_reads_back_equal(
    make_flow,
    pg_source,
    source_db,
    dms: Dms,
    request: pytest.FixtureRequest,  # noqa: ANN001
) -> None:
    pg_source.execute(source_db, SOURCE_DDL + ";" + SOURCE_ROWS)
    flow = make_flow(migration_type="full-load-and-cdc", bucket=f"s3://{dms.bucket}/shop")
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    snapshot = pg_source.execute(source_db, ROW_SQL)
    pg_source.execute(source_db, CHANGES)
    assert flow.bulkmig("capture", "--once").code == 0
    source = pg_source.execute(source_db, ROW_SQL)
    exports = {
        "dms-parquet": {"DataFormat": "parquet", "TimestampColumnName": "ts", "DatePartitionEnabled": True},
        "dms-csv": {},  # DMS's defaults: CSV, no header, no Op in full-load files
        "dms-inserts": {"DataFormat": "parquet", "CdcInsertsOnly": True},
        # [csv] a header, gzip, a NULL marker, another delimiter, and the Op field in the full load
        "dms-gzip": {
            "CompressionType": "GZIP",
            "AddColumnName": True,
            "CsvNullValue": "NULL",
            "CsvDelimiter": "|",
            "IncludeOpForFullLoad": True,
            "TimestampColumnName": "ts",
        },
    }
    for folder, settings in exports.items():
        file = dms.tmp / f"{folder}.json"
        file.write_text(json.dumps(settings))
        extra = ["--before-image-prefix", "BI_"] if folder != "dms-inserts" else []
        to = f"s3://{dms.bucket}/{folder}"
        run = flow.bulkmig("export", "--format", "dms", "--to", to, "--settings", str(file), *extra)
        assert run.code == 0, run.text
    out = Dms(dms.s3, dms.bucket, "dms-parquet", dms.pg, dms.db, dms.tmp, dms.env, dms.client)
    keys = out.listing()
    # [layout] one full-load file (the table is one part), [date] CDC files in commit-date folders.
    assert [k for k in keys if "LOAD" in k] == ["public/t/LOAD00000001.parquet"]
    cdc = [k for k in keys if "LOAD" not in k]
    assert cdc and all(re.fullmatch(rf"public/t/\d{{4}}/\d{{2}}/\d{{2}}/{CDC_NAME}", k) for k in cdc), cdc
    assert all("".join(k.split("/")[2:5]) == k.split("/")[5][:8] for k in cdc)
    raw = out.get("public/t/LOAD00000001.parquet")
    load = pq.read_table(io.BytesIO(raw))
    # [ts] the timestamp column first, no Op (IncludeOpForFullLoad false), [parquet] DMS's types, uuid as STRING.
    assert load.column_names == ["ts", "id", "name", "price", "seen", "day", "flag", "raw", "u", "BI_id"]
    assert [str(f.type) for f in load.schema][1:] == [
        "int32",
        "string",
        "decimal128(12, 2)",
        "timestamp[us, tz=UTC]",
        "date32[day]",
        "bool",
        "binary",
        "string",
        "int32",
    ]
    assert pq.ParquetFile(io.BytesIO(raw)).metadata.metadata is None  # no Arrow schema stored, as DMS's files
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", v) for v in load.column("ts").to_pylist())
    assert _loaded_rows(load) == snapshot  # every column of every row of the full load
    changes = pa.concat_tables([pq.read_table(io.BytesIO(out.get(k))) for k in cdc])
    # [op] [ts] Op first, then the commit time, then the columns, then the key before the update.
    assert changes.column_names == ["Op", "ts", "id", "name", "price", "seen", "day", "flag", "raw", "u", "BI_id"]
    moves = [(r["Op"], r["id"], r["BI_id"]) for r in changes.select(["Op", "id", "BI_id"]).to_pylist()]
    assert {("U", 1, 1), ("U", 100, 2), ("D", 3, 3), ("I", 3, None), ("I", 41, None), ("D", 4, 4)} <= set(moves)
    # [csv] DMS's defaults: no header, no Op in the full load, quotes only where needed, NULL as nothing.
    csv = Dms(dms.s3, dms.bucket, "dms-csv", dms.pg, dms.db, dms.tmp, dms.env, dms.client)
    lines = csv.get("public/t/LOAD00000001.csv").decode()
    first = '1,"",1.25,2024-01-01 01:00:01.000001,2024-02-02,false,\\xc4ca4238a0b923820dcc509a6f75849b,'
    assert lines.startswith(first + "c4ca4238-a0b9-2382-0dcc-509a6f75849b,\n")  # "" is the empty string, BI_id NULL
    assert '2,"say ""hi"", ok",2.50,' in lines and '3,"two\nlines",3.75,' in lines and "\n5,,6.25," in lines
    assert all(re.fullmatch(rf"public/t/{CDC_NAME}", k) for k in csv.listing() if "LOAD" not in k)
    assert csv.get([k for k in csv.listing() if "LOAD" not in k][0]).decode()[:2] in ("I,", "U,", "D,")
    # [op] CdcInsertsOnly without IncludeOpForFullLoad: only the inserts, and no Op field.
    ins = Dms(dms.s3, dms.bucket, "dms-inserts", dms.pg, dms.db, dms.tmp, dms.env, dms.client)
    only = pa.concat_tables([pq.read_table(io.BytesIO(ins.get(k))) for k in ins.listing() if "LOAD" not in k])
    assert only.column_names == ["id", "name", "price", "seen", "day", "flag", "raw", "u"]
    assert sorted(only.column("id").to_pylist()) == [3, 41]
    gz = Dms(dms.s3, dms.bucket, "dms-gzip", dms.pg, dms.db, dms.tmp, dms.env, dms.client)
    head = gzip.decompress(gz.get("public/t/LOAD00000001.csv.gz")).decode().split("\n")[:2]
    assert head[0] == "Op|ts|id|name|price|seen|day|flag|raw|u|BI_id"
    assert head[1].startswith("I|") and head[1].endswith("|c4ca4238-a0b9-2382-0dcc-509a6f75849b|NULL")
    # Read back into new databases: every column of every row equals the source's.
    for folder in ("dms-parquet", "dms-csv", "dms-gzip"):
        name = f"{dms.db[:40]}_{folder[4:]}"
        dms.pg.create_database(name)
        request.addfinalizer(lambda name=name: dms.pg.drop_database(name))
        # The table as the schema conversion made it (DMS's files name no key; CSV names no column either).
        dms.pg.execute(name, SOURCE_DDL.replace("TABLE t", "TABLE public.t"))
        assert _read_back(dms, dms.pg, name, folder, endpoint_settings=exports[folder]) == source, folder
