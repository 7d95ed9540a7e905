"""The value scan: count, per column, the MySQL values the conversion changes or refuses, so the assessment
report says how many there are and where the first one is, before a byte moves (issue 5 §5).

The type map (:mod:`.types`) decides per type what happens to the values PostgreSQL cannot hold; only the
data says whether a column holds any.  Three value classes are counted:

- zero dates (``'0000-00-00…'``, or a zero month or day) in DATE/DATETIME/TIMESTAMP columns: loaded as
  NULL with ``zero_dates: null`` in a nullable column (converted with changes), else refused by extract
  (needs action);
- values other than 0 and 1 in a tinyint(1) mapped to boolean: refused (needs action);
- ENUM index 0, the ``''`` MySQL stores for an invalid value outside strict mode: refused when ``''`` is no
  label (needs action), else loaded as that label (converted with changes).

One query per table counts every such column at once (``COUNT(CASE …)``) with the smallest offending
primary key where the key is one column; a composite key is looked up afterwards for the offending columns
only (``ORDER BY key LIMIT 1``).  Run it inside the catalog's consistent snapshot so the counts describe
the data the plan moves.  ``settings.scan_values: false`` skips it: it reads every row of those tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bulkmig.core.canonical import key_text
from bulkmig.core.catalog import ACTION, CHANGED, Catalog, CatalogColumn, CatalogTable, Note
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.reflect import Connection, quote_ident


@dataclass(frozen=True)
class Scope:
    """What of a table moves: its row filter (a WHERE fragment in MySQL SQL) and the source columns that
    stay behind (the task's mappings).  Values outside it are not counted: they never reach the target."""

    where: str | None = None
    removed: frozenset[str] = frozenset()


@dataclass
class _Check:
    """One counted value class of one column: the SQL condition and the note its count becomes."""

    column: CatalogColumn
    condition: str  # true for an offending value (NULL for NULL: the CASE skips it)
    note: Callable[[int, str], Note]  # (count, ", first at key (7)" or "") -> the column's note


def scan_values(
    conn: Connection,
    catalog: Catalog,
    settings: types.TypeSettings,
    scopes: Mapping[str, Scope] | None = None,
) -> None:
    """Add a note with the count and first key to every column that holds values the conversion changes or
    refuses.  ``scopes`` names the tables to scan (the task's selection) with their filters; None scans
    every table whole.  Does nothing when ``settings.scan_values`` is off."""
    if not settings.scan_values:
        return
    for ct in catalog.tables:
        if scopes is not None and ct.table.name not in scopes:
            continue
        scope = scopes[ct.table.name] if scopes is not None else Scope()
        checks = [
            check
            for c in ct.columns
            if c.generated is None and c.name not in scope.removed
            for check in _checks(c, settings)
        ]
        if checks:
            _scan_table(conn, catalog.schema, ct, checks, scope.where)


def _checks(c: CatalogColumn, settings: types.TypeSettings) -> list[_Check]:
    """The value classes this column can hold that its mapping changes or refuses."""
    m = c.mapping
    if m.rule is None:
        return []
    q = quote_ident(c.name)
    parsed = types.parse_column_type(c.column_type)
    if parsed.name in types.ZERO_DATE_TYPES:
        return [_Check(c, f"MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0", lambda n, at: _zero_date_note(c, settings, n, at))]
    if m.rule.source == "tinyint(1)":
        return [_Check(c, f"{q} NOT IN (0, 1)", _tinyint_note)]
    if m.logical_type == "enum":
        # In a numeric context an ENUM is its index; the invalid value '' is index 0, a real '' label is not.
        return [_Check(c, f"{q} + 0 = 0", lambda n, at: _enum_note(c, n, at))]
    return []


def _zero_date_note(c: CatalogColumn, settings: types.TypeSettings, n: int, at: str) -> Note:
    what = f"{n} zero date{'s' if n != 1 else ''}"
    if not c.nullable:
        return Note(
            ACTION,
            f"{what}{at}, in a NOT NULL column that cannot take them as NULL: extract stops at the first one; fix: "
            "UPDATE them to real dates on the source, or make the column nullable there "
            "(zero_dates: null then loads them as NULL)",
        )
    if settings.zero_dates == "refuse":
        return Note(
            ACTION,
            f"{what}{at}: extract stops at the first one (zero_dates: refuse); fix: UPDATE them to real dates or "
            "NULL on the source, or set settings.mysql.zero_dates: null to load them as NULL",
        )
    return Note(CHANGED, f"{what} load{'s' if n == 1 else ''} as NULL (zero_dates: null){at}")


def _tinyint_note(n: int, at: str) -> Note:
    return Note(
        ACTION,
        f"{n} value{'s' if n != 1 else ''} other than 0 and 1{at}, cannot become boolean: extract stops at the "
        "first one; fix: settings.mysql.tinyint1_as_boolean: false (keeps smallint), or UPDATE them to 0/1 on "
        "the source",
    )


def _enum_note(c: CatalogColumn, n: int, at: str) -> Note:
    what = f"{n} invalid ENUM value{'s' if n != 1 else ''} ('' stored outside strict mode){at}"
    if "" in c.mapping.enum_labels:
        verb = "loads" if n == 1 else "load"
        return Note(CHANGED, f"{what}, {verb} as the label '' (the column also has '' as a real label)")
    return Note(
        ACTION,
        f"{what}: the PostgreSQL enum has no such label, so extract stops at the first one; fix: UPDATE them to "
        "a valid label or NULL on the source",
    )


def _scan_table(conn: Connection, schema: str, ct: CatalogTable, checks: list[_Check], where: str | None) -> None:
    """One query for every check of the table; a second, per offending check, only for a composite key."""
    source = f"{quote_ident(schema)}.{quote_ident(ct.table.name)}"
    key = [quote_ident(k) for k in ct.table.primary_key]
    exprs = []
    for check in checks:
        exprs.append(f"COUNT(CASE WHEN {check.condition} THEN 1 END)")
        if len(key) == 1:
            exprs.append(f"MIN(CASE WHEN {check.condition} THEN {key[0]} END)")
    filter_sql = f" WHERE ({where})" if where else ""
    row = list(_one(conn, f"SELECT {', '.join(exprs)} FROM {source}{filter_sql}"))
    for check in checks:
        count = int(row.pop(0))
        first: tuple[Any, ...] | None = (row.pop(0),) if len(key) == 1 else None
        if not count:
            continue
        if len(key) > 1:
            cond = f"({check.condition})" + (f" AND ({where})" if where else "")
            order = ", ".join(key)
            first = _one(conn, f"SELECT {order} FROM {source} WHERE {cond} ORDER BY {order} LIMIT 1")
        at = f", first at key {key_text(first)}" if first else ""
        check.column.mapping.notes.append(check.note(count, at))


def _one(conn: Connection, sql: str) -> tuple[Any, ...]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        row = cur.fetchone()
        return tuple(row) if row is not None else ()
    finally:
        cur.close()
