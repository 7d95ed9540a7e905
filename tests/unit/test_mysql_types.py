"""The MySQL → PostgreSQL type map, row by row: every rule is reachable and maps to what it says."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bulkmig.core.model import arrow_type
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.types import ACTION, CHANGED, CONVERTED, RULES, TypeSettings, map_column

# Every row of the map: (rule, the COLUMN_TYPE given, settings, expected PostgreSQL type, expected Arrow type).
POSTGIS = TypeSettings(postgis=True)
INTERVAL = TypeSettings(time_as="interval")
EXPECTED: dict[str, tuple[str, TypeSettings, str, str]] = {
    "tinyint(1)": ("tinyint(1)", TypeSettings(), "boolean", "bool"),
    "tinyint": ("tinyint(4)", TypeSettings(), "smallint", "int16"),
    "tinyint unsigned": ("tinyint(3) unsigned", TypeSettings(), "smallint", "int16"),
    "smallint": ("smallint(6)", TypeSettings(), "smallint", "int16"),
    "smallint unsigned": ("smallint(5) unsigned", TypeSettings(), "integer", "int32"),
    "mediumint": ("mediumint(9)", TypeSettings(), "integer", "int32"),
    "mediumint unsigned": ("mediumint(8) unsigned", TypeSettings(), "integer", "int32"),
    "int": ("int(11)", TypeSettings(), "integer", "int32"),
    "int unsigned": ("int(10) unsigned", TypeSettings(), "bigint", "int64"),
    "bigint": ("bigint(20)", TypeSettings(), "bigint", "int64"),
    "bigint unsigned": ("bigint(20) unsigned", TypeSettings(), "numeric(20)", "decimal128(20, 0)"),
    "decimal": ("decimal(5,2)", TypeSettings(), "numeric(5,2)", "decimal128(5, 2)"),
    "decimal unsigned": ("decimal(10,2) unsigned", TypeSettings(), "numeric(10,2)", "decimal128(10, 2)"),
    "float": ("float", TypeSettings(), "real", "float32"),
    "float unsigned": ("float unsigned", TypeSettings(), "real", "float32"),
    "double": ("double", TypeSettings(), "double precision", "float64"),
    "double unsigned": ("double unsigned", TypeSettings(), "double precision", "float64"),
    "bit": ("bit(8)", TypeSettings(), "bit(8)", "string"),
    "char": ("char(3)", TypeSettings(), "char(3)", "string"),
    "varchar": ("varchar(45)", TypeSettings(), "varchar(45)", "string"),
    "tinytext": ("tinytext", TypeSettings(), "text", "string"),
    "text": ("text", TypeSettings(), "text", "string"),
    "mediumtext": ("mediumtext", TypeSettings(), "text", "string"),
    "longtext": ("longtext", TypeSettings(), "text", "string"),
    "binary": ("binary(16)", TypeSettings(), "bytea", "binary"),
    "varbinary": ("varbinary(255)", TypeSettings(), "bytea", "binary"),
    "tinyblob": ("tinyblob", TypeSettings(), "bytea", "binary"),
    "blob": ("blob", TypeSettings(), "bytea", "binary"),
    "mediumblob": ("mediumblob", TypeSettings(), "bytea", "binary"),
    "longblob": ("longblob", TypeSettings(), "bytea", "binary"),
    "enum": ("enum('G','PG','PG-13')", TypeSettings(), "film_rating", "string"),
    "set": ("set('Trailers','Commentaries')", TypeSettings(), "text[]", "string"),
    "year": ("year(4)", TypeSettings(), "smallint", "int16"),
    "date": ("date", TypeSettings(), "date", "date32"),
    "datetime": ("datetime", TypeSettings(), "timestamp(0)", "timestamp[us]"),
    "timestamp": ("timestamp", TypeSettings(), "timestamptz(0)", "timestamp[us, tz=UTC]"),
    "time": ("time", TypeSettings(), "time(0)", "string"),
    "time/interval": ("time", INTERVAL, "interval", "string"),
    "json": ("json", TypeSettings(), "jsonb", "string"),
    "uuid": ("uuid", TypeSettings(), "uuid", "string"),
    "inet4": ("inet4", TypeSettings(), "inet", "string"),
    "inet6": ("inet6", TypeSettings(), "inet", "string"),
    "geometry": ("geometry", TypeSettings(), "bytea", "binary"),
    "geometry/postgis": ("point", POSTGIS, "geometry(Point)", "binary"),
}


def test_every_rule_has_an_expectation_and_a_reason() -> None:
    assert {r.source for r in RULES} == set(EXPECTED)
    assert len({r.source for r in RULES}) == len(RULES), "duplicate source rows"
    for rule in RULES:
        assert rule.reason and "\n" not in rule.reason, rule.source
        assert rule.status in (CONVERTED, CHANGED, ACTION)
        assert rule.transfer in ("native", "text")


@pytest.mark.parametrize("source", list(EXPECTED))
def test_rule(source: str) -> None:
    column_type, settings, target, arrow = EXPECTED[source]
    m = map_column(column_type, table="film", column="rating", settings=settings)
    assert m.rule is not None and m.rule.source == source
    assert (m.target_type, m.arrow_type) == (target, arrow)
    assert m.notes[0].message == m.rule.reason
    arrow_type(m.arrow_type)  # every Arrow name the map hands out is one the plan can read back


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.source)
def test_each_rules_own_example_maps_to_it(rule: types.TypeRule) -> None:
    settings = POSTGIS if rule.source == "geometry/postgis" else INTERVAL if rule.source == "time/interval" else None
    assert map_column(rule.example, settings=settings).rule is rule


def test_tinyint1_switch_and_unsigned_tinyint1() -> None:
    assert map_column("tinyint(1)", settings=TypeSettings(tinyint1_as_boolean=False)).target_type == "smallint"
    assert map_column("tinyint(1) unsigned").target_type == "smallint"  # not MySQL's BOOLEAN
    assert map_column("tinyint(2)").target_type == "smallint"


def test_parse_column_type() -> None:
    p = types.parse_column_type("decimal(12,4) unsigned zerofill")
    assert (p.name, p.args, p.unsigned, p.zerofill) == ("decimal", ["12", "4"], True, True)
    p = types.parse_column_type("enum('it''s','a,b','x\\\\y')")
    assert p.args == ["it's", "a,b", "x\\y"]
    assert types.parse_column_type("INTEGER").name == "int"
    assert types.parse_column_type("double precision").name == "double"
    with pytest.raises(ValueError):
        types.parse_column_type("varchar(")


def test_enum_gets_its_own_type_with_labels_in_order() -> None:
    m = map_column("enum('G','PG','PG-13','R','NC-17')", table="film", column="rating")
    assert (m.enum_type, m.enum_labels) == ("film_rating", ("G", "PG", "PG-13", "R", "NC-17"))
    assert m.status == CHANGED


def test_decimal_wider_than_arrow_128() -> None:
    m = map_column("decimal(65,30)")
    assert (m.target_type, m.arrow_type) == ("numeric(65,30)", "decimal256(65, 30)")
    assert arrow_type(m.arrow_type) == pa.decimal256(65, 30)
    assert map_column("decimal").target_type == "numeric(10,0)"  # MySQL's default precision


def test_fractional_seconds_are_kept() -> None:
    assert map_column("datetime(6)").target_type == "timestamp(6)"
    assert map_column("timestamp(3)").target_type == "timestamptz(3)"
    assert map_column("time(2)").target_type == "time(2)"


def test_zero_dates_per_setting() -> None:
    nullable = map_column("date", nullable=True)
    assert nullable.read_as is not None and "NULL" in nullable.read_as
    assert any("load as NULL" in n.message for n in nullable.notes)
    not_null = map_column("datetime", nullable=False)
    assert not_null.read_as is None and any("stops the load" in n.message for n in not_null.notes)
    refuse = map_column("timestamp", settings=TypeSettings(zero_dates="refuse"))
    assert refuse.read_as is None and any("stops the load" in n.message for n in refuse.notes)
    with pytest.raises(ValueError, match="zero_dates"):
        TypeSettings(zero_dates="epoch")
    with pytest.raises(ValueError, match="time_as"):
        TypeSettings(time_as="seconds")


def test_notes_that_depend_on_the_column() -> None:
    on_update = map_column("timestamp", on_update_current_timestamp=True)
    assert on_update.status == ACTION and any("trigger" in n.message for n in on_update.notes)
    latin = map_column("varchar(10)", charset="latin1", collation="latin1_swedish_ci")
    assert [n.status for n in latin.notes] == [CONVERTED, CONVERTED, CONVERTED]
    assert "transcoded" in latin.notes[1].message and "case-insensitive" in latin.notes[2].message
    assert map_column("int(5) unsigned zerofill").status == CHANGED
    wkb = map_column("point", srid=4326)
    assert any("SRID 4326" in n.message for n in wkb.notes)
    assert map_column("point", srid=4326, settings=POSTGIS).target_type == "geometry(Point,4326)"
    assert map_column("longtext", is_json=True).target_type == "jsonb"  # MariaDB's JSON alias
    assert map_column("bit(5)").read_as == "LPAD(BIN({col}), 5, '0')"


def test_unknown_type_needs_action_and_does_not_raise() -> None:
    m = map_column("vector(3)")
    assert m.rule is None and m.status == ACTION and m.target_type == "text"
