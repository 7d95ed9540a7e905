"""What validation compares for a table the data-changing DMS rules touched.

A deterministic mask (digits mask, hash mask) and a type change are compared against the same change of
the source value, computed by the source server in SQL (so the comparison stays a pair of row hashes):
``regexp_replace(col, '[0-9]', '#', 'g')``, ``upper(encode(sha256(convert_to(col, 'UTF8')), 'hex'))`` — the
very functions of :mod:`bulkmig.transform.masking` — and ``col::newtype``.  A randomized column cannot be
recomputed: it is left out of the comparison and named in the table's note, never reported as different.
Added columns are recomputed from the source rows and compared apart (:mod:`bulkmig.transform.recompute`).
"""

from __future__ import annotations

from bulkmig.core.model import Table
from bulkmig.engines.postgres.sql import literal
from bulkmig.transform import masking


def source_forms(table: Table) -> dict[str, str]:
    """Source column -> the SQL template (``{}``: the column) of its value as the target holds it."""
    out: dict[str, str] = {}
    for t in table.transform.get("types", []):
        out[t["column"]] = "({})::" + t["pg_type"]
    for m in table.transform.get("masks", []):
        inner = out.get(m["column"], "{}")
        if m["action"] == masking.DIGITS_MASK:
            out[m["column"]] = f"regexp_replace({inner}, '[0-9]', {literal(m['value'])}, 'g')"
        elif m["action"] == masking.HASH_MASK:
            out[m["column"]] = f"upper(encode(sha256(convert_to(({inner})::text, 'UTF8')), 'hex'))"
    return out


def not_compared(table: Table) -> list[str]:
    """Source columns left out of the comparison: those a random mask rewrote."""
    return sorted({m["column"] for m in table.transform.get("masks", []) if m["action"] == masking.DIGITS_RANDOMIZE})


def note(table: Table) -> str:
    """What the report says about the columns it did not compare ("" when it compared them all)."""
    parts = []
    if skipped := not_compared(table):
        parts.append(f"not compared: {', '.join(skipped)} (data-masking-digits-randomize: random by design)")
    return "; ".join(parts)


def rewrites_values(table: Table) -> bool:
    """True when target values are not the source's (a repair copying source rows would undo the rules)."""
    return any(table.transform.get(k) for k in ("masks", "added", "types"))
