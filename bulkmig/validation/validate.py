"""`bulkmig validate`: is every selected table on the target equal to the source?

Per table, both servers compute, at the same time, the row count and an order-independent hash: the
sum of PostgreSQL's 64-bit ``hashtextextended`` over each row's canonical text (``ROW(...)::text``
under the same session settings on both sides), so equal sets of rows give equal sums however they
are stored or ordered.  ``hashtextextended`` is the stable hash behind hash partitioning, about three
times cheaper than md5 here; md5 is used only to pair rows once a difference is known.  Where the
sums differ and the table has a primary key, the rows are paired by key to name the keys that differ.

A MySQL/MariaDB or SQLite source has no such hash, so there the rows of both sides are streamed and
compared value by value after a type-aware normalisation (:mod:`bulkmig.validation.compare`); the report then also
counts rows missing and extra on the target, differing rows (with their columns and both values), and
*converted values*: source values the load changed on purpose, as a setting says (a zero date loaded as
NULL), listed by column and key so a conversion is never silent nor mistaken for a mismatch.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core.errors import NotEqual, PlanError
from bulkmig.core.log import Progress, say
from bulkmig.core.model import Table
from bulkmig.core.store import open_store
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.fullload.plan import Plan, read_plan
from bulkmig.validation.compare import compare_foreign

MAX_KEYS_REPORTED = 20
# Pairing rows by key keeps both sides' keys in memory; above this many rows only the verdict is given.
MAX_ROWS_TO_PAIR = 5_000_000


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
    method: str = ""  # how rows were paired: hash-sum (PG → PG), merge, hash, multiset


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


def _row_expr(table: Table) -> str:
    return "ROW(" + ", ".join(ident(c.name) for c in table.columns) + ")::text"


def _summary_sql(table: Table, schema: str, name: str, where: str | None) -> str:
    digest = f"hashtextextended({_row_expr(table)}, 0)"
    sql = f"SELECT count(*), coalesce(sum({digest}), 0)::text FROM {qualified(schema, name)}"
    return sql + (f" WHERE {where}" if where else "")


def _pair_sql(table: Table, schema: str, name: str, where: str | None) -> str:
    key = "ROW(" + ", ".join(ident(k) for k in table.primary_key) + ")::text"
    sql = f"SELECT {key}, md5({_row_expr(table)}) FROM {qualified(schema, name)}"
    return sql + (f" WHERE {where}" if where else "")


def compare_foreign_table(task: Task, table: Table, compare: Any = compare_foreign) -> TableResult:
    """A MySQL/MariaDB or SQLite source (or a MySQL target): rows streamed from both sides and paired
    (:mod:`bulkmig.validation.compare`)."""
    target = ".".join(table.target_qualified)
    shown_target = target if target != table.qualified else ""
    try:
        tally = compare(task, table)
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


def compare_table(task: Task, table: Table) -> TableResult:
    from bulkmig.engines.protocols import source_capabilities
    from bulkmig.targets import target_engine

    if (engine := target_engine(task)) is not None:
        return compare_foreign_table(task, table, engine.compare)
    if not source_capabilities(task.source.engine).native_schema:  # no common text form: value by value
        return compare_foreign_table(task, table)
    tschema, tname = table.target_schema or table.schema, table.target_name or table.name
    src = connect(task.source, autocommit=True)
    dst = connect(task.target, autocommit=True)
    try:
        exists = dst.execute("SELECT to_regclass(%s)", (qualified(tschema, tname),)).fetchone()[0]
        if exists is None:
            s_rows = src.execute(_summary_sql(table, table.schema, table.name, table.filter)).fetchone()[0]
            return TableResult(table.qualified, False, s_rows, 0, note="missing on the target")
        with ThreadPoolExecutor(max_workers=2) as both:  # the two servers work at the same time
            left_f = both.submit(lambda: src.execute(_summary_sql(table, table.schema, table.name, table.filter)))
            right_f = both.submit(lambda: dst.execute(_summary_sql(table, tschema, tname, None)))
            s_rows, s_sum = left_f.result().fetchone()
            t_rows, t_sum = right_f.result().fetchone()
        result = TableResult(table.qualified, s_rows == t_rows and s_sum == t_sum, s_rows, t_rows, method="hash-sum")
        if result.equal:
            return result
        if not table.primary_key:
            result.note = "no primary key: rows cannot be paired to name the difference"
        elif max(s_rows, t_rows) > MAX_ROWS_TO_PAIR:
            result.note = f"more than {MAX_ROWS_TO_PAIR:,} rows: differing keys not listed"
        else:
            left = dict(src.execute(_pair_sql(table, table.schema, table.name, table.filter)).fetchall())
            right = dict(dst.execute(_pair_sql(table, tschema, tname, None)).fetchall())
            keys = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
            result.missing_on_target = sum(1 for k in keys if k not in right)
            result.extra_on_target = sum(1 for k in keys if k not in left)
            result.differing_rows = len(keys) - result.missing_on_target - result.extra_on_target
            result.differing_keys = keys[:MAX_KEYS_REPORTED]
            if len(keys) > MAX_KEYS_REPORTED:
                result.note = f"{len(keys)} keys differ; first {MAX_KEYS_REPORTED} shown"
        return result
    finally:
        src.close()
        dst.close()


def plan_for_validation(task: Task) -> Plan:
    """The plan says which tables (and filters) were moved; read it from the volume, else the bucket."""
    store = open_store(task.volume, task.volume_s3_options())
    plan = read_plan(store)
    if plan is None:
        from bulkmig.fullload.load import find_volume

        _, _, plan = find_volume(task)
    if plan is None:
        raise PlanError("no plan found on the volume or in the bucket", "run plan, extract, import and load first")
    return plan


def validate(
    task: Task, *, workers: int | None = None, raise_on_difference: bool = True, progress: bool = True
) -> ValidationReport:
    plan = plan_for_validation(task)
    # settings.validation.threads (DMS ThreadCount) when the command line does not say.
    n = max(1, workers or task.settings.validation.threads or task.settings.workers)
    bar = Progress("validate", len(plan.tables), unit="tables") if progress and plan.tables else None

    def one(table: Table) -> TableResult:
        result = compare_table(task, table)
        if bar:
            bar.advance(parts=1, rows=result.source_rows)
        return result

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
