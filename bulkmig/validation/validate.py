"""`bulkmig validate`: is every selected table on the target equal to the source?

Per table, both servers compute, at the same time, the row count and an order-independent hash: the
sum of PostgreSQL's 64-bit ``hashtextextended`` over each row's canonical text (``ROW(...)::text``
under the same session settings on both sides), so equal sets of rows give equal sums however they
are stored or ordered.  ``hashtextextended`` is the stable hash behind hash partitioning, about three
times cheaper than md5 here; md5 is used only to pair rows once a difference is known.  Where the
sums differ and the table has a primary key, the rows are paired by key to name the keys that differ.

A MySQL/MariaDB or SQLite source has no such hash, so there the rows of both sides are streamed and
compared value by value after a type-aware normalisation (:mod:`bulkmig.engines.pairing`); the report then also
counts rows missing and extra on the target, differing rows (with their columns and both values), and
*converted values*: source values the load changed on purpose, as a setting says (a zero date loaded as
NULL), listed by column and key so a conversion is never silent nor mistaken for a mismatch.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError, NotEqual
from bulkmig.core.executor import run_on_dask
from bulkmig.core.log import Progress, say
from bulkmig.core.model import Table
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import qualified
from bulkmig.fullload.load import find_plan
from bulkmig.targets import target_for
from bulkmig.transform import recompute
from bulkmig.transform import validation as transform_validation
from bulkmig.validation import failures as failures_table
from bulkmig.validation import pgdiff
from bulkmig.validation.repair import repair as repair_rows

MAX_KEYS_REPORTED = 20
MAX_DIFFERENCES_SHOWN = 10
# DMS's ValidationState words (table statistics), as `status` shows them.
VALIDATED, MISMATCHED, TABLE_ERROR = "Validated", "Mismatched records", "Table error"


@dataclass
class TableResult:
    table: str
    equal: bool
    source_rows: int
    target_rows: int
    differing_keys: list[str] = field(default_factory=list)
    note: str = ""
    # Filled in when rows are paired value by value (foreign sources; the counts also when PG → PG pairs keys).
    target: str = ""  # schema.table on the target, when it is not the source's name
    missing_on_target: int = 0
    extra_on_target: int = 0
    differing_rows: int = 0
    converted_values: int = 0  # source values the load changed on purpose (zero date → NULL); not a mismatch
    # The first differences: {"key", "kind": "differs" | "missing on target" | "extra on target",
    # "columns": [{"column", "source", "target"}] (differs) or "row": {column: value} (missing/extra)}.
    differences: list[dict[str, Any]] = field(default_factory=list)
    # Per column: {"column", "why", "count", "keys"} — which values were converted, where.
    conversions: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""  # how rows were paired: key-range partitions (PG → PG), merge, hash, multiset
    validation_state: str = ""  # DMS's word: Validated, Mismatched records, Table error
    # PG → PG: what the partitioned comparison cost, and its failure records (bulkmig.validation_failures).
    partitions: int = 0  # key-range partitions hashed on both servers
    partitions_differing: int = 0
    ranges_visited: int = 0  # ranges read again to bisect the differing partitions
    queries: int = 0  # statements sent to the two servers
    failures_total: int = 0  # differing rows found (failures holds at most failure_max_count)
    failures: list[dict[str, Any]] = field(default_factory=list)  # DMS's failure records, one per row
    repaired: int = 0  # rows re-copied from the source by --repair and found equal again


@dataclass
class ValidationReport:
    tables: list[TableResult]

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    @property
    def converted_values(self) -> int:
        return sum(t.converted_values for t in self.tables)

    def to_json(self) -> str:
        return json.dumps(
            {
                "equal": self.equal,
                "converted_values": self.converted_values,
                "tables": [asdict(t) for t in self.tables],
            },
            indent=1,
        )

    def render(self) -> str:
        lines = []
        width = max((len(t.table) for t in self.tables), default=5)
        for t in self.tables:
            verdict = "equal" if t.equal else "DIFFERENT"
            lines.append(f"{t.table:<{width}}  {verdict:<9}  source {t.source_rows:>12,}  target {t.target_rows:>12,}")
            pad = f"{'':<{width}}  "
            if t.missing_on_target or t.extra_on_target or t.differing_rows:
                lines.append(
                    f"{pad}missing on target {t.missing_on_target:,}, extra on target {t.extra_on_target:,}, "
                    f"differing rows {t.differing_rows:,}"
                )
            if t.partitions and not t.equal or t.repaired:
                lines.append(
                    f"{pad}{t.partitions:,} partitions, {t.partitions_differing:,} differ: {t.ranges_visited:,} ranges"
                    f" read again, {t.queries:,} queries; {t.failures_total:,} failure records"
                    " in bulkmig.validation_failures"
                )
            if t.differing_keys:
                lines.append(f"{pad}keys that differ: {', '.join(t.differing_keys)}")
            for d in t.differences:
                where = f"{d['key']} " if d.get("key") else ""
                if d["kind"] == "differs":
                    for c in d["columns"]:
                        lines.append(f"{pad}{where}{c['column']}: source {c['source']}, target {c['target']}")
                else:
                    row = ", ".join(f"{k}={v}" for k, v in d["row"].items())
                    lines.append(f"{pad}{where}{d['kind']}: {_cut(row)}")
            for c in t.conversions:
                lines.append(
                    f"{pad}{c['count']:,} converted in {c['column']}: {c['why']} at {', '.join(c['keys'])}"
                    + (" …" if c["count"] > len(c["keys"]) else "")
                )
            if t.note:
                lines.append(f"{pad}{t.note}")
        n_bad = sum(not t.equal for t in self.tables)
        summary = f"{len(self.tables)} tables: all equal" if not n_bad else f"{len(self.tables)} tables: {n_bad} differ"
        if self.converted_values:
            n = self.converted_values
            summary += f"; {n:,} value{'s' if n != 1 else ''} converted as the task's settings say (listed above)"
        lines.append(summary)
        return "\n".join(lines)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_foreign_table(task: Task, table: Table, compare: Any = None) -> TableResult:
    """A MySQL/MariaDB or SQLite source, or a MySQL target: rows streamed from both sides and paired
    (:mod:`bulkmig.engines.pairing`) by ``compare``, by default the target engine's."""
    target = ".".join(table.target_qualified)
    shown_target = target if target != table.qualified else ""
    try:
        tally = (compare or target_for(task).compare)(task, table)
    except LookupError:
        return TableResult(table.qualified, False, 0, 0, note="missing on the target", target=shown_target)
    return TableResult(
        table.qualified,
        tally.equal,
        tally.source_rows,
        tally.target_rows,
        differing_keys=sorted(tally.differing_keys),
        note="; ".join(tally.notes),
        target=shown_target,
        missing_on_target=tally.missing,
        extra_on_target=tally.extra,
        differing_rows=tally.differing,
        converted_values=tally.converted,
        differences=tally.differences,
        conversions=list(tally.conversions.values()),
        method=tally.method,
    )


def compare_table(task: Task, table: Table, *, repair: bool = False) -> TableResult:
    """Both servers hash their rows where the target can with this source (PostgreSQL → PostgreSQL: one text form
    for every value), else value by value through the target engine's ``compare``."""
    if _hashes_on_both_servers(task):
        return _with_state(compare_pg(task, table, repair=repair))
    return _with_state(compare_foreign_table(task, table))


def compare_pg(task: Task, table: Table, *, repair: bool = False) -> TableResult:
    """PostgreSQL → PostgreSQL: partition hashes, bisection, failure records, and the repair when asked
    (:mod:`bulkmig.validation.pgdiff`, :mod:`bulkmig.validation.repair`)."""
    tschema, tname = table.target_qualified
    shown_target = ".".join(table.target_qualified) if table.target_qualified != (table.schema, table.name) else ""
    settings = task.settings.validation
    src = connect(task.source, autocommit=True)
    dst = connect(task.target, autocommit=True)
    try:
        exists = dst.execute("SELECT to_regclass(%s)", (qualified(tschema, tname),)).fetchone()[0]
        if exists is None:
            where = f" WHERE {table.filter}" if table.filter else ""
            (s_rows,) = src.execute(f"SELECT count(*) FROM {qualified(table.schema, table.name)}{where}").fetchone()
            return TableResult(table.qualified, False, s_rows, 0, note="missing on the target", target=shown_target)
        if dst.execute(f"SELECT to_regclass('{failures_table.TABLE}')").fetchone()[0] is None:
            failures_table.ensure(dst)  # a caller other than validate(), which creates it once up front
        with pgdiff.opened(src, dst, table) as pair:
            diff = pgdiff.diff_table(pair, table, settings.partition_size, settings.failure_max_count)
            at = datetime.now(UTC)
            as_record = failures_table.record(task.name, table, at)
            failures_table.replace(dst, task.name, table, map(as_record, diff.failures))
            fixed = repair_rows(pair, diff.failures) if repair and diff.failures else []
            if fixed:
                failures_table.mark_repaired(dst, task.name, table, [f.key_json() for f in fixed])
        # DMS add-column rules: each added column recomputed from the source rows (bulkmig.transform.recompute).
        added = recompute.check_added(task.source, dst, table, None) if table.transform.get("added") else None
    except LookupError as exc:
        return TableResult(table.qualified, False, 0, 0, note=str(exc), target=shown_target)
    finally:
        src.close()
        dst.close()
    result = _pg_result(table, shown_target, diff, [as_record(f) for f in diff.failures], fixed)
    notes = [result.note, transform_validation.note(table), added.note() if added else ""]
    result.note = "; ".join(n for n in notes if n)
    if added is not None and added.differing:
        result.equal = False
        result.differing_keys = (result.differing_keys + added.keys)[:MAX_KEYS_REPORTED]
    return result


def _pg_result(
    table: Table, shown_target: str, diff: pgdiff.Diff, records: list[dict[str, Any]], fixed: list[pgdiff.Failure]
) -> TableResult:
    kinds: Counter[str] = Counter()
    for f in diff.failures:
        kinds[f.kind] += f.copies
    result = TableResult(
        table.qualified,
        diff.equal,
        diff.source_rows,
        diff.target_rows,
        differing_keys=[f.key_text for f in diff.failures if f.key is not None][:MAX_KEYS_REPORTED],
        note="; ".join(diff.notes),
        target=shown_target,
        missing_on_target=kinds[pgdiff.MISSING_TARGET],
        extra_on_target=kinds[pgdiff.MISSING_SOURCE],
        differing_rows=kinds[pgdiff.RECORD_DIFF],
        differences=[_difference(f) for f in diff.failures[:MAX_DIFFERENCES_SHOWN]],
        method=diff.method,
        partitions=diff.partitions,
        partitions_differing=diff.partitions_differing,
        ranges_visited=diff.ranges_visited,
        queries=diff.queries,
        failures_total=diff.failures_total,
        failures=records,
    )
    if not table.primary_key:
        result.note = "; ".join(["no primary key: rows compared as a multiset, keyed by their row hash", *diff.notes])
    if fixed:
        result.repaired = sum(f.copies for f in fixed)
        recorded = sum(f.copies for f in diff.failures)
        if len(fixed) == len(diff.failures) and recorded == diff.failures_total and not diff.unexamined_partitions:
            result.equal = True
            result.target_rows = result.source_rows
        done = f"repaired {result.repaired:,} of {diff.failures_total:,} failed rows from the source"
        result.note = "; ".join(n for n in (result.note, done) if n)
    return result


def _difference(f: pgdiff.Failure) -> dict[str, Any]:
    """A failure in the report's ``differences`` shape (shared with cross-engine validation)."""
    key = f.key_text if f.key is not None else None
    source, target = f.details[0] if f.details else ({}, {})
    if f.kind == pgdiff.RECORD_DIFF:
        columns = [{"column": c, "source": _shown(source.get(c)), "target": _shown(target.get(c))} for c in source]
        return {"key": key, "kind": "differs", "columns": columns}
    kind, row = ("missing on target", source) if f.kind == pgdiff.MISSING_TARGET else ("extra on target", target)
    return {"key": key, "kind": kind, "row": {c: _shown(v) for c, v in row.items()}}


def _shown(value: Any) -> str:
    return "NULL" if value is None else _cut(str(value), 60)


def _with_state(result: TableResult) -> TableResult:
    """DMS's table-statistics word for the outcome (``ValidationState``)."""
    if result.note.startswith("missing on the target") or "is missing on the target" in result.note:
        result.validation_state = TABLE_ERROR
    else:
        result.validation_state = VALIDATED if result.equal else MISMATCHED
    return result


def _hashes_on_both_servers(task: Task) -> bool:
    """The target compares with this source by per-partition row hashes (:mod:`bulkmig.validation.pgdiff`),
    records failures and repairs them (the target's ``capabilities.hash_diff_sources``)."""
    return task.source.engine in target_for(task).capabilities.hash_diff_sources


def validate_unit(task: Task, table: Table, repair: bool) -> TableResult:
    """One table's comparison, as a Dask worker runs it (its own connections to source and target)."""
    return compare_table(task, table, repair=repair)


def validate(
    task: Task,
    *,
    workers: int | None = None,
    raise_on_difference: bool = True,
    progress: bool = True,
    repair: bool = False,
    executor: str | None = None,
    scheduler: str | None = None,
) -> ValidationReport:
    """Compare every planned table; with ``repair``, re-copy the differing rows of PG → PG tables from the
    source and compare them again (:mod:`bulkmig.validation.repair`).  Tables are compared on threads here,
    or with ``executor`` (default ``settings.executor``) ``dask`` one unit per table on the cluster."""
    pg_to_pg = _hashes_on_both_servers(task)
    if repair and not pg_to_pg:
        raise ConfigError(
            "validate --repair needs a PostgreSQL source and a PostgreSQL target",
            "run validate without --repair, and reload the tables it names (`bulkmig load` after dropping them)",
        )
    plan = find_plan(task)  # which tables (and filters) were moved
    if repair and (rewritten := [t.qualified for t in plan.tables if transform_validation.rewrites_values(t)]):
        raise ConfigError(
            f"validate --repair would copy source values into tables the transformation rules change "
            f"({', '.join(rewritten[:5])}): masked values would land unmasked",
            "run validate without --repair; reload those tables (drop them on the target, rerun `bulkmig load`)",
        )
    # settings.validation.threads (DMS ThreadCount) when the command line does not say.
    n = max(1, workers or task.settings.validation.threads or task.settings.workers)
    bar = Progress("validate", len(plan.tables), unit="tables") if progress and plan.tables else None
    if pg_to_pg:
        with connect(task.target, autocommit=True) as conn:
            failures_table.ensure(conn)  # once, before the tables' threads write to it

    def one(table: Table) -> TableResult:
        result = compare_table(task, table, repair=repair)
        if bar:
            bar.advance(parts=1, rows=result.source_rows)
        return result

    if (executor or task.settings.executor) == "dask":
        found: dict[int, TableResult] = {}

        def done(item: tuple[int, Table], result: TableResult) -> None:
            found[item[0]] = result
            if bar:
                bar.advance(parts=1, rows=result.source_rows)

        run_on_dask(
            "validate",
            scheduler or task.settings.scheduler,
            n,
            validate_unit,
            list(enumerate(plan.tables)),
            lambda item: (task, item[1], repair),
            done,
        )
        results = [found[i] for i in range(len(plan.tables))]
    else:
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, plan.tables))
    if bar:
        bar.finish()
    report = ValidationReport(results)
    say(report.render())
    from bulkmig.core.records import record_validation

    record_validation(task, json.loads(report.to_json()))  # for `status --json` and the dashboard
    if raise_on_difference and not report.equal:
        bad = [t.table for t in report.tables if not t.equal]
        raise NotEqual(
            f"{len(bad)} of {len(report.tables)} tables differ: {', '.join(bad[:10])}",
            "see the report above; rerun `bulkmig load` if parts are missing, else investigate the named keys",
        )
    return report
