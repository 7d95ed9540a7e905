"""What every part of the schema step shares: the section names, the bulkmig schema, the files on the volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PRE_DATA = "pre-data"
POST_DATA = "post-data"
SECTIONS = (PRE_DATA, POST_DATA)

# Our own schema on a target (the loader's ledger lives there too).  Never dumped from a source: a
# source that was once a bulkmig target must not carry its ledger into the next migration.
BULKMIG_SCHEMA = "bulkmig"
MARKER_TABLE = "schema_applied"
_SKIP_SCHEMAS = ("pg_catalog", "information_schema", BULKMIG_SCHEMA)

# Where dump_schema puts the primary keys when its caller does not say.  With the keys in pre-data, rows meet
# their key as they arrive, so a duplicate stops the load at the part that carries it; in post-data (pg_restore's
# order) the server builds each key once, sorted, which loads narrow tables ~1.5x faster.  plan always passes
# the task's settings.schema.primary_keys (default "after"); this default is kept for direct callers.
PRIMARY_KEYS_FIRST = True

# One advisory lock for every schema section, so two loaders started at once apply a section once.
_SCHEMA_LOCK = 0x62756C6B6D6967  # "bulkmig"

# The first minor releases whose psql knows \restrict (the same releases' pg_dump writes it).
_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}

# pg_dump descriptions made of several words, longest first so "FK CONSTRAINT" wins over "CONSTRAINT".
_MULTIWORD_DESCS = sorted(
    [
        "ACCESS METHOD", "CHECK CONSTRAINT", "DATABASE PROPERTIES", "DEFAULT ACL", "EVENT TRIGGER",
        "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "FOREIGN TABLE", "INDEX ATTACH",
        "LARGE OBJECT", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR CLASS", "OPERATOR FAMILY",
        "PROCEDURAL LANGUAGE", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY",
        "SECURITY LABEL", "SEQUENCE OWNED BY", "SEQUENCE SET", "SHELL TYPE", "SUBSCRIPTION TABLE",
        "TABLE ATTACH", "TABLE DATA", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "USER MAPPING", "BLOB METADATA", "STATISTICS DATA",
    ],
    key=len,
    reverse=True,
)  # fmt: skip
# Objects whose definition may hold a password (FDW credentials); subscriptions are not even dumped.
_SECRET_DESCS = ("USER MAPPING", "SUBSCRIPTION", "SUBSCRIPTION TABLE")

# libpq environment variables and the connection keyword each stands for (for our own psycopg
# connections, which must see exactly what pg_dump and psql see).
_ENV_KEYWORDS = {
    "PGHOST": "host",
    "PGHOSTADDR": "hostaddr",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGPASSFILE": "passfile",
    "PGSERVICE": "service",
    "PGSERVICEFILE": "servicefile",
    "PGOPTIONS": "options",
    "PGAPPNAME": "application_name",
    "PGSSLMODE": "sslmode",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCRL": "sslcrl",
    "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGGSSENCMODE": "gssencmode",
    "PGKRBSRVNAME": "krbsrvname",
    "PGCHANNELBINDING": "channel_binding",
}
_DEFAULT_CONNECT_TIMEOUT = "30"


@dataclass
class SchemaFiles:
    """What :func:`dump_schema` wrote; ``skipped`` names every object left out, each with its reason."""

    pre_data: Path
    post_data: Path
    archive: Path
    skipped: list[str] = field(default_factory=list)
    toc: Path | None = None  # the annotated table of contents: ``pg_restore -L toc.list schema.dump``
    refreshed: list[str] = field(default_factory=list)  # materialized views post-data refreshes
