"""PostgreSQL -> PostgreSQL schema: everything ``pg_dump --schema-only`` recreates, split around the data.

Why pg_dump and not our own DDL generator: pg_dump already knows every object kind of every server
version it supports (enums, domains, composite types, identity and generated columns, partitions,
functions, aggregates, triggers, rules, policies, comments...) and the order they must be created in.
We only decide *when* each part runs, and *which* part, for a table subset:

* ``pre-data.sql``: types, functions, sequences, tables with defaults, generated and identity columns,
  check constraints, views, materialized views (``WITH NO DATA``), comments — and the primary keys when
  ``settings.schema.primary_keys`` is ``before`` (by default they are post-data's, see :data:`PRIMARY_KEYS_FIRST`).
* ``post-data.sql``: unique constraints, secondary indexes, foreign keys, triggers, rules, policies, then
  ``REFRESH MATERIALIZED VIEW`` for every materialized view that was populated on the source.
  Triggers and foreign keys do not exist while rows arrive, so they can neither fire nor slow the load.

Both files travel on the volume, so the loader never needs the source.  They are applied by ``psql``
(not psycopg) because pg_dump 15.14+ (and 13.22, 14.19, 16.10, 17.6) writes the psql meta-commands
``\\restrict KEY`` / ``\\unrestrict KEY`` around plain-text output (CVE-2025-8714): they stop a
malicious server from smuggling psql meta-commands into a dump, and only psql understands them.

What pg_dump 15 does that we correct for:

* ``--schema-only`` leaves out the ``MATERIALIZED VIEW DATA`` entries, i.e. the REFRESH of populated
  materialized views: they would arrive empty and unreadable.  We append the REFRESHes ourselves.
* ``--schema-only`` leaves out ``SEQUENCE SET``: sequences restart at their START.  Their values are
  read with :func:`sequence_values` (stored in the plan) and set after the load with
  :func:`set_sequences_sql`.
* ``-Fc`` archives keep owners and ``--no-owner`` is ignored for them, so ``pg_restore`` gets
  ``--no-owner --no-privileges`` too: the target's roles are not the source's.
* Subscriptions and user mappings are left out (and reported): their options may hold a password, and
  nothing on the volume may; a subscription must not start pulling changes into the target either.
  pg_dump has ``--no-subscriptions``; user mappings are filtered out of the SQL files, but stay in
  ``schema.dump``, which is why that archive is kept for the operator and never shipped.

Connections go through libpq environment variables (``PGHOST``, ``PGPORT``, ``PGUSER``,
``PGPASSWORD``...) and ``PGDATABASE``: a password is never on a command line (``ps`` shows those to
every user), and a database name holding ``=`` is never misread as a connection string.
"""

from __future__ import annotations

from bulkmig.engines.postgres.schema.apply import INDEX_BUILD_MEMORY, apply_schema, created_tables, statement_spans
from bulkmig.engines.postgres.schema.common import (
    BULKMIG_SCHEMA,
    MARKER_TABLE,
    POST_DATA,
    PRE_DATA,
    PRIMARY_KEYS_FIRST,
    SECTIONS,
    SchemaFiles,
)
from bulkmig.engines.postgres.schema.dump import TocEntry, dump_schema, parse_toc
from bulkmig.engines.postgres.schema.sequences import sequence_values, set_sequences_sql
from bulkmig.engines.postgres.schema.tools import _knows_restrict, connect_env, find_tool, tool_version

__all__ = [
    "BULKMIG_SCHEMA",
    "INDEX_BUILD_MEMORY",
    "MARKER_TABLE",
    "POST_DATA",
    "PRE_DATA",
    "PRIMARY_KEYS_FIRST",
    "SECTIONS",
    "SchemaFiles",
    "TocEntry",
    "_knows_restrict",
    "apply_schema",
    "connect_env",
    "created_tables",
    "dump_schema",
    "find_tool",
    "parse_toc",
    "sequence_values",
    "set_sequences_sql",
    "statement_spans",
    "tool_version",
]
