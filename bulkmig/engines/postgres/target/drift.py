"""Schema drift in a batch: a column the source added is added to the target in the batch's transaction;
every other change stops replay before anything of that batch is applied.

PostgreSQL's side of replay (the why is in :mod:`bulkmig.replay.runner`, "Schema drift"); a module of
its own because what may be changed on the target without the operator is one decision, apart from how
rows are applied (:mod:`bulkmig.engines.postgres.target.apply`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import psycopg

from bulkmig.cdc.batch import Batch
from bulkmig.core.errors import TargetError
from bulkmig.core.log import say
from bulkmig.engines.postgres.sql import ident

if TYPE_CHECKING:
    from bulkmig.engines.postgres.target.apply import Applier

# A column default that is a constant (how pg_get_expr prints one): the same value on every existing row.
_LITERAL_DEFAULT = re.compile(
    r"^\(?(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|NULL|'(?:[^']|'')*')\)?"
    r"(?:::[A-Za-z_][A-Za-z0-9_ ]*(?:\(\d+(?:,\d+)?\))?(?:\[\])*)?$"
)


def apply_drift(applier: Applier, batch: Batch, accept: bool) -> None:
    """Add new columns; refuse every other change unless the operator accepted this batch's drift."""
    if accept:
        applier.forget()  # the operator changed the target by hand
    refused: list[tuple[dict[str, object], str]] = []
    for change in batch.schema_changes:
        schema, table = str(change.get("schema", "")), str(change.get("table", ""))
        kind, column = str(change.get("kind", "")), change.get("column")
        if not applier.selected(schema, table):
            continue
        if kind == "column_added" and isinstance(column, str):
            problem = _add_column(applier, batch, schema, table, column, change, accept)
            if problem:
                refused.append((change, problem))
        elif not accept:
            refused.append((change, _describe(change)))
    if refused:
        first = refused[0][0]
        what = "; ".join(text for _, text in refused)
        raise TargetError(
            f"schema drift in batch {batch.seq} on table {first.get('schema')}.{first.get('table')}: {what}. "
            "Replay cannot apply this safely and applied nothing of this batch",
            "apply the same change to the target by hand (ALTER TABLE …), then rerun "
            "`bulkmig replay --skip-drift-check` (it accepts the drift of this batch only); "
            "or start again with a new full load",
        )


def _add_column(
    applier: Applier, batch: Batch, schema: str, table: str, column: str, change: dict[str, object], accept: bool
) -> str | None:
    """``ADD COLUMN IF NOT EXISTS``; returns why not, when it cannot be done safely.

    A source ``ADD COLUMN … DEFAULT`` fills the existing rows without a single change in the stream,
    so the target must get the same default: done for a literal (``0``, ``'x'::text``, ``false``),
    refused for an expression (``now()``, ``nextval(…)``), whose value on the source rows replay
    cannot know.
    """
    mapped = applier.target_columns(schema, table, [column])
    if column not in mapped:
        return None  # the mappings do not move this column
    # The table's own type list in this batch is the most precise; the drift record is the fallback.
    typ = str(change.get("type") or "")
    for t in batch.tables:
        if (t.schema, t.table) == (schema, table) and column in t.columns:
            typ = t.types[t.columns.index(column)] or typ
    target = applier.target_table(schema, table)
    where = f"{target.schema}.{target.name}"
    name = mapped[column]
    default = change.get("default")
    extra = ""
    if default is not None and not accept:
        if not isinstance(default, str) or not _LITERAL_DEFAULT.match(default):
            return (
                f"column {column!r} was added with DEFAULT {default}, which gave the existing source rows values "
                "replay cannot know"
            )
        extra = f" DEFAULT {default}" + (" NOT NULL" if change.get("not_null") else "")
    try:
        with applier.conn.transaction():  # a savepoint: to_regtype raises on a malformed name
            known = applier.conn.execute("SELECT to_regtype(%s)", (typ,)).fetchone()
    except psycopg.Error:
        known = None
    if not typ or known is None or known[0] is None:
        raise TargetError(
            f"column {column!r} was added to {where} on the source with type {typ!r}, which the target does not know",
            "create the type on the target, add the column by hand, then rerun `bulkmig replay --skip-drift-check`",
        )
    applier.conn.execute(f"ALTER TABLE {target.sql} ADD COLUMN IF NOT EXISTS {ident(name)} {typ}{extra}")
    say(f"replay: batch {batch.seq}: added column {name!r} ({typ}{extra}) to {where}")
    applier.forget_table(target.schema, target.name)
    return None


def _describe(change: dict[str, object]) -> str:
    """Capture's own words for a schema change (``detail``), else built from its kind and column."""
    if change.get("detail"):
        return str(change["detail"])
    kind = str(change.get("kind", "?")).replace("_", " ")
    column = change.get("column")
    return f"column {column!r} {kind.removeprefix('column ')}" if column else kind
