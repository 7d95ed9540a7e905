"""The rules of a DMS table-mapping document, as bulkmig acts on them: object-locator patterns, source
filters (rendered as SQL for any engine), selection and transformation rules, and renaming by them.

Why a module of its own: these frozen values are what plan, extract and the name rules read; reading
them from the JSON (every problem at once) is :mod:`bulkmig.config.mapping_parse`, and the document as
a whole (which table moves, under which name) is :class:`bulkmig.config.mappings.Mappings`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
# Actions that change data or the target's definition (bulkmig.transform acts on them; PostgreSQL -> PostgreSQL).
DIGITS_MASK = "data-masking-digits-mask"
DIGITS_RANDOMIZE = "data-masking-digits-randomize"
HASH_MASK = "data-masking-hash-mask"
MASKING_ACTIONS = (DIGITS_MASK, DIGITS_RANDOMIZE, HASH_MASK)
DATA_ACTIONS = ("add-column", "change-data-type", "define-primary-key") + MASKING_ACTIONS
TABLESPACE_TARGETS = ("table-tablespace", "index-tablespace")
# Parsed and validated so the message can be precise, then refused (unless allow_unsupported).
UNSUPPORTED_ACTIONS = ("add-before-image-columns",)
TRANSFORMATION_ACTIONS = RENAME_ACTIONS + COLUMN_SET_ACTIONS + DATA_ACTIONS + UNSUPPORTED_ACTIONS
TRANSFORMATION_TARGETS = ("schema", "table", "column", "table-tablespace", "index-tablespace")
# Actions that need `value` (the new name, prefix or suffix).
NEEDS_VALUE = frozenset(
    {"rename", "add-prefix", "remove-prefix", "replace-prefix", "add-suffix", "remove-suffix", "replace-suffix"}
)
NEEDS_OLD_VALUE = frozenset({"replace-prefix", "replace-suffix"})


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
    # add-column: expression, data-type (a bulkmig.transform.types.DataType); change-data-type: data-type;
    # define-primary-key: primary-key-def; tablespace rules: table-tablespace-name / index-tablespace-name.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def changes_data(self) -> bool:
        """True for the rules :mod:`bulkmig.transform` acts on (data, types, keys, tablespaces), not names."""
        return self.action in DATA_ACTIONS or self.target in TABLESPACE_TARGETS

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
