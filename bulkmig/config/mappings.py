"""AWS DMS table mappings: which tables move, which rows, and under which names they land.

A DMS user's existing table-mapping JSON (``{"rules": [...]}``) must work here unchanged, so this
module reads the DMS format itself rather than a look-alike: ``selection`` rules with ``%``/``_``/
``[...]`` wildcards, ``load-order`` and source ``filters``; ``transformation`` rules that rename,
re-case, prefix/suffix, remove or include; ``table-settings`` rules (parallel-load, LOB modes), which
decide a table's parts and refuse a LOB limit that would cut a value (:mod:`bulkmig.config.table_settings`).
The rules that change data (``add-column``, ``change-data-type``, ``define-primary-key``, data masking,
tablespace renames) are checked here and run by :mod:`bulkmig.transform`.  What bulkmig cannot honour yet
(``add-before-image-columns``) is refused when the file is read, never skipped: a migration that quietly
ignores a masking rule or an added column is worse than one that stops at once.  Rules that only tune DMS itself
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

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmig.config import table_settings as tsettings
from bulkmig.config.mapping_parse import (
    RULE_TYPES,
    _enum,
    _int,
    _other_rule_warning,
    _parse_selection,
    _parse_transformation,
    _Problems,
    _rule_label,
)
from bulkmig.config.mapping_rules import (
    COLUMN_SET_ACTIONS,
    RENAME_ACTIONS,
    UNSUPPORTED_ACTIONS,
    OtherRule,
    Pattern,
    Selection,
    SelectionRule,
    TransformationRule,
    apply_rules,
    refuse_duplicates,
)
from bulkmig.config.reading import parse_json, read_text
from bulkmig.config.table_settings import TableSettingsRule
from bulkmig.core.errors import ConfigError

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
        doc = parse_json(text, origin, 'fix the table-mapping JSON (a DMS document: {"rules": [...]})')
        return cls.from_doc(doc, origin, allow_unsupported=allow_unsupported)

    @classmethod
    def load(cls, path: Path, *, allow_unsupported: bool = False) -> Mappings:
        hint = "fix table_mappings in the task file (a path relative to the task file)"
        text = read_text(path, "table mappings", hint)
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
                if trule.action in UNSUPPORTED_ACTIONS:
                    if allow_unsupported:
                        unsupported.append(trule)
                    else:
                        p.add(
                            label,
                            f"{trule.action} is not supported yet (bulkmig refuses rather than ignore it); "
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

    @property
    def data_rules(self) -> list[TransformationRule]:
        """The rules that change data, types, keys or tablespaces (:mod:`bulkmig.transform`), in rule order."""
        return [r for r in self.transformations if r.changes_data]

    # ---------------------------------------------------------------------------------------- names

    def _renamed(self, name: str, rules: Iterable[TransformationRule]) -> str:
        return apply_rules(name, rules)

    def target_schema_name(self, schema: str) -> str:
        rules = [
            r for r in self.transformations if r.target == "schema" and r.action in RENAME_ACTIONS and r.matches(schema)
        ]
        return self._renamed(schema, rules)

    def target_table_name(self, schema: str, table: str) -> tuple[str, str]:
        """(schema, table) on the target for a source table."""
        rules = [
            r
            for r in self.transformations
            if r.target == "table" and r.action in RENAME_ACTIONS and r.matches(schema, table)
        ]
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
                    **({"extra": _jsonable_extra(t.extra)} if t.extra else {}),
                }
            )
        out.extend(r.canonical() for r in self.table_settings if r.parallel_load is not None)
        return out


def _jsonable_extra(extra: Any) -> dict[str, Any]:
    return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in dict(extra).items()}


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float | bool) else str(v)
