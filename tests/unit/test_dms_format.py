"""The DMS S3 format's pure parts: endpoint settings, names and folders, the CSV dialect, value forms.

Sources of each fact are listed in tests/integration/test_dms.py (module docstring); the tags here match.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError
from bulkmig.dms.settings import DmsFormat, parse_settings
from bulkmig.dms.tables import parse_table_definition, pg_type_of_arrow
from bulkmig.dms.values import decode_csv, encode_csv, text_columns, typed_column

MS = int(dt.datetime(2022, 10, 23, 1, 38, 30, 913000, tzinfo=dt.UTC).timestamp() * 1000)


def test_names_and_folders_follow_the_dms_layout() -> None:
    # [layout] an 8-digit upper-case hex counter; CDC files named by time to the millisecond.
    assert layout.dms_load_name(1, "csv") == "LOAD00000001.csv"
    assert layout.dms_load_name(10, "parquet") == "LOAD0000000A.parquet"
    assert layout.dms_load_name(16, "csv.gz") == "LOAD00000010.csv.gz"
    assert layout.dms_cdc_name(MS, "parquet") == "20221023-013830913.parquet"
    # [date] every DatePartitionSequence and DatePartitionDelimiter.
    folders = {
        (seq, delim): layout.dms_date_folder(MS, seq, delim)
        for seq in layout.DMS_DATE_SEQUENCES
        for delim in layout.DMS_DATE_DELIMITERS
    }
    assert folders[("YYYYMMDD", "SLASH")] == "2022/10/23"
    assert folders[("YYYYMMDD", "DASH")] == "2022-10-23"
    assert folders[("YYYYMMDD", "UNDERSCORE")] == "2022_10_23"
    assert folders[("YYYYMMDD", "NONE")] == "20221023"
    assert folders[("YYYYMMDDHH", "SLASH")] == "2022/10/23/01"
    assert folders[("YYYYMM", "SLASH")] == "2022/10"
    assert folders[("MMYYYYDD", "SLASH")] == "10/2022/23"
    assert folders[("DDMMYYYY", "DASH")] == "23-10-2022"
    seoul = parse_settings({"DatePartitionEnabled": True, "DatePartitionTimezone": "Asia/Seoul"})
    assert seoul.date_folder(MS) == "2022/10/23"  # 10:38 in Seoul
    assert layout.dms_cdc_name(MS, "csv", seoul.tz) == "20221023-103830913.csv"
    assert layout.dms_cdc_key("hr", "employee", "20221023-013830913.csv", "2022/10/23") == (
        "hr/employee/2022/10/23/20221023-013830913.csv"
    )


def test_keys_are_recognised_and_everything_else_is_not() -> None:
    assert layout.parse_dms_key("hr/employee/LOAD0000000A.csv") == ("hr", "employee", "load", "LOAD0000000A")
    assert layout.parse_dms_key("hr/employee/p1/LOAD00000001.csv.gz") == ("hr", "employee", "load", "p1/LOAD00000001")
    assert layout.parse_dms_key("hr/employee/SEGMENT2_LOAD00000009.csv")[2] == "load"
    assert layout.parse_dms_key("hr/employee/2022/10/23/20221023-013830913.parquet") == (
        "hr",
        "employee",
        "cdc",
        "20221023-013830913",
    )
    assert layout.parse_dms_key("hr/employee/20141029-1134010000.csv")[3] == "20141029-1134010000"  # the docs' form
    for other in ("hr/employee/LOAD1.csv", "hr/employee/x.json", "hr/LOAD00000001.csv", "hr/employee/load00000001.csv"):
        assert layout.parse_dms_key(other) is None, other


def test_endpoint_settings_defaults_spellings_and_problems() -> None:
    d = parse_settings({})
    assert (d.data_format, d.csv_delimiter, d.csv_row_delimiter, d.rfc4180, d.csv_null_value) == (
        "csv",
        ",",
        "\n",
        True,
        None,
    )
    assert (d.include_op_for_full_load, d.timestamp_column, d.date_partition, d.parquet_version) == (
        False,
        None,
        False,
        "1.0",
    )
    wrapped = {
        "Endpoints": [
            {"EndpointIdentifier": "x", "S3Settings": {"DataFormat": "parquet", "ParquetVersion": "parquet-2-0"}}
        ]
    }
    fmt = parse_settings(wrapped)
    assert (fmt.data_format, fmt.parquet_version) == ("parquet", "2.6")
    assert parse_settings({"ParquetVersion": "PARQUET_1_0", "EnableStatistics": "n"}).statistics is False
    warned = parse_settings({"ServiceAccessRoleArn": "arn:aws:iam::1:role/x", "CdcMaxBatchInterval": 60})
    assert len(warned.warnings) == 2 and all("accepted, not applied" in w for w in warned.warnings)
    with pytest.raises(ConfigError) as exc:
        parse_settings(
            {
                "DataFromat": "csv",
                "CompressionType": "zip",
                "DatePartitionSequence": "YYYY",
                "IncludeOpForFullLoad": "yes",
                "DatePartitionTimezone": "Mars/Olympus",
                "CsvDelimiter": "||",
            }
        )
    text = str(exc.value)  # every problem at once, each with what is allowed
    for part in (
        "DataFromat: not an S3Settings key (did you mean DataFormat?)",
        "CompressionType: 'zip' is not one of NONE, GZIP",
        "DatePartitionSequence: 'YYYY' is not one of YYYYMMDD",
        "IncludeOpForFullLoad: 'yes' is not one of true, false, y, n",
        "DatePartitionTimezone: 'Mars/Olympus'",
        "CsvDelimiter: '||'",
    ):
        assert part in text, part


@pytest.mark.parametrize(
    ("include_op", "inserts_only", "inserts_and_updates", "ops", "has_op"),
    [
        # [op] the two tables of "Indicating source DB operations in migrated S3 data"
        (True, True, False, "I", True),
        (False, False, False, "DIU", True),
        (False, True, False, "I", False),
        (True, False, False, "DIU", True),
        (True, False, True, "IU", True),
        (False, False, True, "IU", True),
    ],
)
def test_which_operations_and_whether_the_op_field(
    include_op: bool, inserts_only: bool, inserts_and_updates: bool, ops: str, has_op: bool
) -> None:
    fmt = DmsFormat(
        include_op_for_full_load=include_op,
        cdc_inserts_only=inserts_only,
        cdc_inserts_and_updates=inserts_and_updates,
    )
    assert "".join(sorted(fmt.cdc_ops())) == ops
    assert fmt.cdc_has_op() is has_op


NASTY = ["plain", "", None, 'say "hi", ok', "two\nlines", "cr\rhere", "NULL", " lead", "ünï ☃", "a|b"]


@pytest.mark.parametrize("settings", [{}, {"CsvNullValue": "NULL"}, {"CsvDelimiter": "|"}, {"CsvRowDelimiter": "\r\n"}])
def test_csv_round_trip_keeps_null_and_empty_apart(settings: dict[str, str]) -> None:
    fmt = parse_settings(settings)
    col = pa.array(NASTY, pa.string())
    other = pa.array(range(len(NASTY)), pa.int64())
    data = encode_csv([other, col], fmt)
    back = decode_csv(data, fmt, "test")
    assert back.column(0).to_pylist() == [str(i) for i in range(len(NASTY))]
    assert back.column(1).to_pylist() == NASTY


def test_csv_is_written_as_dms_writes_it() -> None:
    # [csv] quotes only around values holding a delimiter, a quote or a line break; NULL as nothing.
    body = encode_csv(
        [pa.array([1, 2, 3]), pa.array(["Smith", 'O"Brien', None]), pa.array([True, None, False])], DmsFormat()
    )
    assert body == b'1,Smith,true\n2,"O""Brien",\n3,,false\n'
    header = encode_csv([pa.array(["x"])], DmsFormat(add_column_name=True), ["Op"])
    assert header == b"Op\nx\n"
    with pytest.raises(ConfigError, match="Rfc4180 is false"):
        encode_csv([pa.array(["a,b"])], DmsFormat(rfc4180=False))


def test_text_of_the_change_stream_becomes_the_part_files_types() -> None:
    assert typed_column(["1", None, "-7"], pa.int32(), "t.c").to_pylist() == [1, None, -7]
    assert typed_column(["t", "f", None], pa.bool_(), "t.c").to_pylist() == [True, False, None]
    assert typed_column(["\\x00ff", None], pa.binary(), "t.c").to_pylist() == [b"\x00\xff", None]
    assert typed_column(["12.50"], pa.decimal128(12, 2), "t.c").to_pylist() == [Decimal("12.50")]
    assert typed_column(["2024-02-29", "infinity"], pa.date32(), "t.c").cast(pa.int32()).to_pylist()[0] == 19782
    ts = typed_column(["2024-01-02 03:04:05.123456+05:30", None], pa.timestamp("us", tz="UTC"), "t.c")
    assert ts.to_pylist()[0] == dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=dt.UTC)
    # And back: what replay's change rows carry, in PostgreSQL's input forms.
    batch = pa.RecordBatch.from_pydict(
        {"b": pa.array([b"\x01"]), "t": pa.array([dt.datetime(2024, 1, 1, 0, 0, 1)], pa.timestamp("ms")), "n": [3]}
    )
    assert text_columns(batch) == [["\\x01"], ["2024-01-01 00:00:01.000000"], ["3"]]


def test_table_definition_as_dms_documents_it() -> None:
    # [def] numbers and flags as strings, the user guide's employee table.
    doc = {
        "TableCount": "1",
        "Tables": [
            {
                "TableName": "employee",
                "TablePath": "hr/employee/",
                "TableOwner": "hr",
                "TableColumns": [
                    {"ColumnName": "Id", "ColumnType": "INT8", "ColumnNullable": "false", "ColumnIsPk": "true"},
                    {"ColumnName": "Pay", "ColumnType": "NUMERIC", "ColumnPrecision": "10", "ColumnScale": "2"},
                    {"ColumnName": "Name", "ColumnType": "STRING", "ColumnLength": "20"},
                    {"ColumnName": "Seen", "ColumnType": "DATETIME", "ColumnScale": "3"},
                ],
                "TableColumnsTotal": "4",
            }
        ],
    }
    (table,) = parse_table_definition(json.dumps(doc), "t.json")
    assert (table.schema, table.name, table.primary_key) == ("hr", "employee", ["Id"])
    assert [(c.name, c.pg_type, c.nullable) for c in table.columns] == [
        ("Id", "bigint", False),
        ("Pay", "numeric(10,2)", True),
        ("Name", "varchar(20)", True),
        ("Seen", "timestamp(3)", True),
    ]
    doc["Tables"][0]["TablePath"] = "elsewhere/"
    with pytest.raises(ConfigError, match="TablePath 'elsewhere/' is not hr/employee/"):
        parse_table_definition(json.dumps(doc), "t.json")
    assert pg_type_of_arrow(pa.timestamp("ms", tz="UTC")) == "timestamptz"
    assert pg_type_of_arrow(pa.uint64()) == "numeric(20,0)"


def test_task_with_a_dms_source(tmp_path: Path) -> None:
    (tmp_path / "tables.json").write_text("{}")
    doc = {
        "source": "dms-s3://dms-out/exports/2024",
        "target": "postgresql://admin@db.example/app",
        "migration_type": "full-load-and-cdc",
        "settings": {"dms": {"table_definition": "tables.json", "before_image_prefix": "OLD_"}},
    }
    task = Task.from_dict(doc, tmp_path, env={})
    assert (task.source.engine, task.source.host, task.source.database) == ("dms-s3", "dms-out", "exports/2024")
    assert task.source.redacted() == "dms-s3://dms-out/exports/2024"
    assert task.bucket == "s3://dms-out/exports/2024"  # no bucket of ours needed
    assert task.settings.dms.table_definition == str(tmp_path / "tables.json")
    assert (task.settings.dms.before_image_prefix, task.settings.dms.before_image_suffix) == ("OLD_", "")
    with pytest.raises(ConfigError, match="a DMS S3 folder can only be a source"):
        Task.from_dict({**doc, "target": "dms-s3://dms-out/y", "source": "postgresql://a@b/c"}, tmp_path, env={})
    with pytest.raises(ConfigError, match=r"settings.dms.endpoint_settings: .*missing.json is not a file"):
        Task.from_dict({**doc, "settings": {"dms": {"endpoint_settings": "missing.json"}}}, tmp_path, env={})


def test_only_load_replay_and_migrate_take_a_dms_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bulkmig.cli import main
    from bulkmig.core.errors import EXIT_CONFIG

    task = tmp_path / "task.yaml"
    task.write_text("source: dms-s3://dms-out/f\ntarget: postgresql://a@127.0.0.1:1/b\nmigration_type: full-load\n")
    assert main(["plan", "--task", str(task)]) == EXIT_CONFIG  # (not --quiet: it stays set for later tests)
    err = capsys.readouterr().err
    assert "`bulkmig plan` needs a source database" in err and "`bulkmig load`" in err
