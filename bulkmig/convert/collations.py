"""Collations that compare text other than byte-wise, and what keeps their unique keys on PostgreSQL.

PostgreSQL's equality (under the default, deterministic collations) is byte-wise, like SQLite's BINARY and
MySQL's ``_bin``.  A key over a collation that ignores case (SQLite's NOCASE, MySQL's ``_ci``) or trailing
spaces (SQLite's RTRIM) refused 'abc' next to 'ABC' (or 'a' next to 'a '); a unique constraint on the bare
column would accept them on the target.  So a unique key over such a collation becomes a unique index on
the folded value — ``lower(col)`` or ``rtrim(col)`` — which keeps refusing them; :class:`Fold` says which
function and where it differs from the collation, and the report repeats it.

A plain index needs nothing: it is correct, only the comparisons that use it become case-sensitive, which
the report says.  Nothing here talks to a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# SQLite's own non-binary collations.  BINARY (and None) compare byte-wise, as PostgreSQL does.
_SQLITE_BINARY = "BINARY"
# MySQL/MariaDB: case-insensitive collations end in _ci (utf8mb4_general_ci, utf8mb4_0900_ai_ci, ...).
_MYSQL_CI = re.compile(r"_ci$", re.I)
# NO PAD collations compare trailing spaces; every other MySQL collation ignores them (PAD SPACE).
_MYSQL_NO_PAD = re.compile(r"_nopad_|_0900_", re.I)
_MYSQL_ACCENT_SENSITIVE = re.compile(r"_as_", re.I)


@dataclass(frozen=True)
class Fold:
    """A unique key's key part under a non-binary collation, kept on PostgreSQL by indexing ``function(col)``."""

    function: str  # lower | rtrim: wraps the key part in the unique index
    collation: str  # as the source names it
    engine: str  # "SQLite" | "MySQL"
    keeps: str  # the pair of values the source refused as duplicates, and the target still refuses
    caveat: str  # where the function differs from the collation ("" when it is exact)
    plain: str  # what changes for a plain index (and queries) over the column

    def unique_note(self, column: str) -> str:
        """The report's note on a unique key (or primary key) whose part ``column`` is folded."""
        call = f"{self.function}({column})"
        text = f"unique index on {call} for {self.engine}'s collation {self.collation}: {self.keeps}"
        if self.caveat:
            text += f"; {self.caveat}"
        return text + f"; queries compare {call} = {self.function}(…) to use it"


def fold(dialect: str, collation: str | None) -> Fold | None:
    """What keeps a unique key over ``collation`` (the catalog's spelling) on PostgreSQL; None when the
    collation compares byte-wise already, or when nothing known equals it (see :func:`unknown`)."""
    if not collation:
        return None
    if dialect == "sqlite":
        name = collation.upper()
        if name == "NOCASE":
            return Fold(
                "lower",
                "NOCASE",
                "SQLite",
                "'abc' next to 'ABC' stays refused",
                "NOCASE folds only ASCII letters while PostgreSQL's lower() folds all of Unicode (in a UTF-8 "
                "locale), so values that differ only in the case of other letters ('É', 'é') are refused too; "
                "should existing rows differ so, post-data goes on without the index and records why in "
                "bulkmig.skipped_objects",
                "comparisons become case-sensitive; use lower(col) in queries or a citext/nondeterministic ICU "
                "collation",
            )
        if name == "RTRIM":
            return Fold(
                "rtrim",
                "RTRIM",
                "SQLite",
                "'a' next to 'a ' stays refused, exactly as in SQLite",
                "",
                "trailing spaces become significant in comparisons; compare rtrim(col) in queries",
            )
        return None
    if dialect == "mysql" and _MYSQL_CI.search(collation):
        ignored = []
        if not _MYSQL_ACCENT_SENSITIVE.search(collation):
            ignored.append("accents ('e' = 'é')")
        if not _MYSQL_NO_PAD.search(collation):
            ignored.append("trailing spaces (PAD SPACE: 'a' = 'a ')")
        caveat = (
            f"{collation} also ignores {' and '.join(ignored)}, which lower() does not: such pairs are accepted now"
            if ignored
            else ""
        )
        return Fold(
            "lower",
            collation,
            "MySQL",
            "'abc' next to 'ABC' stays refused",
            caveat,
            "comparisons become case-sensitive; use lower(col) in queries or a nondeterministic ICU collation",
        )
    return None


def unknown(dialect: str, collation: str | None) -> bool:
    """A SQLite collation that is neither BINARY nor one SQLite ships (the application registered it):
    PostgreSQL compares those values byte-wise, and nothing says what the source did."""
    if dialect != "sqlite" or not collation:
        return False
    return collation.upper() != _SQLITE_BINARY and fold(dialect, collation) is None
