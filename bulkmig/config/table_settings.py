"""AWS DMS ``table-settings`` rules: how one table is cut into parts (``parallel-load``) and how its LOBs move
(``lob-settings``), read from the user's table-mapping file unchanged.

Why they are honoured rather than ignored: a DMS user chose the segments of a big table on purpose (by its
partitions, or by ranges of an indexed column), and a limited LOB size is a promise about the data.  bulkmig
keeps both promises its own way, without ever losing or cutting a row:

- ``parallel-load`` decides the table's parts (:mod:`bulkmig.core.partitions` cuts them; the engines read
  partitions).  Unlike DMS, rows whose range columns are NULL are not dropped: they go to the last part.
- ``lob-settings`` ``limited`` with ``bulk-max-size`` (KB): DMS would truncate a longer value; bulkmig refuses
  the plan up front instead, naming the table, the column and the largest value's size.  ``unlimited`` is
  what bulkmig always does; ``none`` falls back to the task settings' LOB mode
  (:mod:`bulkmig.config.dms_settings`).

As in DMS, a table-settings rule names one table exactly: ``%`` is refused (DMS: "Exact schema and table
name required when using table settings rule"), and ``_`` is a plain character here, not a wildcard.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bulkmig.core.errors import ConfigError

PARALLEL_TYPES = ("partitions-auto", "subpartitions-auto", "partitions-list", "ranges", "none")
LOB_MODES = ("limited", "unlimited", "none")
MAX_RANGE_COLUMNS = 10  # DMS: "You can specify up to 10 columns"
KB = 1024

_RULE_KEYS = frozenset(
    {"rule-type", "rule-id", "rule-name", "rule-action", "object-locator", "parallel-load", "lob-settings"}
)
_PARALLEL_KEYS = frozenset({"type", "partitions", "subpartitions", "columns", "boundaries"})
# parallel-load keys DMS documents for MongoDB and Amazon DocumentDB sources only (autosegmentation).
_MONGO_KEYS = frozenset(
    {"number-of-partitions", "collection-count-from-metadata", "max-records-skip-per-page", "batch-size"}
)
_LOB_KEYS = frozenset({"mode", "bulk-max-size"})

AddProblem = Callable[[str, str], None]


@dataclass(frozen=True)
class ParallelLoad:
    """A ``parallel-load`` object: ``type`` and, by type, partition names or range columns and boundaries."""

    type: str
    partitions: tuple[str, ...] = ()
    subpartitions: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    boundaries: tuple[tuple[Any, ...], ...] = ()  # each one the upper bound of a part, as written (strings)

    @property
    def uses_partitions(self) -> bool:
        """True for the types that read the source's own partitions (the engine's business)."""
        return self.type in ("partitions-auto", "subpartitions-auto", "partitions-list")


@dataclass(frozen=True)
class LobLimit:
    """How a table's LOB columns move: ``full`` (whole values: bulkmig's only way of copying), ``limited`` to
    ``max_bytes`` (refused up front when a value is longer, as DMS would cut it), or ``excluded`` (DMS's
    ``SupportLobs: false``, which leaves LOB columns out: refused when a table has any)."""

    mode: str  # full | limited | excluded
    max_bytes: int | None = None
    origin: str = ""  # where it was set, for messages: "rule 'x' lob-settings", "TargetMetadata.LobMaxSize"


FULL = LobLimit("full")


@dataclass(frozen=True)
class TableSettingsRule:
    rule_id: int
    rule_name: str
    schema: str
    table: str
    parallel_load: ParallelLoad | None = None
    lob: LobLimit | None = None  # None: lob-settings absent or mode none (the task's LOB settings apply)

    def canonical(self) -> dict[str, Any]:
        """What the rule does, for the task fingerprint (the parts depend on it; the LOB limit does not)."""
        pl = self.parallel_load
        return {
            "type": "table-settings",
            "id": self.rule_id,
            "schema": self.schema,
            "table": self.table,
            "parallel_load": None
            if pl is None
            else {
                "type": pl.type,
                "partitions": list(pl.partitions),
                "subpartitions": list(pl.subpartitions),
                "columns": list(pl.columns),
                "boundaries": [[_jsonable(v) for v in b] for b in pl.boundaries],
            },
        }


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float | bool) else str(v)


def _unknown(doc: dict[str, Any], known: frozenset[str], where: str, add: AddProblem) -> None:
    for key in doc:
        if key not in known:
            add(where, f"unknown key {key!r}; allowed: {', '.join(sorted(known))}")


def _names(raw: Any, key: str, where: str, add: AddProblem) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        add(where, f"parallel-load {key} must be a list of partition names, not {raw!r}")
        return ()
    return tuple(raw)


def parse_parallel_load(raw: Any, where: str, add: AddProblem) -> ParallelLoad | None:
    where = f"{where}, parallel-load"
    if not isinstance(raw, dict):
        add(where, f"must be an object with type (one of: {', '.join(PARALLEL_TYPES)})")
        return None
    mongo = sorted(k for k in raw if k in _MONGO_KEYS)
    if mongo:
        add(where, f"{', '.join(mongo)}: for MongoDB and DocumentDB sources only (autosegmentation); remove them")
    _unknown({k: v for k, v in raw.items() if k not in _MONGO_KEYS}, _PARALLEL_KEYS, where, add)
    kind = raw.get("type")
    if kind not in PARALLEL_TYPES:
        add(where, f"type {kind!r} is not one of {', '.join(PARALLEL_TYPES)}")
        return None
    stray = {
        "partitions-auto": ("partitions", "subpartitions", "columns", "boundaries"),
        "subpartitions-auto": ("partitions", "subpartitions", "columns", "boundaries"),
        "none": ("partitions", "subpartitions", "columns", "boundaries"),
        "partitions-list": ("columns", "boundaries"),
        "ranges": ("partitions", "subpartitions"),
    }[kind]
    extra = [k for k in stray if raw.get(k) not in (None, [])]
    if extra:
        add(where, f"type {kind} takes no {', '.join(extra)}; remove {'it' if len(extra) == 1 else 'them'}")
    if kind == "partitions-list":
        parts, subs = (
            _names(raw.get("partitions"), "partitions", where, add),
            _names(raw.get("subpartitions"), "subpartitions", where, add),
        )
        if not parts and not subs:
            add(where, "type partitions-list needs partitions (or subpartitions): a non-empty list of names")
            return None
        return ParallelLoad(kind, partitions=parts, subpartitions=subs)
    if kind != "ranges":
        return ParallelLoad(kind)
    columns = raw.get("columns")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        add(where, "type ranges needs columns: a non-empty list of column names")
        return None
    if len(columns) > MAX_RANGE_COLUMNS or len(set(columns)) != len(columns):
        add(where, f"columns must be at most {MAX_RANGE_COLUMNS} different column names, not {columns!r}")
        return None
    boundaries = raw.get("boundaries")
    if not isinstance(boundaries, list) or not boundaries:
        add(where, 'type ranges needs boundaries: a list of value lists, one value per column, e.g. [["1000"]]')
        return None
    out: list[tuple[Any, ...]] = []
    for i, b in enumerate(boundaries, 1):
        ok = isinstance(b, list) and len(b) == len(columns)
        ok = ok and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in b)
        if not ok:
            want = f"a list of {len(columns)} values (strings or numbers, one per column)"
            add(where, f"boundary {i} must be {want}, not {b!r}")
            return None
        out.append(tuple(b))
    return ParallelLoad(kind, columns=tuple(columns), boundaries=tuple(out))


def parse_lob_settings(raw: Any, where: str, add: AddProblem) -> LobLimit | None:
    where = f"{where}, lob-settings"
    if not isinstance(raw, dict):
        add(where, f"must be an object with mode ({', '.join(LOB_MODES)}) and bulk-max-size (KB)")
        return None
    _unknown(raw, _LOB_KEYS, where, add)
    mode = raw.get("mode", "limited")  # DMS: "limited – The default limited LOB mode"
    if mode not in LOB_MODES:
        add(where, f"mode {mode!r} is not one of {', '.join(LOB_MODES)}")
        return None
    size_raw = raw.get("bulk-max-size")
    size: int | None = None
    if size_raw is not None:
        text = str(size_raw).strip() if isinstance(size_raw, str | int) and not isinstance(size_raw, bool) else ""
        if not re.fullmatch(r"\d+", text):
            add(where, f'bulk-max-size must be a number of kilobytes (e.g. "100000"), not {size_raw!r}')
            return None
        size = int(text)
    if mode == "limited":
        if not size:
            add(where, "mode limited needs a non-zero bulk-max-size (the largest LOB, in KB)")
            return None
        return LobLimit("limited", size * KB, f"{where.split(',')[0]} lob-settings bulk-max-size {size} KB")
    if mode == "unlimited":
        return LobLimit("full", None, f"{where.split(',')[0]} lob-settings")
    return None  # none: the task's LOB settings apply


def parse_rule(doc: dict[str, Any], rid: int, name: str, where: str, add: AddProblem) -> TableSettingsRule | None:
    """A ``table-settings`` rule, every problem reported through ``add(where, problem)``."""
    _unknown(doc, _RULE_KEYS, where, add)
    loc = doc.get("object-locator")
    if not isinstance(loc, dict):
        add(where, "object-locator must be an object with schema-name and table-name")
        return None
    _unknown(loc, frozenset({"schema-name", "table-name"}), f"{where}, object-locator", add)
    schema, table = loc.get("schema-name"), loc.get("table-name")
    if not isinstance(schema, str) or not schema or not isinstance(table, str) or not table:
        add(where, "object-locator needs schema-name and table-name (one table, exactly)")
        return None
    if "%" in schema or "%" in table:
        add(where, "a table-settings rule names one table exactly; '%' is not allowed (as in DMS)")
        return None
    if "parallel-load" not in doc and "lob-settings" not in doc:
        add(where, "a table-settings rule needs parallel-load or lob-settings")
        return None
    parallel = parse_parallel_load(doc["parallel-load"], where, add) if "parallel-load" in doc else None
    lob = parse_lob_settings(doc["lob-settings"], where, add) if "lob-settings" in doc else None
    return TableSettingsRule(rid, name, schema, table, parallel, lob)


def merge(rules: list[TableSettingsRule], add: AddProblem) -> dict[tuple[str, str], TableSettingsRule]:
    """One rule per table: several rules may name one table, but only one may give its parallel-load and
    only one its lob-settings (two would contradict each other)."""
    out: dict[tuple[str, str], TableSettingsRule] = {}
    for rule in sorted(rules, key=lambda r: r.rule_id):
        key = (rule.schema, rule.table)
        seen = out.get(key)
        if seen is None:
            out[key] = rule
            continue
        both = (("parallel-load", seen.parallel_load, rule.parallel_load), ("lob-settings", seen.lob, rule.lob))
        for what, a, b in both:
            if a is not None and b is not None:
                also = f"{what} for {rule.schema}.{rule.table} is also set by rule {seen.rule_name!r}; keep one"
                add(f"rule {rule.rule_name!r}", also)
        out[key] = TableSettingsRule(
            seen.rule_id,
            seen.rule_name,
            rule.schema,
            rule.table,
            seen.parallel_load or rule.parallel_load,
            seen.lob or rule.lob,
        )
    return out


def rule_for(task: Any, table: Any) -> TableSettingsRule | None:
    """The table-settings rule of a planned ``table`` (:class:`bulkmig.core.model.Table`; a partition leaf has
    its root's), or None; ``task`` without mappings (a test's stand-in) has none."""
    mappings = getattr(task, "mappings", None)
    if mappings is None or not getattr(mappings, "table_settings", ()):
        return None
    rule: TableSettingsRule | None = mappings.table_settings_for(table.schema, table.name, table.parent)
    return rule


def parallel_load_for(task: Any, table: Any) -> ParallelLoad | None:
    rule = rule_for(task, table)
    return rule.parallel_load if rule is not None else None


def lob_limit(task: Any, table: Any) -> LobLimit:
    """How ``table``'s LOBs move: its table-settings ``lob-settings`` (unless mode none), else the task
    settings' LOB mode (``TargetMetadata``), else whole values."""
    rule = rule_for(task, table)
    if rule is not None and rule.lob is not None:
        return rule.lob
    dms = getattr(task, "dms", None)
    limit = getattr(dms, "lob", None)
    return limit if isinstance(limit, LobLimit) else FULL


def not_partitioned(rule: TableSettingsRule, table: str, kind: str) -> ConfigError:
    """The error for a partition type of parallel-load on a table that has no such partitions."""
    return ConfigError(
        f"table-settings rule {rule.rule_name!r}: {table} has no {kind}, so parallel-load "
        f"{rule.parallel_load.type if rule.parallel_load else ''} has nothing to load in parallel",
        "use parallel-load type ranges (with columns and boundaries) or none for this table",
    )


def check_lob_sizes(table: str, limit: LobLimit, sizes: dict[str, int]) -> list[str]:
    """The columns of ``table`` whose largest value (``sizes``: bytes) does not fit ``limit``, one problem each."""
    if limit.mode != "limited" or limit.max_bytes is None:
        return []
    return [
        f"{table}.{column}: its largest value is {size:,} bytes ({_kb(size)}), more than the limited LOB size "
        f"{limit.max_bytes:,} bytes ({limit.origin}); DMS would truncate it"
        for column, size in sizes.items()
        if size > limit.max_bytes
    ]


def _kb(size: int) -> str:
    return f"{-(-size // KB):,} KB"
