"""Reading the rules of a DMS table-mapping document, collecting every problem in it at once.

Why it collects instead of raising: DMS users bring long files written for another tool, so each run
names every unknown key, bad operator and missing value with where it is (``rule 'x', filter 2``),
not one per run.  The values built are those of :mod:`bulkmig.config.mapping_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bulkmig.config.data_types import mask_character_problem, parse_data_type
from bulkmig.config.mapping_rules import (
    COLUMN_SET_ACTIONS,
    DATA_ACTIONS,
    DIGITS_MASK,
    FILTER_OPERATORS,
    MASKING_ACTIONS,
    NEEDS_OLD_VALUE,
    NEEDS_VALUE,
    NEGATIVE_OPERATORS,
    SELECTION_ACTIONS,
    TABLE_TYPES,
    TABLESPACE_TARGETS,
    TRANSFORMATION_ACTIONS,
    TRANSFORMATION_TARGETS,
    UNSUPPORTED_ACTIONS,
    Filter,
    FilterCondition,
    Pattern,
    SelectionRule,
    TransformationRule,
)
from bulkmig.config.reading import did_you_mean

RULE_TYPES = ("selection", "transformation", "table-settings", "post-processing", "validation", "object-mapping")

_COMMON_KEYS = ("rule-type", "rule-id", "rule-name", "rule-action", "object-locator")
_SELECTION_KEYS = frozenset(_COMMON_KEYS + ("load-order", "filters"))
_TRANSFORMATION_KEYS = frozenset(
    _COMMON_KEYS
    + (
        "rule-target",
        "value",
        "old-value",
        "expression",
        "data-type",
        "primary-key-def",
        "before-image-def",
    )
)
_LOCATOR_KEYS = frozenset(
    {"schema-name", "table-name", "column-name", "table-type", "table-tablespace-name", "index-tablespace-name"}
)
_FILTER_KEYS = frozenset({"filter-type", "column-name", "filter-conditions"})
_CONDITION_KEYS = frozenset({"filter-operator", "value", "start-value", "end-value"})


# ------------------------------------------------------------------------------------------- parsing


class _Problems:
    """Collects every problem in a document so the user fixes them in one pass, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}" if where else problem)


def _enum(raw: Any, choices: Collection[str], what: str, where: str, problems: _Problems) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        problems.add(where, f"{what} is missing or not a string (one of: {', '.join(choices)})")
        return None
    value = raw.strip().lower()
    if value not in choices:
        problems.add(where, f"unknown {what} {raw!r}{did_you_mean(value, choices)}; one of: {', '.join(choices)}")
        return None
    return value


def _int(raw: Any, what: str, where: str, problems: _Problems) -> int | None:
    """DMS writes numbers as JSON strings ("rule-id": "1"); accept both forms."""
    if isinstance(raw, bool):
        problems.add(where, f"{what} must be a number, not {raw!r}")
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    problems.add(where, f'{what} must be a number (e.g. "1"), not {raw!r}')
    return None


def _name(raw: Any, what: str, where: str, problems: _Problems) -> str | None:
    if raw is None:
        problems.add(where, f"object-locator needs {what}")
        return None
    if not isinstance(raw, str) or raw == "":
        problems.add(where, f"{what} must be a non-empty string, not {raw!r}")
        return None
    return raw


def _opt_str(raw: Any) -> str | None:
    """`value`/`old-value` as DMS consoles write them: null and the string "null" both mean unset."""
    if raw is None or raw == "null":
        return None
    return str(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw


def _unknown_keys(doc: Mapping[str, Any], known: Collection[str], where: str, problems: _Problems) -> None:
    for key in doc:
        if key not in known:
            problems.add(where, f"unknown key {key!r}{did_you_mean(str(key), known)}")


def _parse_filters(raw: Any, where: str, problems: _Problems) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(where, "filters must be a list")
        return ()
    out: list[Filter] = []
    for i, fdoc in enumerate(raw, 1):
        fwhere = f"{where}, filter {i}"
        if not isinstance(fdoc, dict):
            problems.add(fwhere, "a filter must be an object with filter-type, column-name, filter-conditions")
            continue
        _unknown_keys(fdoc, _FILTER_KEYS, fwhere, problems)
        if fdoc.get("filter-type", "source") != "source":
            problems.add(fwhere, f"filter-type {fdoc.get('filter-type')!r} is not supported (only 'source')")
        column = fdoc.get("column-name")
        if not isinstance(column, str) or not column:
            problems.add(fwhere, "column-name is missing")
            continue
        fwhere = f"{where}, filter on {column!r}"
        conds_raw = fdoc.get("filter-conditions")
        if not isinstance(conds_raw, list) or not conds_raw:
            problems.add(fwhere, "filter-conditions must be a non-empty list")
            continue
        conds: list[FilterCondition] = []
        negatives = 0
        for cdoc in conds_raw:
            cond = _parse_condition(cdoc, fwhere, problems)
            if cond is not None:
                conds.append(cond)
                negatives += cond.operator in NEGATIVE_OPERATORS
        if negatives > 1:
            problems.add(fwhere, "only one negative operator (noteq, notbetween, notnull) is allowed per filter")
        if len(conds) == len(conds_raw):
            out.append(Filter(column, tuple(conds)))
    return tuple(out)


def _parse_condition(cdoc: Any, where: str, problems: _Problems) -> FilterCondition | None:
    if not isinstance(cdoc, dict):
        problems.add(where, "a filter condition must be an object with filter-operator")
        return None
    _unknown_keys(cdoc, _CONDITION_KEYS, where, problems)
    op = _enum(cdoc.get("filter-operator"), tuple(FILTER_OPERATORS), "filter-operator", where, problems)
    if op is None:
        return None
    arity = FILTER_OPERATORS[op]
    op = "lte" if op == "ste" else op

    def value(key: str) -> Any:
        v = cdoc.get(key)
        if v is None or isinstance(v, dict | list) or (isinstance(v, str) and v == ""):
            problems.add(where, f"filter-operator {op!r} needs {key!r} (a string or number)")
            return None
        return v

    if arity == 0:
        stray = [k for k in ("value", "start-value", "end-value") if cdoc.get(k) not in (None, "")]
        if stray:
            problems.add(where, f"filter-operator {op!r} takes no value (remove {', '.join(stray)})")
            return None
        return FilterCondition(op)
    if arity == 1:
        v = value("value")
        return None if v is None else FilterCondition(op, value=v)
    lo, hi = value("start-value"), value("end-value")
    return None if lo is None or hi is None else FilterCondition(op, start_value=lo, end_value=hi)


def _rule_label(doc: Mapping[str, Any], index: int) -> str:
    name = doc.get("rule-name") if isinstance(doc, Mapping) else None
    rid = doc.get("rule-id") if isinstance(doc, Mapping) else None
    if name not in (None, ""):
        return f"rule {str(name)!r}"
    if rid not in (None, ""):
        return f"rule-id {rid}"
    return f"rule #{index}"


def _parse_selection(doc: Mapping[str, Any], rid: int, name: str, where: str, p: _Problems) -> SelectionRule | None:
    _unknown_keys(doc, _SELECTION_KEYS, where, p)
    action = _enum(doc.get("rule-action"), SELECTION_ACTIONS, "rule-action", where, p)
    loc = doc.get("object-locator")
    if not isinstance(loc, dict):
        p.add(where, "object-locator must be an object with schema-name and table-name")
        return None
    _unknown_keys(loc, _LOCATOR_KEYS, f"{where}, object-locator", p)
    schema = _name(loc.get("schema-name"), "schema-name", where, p)
    table = _name(loc.get("table-name"), "table-name", where, p)
    table_type = _enum(loc.get("table-type", "table"), TABLE_TYPES, "table-type", where, p)
    load_order = 0
    if doc.get("load-order") not in (None, ""):
        lo = _int(doc.get("load-order"), "load-order", where, p)
        load_order = lo if lo is not None else 0
    filters = _parse_filters(doc.get("filters"), where, p)
    if action == "exclude" and filters:
        p.add(where, "filters only apply to include rules (DMS ignores them on exclude); remove them here")
    if action == "explicit" and schema is not None and table is not None and ("%" in schema or "%" in table):
        p.add(where, "explicit names one table exactly and takes no wildcard; use rule-action include for '%'")
    if action is None or schema is None or table is None or table_type is None:
        return None
    literal = action == "explicit"
    return SelectionRule(
        rid, name, action, Pattern(schema, literal), Pattern(table, literal), table_type, load_order, filters
    )


@dataclass(frozen=True)
class _RuleHead:
    """A transformation rule's id, name, action and target, read before its kind's own checks, and where it
    stands in the document (for messages): each kind's parser builds its TransformationRule with :meth:`rule`."""

    rid: int
    name: str
    action: str
    target: str
    where: str

    def rule(
        self,
        schema: Pattern,
        table: Pattern | None,
        column: Pattern | None,
        value: str | None,
        old_value: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> TransformationRule:
        return TransformationRule(
            self.rid, self.name, self.action, self.target, schema, table, column, value, old_value, extra or {}
        )


def _parse_transformation(
    doc: Mapping[str, Any], rid: int, name: str, where: str, p: _Problems
) -> TransformationRule | None:
    action = _enum(doc.get("rule-action"), TRANSFORMATION_ACTIONS, "rule-action", where, p)
    target = _enum(doc.get("rule-target"), TRANSFORMATION_TARGETS, "rule-target", where, p)
    if action is None or target is None:
        return None
    if action not in UNSUPPORTED_ACTIONS:
        # Keys of rules bulkmig does not run are left alone: the action itself is what gets refused.
        _unknown_keys(doc, _TRANSFORMATION_KEYS, where, p)
    loc = doc.get("object-locator")
    if not isinstance(loc, dict):
        p.add(where, "object-locator must be an object (schema-name, table-name, column-name)")
        return None
    head = _RuleHead(rid, name, action, target, where)
    if action in UNSUPPORTED_ACTIONS:
        return _parse_unsupported(doc, loc, head, p)
    if action in DATA_ACTIONS or target in TABLESPACE_TARGETS:
        return _parse_data_rule(doc, loc, head, p)
    _unknown_keys(loc, _LOCATOR_KEYS, f"{where}, object-locator", p)
    schema = _name(loc.get("schema-name"), "schema-name", where, p)
    table: str | None = None
    column: str | None = None
    if target == "schema":
        if loc.get("table-name") not in (None, "%"):
            p.add(where, "a schema rule applies to the whole schema; remove table-name from its object-locator")
    else:
        table = _name(loc.get("table-name"), "table-name", where, p)
    if target == "column":
        column = _name(loc.get("column-name"), "column-name", where, p)
    if action in COLUMN_SET_ACTIONS and target != "column":
        p.add(where, f"{action} needs rule-target 'column', not {target!r}")
    value, old_value = _opt_str(doc.get("value")), _opt_str(doc.get("old-value"))
    if action in NEEDS_VALUE and (not isinstance(value, str) or value == ""):
        p.add(where, f"{action} needs a non-empty 'value' (the new name, prefix or suffix)")
    if action in NEEDS_OLD_VALUE and (not isinstance(old_value, str) or old_value == ""):
        p.add(where, f"{action} needs 'old-value' (the prefix or suffix to replace)")
    if schema is None or (target != "schema" and table is None) or (target == "column" and column is None):
        return None
    return head.rule(
        Pattern(schema),
        Pattern(table) if table is not None else None,
        Pattern(column) if column is not None else None,
        value if isinstance(value, str) else None,
        old_value if isinstance(old_value, str) else None,
    )


# The rule-target each data action takes (DMS: masking and column changes at column level, keys per table).
_DATA_TARGETS = {"add-column": "column", "change-data-type": "column", "define-primary-key": "table"} | {
    a: "column" for a in MASKING_ACTIONS
}


def _parse_data_rule(
    doc: Mapping[str, Any], loc: Mapping[str, Any], head: _RuleHead, p: _Problems
) -> TransformationRule | None:
    """A rule that changes data, a type, a key or a tablespace (:mod:`bulkmig.transform` runs it), checked
    here for everything that does not need the source's catalog."""
    action, target, where = head.action, head.target, head.where
    _unknown_keys(loc, _LOCATOR_KEYS, f"{where}, object-locator", p)
    schema = _name(loc.get("schema-name"), "schema-name", where, p)
    value = _opt_str(doc.get("value"))
    extra: dict[str, Any] = {}
    column: str | None = None
    table: str | None = "%"
    if target in TABLESPACE_TARGETS:
        if action != "rename":
            p.add(where, f"rule-target {target} takes rule-action rename (the new tablespace), not {action}")
        if not isinstance(value, str) or not value:
            p.add(where, "a tablespace rename needs 'value' (the target tablespace)")
        table = loc.get("table-name", "%") if isinstance(loc.get("table-name", "%"), str) else None
        key = f"{target}-name"
        extra[key] = loc.get(key) if isinstance(loc.get(key), str) and loc.get(key) else "%"
    else:
        want = _DATA_TARGETS[action]
        if target != want:
            p.add(where, f"{action} needs rule-target {want!r}, not {target!r}")
        table = _name(loc.get("table-name"), "table-name", where, p)
        if action in ("change-data-type",) or action in MASKING_ACTIONS:
            column = _name(loc.get("column-name"), "column-name", where, p)
        elif isinstance(loc.get("column-name"), str) and loc.get("column-name") not in ("", "%"):
            p.add(where, f"{action} applies to a table; remove column-name from its object-locator")
        if action in ("add-column", "change-data-type"):
            dt, problem = parse_data_type(doc.get("data-type"))
            if problem:
                p.add(where, f"{action} needs 'data-type': {problem}")
            extra["data-type"] = dt
        if action == "add-column":
            if not isinstance(value, str) or not value:
                p.add(where, "add-column needs 'value' (the new column's name)")
            expression = doc.get("expression")
            if expression is not None and not isinstance(expression, str):
                p.add(where, "expression must be a string (a SQLite expression)")
            extra["expression"] = expression if isinstance(expression, str) and expression.strip() else None
        if action == DIGITS_MASK and (problem := mask_character_problem(value)):
            p.add(where, f"{action} {problem}")
        if action == "define-primary-key":
            extra["primary-key-def"] = _primary_key_def(doc.get("primary-key-def"), where, p)
    if schema is None or table is None or (target == "column" and action in MASKING_ACTIONS and column is None):
        return None
    return head.rule(
        Pattern(schema),
        Pattern(table),
        Pattern(column) if column is not None else None,
        value if isinstance(value, str) else None,
        None,
        extra,
    )


def _primary_key_def(raw: Any, where: str, p: _Problems) -> dict[str, Any] | None:
    hint = '{"name": "pk_name", "origin": "primary-key", "columns": ["col1", "col2"]}'
    if not isinstance(raw, dict):
        p.add(where, f"define-primary-key needs 'primary-key-def', e.g. {hint}")
        return None
    _unknown_keys(raw, ("name", "origin", "columns"), f"{where}, primary-key-def", p)
    cols = raw.get("columns")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
        p.add(where, "primary-key-def needs 'columns': a non-empty list of column names")
        return None
    origin = raw.get("origin", "primary-key")
    if origin not in ("primary-key", "unique-index"):
        p.add(where, f"primary-key-def origin {origin!r} is not primary-key or unique-index")
        return None
    key_name = raw.get("name")
    if key_name is not None and (not isinstance(key_name, str) or not key_name):
        p.add(where, "primary-key-def name must be a non-empty string")
        return None
    return {"name": key_name, "origin": origin, "columns": list(cols)}


def _parse_unsupported(
    doc: Mapping[str, Any], loc: Mapping[str, Any], head: _RuleHead, p: _Problems
) -> TransformationRule:
    """A rule bulkmig will refuse (or only report): kept whole, checked only for what an assessment
    report needs, so the one message the user sees is "not supported yet", not a locator detail."""
    action, where = head.action, head.where
    if action == "add-column" and not doc.get("value"):
        p.add(where, "add-column needs 'value' (the new column's name)")
    if action == "change-data-type" and not isinstance(doc.get("data-type"), dict):
        p.add(where, 'change-data-type needs \'data-type\', e.g. {"type": "int8"}')

    def pattern(key: str) -> Pattern | None:
        v = loc.get(key)
        return Pattern(v) if isinstance(v, str) and v else None

    extra = {k: doc[k] for k in ("expression", "data-type", "primary-key-def", "before-image-def") if k in doc}
    for k in ("table-tablespace-name", "index-tablespace-name"):
        if k in loc:
            extra[k] = loc[k]
    return head.rule(
        pattern("schema-name") or Pattern("%"),
        pattern("table-name"),
        pattern("column-name"),
        _opt_str(doc.get("value")) if isinstance(_opt_str(doc.get("value")), str) else None,
        _opt_str(doc.get("old-value")) if isinstance(_opt_str(doc.get("old-value")), str) else None,
        extra,
    )


def _other_rule_warning(label: str, rtype: str, doc: Mapping[str, Any]) -> str:
    if rtype == "post-processing":
        return f"{label}: post-processing (S3 object tags) ignored: bulkmig does not tag objects yet"
    return f"{label}: {rtype} rule ignored: bulkmig validates with its own row hash comparison"
