"""The assessment report: every source object with its status, what changed and why, what to do.

Two renderings of one list of :class:`Item`: a JSON-able dict (``manifests/assessment.schema.json``
describes it; tools and tests read it) and Markdown for the person doing the migration — who may read it
at 3 a.m., so it leads with the counts and the items that need action, each with the original SQL and a
suggestion, and only then goes through the tables one by one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, Note, worst

REPORT_FORMAT = "bulkmig-assessment"
REPORT_VERSION = 1
STATUSES = (CONVERTED, CHANGED, ACTION)
# Object kinds, in the order the summary lists them.
KINDS = (
    "schema",
    "table",
    "column",
    "primary_key",
    "unique_key",
    "index",
    "foreign_key",
    "check",
    "view",
    "trigger",
    "procedure",
    "function",
)


@dataclass
class Item:
    """One source object in the report."""

    kind: str  # one of KINDS
    name: str  # the source name ("film", "film.rating", "film.idx_title")
    table: str | None = None  # the source table it belongs to
    target: str | None = None  # what it is called on the target (None: not created)
    notes: list[Note] = field(default_factory=list)
    suggestion: str | None = None  # what to do, for "needs action"
    source_sql: str | None = None  # the original definition, for views/triggers/routines and refused objects
    target_sql: str | None = None  # the statement conversion wrote, when it is not obvious
    details: dict[str, Any] = field(default_factory=dict)  # source/target types of columns, ...

    @property
    def status(self) -> str:
        return worst(n.status for n in self.notes)  # the worst note decides an object's status

    def note(self, status: str, message: str) -> None:
        self.notes.append(Note(status, message))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "table": self.table,
            "target": self.target,
            "status": self.status,
            "notes": [{"status": n.status, "message": n.message} for n in self.notes],
            "suggestion": self.suggestion,
            "source_sql": self.source_sql,
            "target_sql": self.target_sql,
            "details": self.details,
        }


def summary(items: list[Item]) -> dict[str, Any]:
    """Counts per status and per kind and status (every kind and status present, zeros included)."""
    by_status = Counter(i.status for i in items)
    by_kind: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        counts = Counter(i.status for i in items if i.kind == kind)
        by_kind[kind] = {s: counts.get(s, 0) for s in STATUSES} | {"total": sum(counts.values())}
    return {
        "total": len(items),
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "by_kind": by_kind,
        "needs_action": by_status.get(ACTION, 0),
    }


def build(head: dict[str, Any], items: list[Item], excluded: list[str]) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        **head,
        "summary": summary(items),
        "excluded_tables": excluded,
        "objects": [i.to_dict() for i in items],
    }


# -------------------------------------------------------------------------------------------- markdown

_MARK = {CONVERTED: "✅ converted", CHANGED: "🟡 converted with changes", ACTION: "❌ needs action"}


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}sql\n{text.strip()}\n{fence}"


def _messages(obj: dict[str, Any], worst_only: bool = False) -> list[str]:
    notes = obj["notes"]
    if worst_only:
        notes = [n for n in notes if n["status"] == obj["status"]] or notes
    return [n["message"] for n in notes]


def render_markdown(report: dict[str, Any]) -> str:
    """The report for a person: summary, then what needs action, then table by table, then code objects."""
    src, tgt, s = report["source"], report["target"], report["summary"]
    out: list[str] = []
    engine = tgt.get("engine", "PostgreSQL")
    out.append(f"# Assessment: {src['engine']} `{src['schema']}` → {engine} schema `{tgt['schema']}`")
    out.append("")
    out.append(f"Source: {src['engine']} {src['server_version']}.  Settings: " + _settings_line(report["settings"]))
    out.append("")
    out.append("## Summary")
    out.append("")
    n = s["needs_action"]
    if n:
        out.append(f"**{n} object{'s' if n != 1 else ''} need{'s' if n == 1 else ''} action** (listed next).")
    else:
        out.append("**Nothing needs action.**")
    out.append("")
    out.append("| object | converted | converted with changes | needs action | total |")
    out.append("|---|---:|---:|---:|---:|")
    for kind, counts in s["by_kind"].items():
        if counts["total"]:
            out.append(
                f"| {kind.replace('_', ' ')} | {counts[CONVERTED]} | {counts[CHANGED]} | {counts[ACTION]} "
                f"| {counts['total']} |"
            )
    bs = s["by_status"]
    out.append(f"| **all** | {bs[CONVERTED]} | {bs[CHANGED]} | {bs[ACTION]} | {s['total']} |")
    out.append("")
    if report["excluded_tables"]:
        out.append("Not migrated (excluded by the table mappings): " + ", ".join(report["excluded_tables"]) + ".")
        out.append("")
    objects = report["objects"]
    actions = [o for o in objects if o["status"] == ACTION]
    if actions:
        out.append("## Needs action")
        out.append("")
        for o in actions:
            where = f" (table {o['table']})" if o["table"] and o["kind"] not in ("table",) else ""
            out.append(f"### {o['kind'].replace('_', ' ')} `{o['name']}`{where}")
            out.append("")
            for msg in _messages(o, worst_only=True):
                out.append(f"- {msg}")
            if o["suggestion"]:
                out.append(f"- **Suggestion:** {o['suggestion']}")
            out.append("")
            if o["source_sql"]:
                out.append(_code(o["source_sql"]))
                out.append("")
    out.append("## Tables")
    out.append("")
    tables = [o for o in objects if o["kind"] == "table"]
    for t in tables:
        cols = [o for o in objects if o["kind"] == "column" and o["table"] == t["name"]]
        others = [o for o in objects if o["table"] == t["name"] and o["kind"] not in ("table", "column", "trigger")]
        # The heading also counts what its columns and keys say: a table "converted" as a whole may hold a
        # column that needs action, and a reader skimming headings must see that.
        parts = Counter(o["status"] for o in cols + others)
        inside = ", ".join(
            f"{icon} {parts[st]} {words}"
            for st, icon, words in ((CHANGED, "🟡", "with changes"), (ACTION, "❌", "need action"))
            if parts[st]
        )
        out.append(
            f"### `{t['name']}` → `{t['target'] or '(not created)'}` — {_MARK[t['status']]}"
            + (f" (columns and keys: {inside})" if inside else "")
        )
        out.append("")
        for msg in _messages(t):
            out.append(f"- {msg}")
        if cols:
            out.append("")
            out.append("| column | source type | target | status | notes |")
            out.append("|---|---|---|---|---|")
            for c in cols:
                target = f"{c['target']} {c['details'].get('target_type', '')}".strip() if c["target"] else "—"
                out.append(
                    f"| {_cell(c['details'].get('column', c['name']))} | {_cell(c['details'].get('source_type'))} "
                    f"| {_cell(target)} | {_MARK[c['status']]} | {_cell('; '.join(_messages(c)))} |"
                )
        if others:
            out.append("")
            out.append("| object | name | target | status | notes |")
            out.append("|---|---|---|---|---|")
            for o in others:
                out.append(
                    f"| {o['kind'].replace('_', ' ')} | {_cell(o['name'])} | {_cell(o['target'] or '—')} "
                    f"| {_MARK[o['status']]} | {_cell('; '.join(_messages(o)))} |"
                )
        out.append("")
    code = [o for o in objects if o["kind"] in ("view", "trigger", "procedure", "function")]
    if code:
        out.append("## Views, triggers and routines")
        out.append("")
        for o in code:
            out.append(f"### {o['kind']} `{o['name']}` → `{o['target'] or '(not created)'}` — {_MARK[o['status']]}")
            out.append("")
            for msg in _messages(o):
                out.append(f"- {msg}")
            if o["status"] != ACTION and o["target_sql"]:
                out.append("")
                out.append(_code(o["target_sql"]))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _settings_line(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items())
