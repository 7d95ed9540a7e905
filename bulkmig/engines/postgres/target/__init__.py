"""PostgreSQL as a target: the schema sections, the load ledger and COPY of each part, what follows post-data
(renames, sequence values, statistics), and the status reads.

:class:`PostgresTarget` is PostgreSQL's side of the target protocol (``bulkmig.engines.protocols.TargetEngine``);
the stages reach it through :func:`bulkmig.targets.target_for`, as they reach MySQL/MariaDB's
(``engines/mysql/target``), and never test the engine's name.  The loop of each stage (which parts, in which
order, on which executor) is the stage's own; this class supplies only what differs between engines.

Loading sessions run with ``session_replication_role = replica``, so no trigger fires and no foreign key is
checked while rows arrive (post-data creates them afterwards anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import psycopg

from bulkmig.core.log import say
from bulkmig.core.model import Table
from bulkmig.engines.postgres import schema
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import qualified
from bulkmig.engines.postgres.target import ledger, load, renames
from bulkmig.engines.protocols import TargetBase, TargetCapabilities

# settings.existing_tables -> schema.apply_schema's ``existing``.
EXISTING_MODES: dict[str, Literal["error", "append", "drop", "truncate"]] = {
    "refuse": "error",
    "append": "append",
    "drop": "drop",
    "truncate": "truncate",
}


# What the stages may assume of this target (bulkmig.engines.protocols.TargetCapabilities).
CAPABILITIES = TargetCapabilities(
    name="postgresql",
    transactional_ddl=True,  # a schema section is applied in one transaction with its marker
    schemas_are_databases=False,  # a table's schema is a schema of the target database
    max_identifier=63,
    disables_triggers=True,  # session_replication_role = replica while loading and replaying
    bulk_format="copy",
    hash_diff_sources=frozenset({"postgresql"}),  # hashed on both servers (pgdiff), failures recorded
    honours_renames=True,  # the load renames the objects of pg_dump's schema once (renames.py)
    takes_pg_dump_schema=True,
)


class PostgresTarget(TargetBase):
    """The PostgreSQL target of one task."""

    capabilities = CAPABILITIES
    ledger = ledger

    # ------------------------------------------------------------------------------- connections

    def connect(self, *, loading: bool = False) -> psycopg.Connection:
        """A target connection in autocommit; ``loading``: a loading session, in which no trigger fires."""
        conn = connect(self.endpoint, autocommit=True)
        if loading:
            conn.execute("SET session_replication_role = replica")
        return conn

    def error_text(self, exc: BaseException) -> str:
        """A part's database error in one line, for the error naming the part."""
        return (str(exc).strip() or type(exc).__name__).splitlines()[0]

    # ------------------------------------------------------------------------------- check and plan time

    def check_target(self, shaped: list[Table] | None = None) -> str:
        """``bulkmig check``: the target answers, is a PostgreSQL bulkmig supports, and has every tablespace the
        data-changing rules of the ``shaped`` tables move objects into (read only)."""
        from bulkmig.engines.postgres.connect import require_version
        from bulkmig.transform.target import refuse_missing_tablespaces

        with connect(self.endpoint, autocommit=True) as conn:
            require_version(conn, self.endpoint)
            version = conn.execute("SHOW server_version").fetchone()[0]
            refuse_missing_tablespaces(conn, shaped or [])  # a tablespace rename onto one the target lacks
        return f"PostgreSQL {version} at {self.endpoint.redacted()}"

    def check_source(self) -> None:
        """Every source engine loads into PostgreSQL: nothing to refuse."""

    def schema_from_postgres(self, conn: Any, chosen: list[Any], tmp: Path, store: Any, native: Any) -> Any:
        """A PostgreSQL source's schema as it is: ``native()`` runs pg_dump inside the plan's snapshot."""
        return native()

    def convert_schema(self, catalog: Any, conversion: Any) -> Any:
        """A foreign catalog's conversion is PostgreSQL's already (``bulkmig.convert``): kept as it is."""
        return conversion

    # ------------------------------------------------------------------------------- load

    def apply_pre_data(self, pre: Path, volume_id: str) -> None:
        """Types, tables and their primary keys (once per volume; ``settings.existing_tables``, DMS
        TargetTablePrepMode, says what happens to tables that already exist), then the load ledger."""
        existing = EXISTING_MODES[self.task.settings.existing_tables]
        schema.apply_schema(
            self.endpoint.libpq_env(), self.endpoint.database, pre, "pre-data", volume_id=volume_id, existing=existing
        )
        with self.connect() as conn:
            conn.execute(ledger.LEDGER_DDL)

    def loaded(self, conn: Any, volume_id: str) -> set[str]:
        return ledger.loaded_keys(conn, volume_id)

    # One part in one transaction with its ledger row; rows loaded, 0 if loaded before.
    load_part = staticmethod(load.load_part)

    def apply_post_data(self, post: Path, volume_id: str, jobs: int = 1) -> None:
        """Primary keys (by default), secondary indexes, foreign keys, triggers, materialized view refreshes (once
        per volume); keys and indexes built ``jobs`` at a time, as pg_restore -j does."""
        schema.apply_schema(
            self.endpoint.libpq_env(), self.endpoint.database, post, "post-data", volume_id=volume_id, jobs=jobs
        )

    def after_post_data(self, conn: Any, plan: Any) -> list[str]:
        """The renames of the transformation rules (once), the sequence values; returns a line for each
        translated object PostgreSQL refused in post-data (the load's last words)."""
        # Only a PostgreSQL source's schema (pg_dump's DDL) is created under the source names and renamed here;
        # a foreign source's converted DDL already names the targets.
        homogeneous = plan.source.get("engine", "postgresql") == "postgresql"
        if (
            homogeneous
            and renames.has_renames(plan.tables)
            and renames.apply_renames(conn, plan.tables, plan.volume_id, renames.parent_names(self.task, plan.tables))
        ):
            say(f"load: renamed the schema's objects as the transformation rules say ({len(plan.tables)} tables)")
        if plan.sequences:
            moved = {t.schema: t.target_qualified[0] for t in plan.tables}  # renamed schemas hold them now
            values = [{**s, "schema": moved.get(s["schema"], s["schema"])} for s in plan.sequences]
            conn.execute(schema.set_sequences_sql(values))
        from bulkmig.engines.postgres.target.skipped import skipped_objects  # translated objects PostgreSQL refused

        return [f"load: {obj.line()}" for obj in skipped_objects(conn)]

    def analyze(self, conn: Any, tables: list[Table]) -> None:
        """Fresh planner statistics for every loaded table (COPY leaves none)."""
        for table in tables:
            conn.execute(f"ANALYZE {qualified(*table.target_qualified)}")

    # ------------------------------------------------------------------------------- cutover

    def sync_sequences(self) -> int:
        """Every target sequence that also exists on the source set to the source's value now."""
        src = connect(self.task.source, autocommit=True)
        dst = connect(self.endpoint, autocommit=True)
        try:
            # A schema renamed by the table mappings holds its sequences on the target (their own names stay).
            target_schema = self.task.mappings.target_schema_name
            values = [{**v, "schema": target_schema(v["schema"])} for v in schema.sequence_values(src)]
            present = {
                (r[0], r[1])
                for r in dst.execute("SELECT schemaname, sequencename FROM pg_catalog.pg_sequences").fetchall()
            }
            wanted = [v for v in values if (v["schema"], v["name"]) in present]
            sql = schema.set_sequences_sql(wanted)
            if sql:
                dst.execute(sql)
            return len(wanted)
        finally:
            src.close()
            dst.close()

    def finish_schema(self) -> int:
        """Nothing is held back from post-data here (``session_replication_role`` keeps triggers quiet)."""
        return 0

    # ------------------------------------------------------------------------------- replay

    def replay_target(
        self, *, target_names: bool, marks: Mapping[tuple[str, str], Any], stream_doc: Any, set_based: bool = True
    ) -> Any:
        """The target's side of one replay session (:mod:`.replay`); ``set_based=False`` applies change by change
        (the reference the equivalence tests compare with)."""
        from bulkmig.engines.postgres.target.replay import PgReplayTarget, open_target

        return PgReplayTarget(
            self.task, open_target(self.task), target_names=target_names, marks=marks, set_based=set_based
        )

    # ------------------------------------------------------------------------------- validation reads

    def compare(self, task: Any, table: Table) -> Any:
        """Value-by-value comparison of one table with a foreign source (:mod:`.compare`); a Tally.  A PostgreSQL
        source is compared by row hashes on both servers instead (``capabilities.hash_diff_sources``)."""
        from bulkmig.engines.postgres.target.compare import compare_foreign

        return compare_foreign(task, table)
