"""Post-data's index and key builds on several connections at once, as ``pg_restore -j`` does.

Why: each ``CREATE INDEX`` / ``ADD CONSTRAINT … PRIMARY KEY`` sorts its whole table in one server process, so a
schema with several of them builds them one after another on one core when run as one script.  pg_dump writes
them first in post-data (constraints, then indexes, before index attachments, foreign keys, triggers, rules,
policies), and none of them depends on another, so they can run side by side; what follows them (a foreign
key needs its referenced key, ``ATTACH PARTITION`` both indexes, a comment its object) then runs as the rest of
the section, in the file's order, in one transaction as before.

Each build is one statement of SQL (no psql meta-command), run on one of ``jobs`` pooled connections: a psql
per build would cost more than a small table's index.  Exactly once: each build runs in its own transaction
together with its marker row in
``bulkmig.schema_applied`` (``post-data/<type>/<schema>/<name>``), so a load stopped half-way rebuilds only the
ones without a marker; a second loader building the same one at the same moment waits on the marker's key and
then finds it built.  Only pg_dump's output is split (its ``-- Name: …; Type: …`` headers); anything else
(a foreign source's converted DDL) runs whole, as one transaction.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bulkmig.core.workers import Pool
from bulkmig.engines.postgres.schema.common import POST_DATA

# What runs side by side: keys (primary, unique, exclusion) and indexes — never foreign keys or attachments.
_PARALLEL_TYPES = ("CONSTRAINT", "INDEX")
_HEADER = re.compile(r"^-- Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>.*?); Owner: ")


@dataclass(frozen=True)
class Build:
    """One key or index of post-data: its marker name and its SQL (pg_dump's session settings + the entry; no psql
    meta-command: builds run on pooled driver connections, which have none to smuggle in)."""

    marker: str
    label: str  # "INDEX public.film_fulltext_idx", for messages
    sql: str


def split_builds(text: str) -> tuple[list[Build], str]:
    """(the builds that may run side by side, the rest of the section as a script, in the file's order).

    The file is cut at its comment blocks (a ``--`` line followed by a ``-- …`` line: pg_dump's entry headers, its
    closing lines, bulkmig's own REFRESH block), so a build holds exactly its entry.  A file without pg_dump's
    entry headers is all rest."""
    lines = text.splitlines(keepends=True)
    blocks = [i for i in range(len(lines) - 1) if lines[i].rstrip("\n") == "--" and lines[i + 1].startswith("-- ")]
    entries = [i for i in blocks if _HEADER.match(lines[i + 1])]
    if not entries:
        return [], text
    first = entries[0]
    prologue = "".join(lines[:first])  # \restrict, SET …, search_path: the rest's session needs them
    settings = "".join(line for line in lines[:first] if not line.startswith("\\"))  # a build's session, likewise
    cuts = [i for i in blocks if i >= first] + [len(lines)]
    builds: list[Build] = []
    rest = [prologue]
    for begin, stop in itertools.pairwise(cuts):
        body = "".join(lines[begin:stop])
        m = _HEADER.match(lines[begin + 1])
        # A meta-command (\\unrestrict) stays in the one session that reads the whole rest.
        if m and m.group("type") in _PARALLEL_TYPES and not any(line.startswith("\\") for line in lines[begin:stop]):
            schema, name, kind = m.group("schema"), m.group("name"), m.group("type")
            builds.append(Build(f"{POST_DATA}/{kind}/{schema}/{name}", f"{kind} {schema}.{name}", settings + body))
        else:
            rest.append(body)
    return builds, "".join(rest)


def run_builds(
    builds: list[Build],
    jobs: int,
    done: set[str],
    open_conn: Callable[[], Any],
    run_one: Callable[[Any, Build], None],
) -> int:
    """Run every build not in ``done`` (markers already there) on up to ``jobs`` connections (``open_conn``),
    each build through ``run_one(conn, build)`` (one transaction with its marker); the first failure stops the
    others before their next build and is raised.  Returns how many were run."""
    todo = [b for b in builds if b.marker not in done]
    pool: Pool[Build, Any] = Pool("post-data", open_conn, lambda conn: conn.close())
    pool.run(todo, jobs, run_one)
    return len(todo)
