"""Turn the samples into the Markdown the issue asks for: one table of methods, then the targets.

"ratio" is a rate ratio against the raw limit of the method's direction measured in the same run:
raw seconds / method seconds, so 0.8 means "80 % of the speed of the raw limit".  Read methods compare
with the raw binary COPY out, load methods with the raw binary COPY in (+ primary key), and end-to-end
methods with the sum of both.  MB/s is always heap bytes (pg_relation_size) / wall seconds, so every
row is measured against the same amount of data, whatever it writes.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.methods import DUMP_RESTORE, METHODS, WORKERS, Method, Sample

MB = 1_000_000
ORDER = [m.key for m in METHODS]
ORDER.insert(ORDER.index("pg_restore-z0") + 1, DUMP_RESTORE.key)
RSS_BUDGET_PER_WORKER = 512 * 1024 * 1024


@dataclass
class Row:
    table: str
    rows: int
    heap: int
    method: Method
    samples: list[Sample] = field(default_factory=list)

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.seconds is not None]

    @property
    def seconds(self) -> float | None:
        good = self.ok
        return statistics.median(s.seconds for s in good if s.seconds is not None) if good else None

    @property
    def error(self) -> str | None:
        if self.ok:
            return None
        return next((s.error for s in self.samples if s.error), "no run")

    @property
    def peak_rss(self) -> int:
        return max((s.peak_rss for s in self.samples), default=0)

    @property
    def out_bytes(self) -> int | None:
        return next((s.out_bytes for s in reversed(self.ok) if s.out_bytes is not None), None)

    def extra(self, key: str) -> float | None:
        values = [s.extra[key] for s in self.ok if key in s.extra]
        return statistics.median(values) if values else None


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def row(self, table: str, rows: int, heap: int, method: Method) -> Row:
        for r in self.rows:
            if r.table == table and r.method.key == method.key:
                return r
        r = Row(table, rows, heap, method)
        self.rows.append(r)
        return r

    def get(self, table: str, key: str) -> Row | None:
        return next((r for r in self.rows if r.table == table and r.method.key == key), None)

    def seconds(self, table: str, key: str) -> float | None:
        r = self.get(table, key)
        return r.seconds if r else None

    def ordered(self) -> list[Row]:
        """Rows by table, then in the order of ``ORDER`` (the derived row after the pg_restore rows)."""
        tables = list(dict.fromkeys(r.table for r in self.rows))
        return sorted(self.rows, key=lambda r: (tables.index(r.table), ORDER.index(r.method.key)))

    def add_derived(self) -> None:
        """pg_dump (default compression) + pg_restore of that dump, as one end-to-end figure."""
        for table in dict.fromkeys(r.table for r in self.rows):
            dump, restore = self.get(table, "pg_dump"), self.get(table, "pg_restore")
            if dump is None or restore is None or self.get(table, DUMP_RESTORE.key):
                continue
            derived = self.row(table, dump.rows, dump.heap, DUMP_RESTORE)
            for a, b in zip(dump.samples, restore.samples, strict=False):
                if a.seconds is not None and b.seconds is not None:
                    derived.samples.append(Sample(a.seconds + b.seconds, max(a.peak_rss, b.peak_rss)))
                else:
                    derived.samples.append(Sample(None, error=a.error or b.error))

    def reference(self, table: str, direction: str) -> float | None:
        read, load = self.seconds(table, "raw-read"), self.seconds(table, "raw-load")
        if direction == "read":
            return read
        if direction == "load":
            return load
        return read + load if read is not None and load is not None else None

    def ratio(self, table: str, key: str) -> float | None:
        r = self.get(table, key)
        if r is None or r.seconds is None:
            return None
        ref = self.reference(table, r.method.direction)
        return ref / r.seconds if ref else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def method_table(results: Results) -> str:
    lines = [
        "| method | rows | s | rows/s | MB/s | ratio | peak RSS MB | out/heap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.ordered():
        name = f"{r.table} / {r.method.label}"
        s = r.seconds
        if s is None:
            err = r.error or ""
            lines.append(f"| {_cell(name)} | {r.rows:,} | {_cell(err)} |  |  |  | {_rss(r.peak_rss)} |  |")
            continue
        out = r.out_bytes
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(name),
                    f"{r.rows:,}",
                    f"{s:.2f}",
                    f"{r.rows / s:,.0f}",
                    f"{r.heap / MB / s:.0f}",
                    _num(results.ratio(r.table, r.method.key), ".2f"),
                    _rss(r.peak_rss),
                    _num(out / r.heap if out is not None and r.heap else None, ".2f"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _rss(n: int) -> str:
    return f"{n / 1024 / 1024:.0f}" if n else ""


@dataclass
class Target:
    name: str
    table: str
    measured: float | None
    goal: float
    better: str  # ">=" or "<="
    shown: Callable[[float], str]
    why_missing: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured >= self.goal if self.better == ">=" else self.measured <= self.goal
        return "PASS" if ok else "MISS"


def targets(results: Results) -> list[Target]:
    """The targets of issue 3, each computed from rows of this run only."""
    return [t for table in dict.fromkeys(r.table for r in results.rows) for t in _table_targets(results, table)]


def _table_targets(results: Results, table: str) -> list[Target]:
    out: list[Target] = []
    ratio = "{:.2f}×".format

    def secs(key: str) -> float | None:
        return results.seconds(table, key)

    def quotient(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def why(keys: tuple[str, ...]) -> str:
        """Why a target has no figure: the first row it needs that failed or was not run."""
        for key in keys:
            row = results.get(table, key)
            if row is None:
                return f"{key} not run"
            if row.seconds is None:
                return f"{key} failed"
        return "not measured"

    def add(
        name: str, value: float | None, goal: float, better: str, keys: tuple[str, ...], fmt: Callable[[float], str]
    ) -> None:
        out.append(Target(name, table, value, goal, better, fmt, "" if value is not None else why(keys)))

    if results.get(table, "extract"):
        goal = 0.8 if table == "wide" else 0.7
        add("extract rows/s vs raw read", results.ratio(table, "extract"), goal, ">=", ("extract", "raw-read"), ratio)
        if results.get(table, "duckdb"):
            versus = quotient(secs("duckdb"), secs("extract"))
            add("extract speed vs DuckDB", versus, 1.0, ">=", ("extract", "duckdb"), ratio)
    if results.get(table, "load"):
        add("load rows/s vs raw load", results.ratio(table, "load"), 0.85, ">=", ("load", "raw-load"), ratio)
        versus = quotient(secs("pg_restore"), secs("load"))
        add("load speed vs pg_restore -j2", versus, 1.5, ">=", ("load", "pg_restore"), ratio)
    if m := results.get(table, "migrate"):
        versus = quotient(secs(DUMP_RESTORE.key), secs("migrate"))
        add("migrate speed vs pg_dump + pg_restore", versus, 2.0, ">=", ("migrate", "pg_dump", "pg_restore"), ratio)
        share = quotient(m.extra("validate s"), secs("migrate"))
        add("validate share of migrate", share, 0.15, "<=", ("migrate",), "{:.0%}".format)  # issue 16
        if share is None and m.seconds is not None:
            out[-1].why_missing = "no validate time in migrate's output"
    bulkmig = ("extract", "load", "migrate")
    if any(results.get(table, k) for k in bulkmig):
        peaks = [r.peak_rss for k in bulkmig if (r := results.get(table, k)) and r.ok]
        peak = max(peaks) / WORKERS / 2**20 if peaks else None
        budget = RSS_BUDGET_PER_WORKER / 2**20
        add(f"peak RSS per worker (tree peak / {WORKERS}), MB", peak, budget, "<=", bulkmig, "{:.0f}".format)
    if table == "wide" and (r := results.get(table, "extract")):
        size = r.out_bytes / r.heap if r.out_bytes is not None and r.heap else None
        add("volume bytes / heap bytes", size, 0.5, "<=", ("extract",), "{:.2f}".format)
    return out


def target_table(items: list[Target]) -> str:
    lines = ["| target | table | measured | goal | result |", "|---|---|---:|---:|---|"]
    for t in items:
        shown = t.shown(t.measured) if t.measured is not None else (t.why_missing or "not measured")
        lines.append(f"| {t.name} | {t.table} | {_cell(shown)} | {t.better} {t.shown(t.goal)} | {t.verdict} |")
    return "\n".join(lines)


def notes(results: Results) -> list[str]:
    """Figures that do not fit a column: bulkmig's own CPU time (what it adds to the server's work on the same
    cores), load's and migrate's own step times."""
    lines: list[str] = []
    for r in results.rows:
        if r.method.key in ("extract", "load", "migrate") and r.ok:
            keys = [k for k in dict.fromkeys(k for s in r.ok for k in s.extra) if k != "cpu s"]
            steps = ", ".join(f"{k.removesuffix(' s')} {r.extra(k):.1f}s" for k in keys)
            cpu = r.extra("cpu s")
            used = f"; its process used {cpu:.1f} s of CPU (user + system)" if cpu is not None else ""
            if keys or used:
                steps = f"steps (its own timing) {steps}" if steps else "no steps printed"
                lines.append(f"- {r.table} / bulkmig {r.method.key}: {steps}{used}")
    return lines


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def scrub(text: str, *paths: str) -> str:
    """Keep this machine's paths and any URL out of what is written to the repository."""
    for p in sorted({p for p in paths if p}, key=len, reverse=True):
        text = text.replace(p, "<tmp>")
    text = _URL.sub("<url>", text)
    return re.sub(r"(?<![\w<>])/(?:[\w.+-]+/)+[\w.+-]*", "<path>", text)
