"""The MySQL target's pure parts: Parquet batches → LOAD DATA text, and SHOW CREATE TABLE split for after-data keys."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bulkmig.core.errors import TargetError
from bulkmig.engines.mysql.target import ddl, writer
from bulkmig.engines.mysql.target.writer import encode_batch


def test_every_value_is_escaped_and_null_is_backslash_n() -> None:
    batch = pa.record_batch(
        {
            "i": pa.array([1, None]),
            "s": pa.array(["a\tb\nc\\d\x00e", "\\N"]),
            "d": pa.array([Decimal("-0.10"), None], pa.decimal128(5, 2)),
            "t": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5, 6), None], pa.timestamp("us", tz="UTC")),
            "b": pa.array([b"\xff\t", b""], pa.binary()),
            "f": pa.array([True, False]),
            "e": pa.array(["😀", ""]),
        }
    )
    text = bytes(encode_batch(batch, batch.schema.names))
    assert text == (
        b"1\ta\\tb\\nc\\\\d\\0e\t-0.10\t2020-01-02 03:04:05.000006\t\xff\\t\t1\t\xf0\x9f\x98\x80\n"
        b"\\N\t\\\\N\t\\N\t\\N\t\t0\t\n"
    )
    assert bytes(encode_batch(batch.slice(1), batch.schema.names)) == b"\\N\t\\\\N\t\\N\t\\N\t\t0\t\n"


def test_the_types_written_without_escape_passes_never_need_one() -> None:
    """Numbers, booleans, dates and times skip the four escape passes: their text, at its extremes, holds nothing
    the file escapes (so skipping them writes exactly what escaping would)."""
    columns = [
        pa.array([-(2**63), 2**63 - 1, 0], pa.int64()),
        pa.array([0, 2**64 - 1, 7], pa.uint64()),
        pa.array([-1.5e-300, 1.7976931348623157e308, -0.0], pa.float64()),
        pa.array([3.4028235e38, -1.0e-45, 1.0], pa.float32()),
        pa.array([Decimal("-99999999999999999999999999999999999.999"), Decimal("0.001"), None], pa.decimal128(38, 3)),
        pa.array([True, False, None]),
        pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None], pa.date32()),
        pa.array([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None], pa.timestamp("us")),
        pa.array([dt.datetime(2020, 1, 1, tzinfo=dt.UTC), None, None], pa.timestamp("us", tz="UTC")),
        pa.array([dt.time(0, 0), dt.time(23, 59, 59, 999999), None], pa.time64("us")),
    ]
    for array in columns:
        assert writer._needs_no_escapes(array.type), array.type
        text = writer._as_text(array, "c")
        for old, new in writer._ESCAPES:
            assert pc.replace_substring(text, old, new).equals(text), array.type
    assert not writer._needs_no_escapes(pa.string()) and not writer._needs_no_escapes(pa.binary())


def test_nan_is_refused_with_its_column() -> None:
    batch = pa.record_batch({"ratio": pa.array([1.0, float("nan")])})
    with pytest.raises(TargetError, match="column ratio: 1 value"):
        encode_batch(batch, ["ratio"])


CREATE = """CREATE TABLE `t` (
  `id` int(11) NOT NULL,
  `seq` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(10) DEFAULT NULL,
  `p` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `u` (`name`),
  KEY `s` (`seq`),
  FULLTEXT KEY `ft` (`name`),
  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `t` (`id`),
  CONSTRAINT `c` CHECK (`p` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4"""


def test_keys_after_the_data_except_what_the_auto_increment_column_needs() -> None:
    split = ddl.split_create_table(CREATE)
    assert split.foreign_keys == ["CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `t` (`id`)"]
    assert split.indexes == ["UNIQUE KEY `u` (`name`)", "KEY `s` (`seq`)", "FULLTEXT KEY `ft` (`name`)"]
    assert "PRIMARY KEY (`id`)" in split.create and "CONSTRAINT `c` CHECK" in split.create
    assert split.create.endswith(") ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4")
    statements = ddl.index_statements("t", split)
    assert [s.sql for s in statements] == [
        "ALTER TABLE `t` ADD UNIQUE KEY `u` (`name`), ADD KEY `s` (`seq`)",
        "ALTER TABLE `t` ADD FULLTEXT KEY `ft` (`name`)",
    ]


def test_auto_increment_key_stays_when_there_is_no_primary_key() -> None:
    create = CREATE.replace("  PRIMARY KEY (`id`),\n", "")
    split = ddl.split_create_table(create)
    assert "KEY `s` (`seq`)" in split.create and "KEY `s` (`seq`)" not in split.indexes


def test_statement_files_round_trip_with_their_session() -> None:
    body = "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW BEGIN\n  SET NEW.p = 1;\nEND"
    statements = [
        ddl.Statement("table", "t", CREATE),
        ddl.Statement("trigger", "x", body, ddl.session_sql("STRICT_ALL_TABLES", "utf8mb3", "utf8mb3_general_ci")),
    ]
    back = ddl.parse(ddl.render(statements, "test"))
    assert back == statements
