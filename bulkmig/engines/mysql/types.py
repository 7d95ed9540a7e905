"""MySQL/MariaDB → PostgreSQL type mapping, as data: one :class:`TypeRule` per source type, each with the
PostgreSQL type it becomes, how it travels through Parquet, and a one-line reason.

The rule is the same as for PostgreSQL sources (``engines/postgres/types.py``): exactness first, and
nothing mangled silently.  Where PostgreSQL cannot hold every value the MySQL type can (unsigned ranges,
zero dates, TIME beyond 24 h, tinyint(1) used as a small number) the type is widened, or the value is
refused at load naming its row, and the column carries a note saying so; the assessment report
(``bulkmig convert``) is built from those notes, so what it says is what the load does.

Choices that are a matter of taste are settings (:class:`TypeSettings`), reported per column:
``tinyint1_as_boolean`` (pgloader's default, on), ``zero_dates`` (null | refuse), ``time_as``
(time | interval), ``postgis`` (geometry instead of WKB bytea).  ``scan_values`` (on) lets plan and
convert count, per column, the values a rule changes or refuses (``engines/mysql/scan.py``).

Lookup goes by the exact column type text MySQL prints (``information_schema.COLUMNS.COLUMN_TYPE``, e.g.
``tinyint(3) unsigned``, ``enum('G','PG')``, ``decimal(5,2)``), because the facts that decide the
mapping (display width 1, UNSIGNED, the enum labels, the precision) live there and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The task's choices are task data, parsed with the task file (bulkmig.config.engine_settings).
from bulkmig.config.engine_settings import MysqlTypeSettings as TypeSettings
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, ColumnMapping, Note, TypeRule


def _r(
    source: str, target: str, logical: str, arrow: str, status: str, reason: str, example: str, transfer: str = "native"
) -> TypeRule:
    return TypeRule(source, target, logical, arrow, status, reason, example, transfer)


# fmt: off
RULES: tuple[TypeRule, ...] = (
    # -- integers: PostgreSQL has no unsigned and no 1-byte integer, so widen until every value fits.
    _r("tinyint(1)", "boolean", "bool", "bool", CHANGED,
       "MySQL's BOOLEAN is tinyint(1); values other than 0/1 are refused at load, never coerced "
       "(tinyint1_as_boolean: false keeps smallint)", "tinyint(1)"),
    _r("tinyint", "smallint", "integer", "int16", CONVERTED,
       "no 1-byte integer in PostgreSQL; smallint holds -128..127", "tinyint(4)"),
    _r("tinyint unsigned", "smallint", "integer", "int16", CHANGED, "0..255 needs smallint; no unsigned in PostgreSQL",
       "tinyint(3) unsigned"),
    _r("smallint", "smallint", "integer", "int16", CONVERTED, "same range", "smallint(6)"),
    _r("smallint unsigned", "integer", "integer", "int32", CHANGED, "0..65535 needs integer", "smallint(5) unsigned"),
    _r("mediumint", "integer", "integer", "int32", CONVERTED, "no 3-byte integer; integer holds ±8388607",
       "mediumint(9)"),
    _r("mediumint unsigned", "integer", "integer", "int32", CHANGED, "0..16777215 fits integer",
       "mediumint(8) unsigned"),
    _r("int", "integer", "integer", "int32", CONVERTED, "same range", "int(11)"),
    _r("int unsigned", "bigint", "integer", "int64", CHANGED, "0..4294967295 needs bigint", "int(10) unsigned"),
    _r("bigint", "bigint", "integer", "int64", CONVERTED, "same range", "bigint(20)"),
    _r("bigint unsigned", "numeric(20)", "decimal", "decimal128(20, 0)", CHANGED,
       "0..18446744073709551615 exceeds bigint; numeric(20) is exact", "bigint(20) unsigned"),
    # -- exact and approximate numbers.
    _r("decimal", "numeric({p},{s})", "decimal", "decimal128({p}, {s})", CONVERTED,
       "same exact semantics; MySQL's 65 digits fit PostgreSQL's limit", "decimal(5,2)"),
    _r("decimal unsigned", "numeric({p},{s})", "decimal", "decimal128({p}, {s})", CHANGED,
       "UNSIGNED (deprecated in MySQL) is dropped: add CHECK (col >= 0) to keep the rule", "decimal(10,2) unsigned"),
    _r("float", "real", "float", "float32", CONVERTED, "IEEE single precision in both; float(M,D) display rounding "
       "is not kept", "float"),
    _r("float unsigned", "real", "float", "float32", CHANGED, "UNSIGNED (deprecated in MySQL) is dropped",
       "float unsigned"),
    _r("double", "double precision", "float", "float64", CONVERTED, "IEEE double precision in both", "double"),
    _r("double unsigned", "double precision", "float", "float64", CHANGED, "UNSIGNED (deprecated in MySQL) is dropped",
       "double unsigned"),
    _r("bit", "bit({n})", "bits", "string", CONVERTED,
       "PostgreSQL bit(n) is the same fixed-width bit string; travels as '0'/'1' text", "bit(8)", "text"),
    # -- character strings: the driver hands over UTF-8 whatever the column's charset.
    _r("char", "char({n})", "text", "string", CONVERTED,
       "n counts characters in both; trailing blanks are insignificant in both", "char(3)"),
    _r("varchar", "varchar({n})", "text", "string", CONVERTED, "n counts characters in both", "varchar(45)"),
    _r("tinytext", "text", "text", "string", CONVERTED, "PostgreSQL text has no small length cap", "tinytext"),
    _r("text", "text", "text", "string", CONVERTED, "same unbounded text", "text"),
    _r("mediumtext", "text", "text", "string", CONVERTED, "text holds up to 1 GB", "mediumtext"),
    _r("longtext", "text", "text", "string", CONVERTED,
       "text holds up to 1 GB; a larger value is refused at load, never truncated", "longtext"),
    # -- binary strings.
    _r("binary", "bytea", "binary", "binary", CHANGED,
       "no fixed-width bytes in PostgreSQL; the zero padding MySQL stored stays part of the value", "binary(16)"),
    _r("varbinary", "bytea", "binary", "binary", CONVERTED, "bytes as they are; the length cap is not enforced",
       "varbinary(255)"),
    _r("tinyblob", "bytea", "binary", "binary", CONVERTED, "bytes as they are", "tinyblob"),
    _r("blob", "bytea", "binary", "binary", CONVERTED, "bytes as they are", "blob"),
    _r("mediumblob", "bytea", "binary", "binary", CONVERTED, "bytes as they are", "mediumblob"),
    _r("longblob", "bytea", "binary", "binary", CONVERTED,
       "bytea holds up to 1 GB; a larger value is refused at load, never truncated", "longblob"),
    # -- enumerations and sets.
    _r("enum", "{enum}", "enum", "string", CHANGED,
       "becomes CREATE TYPE … AS ENUM with the same labels in the same (sort) order; the '' MySQL stores for "
       "invalid values outside strict mode is refused", "enum('G','PG','PG-13')"),
    _r("set", "text[]", "array", "string", CHANGED,
       "no SET type; members become a text[] (split on ',', which no member can contain); membership is not "
       "enforced", "set('Trailers','Commentaries')", "text"),
    # -- dates and times.  Zero dates are the one value class PostgreSQL cannot take (see zero_dates).
    _r("year", "smallint", "integer", "int16", CHANGED, "no YEAR type; 1901..2155 and 0 fit smallint", "year(4)"),
    _r("date", "date", "date", "date32", CONVERTED, "1000-01-01..9999-12-31 fits PostgreSQL date", "date"),
    _r("datetime", "timestamp({fsp})", "timestamp", "timestamp[us]", CONVERTED,
       "wall-clock time without zone in both; same fractional digits", "datetime"),
    _r("timestamp", "timestamptz({fsp})", "timestamptz", "timestamp[us, tz=UTC]", CONVERTED,
       "an instant in both (MySQL stores UTC); read with time_zone '+00:00'", "timestamp"),
    _r("time", "time({fsp})", "time", "string", CHANGED,
       "MySQL TIME is a duration (-838:59:59..838:59:59): values outside 00:00..24:00 are refused at load "
       "(time_as: interval keeps them)", "time", "text"),
    _r("time/interval", "interval", "interval", "string", CHANGED,
       "time_as: interval: every MySQL TIME value, negative or beyond 24 h, is an interval", "time", "text"),
    # -- documents, identifiers, networks.
    _r("json", "jsonb", "json", "string", CHANGED,
       "jsonb normalises whitespace and key order and keeps the last of duplicate keys", "json", "text"),
    _r("uuid", "uuid", "uuid", "string", CONVERTED, "MariaDB UUID is the same 128-bit value", "uuid", "text"),
    _r("inet4", "inet", "network", "string", CONVERTED, "inet holds every IPv4 address", "inet4", "text"),
    _r("inet6", "inet", "network", "string", CONVERTED, "inet holds every IPv6 address", "inet6", "text"),
    # -- spatial: the geometry travels as WKB (SRID separately), which both PostGIS and bytea take.
    _r("geometry", "bytea", "geometry", "binary", CHANGED,
       "no PostGIS on the target: stored as WKB bytea (SRID dropped); set postgis: true where PostGIS is "
       "installed", "geometry"),
    _r("geometry/postgis", "geometry({shape})", "geometry", "binary", CONVERTED,
       "PostGIS geometry from the same WKB", "point"),
)
# fmt: on

BY_SOURCE: dict[str, TypeRule] = {r.source: r for r in RULES}

# Names MySQL accepts in DDL but never prints in COLUMN_TYPE, and MySQL 8 spellings: folded before lookup.
_ALIASES = {
    "integer": "int",
    "int1": "tinyint",
    "int2": "smallint",
    "int3": "mediumint",
    "int4": "int",
    "int8": "bigint",
    "middleint": "mediumint",
    "dec": "decimal",
    "numeric": "decimal",
    "fixed": "decimal",
    "real": "double",
    "double precision": "double",
    "float4": "float",
    "float8": "double",
    "character varying": "varchar",
    "character": "char",
    "nchar": "char",
    "nvarchar": "varchar",
    "national char": "char",
    "national varchar": "varchar",
    "long": "mediumtext",
    "long varchar": "mediumtext",
    "long varbinary": "mediumblob",
    "bool": "tinyint",
    "boolean": "tinyint",
}

SPATIAL_SHAPES: dict[str, str] = {
    "geometry": "",
    "point": "Point",
    "linestring": "LineString",
    "polygon": "Polygon",
    "multipoint": "MultiPoint",
    "multilinestring": "MultiLineString",
    "multipolygon": "MultiPolygon",
    "geometrycollection": "GeometryCollection",
    "geomcollection": "GeometryCollection",
}

_INTEGERS = ("tinyint", "smallint", "mediumint", "int", "bigint")
_UNSIGNED_RULES = (*_INTEGERS, "decimal", "float", "double")
ZERO_DATE_TYPES = ("date", "datetime", "timestamp")  # may hold zero dates
_CASE_INSENSITIVE = re.compile(r"_ci$|_ai_ci$")
_UTF8 = ("utf8mb4", "utf8mb3", "utf8", "ascii")


@dataclass
class ParsedType:
    """COLUMN_TYPE taken apart: ``decimal(5,2) unsigned zerofill`` → decimal, ['5', '2'], unsigned, zerofill."""

    name: str
    args: list[str] = field(default_factory=list)  # numbers, or enum/set labels (unquoted)
    unsigned: bool = False
    zerofill: bool = False


_TYPE_RE = re.compile(r"^\s*([a-z][a-z0-9 ]*?)\s*(?:\((.*)\))?\s*((?:unsigned|signed|zerofill|\s)*)$", re.I | re.S)
_LABEL_RE = re.compile(r"'((?:[^'\\]|''|\\.)*)'", re.S)


def parse_column_type(column_type: str) -> ParsedType:
    """Take COLUMN_TYPE apart.  Labels of enum/set come back unquoted (``''`` → ``'``)."""
    m = _TYPE_RE.match(column_type)
    if not m:
        raise ValueError(f"cannot parse MySQL column type {column_type!r}")
    name = " ".join(m.group(1).lower().split())
    name = _ALIASES.get(name, name)
    inner = m.group(2)
    mods = m.group(3).lower().split()
    if inner is None:
        args: list[str] = []
    elif name in ("enum", "set"):
        args = [_unquote(x) for x in _LABEL_RE.findall(inner)]
    else:
        args = [a.strip() for a in inner.split(",")]
    return ParsedType(name, args, "unsigned" in mods or "zerofill" in mods, "zerofill" in mods)


def _unquote(label: str) -> str:
    return re.sub(r"''|\\(.)", lambda m: "'" if m.group(0) == "''" else m.group(1), label)


def rule_key(parsed: ParsedType, settings: TypeSettings, *, is_json: bool = False) -> str:
    """Which row of :data:`RULES` a parsed column type falls under (may name no row: unmapped)."""
    name = parsed.name
    if is_json:
        return "json"  # MariaDB's JSON is LONGTEXT + CHECK (json_valid(col)): the check says what it is
    if name == "tinyint" and parsed.args == ["1"] and not parsed.unsigned and settings.tinyint1_as_boolean:
        return "tinyint(1)"
    if name in SPATIAL_SHAPES:
        return "geometry/postgis" if settings.postgis else "geometry"
    if name == "time" and settings.time_as == "interval":
        return "time/interval"
    if parsed.unsigned and name in _UNSIGNED_RULES:
        return f"{name} unsigned"
    return name


def enum_type_name(table: str, column: str) -> str:
    """The PostgreSQL enum type a column gets: ``<table>_<column>``, as pgloader names it (folded later
    with every other identifier, issue 5)."""
    return f"{table}_{column}"


def map_column(
    column_type: str,
    *,
    table: str = "",
    column: str = "",
    nullable: bool = True,
    charset: str | None = None,
    collation: str | None = None,
    is_json: bool = False,
    on_update_current_timestamp: bool = False,
    srid: int | None = None,
    settings: TypeSettings | None = None,
) -> ColumnMapping:
    """Map one column, given its exact COLUMN_TYPE and the facts around it that change the report.

    Never raises on an unknown type: it comes back with ``rule=None``, target ``text`` and a
    "needs action" note, so one odd column does not hide the assessment of all the others.
    """
    settings = settings or TypeSettings()
    parsed = parse_column_type(column_type)
    rule = BY_SOURCE.get(rule_key(parsed, settings, is_json=is_json))
    if rule is None:
        return ColumnMapping(
            column_type,
            "text",
            "text",
            "string",
            "text",
            None,
            [Note(ACTION, f"no mapping for MySQL type {column_type!r}: choose a PostgreSQL type (read as text)")],
            read_as="CAST({col} AS CHAR)",
        )
    nums = [a for a in parsed.args if a.isdigit()]
    fsp = int(nums[0]) if nums and parsed.name in ("datetime", "timestamp", "time") else 0
    p = int(nums[0]) if nums else 10  # MySQL's DECIMAL defaults to (10,0)
    s = int(nums[1]) if len(nums) > 1 else 0
    values = {
        "p": p,
        "s": s,
        "n": int(nums[0]) if nums else 1,  # char / binary / bit default to length 1
        "fsp": fsp,
        "enum": enum_type_name(table, column),
        "shape": SPATIAL_SHAPES.get(parsed.name, ""),
    }
    target = rule.target.format(**values)
    if target.endswith("()"):  # geometry() → geometry: a generic PostGIS column
        target = target[:-2]
    arrow = rule.arrow.format(**values)
    if p > 38 and arrow.startswith("decimal128"):  # Arrow's 128-bit decimal stops at 38 digits
        arrow = arrow.replace("decimal128", "decimal256")
    mapping = ColumnMapping(
        column_type, target, rule.logical, arrow, rule.transfer, rule, [Note(rule.status, rule.reason)]
    )
    _refine(mapping, parsed, nullable, charset, collation, on_update_current_timestamp, srid, settings)
    if rule.logical == "enum":
        mapping.enum_type = target
        mapping.enum_labels = tuple(parsed.args)
    return mapping


def _refine(
    mapping: ColumnMapping,
    parsed: ParsedType,
    nullable: bool,
    charset: str | None,
    collation: str | None,
    on_update: bool,
    srid: int | None,
    settings: TypeSettings,
) -> None:
    """Per-column notes and read expressions that depend on more than the type name."""
    notes, name = mapping.notes, parsed.name
    assert mapping.rule is not None
    key = mapping.rule.source
    if parsed.zerofill:
        notes.append(Note(CHANGED, "ZEROFILL is display only: the leading zeros are not kept"))
    if charset and mapping.logical_type == "text":
        if charset.lower() not in _UTF8:
            notes.append(Note(CONVERTED, f"charset {charset} is transcoded to UTF-8"))
        if collation and _CASE_INSENSITIVE.search(collation):
            notes.append(
                Note(CONVERTED, f"collation {collation} is case-insensitive; PostgreSQL compares case-sensitively")
            )
    if name in ZERO_DATE_TYPES:
        cond = "{col} IS NOT NULL AND (MONTH({col}) = 0 OR DAYOFMONTH({col}) = 0)"
        if settings.zero_dates == "refuse":
            notes.append(Note(CONVERTED, "a zero date ('0000-00-00' or a zero month/day) stops the load"))
        elif nullable:
            mapping.read_as = f"IF({cond}, NULL, {{col}})"
            notes.append(
                Note(
                    CONVERTED,
                    "zero dates ('0000-00-00', zero month/day), if any, load as NULL and are "
                    "counted (zero_dates: null)",
                )
            )
        else:
            notes.append(Note(CONVERTED, "NOT NULL: a zero date here cannot become NULL and stops the load"))
    if on_update:
        notes.append(
            Note(ACTION, "ON UPDATE CURRENT_TIMESTAMP has no column form in PostgreSQL: needs a BEFORE UPDATE trigger")
        )
    if key == "bit":
        mapping.read_as = f"LPAD(BIN({{col}}), {parsed.args[0] if parsed.args else 1}, '0')"
    elif key in ("time", "time/interval", "json", "set", "uuid", "inet4", "inet6"):
        mapping.read_as = "CAST({col} AS CHAR)"
    elif key.startswith("geometry"):
        mapping.read_as = "ST_AsBinary({col})"
        if srid and key == "geometry/postgis":
            mapping.target_type = f"geometry({SPATIAL_SHAPES[name] or 'Geometry'},{srid})"
        elif srid:
            notes.append(Note(CHANGED, f"SRID {srid} is lost with the bytea form"))
