"""AWS DMS table mappings: which tables move, which rows, and under which names they land.

A DMS user's existing table-mapping JSON (``{"rules": [...]}``) must work here unchanged, so this
module reads the DMS format itself rather than a look-alike: ``selection`` rules with ``%``/``_``/
``[...]`` wildcards, ``load-order`` and source ``filters``; ``transformation`` rules that rename,
re-case, prefix/suffix, remove or include; ``table-settings`` rules (parallel-load, LOB modes), which
decide a table's parts and refuse a LOB limit that would cut a value (:mod:`bulkmig.config.table_settings`).
What bulkmig cannot honour yet (``add-column``, ``change-data-type``, ``define-primary-key``, data
masking, ...) is refused when the file is read, never skipped: a migration that quietly ignores a masking
rule or an added column is worse than one that stops at once.  Rules that only tune DMS itself
(``post-processing`` S3 tags) change no data, so they are accepted and reported in ``warnings``.

Semantics chosen where the DMS documentation is silent or contradictory (see docs/design.md):

- Matching is case-sensitive, as in DMS.  ``explicit`` names exactly one object, without wildcards.
- Exclude wins over include (and over explicit): bulkmig never moves data the mappings exclude.
- A table matched by several include/explicit rules gets the AND of all their filters and the
  highest ``load-order`` (a higher value loads first, as in DMS); tables without one load at 0.
- Transformation rules apply in ascending numeric ``rule-id`` order.  Their ``object-locator``
  always matches the *source* names; each action rewrites the name produced by the previous ones.
  (DMS documents "one action per object" yet its own examples stack rules; this order makes the
  stacking well defined: rename schema HR, then lower-case HR's tables, then prefix AUDIT% works.)
- ``include-column`` makes a column list exclusive: once any include-column rule matches a table,
  that table keeps only the columns some include-column rule names (this is how public DMS files
  use it).  ``remove-column`` wins over ``include-column``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkmig.config import table_settings as tsettings
from bulkmig.config.table_settings import TableSettingsRule
from bulkmig.core.errors import ConfigError

QuoteFn = Callable[[str], str]
LiteralFn = Callable[[Any], str]

SELECTION_ACTIONS = ("include", "exclude", "explicit")
TABLE_TYPES = ("table", "view", "all")

# filter-operator -> number of values it takes.  `ste` is DMS's alias of `lte`.
FILTER_OPERATORS: dict[str, int] = {
    "lte": 1,
    "ste": 1,
    "gte": 1,
    "eq": 1,
    "noteq": 1,
    "between": 2,
    "notbetween": 2,
    "null": 0,
    "notnull": 0,
}
NEGATIVE_OPERATORS = frozenset({"noteq", "notbetween", "notnull"})

RENAME_ACTIONS = (
    "rename",
    "convert-lowercase",
    "convert-uppercase",
    "add-prefix",
    "remove-prefix",
    "replace-prefix",
    "add-suffix",
    "remove-suffix",
    "replace-suffix",
)
COLUMN_SET_ACTIONS = ("remove-column", "include-column")
# Parsed and validated so the message can be precise, then refused (unless allow_unsupported).
UNSUPPORTED_ACTIONS = (
    "add-column",
    "change-data-type",
    "define-primary-key",
    "add-before-image-columns",
    "data-masking-digits-mask",
    "data-masking-digits-randomize",
    "data-masking-hash-mask",
)
TRANSFORMATION_ACTIONS = RENAME_ACTIONS + COLUMN_SET_ACTIONS + UNSUPPORTED_ACTIONS
TRANSFORMATION_TARGETS = ("schema", "table", "column", "table-tablespace", "index-tablespace")
# Actions that need `value` (the new name, prefix or suffix).
NEEDS_VALUE = frozenset(
    {"rename", "add-prefix", "remove-prefix", "replace-prefix", "add-suffix", "remove-suffix", "replace-suffix"}
)
NEEDS_OLD_VALUE = frozenset({"replace-prefix", "replace-suffix"})

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


# --------------------------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class Pattern:
    """A DMS object-locator name: ``%`` any run, ``_`` one character, ``[_]`` a literal underscore,
    ``[ab]`` a set, ``[a-d]`` a range.  ``literal`` patterns (explicit rules) match the exact name."""

    text: str
    literal: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.text, self.literal)

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None

    @property
    def is_exact(self) -> bool:
        """True when the pattern names one object (no wildcard at all)."""
        return self.literal or not any(ch in self.text for ch in "%_[")


_REGEX_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def _compile(text: str, literal: bool) -> re.Pattern[str]:
    key = (text, literal)
    cached = _REGEX_CACHE.get(key)
    if cached is not None:
        return cached
    if literal:
        rx = re.compile(re.escape(text), re.DOTALL)
    else:
        out: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "%":
                out.append(".*")
            elif ch == "_":
                out.append(".")
            elif ch == "[" and (end := text.find("]", i + 2)) != -1:
                # [..] is a set; '-' between two characters is a range.  An unclosed '[' is literal.
                body = text[i + 1 : end]
                parts: list[str] = []
                j = 0
                while j < len(body):
                    if j + 2 < len(body) and body[j + 1] == "-":
                        parts.append(f"{re.escape(body[j])}-{re.escape(body[j + 2])}")
                        j += 3
                    else:
                        parts.append(re.escape(body[j]))
                        j += 1
                out.append("[" + "".join(parts) + "]")
                i = end
            else:
                out.append(re.escape(ch))
            i += 1
        rx = re.compile("".join(out), re.DOTALL)
    _REGEX_CACHE[key] = rx
    return rx


# ---------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class FilterCondition:
    """One ``filter-conditions`` entry.  Values stay as written in the JSON (DMS writes strings):
    a string literal compares correctly against numbers and dates on the SQL side, a Python int
    would not against a text column."""

    operator: str  # canonical: `ste` is stored as `lte`
    value: Any = None
    start_value: Any = None
    end_value: Any = None

    def to_sql(self, column_sql: str, quote_literal: LiteralFn) -> str:
        op = self.operator
        if op == "null":
            return f"{column_sql} IS NULL"
        if op == "notnull":
            return f"{column_sql} IS NOT NULL"
        if op in ("between", "notbetween"):
            neg = "NOT " if op == "notbetween" else ""
            lo, hi = quote_literal(self.start_value), quote_literal(self.end_value)
            return f"{column_sql} {neg}BETWEEN {lo} AND {hi}"
        sym = {"lte": "<=", "gte": ">=", "eq": "=", "noteq": "<>"}[op]
        return f"{column_sql} {sym} {quote_literal(self.value)}"


@dataclass(frozen=True)
class Filter:
    """A source filter on one column: its conditions combine with OR (DMS semantics)."""

    column: str
    conditions: tuple[FilterCondition, ...]

    def to_sql(self, quote_ident: QuoteFn, quote_literal: LiteralFn) -> str:
        col = quote_ident(self.column)
        parts = [c.to_sql(col, quote_literal) for c in self.conditions]
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def filters_where_sql(filters: Iterable[Filter], quote_ident: QuoteFn, quote_literal: LiteralFn) -> str | None:
    """The WHERE fragment (without ``WHERE``) for ``filters``: filters AND, conditions OR.

    Engine-neutral: the caller passes its identifier and literal quoting, so the same rules render
    for PostgreSQL, MySQL or SQLite.  ``None`` when there is nothing to filter.
    """
    parts = [f.to_sql(quote_ident, quote_literal) for f in filters]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " AND ".join(p if p.startswith("(") else f"({p})" for p in parts)


# ---------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class SelectionRule:
    rule_id: int
    rule_name: str
    action: str  # include | exclude | explicit
    schema: Pattern
    table: Pattern
    table_type: str = "table"
    load_order: int = 0
    filters: tuple[Filter, ...] = ()

    def matches(self, schema: str, table: str, kind: str = "table") -> bool:
        if self.table_type != "all" and kind != self.table_type:
            return False
        return self.schema.matches(schema) and self.table.matches(table)


@dataclass(frozen=True)
class TransformationRule:
    rule_id: int
    rule_name: str
    action: str
    target: str  # schema | table | column | table-tablespace | index-tablespace
    schema: Pattern
    table: Pattern | None = None
    column: Pattern | None = None
    value: str | None = None
    old_value: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)  # expression, data-type, ... (unsupported)

    def matches(self, schema: str, table: str | None = None, column: str | None = None) -> bool:
        if not self.schema.matches(schema):
            return False
        if self.table is not None and table is not None and not self.table.matches(table):
            return False
        return not (self.column is not None and column is not None and not self.column.matches(column))

    def apply(self, name: str) -> str:
        """The name after this rule's action (only for RENAME_ACTIONS)."""
        a, v, old = self.action, self.value or "", self.old_value or ""
        if a == "rename":
            return v
        if a == "convert-lowercase":
            return name.lower()
        if a == "convert-uppercase":
            return name.upper()
        if a == "add-prefix":
            return v + name
        if a == "add-suffix":
            return name + v
        if a == "remove-prefix":
            return name[len(v) :] if name.startswith(v) else name
        if a == "remove-suffix":
            return name[: -len(v)] if v and name.endswith(v) else name
        if a == "replace-prefix":
            return v + name[len(old) :] if name.startswith(old) else name
        if a == "replace-suffix":
            return name[: -len(old)] + v if old and name.endswith(old) else name
        raise AssertionError(f"{a} does not rename")


@dataclass(frozen=True)
class OtherRule:
    """A rule bulkmig accepts but does not act on (post-processing, validation)."""

    rule_id: int
    rule_name: str
    rule_type: str
    doc: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Selection:
    """One selected source table (or view) and how to read it."""

    schema: str
    table: str
    filters: tuple[Filter, ...] = ()
    load_order: int = 0
    rules: tuple[str, ...] = ()  # names of the include/explicit rules that selected it
    kind: str = "table"  # table | view

    def where_sql(self, quote_ident: QuoteFn, quote_literal: LiteralFn) -> str | None:
        """This table's row filter as a WHERE fragment, or None when every row moves."""
        return filters_where_sql(self.filters, quote_ident, quote_literal)


# ------------------------------------------------------------------------------------------- parsing


class _Problems:
    """Collects every problem in a document so the user fixes them in one pass, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}" if where else problem)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _enum(raw: Any, choices: Collection[str], what: str, where: str, problems: _Problems) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        problems.add(where, f"{what} is missing or not a string (one of: {', '.join(choices)})")
        return None
    value = raw.strip().lower()
    if value not in choices:
        problems.add(where, f"unknown {what} {raw!r}{_did_you_mean(value, choices)}; one of: {', '.join(choices)}")
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
            problems.add(where, f"unknown key {key!r}{_did_you_mean(str(key), known)}")


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
    if action in UNSUPPORTED_ACTIONS or target in ("table-tablespace", "index-tablespace"):
        return _parse_unsupported(doc, loc, rid, name, action, target, where, p)
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
    return TransformationRule(
        rid,
        name,
        action,
        target,
        Pattern(schema),
        Pattern(table) if table is not None else None,
        Pattern(column) if column is not None else None,
        value if isinstance(value, str) else None,
        old_value if isinstance(old_value, str) else None,
    )


def _parse_unsupported(
    doc: Mapping[str, Any],
    loc: Mapping[str, Any],
    rid: int,
    name: str,
    action: str,
    target: str,
    where: str,
    p: _Problems,
) -> TransformationRule:
    """A rule bulkmig will refuse (or only report): kept whole, checked only for what an assessment
    report needs, so the one message the user sees is "not supported yet", not a locator detail."""
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
    return TransformationRule(
        rid,
        name,
        action,
        target,
        pattern("schema-name") or Pattern("%"),
        pattern("table-name"),
        pattern("column-name"),
        _opt_str(doc.get("value")) if isinstance(_opt_str(doc.get("value")), str) else None,
        _opt_str(doc.get("old-value")) if isinstance(_opt_str(doc.get("old-value")), str) else None,
        extra,
    )


# ------------------------------------------------------------------------------------------ mappings


@dataclass(frozen=True)
class Mappings:
    """A parsed DMS table-mapping document.  Build with ``from_doc``/``load``/``default``."""

    selection_rules: tuple[SelectionRule, ...]
    transformations: tuple[TransformationRule, ...] = ()
    other_rules: tuple[OtherRule, ...] = ()
    unsupported: tuple[TransformationRule, ...] = ()  # only non-empty with allow_unsupported=True
    warnings: tuple[str, ...] = ()
    is_default: bool = False
    table_settings: tuple[TableSettingsRule, ...] = ()  # one per table (several rules on a table are merged)

    # ----------------------------------------------------------------------------------- construction

    @classmethod
    def default(cls) -> Mappings:
        """Everything: the DMS rule ``include %.%``.  The engine's reflection leaves out system schemas."""
        rule = SelectionRule(1, "include-all", "include", Pattern("%"), Pattern("%"))
        return cls((rule,), is_default=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "table mappings", *, allow_unsupported: bool = False) -> Mappings:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{origin}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                'fix the table-mapping JSON (a DMS document: {"rules": [...]})',
            ) from None
        return cls.from_doc(doc, origin, allow_unsupported=allow_unsupported)

    @classmethod
    def load(cls, path: Path, *, allow_unsupported: bool = False) -> Mappings:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read table mappings {path}: {exc.strerror or exc}",
                "fix table_mappings in the task file (a path relative to the task file)",
            ) from None
        return cls.from_json(text, str(path), allow_unsupported=allow_unsupported)

    @classmethod
    def from_doc(cls, doc: Any, origin: str = "table mappings", *, allow_unsupported: bool = False) -> Mappings:
        """Parse a DMS table-mapping document, reporting every problem in it at once.

        ``allow_unsupported`` keeps rules bulkmig cannot run in ``unsupported`` instead of refusing
        them; only for reports (assessment) — a migration must never run with them ignored.
        """
        hint = 'fix the table mappings (AWS DMS format: {"rules": [...]}; see examples/mappings.json)'
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
            raise ConfigError(f'{origin}: expected an object with a "rules" list', hint)
        p = _Problems()
        selections: list[SelectionRule] = []
        transformations: list[TransformationRule] = []
        others: list[OtherRule] = []
        unsupported: list[TransformationRule] = []
        warnings: list[str] = []
        settings_rules: list[TableSettingsRule] = []
        seen_ids: dict[int, str] = {}
        seen_names: set[str] = set()
        for index, rdoc in enumerate(doc["rules"], 1):
            label = _rule_label(rdoc, index)
            if not isinstance(rdoc, dict):
                p.add(label, "a rule must be a JSON object")
                continue
            rtype = _enum(rdoc.get("rule-type"), RULE_TYPES, "rule-type", label, p)
            rid = _int(rdoc.get("rule-id"), "rule-id", label, p) if "rule-id" in rdoc else None
            if "rule-id" not in rdoc:
                p.add(label, 'rule-id is missing (a unique number, e.g. "1")')
            raw_name = rdoc.get("rule-name")
            name = str(raw_name) if raw_name not in (None, "") else (str(rid) if rid is not None else f"#{index}")
            if rid is not None:
                if rid in seen_ids:
                    p.add(label, f"rule-id {rid} is used twice (also by rule {seen_ids[rid]!r}); rule-ids are unique")
                seen_ids[rid] = name
            if name in seen_names:
                p.add(label, "rule-name is used twice; rule-names are unique")
            seen_names.add(name)
            if rtype is None or rid is None:
                continue
            if rtype == "selection":
                rule = _parse_selection(rdoc, rid, name, label, p)
                if rule is not None:
                    selections.append(rule)
            elif rtype == "transformation":
                trule = _parse_transformation(rdoc, rid, name, label, p)
                if trule is None:
                    continue
                if trule.action in UNSUPPORTED_ACTIONS or trule.target in ("table-tablespace", "index-tablespace"):
                    if allow_unsupported:
                        unsupported.append(trule)
                    else:
                        what = trule.action if trule.action in UNSUPPORTED_ACTIONS else f"rule-target {trule.target}"
                        p.add(
                            label,
                            f"{what} is not supported yet (bulkmig refuses rather than ignore it); "
                            "remove the rule, or do this step on the target after the migration",
                        )
                else:
                    transformations.append(trule)
            elif rtype == "table-settings":
                srule = tsettings.parse_rule(rdoc, rid, name, label, p.add)
                if srule is not None:
                    settings_rules.append(srule)
            elif rtype == "object-mapping":
                p.add(label, "object-mapping rules are for DynamoDB/Kinesis/Kafka targets; remove it")
            else:
                others.append(OtherRule(rid, name, rtype, rdoc))
                warnings.append(_other_rule_warning(label, rtype, rdoc))
        merged = tsettings.merge(settings_rules, p.add)
        if not selections and not p.items:
            p.add("", "no selection rule: add at least one (e.g. include schema-name '%', table-name '%')")
        if p.items:
            raise ConfigError(f"{origin}: " + "; ".join(p.items), hint)
        transformations.sort(key=lambda r: r.rule_id)
        selections.sort(key=lambda r: r.rule_id)
        return cls(
            tuple(selections),
            tuple(transformations),
            tuple(sorted(others, key=lambda r: r.rule_id)),
            tuple(sorted(unsupported, key=lambda r: r.rule_id)),
            tuple(warnings),
            table_settings=tuple(merged.values()),
        )

    # ------------------------------------------------------------------------------------- selection

    def select(self, tables: Iterable[tuple[str, str]], views: Iterable[tuple[str, str]] = ()) -> list[Selection]:
        """The source objects that move, highest load-order first (then by name, for a stable plan)."""
        out: list[Selection] = []
        candidates = [(s, t, "table") for s, t in tables] + [(s, t, "view") for s, t in views]
        for schema, table, kind in dict.fromkeys(candidates):
            chosen = [r for r in self.selection_rules if r.matches(schema, table, kind)]
            if not chosen or any(r.action == "exclude" for r in chosen):
                continue
            includes = [r for r in chosen if r.action != "exclude"]
            out.append(
                Selection(
                    schema,
                    table,
                    tuple(f for r in includes for f in r.filters),
                    max(r.load_order for r in includes),
                    tuple(r.rule_name for r in includes),
                    kind,
                )
            )
        out.sort(key=lambda s: (-s.load_order, s.schema, s.table))
        return out

    def select_or_refuse(self, tables: Iterable[tuple[str, str]]) -> list[Selection]:
        """:meth:`select`, refusing what would silently move the wrong thing: a rule matching nothing in
        the source (a typo, a case mismatch) or a selection of no table at all."""
        tables = list(tables)
        unmatched = self.selection_rules_matching_nothing(tables)
        if unmatched:
            raise ConfigError(
                f"selection rule {', '.join(repr(r) for r in unmatched)} matches no table in the source",
                "fix the schema-name/table-name in the table mappings (wildcards: % and _)",
            )
        chosen = self.select(tables)
        if not chosen:
            raise ConfigError("the table mappings select no table", "check the selection rules")
        return chosen

    def selection_rules_matching_nothing(
        self, tables: Iterable[tuple[str, str]], views: Iterable[tuple[str, str]] = ()
    ) -> list[str]:
        """Names of include/explicit rules that match no object: almost always a typo or a case
        mismatch (DMS matching is case-sensitive), which would otherwise silently move nothing."""
        objs = [(s, t, "table") for s, t in tables] + [(s, t, "view") for s, t in views]
        return [
            r.rule_name
            for r in self.selection_rules
            if r.action != "exclude" and not any(r.matches(s, t, k) for s, t, k in objs)
        ]

    def case_insensitive_matches(self, rule_name: str, tables: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Tables a rule would match if matching ignored case: the hint for "matches no table"."""
        rule = next((r for r in self.selection_rules if r.rule_name == rule_name), None)
        if rule is None:
            return []
        s_rx = re.compile(rule.schema.regex.pattern, re.DOTALL | re.IGNORECASE)
        t_rx = re.compile(rule.table.regex.pattern, re.DOTALL | re.IGNORECASE)
        return [(s, t) for s, t in tables if s_rx.fullmatch(s) and t_rx.fullmatch(t)]

    def table_settings_for(self, schema: str, table: str, parent: str | None = None) -> TableSettingsRule | None:
        """The table-settings of a source table; a partition leaf (``parent``: ``schema.root``) has its root's."""
        for rule in self.table_settings:
            if rule.schema == schema and rule.table == table:
                return rule
        if parent:
            root_schema, _, root = parent.partition(".")
            return self.table_settings_for(root_schema, root)
        return None

    # ---------------------------------------------------------------------------------------- names

    def _renamed(self, name: str, rules: Iterable[TransformationRule]) -> str:
        return apply_rules(name, rules)

    def target_schema_name(self, schema: str) -> str:
        rules = [r for r in self.transformations if r.target == "schema" and r.matches(schema)]
        return self._renamed(schema, rules)

    def target_table_name(self, schema: str, table: str) -> tuple[str, str]:
        """(schema, table) on the target for a source table."""
        rules = [r for r in self.transformations if r.target == "table" and r.matches(schema, table)]
        return self.target_schema_name(schema), self._renamed(table, rules)

    def target_column_name(self, schema: str, table: str, column: str) -> str:
        rules = [
            r
            for r in self.transformations
            if r.target == "column" and r.action in RENAME_ACTIONS and r.matches(schema, table, column)
        ]
        return self._renamed(column, rules)

    def removed_columns(self, schema: str, table: str, columns: Iterable[str]) -> set[str]:
        """Source columns that do not move: remove-column, or not named by include-column."""
        cols = list(columns)
        on_table = [r for r in self.transformations if r.action in COLUMN_SET_ACTIONS and r.matches(schema, table)]
        removed = {c for c in cols for r in on_table if r.action == "remove-column" and r.matches(schema, table, c)}
        includes = [r for r in on_table if r.action == "include-column"]
        if includes:
            removed |= {c for c in cols if not any(r.matches(schema, table, c) for r in includes)}
        return removed

    def target_columns(self, schema: str, table: str, columns: Iterable[str]) -> dict[str, str]:
        """Kept source column -> target column name, in source order; refuses two columns landing
        on one name (DMS cannot merge objects either)."""
        cols = list(columns)
        removed = self.removed_columns(schema, table, cols)
        out = {c: self.target_column_name(schema, table, c) for c in cols if c not in removed}
        refuse_duplicates(f"table {schema}.{table}: columns", out)
        return out

    def check_target_tables(self, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
        """Source -> target name for ``tables``; refuses two source tables landing on one target."""
        mapping = {src: self.target_table_name(*src) for src in tables}
        by_target: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for src, dst in mapping.items():
            by_target.setdefault(dst, []).append(src)
        clashes = {dst: srcs for dst, srcs in by_target.items() if len(srcs) > 1}
        if clashes:
            desc = "; ".join(
                f"{', '.join(f'{s}.{t}' for s, t in srcs)} -> {ds}.{dt}" for (ds, dt), srcs in clashes.items()
            )
            raise ConfigError(
                f"transformation rules send several source tables to one target table: {desc}",
                "make the table rules give every selected table its own target name",
            )
        return mapping

    # ----------------------------------------------------------------------------------- canonical

    def canonical(self) -> list[dict[str, Any]]:
        """A normalised, name-free description of what the rules do, for the task fingerprint:
        rewording a rule-name or reformatting the JSON does not change it; changing a rule does."""
        out: list[dict[str, Any]] = []
        for r in self.selection_rules:
            out.append(
                {
                    "type": "selection",
                    "id": r.rule_id,
                    "action": r.action,
                    "schema": r.schema.text,
                    "table": r.table.text,
                    "table_type": r.table_type,
                    "load_order": r.load_order,
                    "filters": [
                        {
                            "column": f.column,
                            "conditions": [
                                [c.operator, _jsonable(c.value), _jsonable(c.start_value), _jsonable(c.end_value)]
                                for c in f.conditions
                            ],
                        }
                        for f in r.filters
                    ],
                }
            )
        for t in self.transformations:
            out.append(
                {
                    "type": "transformation",
                    "id": t.rule_id,
                    "action": t.action,
                    "target": t.target,
                    "schema": t.schema.text,
                    "table": t.table.text if t.table else None,
                    "column": t.column.text if t.column else None,
                    "value": t.value,
                    "old_value": t.old_value,
                }
            )
        out.extend(r.canonical() for r in self.table_settings if r.parallel_load is not None)
        return out


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float | bool) else str(v)


def _other_rule_warning(label: str, rtype: str, doc: Mapping[str, Any]) -> str:
    if rtype == "post-processing":
        return f"{label}: post-processing (S3 object tags) ignored: bulkmig does not tag objects yet"
    return f"{label}: {rtype} rule ignored: bulkmig validates with its own row hash comparison"


def apply_rules(name: str, rules: Iterable[TransformationRule]) -> str:
    """``name`` after each rename rule in turn (DMS applies them in rule order); an empty result is an error."""
    for rule in rules:
        new = rule.apply(name)
        if not new:
            raise ConfigError(
                f"transformation rule {rule.rule_name!r} turns {name!r} into an empty name",
                "fix its value/old-value in the table mappings",
            )
        name = new
    return name


def refuse_duplicates(what: str, mapping: dict[str, str]) -> None:
    """Refuse two source objects that the rules send to one target name (DMS cannot merge objects either)."""
    by_target: dict[str, list[str]] = {}
    for src, dst in mapping.items():
        by_target.setdefault(dst, []).append(src)
    clashes = {dst: srcs for dst, srcs in by_target.items() if len(srcs) > 1}
    if clashes:
        desc = "; ".join(f"{', '.join(map(repr, srcs))} -> {dst!r}" for dst, srcs in clashes.items())
        raise ConfigError(
            f"{what} land on one target name: {desc}",
            "change the transformation rules so every target name is unique",
        )
