"""What post-data could not create: the translated objects PostgreSQL refused, as the target records them.

Post-data runs each object sqlglot translated (views; indexes on expressions or with a WHERE) inside a
guard (:func:`bulkmig.convert.expressions.guarded`) that, when PostgreSQL refuses it, goes on without it
and writes a row in ``bulkmig.skipped_objects`` (kind, schema_name, name, error, at) on the target.  The
load would otherwise end "done" with a view missing and only a WARNING in psql's output to say so, so
``bulkmig load`` ends with one line per such object and ``bulkmig status`` lists them, each with the
error and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bulkmig.core import layout
from bulkmig.engines.postgres.schema import BULKMIG_SCHEMA
from bulkmig.engines.postgres.sql import literal

# The table where guarded post-data statements PostgreSQL refused are recorded (convert.expressions.guarded).
SKIPPED_TABLE = "skipped_objects"


@dataclass(frozen=True)
class SkippedObject:
    """One object post-data did not create."""

    kind: str  # view | index
    schema: str
    name: str
    error: str  # PostgreSQL's message (SQLERRM)
    at: str  # when post-data refused it, ISO 8601

    @property
    def fix(self) -> str:
        return (
            f"create the {self.kind} by hand from {layout.ASSESSMENT_MD} on the volume "
            "(the original SQL and the translation are there)"
        )

    def line(self) -> str:
        """One line naming the object, PostgreSQL's error and the fix."""
        return f"{self.kind} {self.schema}.{self.name} was not created: {self.error} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fix": self.fix}


def skipped_objects(conn: Any) -> list[SkippedObject]:
    """The refused objects that are still missing on the target (psycopg connection), oldest first.

    One per object, the latest refusal; an object created by hand since (it now exists) is left out,
    so the list is what still needs doing.  Empty when no post-data ever refused anything.
    """
    table = f"{BULKMIG_SCHEMA}.{SKIPPED_TABLE}"
    if conn.execute(f"SELECT pg_catalog.to_regclass({literal(table)})").fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT kind, schema_name, name, error, at FROM ("
        "  SELECT DISTINCT ON (kind, schema_name, name) kind, schema_name, name, error, at"
        f"  FROM {table}"
        "  ORDER BY kind, schema_name, name, at DESC"
        ") AS latest "
        "WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(schema_name) || '.' || pg_catalog.quote_ident(name)) "
        "IS NULL ORDER BY at, kind, schema_name, name"
    ).fetchall()
    return [SkippedObject(k, s, n, e, at.isoformat(timespec="seconds")) for k, s, n, e, at in rows]
