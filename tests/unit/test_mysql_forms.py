"""The MySQL value forms of MySQL → MySQL change data capture (``engines/mysql/forms.py``) and how the MySQL target
binds them (``engines/mysql/target/rows.py``): pure logic, no server.  The whole path against real servers is
tests/e2e/test_mysql_to_mysql_cdc.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pymysqlreplication.constants import FIELD_TYPE, NONE_SOURCE

from bulkmig.engines.mysql import changes, forms, types
from bulkmig.engines.mysql.changes import Col, ColumnSpec, ValueRefused
from bulkmig.engines.mysql.target import rows


def col(column_type: str, forms_: str = changes.MYSQL_FORMS, **kw: Any) -> Col:
    spec = ColumnSpec("c", "c", column_type, column_type, **kw)
    return Col("d.t", spec, types.TypeSettings(), forms_)


def test_every_type_rule_has_a_mysql_form() -> None:
    assert set(forms.CONVERTERS) == {r.source for r in types.RULES} == set(changes.CONVERTERS)
    assert set(changes.FORMS) == {"postgresql", "mysql"}


def test_the_target_engine_chooses_the_forms() -> None:
    assert changes.value_forms_for("mysql") == "mysql"
    assert changes.value_forms_for("postgresql") == "postgresql"


def _datetime2(year: int, month: int, day: int, h: int, m: int, s: int, frac: int, fsp: int) -> str:
    """A DATETIME2 as the bit string the re-typed decoder gives: 5 bytes, then the fraction's bytes."""
    whole = 1 << 39 | (year * 13 + month) << 22 | day << 17 | h << 12 | m << 6 | s
    n = (fsp + 1) // 2
    return format(whole << (8 * n) | frac, f"0{(5 + n) * 8}b")


@pytest.mark.parametrize(
    ("column_type", "value", "text"),
    [
        ("tinyint(1)", 5, "5"),  # PostgreSQL's boolean refuses it; MySQL keeps it
        ("tinyint(1)", -128, "-128"),
        ("tinyint(3) unsigned", -1, "255"),
        ("bigint(20) unsigned", -1, "18446744073709551615"),
        ("decimal(65,30)", Decimal("-0.000000000000000000000000000001"), "-0.000000000000000000000000000001"),
        ("float", 3.4028234663852886e38, "3.4028234663852886e+38"),
        ("bit(5)", "101", "00101"),
        ("varchar(10)", b"nul\x00in", "nul\x00in"),  # PostgreSQL's text refuses NUL; MySQL keeps it
        ("varchar(10)", b"\xf0\x9f\x98\x80", "😀"),
        ("binary(4)", b"\x00\x01", "00010000"),  # the binlog strips BINARY's zero padding: put back
        ("varbinary(8)", b"\x00\xff\x00", "00ff00"),
        ("enum('a','b')", "", ""),  # the invalid ENUM value: kept
        ("set('x','y','z')", {"z", "x"}, "x,z"),  # definition order
        ("year(4)", 1900, "0"),  # YEAR 0000 (the decoder adds 1900)
        ("year(4)", 2155, "2155"),
        ("date", (2020 << 9) | (0 << 5) | 15, "2020-00-15"),  # read raw: zero months and days stay
        ("date", 0, "0000-00-00"),
        ("datetime(6)", _datetime2(2020, 0, 0, 10, 11, 12, 123, 6), "2020-00-00 10:11:12.000123"),
        ("datetime(1)", _datetime2(2024, 1, 1, 0, 0, 0, 50, 1), "2024-01-01 00:00:00.500000"),
        ("datetime", _datetime2(0, 0, 0, 0, 0, 0, 0, 0), "0000-00-00 00:00:00"),
        ("timestamp", dt.datetime(1970, 1, 1), "0000-00-00 00:00:00"),  # second 0 is the zero TIMESTAMP
        ("timestamp(6)", dt.datetime(2038, 1, 19, 3, 14, 7, 999999), "2038-01-19 03:14:07.999999"),
        ("time(3)", -dt.timedelta(hours=838, minutes=59, seconds=59), "-838:59:59"),  # beyond 24 h: kept
        ("time(3)", dt.timedelta(hours=25, microseconds=500000), "25:00:00.500000"),
        # the binlog strips a UUID's trailing zero bytes, like BINARY's: padded back
        ("uuid", bytes.fromhex("123e4567e89b12d3a456426614174000")[:-1], "123e4567-e89b-12d3-a456-426614174000"),
        ("point", b"\xe6\x10\x00\x00\x01\x01", "e61000000101"),  # the internal form: SRID, then WKB
    ],
)
def test_mysql_forms(column_type: str, value: Any, text: str) -> None:
    c = col(column_type)
    if c.parsed.name in ("date", "datetime"):
        c.binlog_type = FIELD_TYPE.DATETIME2 if c.parsed.name == "datetime" else FIELD_TYPE.DATE
    assert c.text(value, None) == text


def test_an_old_format_datetime_read_raw() -> None:
    c = col("datetime")
    c.binlog_type = FIELD_TYPE.DATETIME
    assert c.text(20200015101112, None) == "2020-00-15 10:11:12"


def test_nones_that_are_values() -> None:
    assert col("set('x')").text(None, NONE_SOURCE.EMPTY_SET) == ""  # the empty set, not NULL
    assert col("date", nullable=False).text(None, NONE_SOURCE.OUT_OF_DATE_RANGE) == "0000-00-00"
    assert col("datetime(6)").text(None, NONE_SOURCE.OUT_OF_DATETIME2_RANGE) == "0000-00-00 00:00:00.000000"
    assert col("int").text(None, NONE_SOURCE.NULL) is None


def test_the_postgresql_forms_are_unchanged() -> None:
    assert col("tinyint(1)", changes.POSTGRESQL_FORMS).text(1, None) == "t"
    with pytest.raises(ValueRefused, match="tinyint"):
        col("tinyint(1)", changes.POSTGRESQL_FORMS).text(5, None)
    assert col("set('x','y')", changes.POSTGRESQL_FORMS).text({"y"}, None) == '{"y"}'


@pytest.mark.parametrize(
    ("kind", "fsp", "retyped", "width"),
    [
        (FIELD_TYPE.DATE, 0, FIELD_TYPE.INT24, None),
        (FIELD_TYPE.DATETIME2, 6, FIELD_TYPE.BIT, 8),
        (FIELD_TYPE.DATETIME2, 0, FIELD_TYPE.BIT, 5),
        (FIELD_TYPE.DATETIME, 0, FIELD_TYPE.LONGLONG, None),
    ],
)
def test_raw_temporal_retypes_the_decoders_column(kind: int, fsp: int, retyped: int, width: int | None) -> None:
    bc = SimpleNamespace(type=kind, fsp=fsp, unsigned=False)
    assert forms.raw_temporal(bc) == kind
    assert bc.type == retyped
    if width is not None:
        assert (bc.bytes, bc.bits) == (width, width * 8)
    else:
        assert bc.unsigned is True


def test_raw_temporal_leaves_other_columns() -> None:
    bc = SimpleNamespace(type=FIELD_TYPE.TIMESTAMP2, fsp=6)
    assert forms.raw_temporal(bc) is None and bc.type == FIELD_TYPE.TIMESTAMP2


@pytest.mark.parametrize(
    ("type_text", "text", "param"),
    [
        ("varbinary(40)", "00ff", b"\x00\xff"),
        ("longblob", "", b""),
        ("point", "e610", b"\xe6\x10"),
        ("bit(64)", "1" * 64, 2**64 - 1),
        ("year(4)", "0", 0),  # the text '0' would be the year 2000
        ("varchar(20) character set latin1", "café", "café"),
        ("date", "0000-00-00", "0000-00-00"),
    ],
)
def test_the_target_binds_the_forms(type_text: str, text: str, param: Any) -> None:
    assert rows.form_converter(type_text)(text) == param


def test_enum_labels_of_a_column_type() -> None:
    assert rows.enum_labels("enum('a','b c','it''s') character set latin1") == ("a", "b c", "it's")
    assert rows.enum_labels("enum('x')") == ("x",)
    assert rows.enum_labels("set('x')") is None
