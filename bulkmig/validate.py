"""`bulkmig validate`: is every selected table on the target equal to the source?

Per table, both servers compute, at the same time, the row count and an order-independent hash: the
sum of PostgreSQL's 64-bit ``hashtextextended`` over each row's canonical text (``ROW(...)::text``
under the same session settings on both sides), so equal sets of rows give equal sums however they
are stored or ordered.  ``hashtextextended`` is the stable hash behind hash partitioning, about three
times cheaper than md5 here; md5 is used only to pair rows once a difference is known.  Where the
sums differ and the table has a primary key, the rows are paired by key to name the keys that differ.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.errors import NotEqual, PlanError
from bulkmig.log import say
from bulkmig.model import Table
from bulkmig.plan import Plan, read_plan
from bulkmig.store import open_store
from bulkmig.task import Task

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


@dataclass
class ValidationReport:
    tables: list[TableResult]

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    def to_json(self) -> str:
        return json.dumps({"equal": self.equal, "tables": [asdict(t) for t in self.tables]}, indent=1)

    def render(self) -> str:
        lines = []
        width = max((len(t.table) for t in self.tables), default=5)
        for t in self.tables:
            verdict = "equal" if t.equal else "DIFFERENT"
            lines.append(f"{t.table:<{width}}  {verdict:<9}  source {t.source_rows:>12,}  target {t.target_rows:>12,}")
            if t.differing_keys:
                lines.append(f"{'':<{width}}  keys that differ: {', '.join(t.differing_keys)}")
            if t.note:
                lines.append(f"{'':<{width}}  {t.note}")
        n_bad = sum(not t.equal for t in self.tables)
        lines.append(
            f"{len(self.tables)} tables: all equal" if not n_bad else f"{len(self.tables)} tables: {n_bad} differ"
        )
        return "\n".join(lines)


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


def compare_table(task: Task, table: Table) -> TableResult:
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
        result = TableResult(table.qualified, s_rows == t_rows and s_sum == t_sum, s_rows, t_rows)
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
        from bulkmig.load import find_volume

        _, _, plan = find_volume(task)
    if plan is None:
        raise PlanError("no plan found on the volume or in the bucket", "run plan, extract, import and load first")
    return plan


def validate(task: Task, *, workers: int | None = None, raise_on_difference: bool = True) -> ValidationReport:
    plan = plan_for_validation(task)
    n = max(1, workers or task.settings.workers)
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda t: compare_table(task, t), plan.tables))
    report = ValidationReport(results)
    say(report.render())
    if raise_on_difference and not report.equal:
        bad = [t.table for t in report.tables if not t.equal]
        raise NotEqual(
            f"{len(bad)} of {len(report.tables)} tables differ: {', '.join(bad[:10])}",
            "see the report above; rerun `bulkmig load` if parts are missing, else investigate the named keys",
        )
    return report
