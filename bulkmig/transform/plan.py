"""Per table, what the data-changing DMS rules do — decided once, at plan time, and written into the plan
(``Table.transform``) so every extraction agent and the loader do exactly the same thing.

Why at plan time: every rule that cannot be honoured is refused before a row is read, in one line naming the
rule (a mask on a key column, an expression bulkmig cannot evaluate as SQLite does, a hash that would not fit
its column), and agents on other hosts never re-read the table mappings.

``Table.transform`` holds (each key only when some rule applies):

- ``masks``: ``[{"column", "action", "value", "rule"}]`` in rule order (DMS lets masks stack);
- ``added``: ``[{"name", "expression", "data_type", "pg_type", "arrow_type", "rule", "deterministic"}]``;
- ``types``: ``[{"column", "pg_type", "rule"}]`` (change-data-type);
- ``primary_key``: ``{"name", "origin", "columns", "rule"}`` (define-primary-key; columns as the load names them);
- ``table_tablespace`` / ``index_tablespace``: ``{"tablespace", "rule"}`` (+ ``"indexes"`` for the latter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from bulkmig.config.mapping_rules import MASKING_ACTIONS, TABLESPACE_TARGETS, Pattern, TransformationRule
from bulkmig.config.mappings import Mappings
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Column, Table
from bulkmig.transform import masking
from bulkmig.transform.expressions import compile_expression
from bulkmig.transform.types import DataType, accepts, family

# (the table's tablespace, [(index, its tablespace)]) on the source; "pg_default" when it has none of its own.
Catalog = Callable[[Table], tuple[str, list[tuple[str, str]]]]
# Honoured with CDC too: tablespaces are DDL only; masks are applied by capture as by extract (transform.changes).
# add-column is computed by capture too, for tables with a primary key (transform.changes).
CDC_OK = ("table-tablespace", "index-tablespace", "add-column", *MASKING_ACTIONS)

# Full load has no change header: what the $AR_H_* variables are for its rows (DMS documents them for CDC;
# chosen here, as Qlik Replicate does for its same-named headers: the operation of a loaded row is INSERT).
FULL_LOAD_HEADERS: dict[str, object] = {
    "AR_H_OPERATION": "INSERT",
    "AR_H_STREAM_POSITION": "",
    "AR_H_CHANGE_SEQ": None,
    "AR_H_TRANSACTION_ID": None,
    "AR_H_USER": None,
}
TIME_HEADERS = ("AR_H_TIMESTAMP", "AR_H_COMMIT_TIMESTAMP")  # the snapshot's time, set by extract from the plan


def constants(table: Table, taken_at: str = "") -> dict[str, object]:
    """The ``$AR_M_*`` and ``$AR_H_*`` values an expression of ``table`` sees in a full load."""
    when = taken_at.replace("T", " ")[:19]
    return {
        "AR_M_SOURCE_SCHEMA": table.schema,
        "AR_M_SOURCE_TABLE_NAME": table.name,
        **FULL_LOAD_HEADERS,
        **dict.fromkeys(TIME_HEADERS, when),
    }


def expression_types(table: Table) -> dict[str, str]:
    """Source column -> the Arrow type an expression reads it as (text-travelled columns are text)."""
    return {c.name: _expression_type(c) for c in table.copied_columns}


def _expression_type(c: Column) -> str:
    if c.logical_type == "decimal":  # travels as exact text, is a number to SQLite
        return "decimal"
    return "string" if c.transfer != "native" else c.arrow_type


def refuse_data_rules(mappings: Mappings, why: str, allowed: Iterable[str] = ()) -> None:
    """One line naming the first data-changing rule when this migration cannot honour them (``why``)."""
    for rule in mappings.data_rules:
        if rule.action not in allowed and rule.target not in allowed:
            what = rule.action if rule.action != "rename" else f"rename of {rule.target}"
            raise ConfigError(
                f"transformation rule {rule.rule_name!r} ({what}) is not honoured {why} yet",
                "remove the rule for this task, or migrate in two steps (full load with the rule, then the rest)",
            )


def build(mappings: Mappings, tables: list[Table], catalog: Catalog | None = None, *, cdc: bool = False) -> None:
    """Fill ``Table.transform`` of every table from the data-changing rules; refuses, in one line, a rule that
    cannot be honoured, and a rule that matches no selected table (a typo moves data unmasked)."""
    rules = mappings.data_rules
    if not rules:
        return
    used: set[int] = set()
    for table in tables:
        # A partition follows the rules of its partitioned table too (DMS users name the table they see).
        root = table.parent.partition(".")[2] if table.kind == "partition" and table.parent else None
        mine = [r for r in rules if r.matches(table.schema, table.name) or (root and r.matches(table.schema, root))]
        if not mine:
            continue
        if root and (other := [r for r in mine if r.action not in MASKING_ACTIONS]):
            raise ConfigError(
                f"transformation rule {other[0].rule_name!r} ({other[0].action}) on partition {table.qualified} of "
                f"{table.parent}: only masking is honoured on partitioned tables yet",
                "apply that step on the target after the migration, or remove the rule",
            )
        if root and cdc and (leaf_only := [r for r in mine if not r.matches(table.schema, root)]):
            raise ConfigError(
                f"transformation rule {leaf_only[0].rule_name!r} masks partition {table.qualified} but not its "
                f"partitioned table {table.parent}: captured changes come under {table.parent}'s name",
                f"name {table.parent} in the rule's object-locator (it covers every partition)",
            )
        wants_spaces = any(r.target in TABLESPACE_TARGETS for r in mine)
        spaces = catalog(table) if catalog and wants_spaces else ("pg_default", [])
        out = _table_plan(table, mine, spaces, used)
        if cdc and out.get("added"):
            _check_cdc_added(mappings, table, out["added"])
        table.transform = out
    unused = [r.rule_name for r in rules if r.rule_id not in used]
    if unused:
        raise ConfigError(
            f"transformation rule {', '.join(map(repr, unused))} matches no column or table of the selected tables",
            "fix its object-locator (names are case-sensitive) or remove the rule",
        )


def _table_plan(
    table: Table, rules: list[TransformationRule], spaces: tuple[str, list[tuple[str, str]]], used: set[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    columns = {c.name: c for c in table.columns}
    types: dict[str, str] = {}
    for r in rules:
        if r.action == "change-data-type":
            for c in _columns(r, table, used):
                dt: DataType = r.extra["data-type"]
                types[c.name] = dt.pg()
                out.setdefault("types", []).append({"column": c.name, "pg_type": dt.pg(), "rule": r.rule_name})
    for r in rules:
        if r.action in MASKING_ACTIONS:
            for c in _columns(r, table, used):
                _check_mask(r, table, c, types.get(c.name))
                out.setdefault("masks", []).append(
                    {"column": c.name, "action": r.action, "value": r.value, "rule": r.rule_name}
                )
    taken = {c.name for c in table.columns} | {c.target for c in table.columns}
    for r in rules:
        if r.action != "add-column":
            continue
        used.add(r.rule_id)
        out.setdefault("added", []).append(_added(r, table, taken))
        taken.add(str(r.value))
    for r in rules:
        if r.action == "define-primary-key":
            used.add(r.rule_id)
            out["primary_key"] = _primary_key(r, table, columns, out.get("added", []))
        elif r.target == "table-tablespace":
            if Pattern(str(r.extra.get("table-tablespace-name", "%"))).matches(spaces[0]):
                used.add(r.rule_id)
                out["table_tablespace"] = {"tablespace": r.value, "rule": r.rule_name}
        elif r.target == "index-tablespace":
            pattern = Pattern(str(r.extra.get("index-tablespace-name", "%")))
            indexes = [name for name, space in spaces[1] if pattern.matches(space)]
            if indexes:
                used.add(r.rule_id)
                out["index_tablespace"] = {"tablespace": r.value, "indexes": indexes, "rule": r.rule_name}
    return out


def _check_cdc_added(mappings: Mappings, table: Table, added: list[dict[str, Any]]) -> None:
    """With CDC, capture computes the added columns of each change: the expressions must compile over the
    change header too, and the table needs a primary key (replay pairs a change's row by it)."""
    from bulkmig.transform.changes import added_for

    if not table.primary_key:
        raise ConfigError(
            f"transformation rule {added[0]['rule']!r} adds a column to {table.qualified}, which has no primary key: "
            "not honoured in CDC (replay could not pair its rows)",
            "add a primary key on the source, or migrate this table with migration_type full-load",
        )
    columns = [c for c in table.copied_columns]
    added_for(mappings, table.schema, table.name, [c.name for c in columns], [c.source_type for c in columns])


def _columns(rule: TransformationRule, table: Table, used: set[int]) -> list[Column]:
    hits = [c for c in table.columns if rule.column is not None and rule.column.matches(c.name)]
    if hits:
        used.add(rule.rule_id)
    return hits


def _refuse(rule: TransformationRule, table: Table, what: str, hint: str) -> ConfigError:
    return ConfigError(f"transformation rule {rule.rule_name!r} on {table.qualified}: {what}", hint)


def _check_mask(rule: TransformationRule, table: Table, column: Column, new_type: str | None) -> None:
    """Masks write text: only into a text column, never a key (validation and replay pair rows by it), and
    a hash (64 characters) only where it fits."""
    if column.generated:
        raise _refuse(rule, table, f"{column.name} is a generated column", "mask the columns it is computed from")
    if column.name in table.primary_key:
        raise _refuse(
            rule, table, f"{column.name} is part of the primary key", "mask non-key columns (rows are paired by key)"
        )
    if column.logical_type != "text" or column.transfer != "native":
        raise _refuse(
            rule,
            table,
            f"{column.name} is {column.source_type}, not a text column",
            "mask text columns, or change-data-type it to string first",
        )
    if rule.action == masking.HASH_MASK:
        m = re.search(r"\((\d+)\)", new_type or column.source_type)
        if m and int(m.group(1)) < masking.HASH_LENGTH:
            raise _refuse(
                rule,
                table,
                f"{column.name} is {new_type or column.source_type}: the 64-character hash does not fit",
                f'add a change-data-type rule: {{"type": "string", "length": 64}} for {column.name}',
            )


def _added(rule: TransformationRule, table: Table, taken: set[str]) -> dict[str, Any]:
    name = str(rule.value)
    if name in taken:
        raise _refuse(rule, table, f"column {name} already exists", "give the added column a name of its own")
    dt: DataType = rule.extra["data-type"]
    if family(dt) is None:
        raise _refuse(rule, table, f"data-type {dt.type} cannot be computed", "use string, int*, real*, numeric, ...")
    expression = rule.extra.get("expression")
    deterministic = True
    if expression is not None:
        compiled = compile_expression(expression, rule.rule_name, expression_types(table), constants(table))
        if not accepts(dt, compiled.kind):
            raise _refuse(
                rule,
                table,
                f"the expression gives {compiled.kind} values, not {dt.type}",
                "CAST the expression, or change the rule's data-type",
            )
        deterministic = compiled.deterministic
    return {
        "name": name,
        "expression": expression,
        "data_type": dt.to_dict(),
        "pg_type": dt.pg(),
        "arrow_type": dt.arrow(),
        "rule": rule.rule_name,
        "deterministic": deterministic,
    }


def _primary_key(
    rule: TransformationRule, table: Table, columns: dict[str, Column], added: list[dict[str, Any]]
) -> dict[str, Any]:
    """The key's columns named as they are when the load creates it (the source's names, renamed later)."""
    pk = rule.extra["primary-key-def"]
    by_target = {c.target: c.name for c in columns.values()}
    names = []
    for given in pk["columns"]:
        found = by_target.get(given) or (given if given in columns else None)
        if found is None and any(a["name"] == given for a in added):
            found = given
        if found is None:
            raise _refuse(rule, table, f"primary-key-def names {given!r}, not a column", "name the table's columns")
        names.append(found)
    target = table.target_qualified[1]
    return {"name": pk["name"] or f"{target}_pkey", "origin": pk["origin"], "columns": names, "rule": rule.rule_name}


def added_columns(table: Table) -> list[Column]:
    """The columns add-column rules add, as plan columns (what load's COPY lists after the copied ones)."""
    return [
        Column(a["name"], a["pg_type"], "added", a["arrow_type"], transfer=_transfer(a))
        for a in table.transform.get("added", [])
    ]


def _transfer(added: dict[str, Any]) -> str:
    """Numeric values travel as their text (exact); the rest natively."""
    return "text" if added["pg_type"].startswith("numeric") else "native"


def masked(table: Table) -> dict[str, list[str]]:
    """Column -> the mask actions on it, in order."""
    out: dict[str, list[str]] = {}
    for m in table.transform.get("masks", []):
        out.setdefault(m["column"], []).append(m["action"])
    return out
