"""`bulkmig validate --repair`: copy exactly the failed rows again from the source, then compare them again.

Per table, one target transaction deletes the target's rows for the failed keys and inserts the source's
rows for the same keys (streamed ``COPY … TO STDOUT`` → ``COPY … FROM STDIN``, text format: exact for
every type, whatever the two servers' versions), under ``session_replication_role = replica`` as the load
runs, so triggers and foreign-key actions do not fire.  A key the source does not have (MISSING_SOURCE)
is only deleted; a key the target lacks (MISSING_TARGET) is only inserted.  For a table without a
primary key the failed rows are named by their row hash: every target row with such a hash is deleted
and every source row with it copied, so the target ends with the source's number of copies.

Then the repaired keys are read again on both sides and compared by row hash; a failure is repaired only
when they now agree.  The source is read as it is now, not as of the migration's snapshot (that snapshot
is gone once the extraction ends): with change capture running, a row repaired now is also brought up
to date by the replay of any later change, since replayed changes are full row images.
"""

from __future__ import annotations

import json
from typing import Any

from bulkmig.engines.postgres.sql import literal
from bulkmig.validation.partitions import key_row
from bulkmig.validation.pgdiff import Failure, Pair, Side, int_array


def _keys_in(side: Side, failures: list[Failure]) -> str:
    """SQL true for the rows of these failures on ``side``: by key, or by row hash (key-less tables)."""
    keyed = [f.key for f in failures if f.key is not None]
    if keyed:
        casts = ", ".join(f"(__bm_e->>{i})::{t}" for i, t in enumerate(side.key_types))
        keys = literal(json.dumps(keyed, ensure_ascii=False))
        return f"{key_row(side.key)} IN (SELECT {casts} FROM jsonb_array_elements({keys}::jsonb) AS __bm_e)"
    return f"{side.hash} = ANY({int_array([int(f.key_text) for f in failures])})"


def repair(pair: Pair, failures: list[Failure]) -> list[Failure]:
    """Repair these failures of one table (see the module docstring); returns those now equal."""
    if not failures:
        return []
    src, dst = pair.src, pair.dst
    with dst.conn.transaction():
        dst.conn.execute("SET LOCAL session_replication_role = replica")
        dst.conn.execute(f"DELETE {dst.source(_keys_in(dst, failures))}")
        select = f"SELECT {', '.join(src.copied)} {src.source(_keys_in(src, failures))}"
        with (
            src.conn.cursor().copy(f"COPY ({select}) TO STDOUT") as out,
            dst.conn.cursor().copy(f"COPY {dst.relation} ({', '.join(dst.copied)}) FROM STDIN") as into,
        ):
            for chunk in out:
                into.write(chunk)
    return [f for f in failures if f.key_text in _now_equal(pair, failures)]


def _now_equal(pair: Pair, failures: list[Failure]) -> set[str]:
    """The failures' keys (``key_text``) whose rows agree on both sides now."""

    def read(side: Side) -> dict[str, Any]:
        cond = _keys_in(side, failures)
        if failures[0].key is not None:
            return dict(side.query(f"SELECT ROW({', '.join(side.key)})::text, {side.hash}::text {side.source(cond)}"))
        return dict(side.query(f"SELECT {side.hash}::text, count(*) {side.source(cond)} GROUP BY 1"))

    left, right = pair.both(read)
    return {f.key_text for f in failures if left.get(f.key_text) == right.get(f.key_text)}
