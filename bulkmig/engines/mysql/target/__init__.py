"""MySQL/MariaDB as a target: schema, full load (``LOAD DATA LOCAL INFILE`` with a ledger), validation reads.

One small class, :class:`MysqlTarget`, holds what the target protocol needs (capabilities, schema conversion at
plan time, the schema sections, ``load_part``, validation reads, the replay session); the stages reach it through
:func:`bulkmig.targets.target_for` and never test the engine's name.  The loop of each stage is the stage's own
(``bulkmig.fullload.load``, ``bulkmig.replay.runner``).

Exactly once: a part's ledger row in ``bulkmig.loaded_parts`` is inserted first, in the same InnoDB transaction as
the part's ``LOAD DATA``; a second loader of the same part waits on that row and then finds it (duplicate key), a
crash rolls both back.  ``LOAD DATA LOCAL`` turns data errors and duplicate keys into warnings (the server cannot
stop the client's file mid-way), so every part must finish with zero warnings and exactly the manifest's row count
or it is rolled back and the load stops, naming the part and the first warning.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, IntegrityError, TargetError
from bulkmig.core.log import say
from bulkmig.core.manifest import VolumeManifest
from bulkmig.core.model import Table
from bulkmig.core.parquet import open_part
from bulkmig.engines.mysql.connect import connect as mysql_connect
from bulkmig.engines.mysql.connect import error_code, error_text
from bulkmig.engines.mysql.target import ddl, ledger
from bulkmig.engines.mysql.target.pipe import TextPipe
from bulkmig.engines.mysql.target.writer import encode_batch, load_column, load_sql, quote_ident
from bulkmig.engines.parts import check_sealed, sealed_entry
from bulkmig.engines.protocols import TargetBase, TargetCapabilities

ER_DUP_ENTRY = 1062
# Schema objects created only at cutover when changes are replayed (see MysqlTarget.apply_schema).
HELD_BACK = frozenset({"trigger"})
# Loading sessions: strict (a bad value is an error, not a silent 0), an explicit 0 in an AUTO_INCREMENT column
# stays 0, foreign keys are not checked row by row (the source was consistent; they are added after the data),
# and a second loader of the same part waits for the first one's ledger row as long as the part takes.
LOAD_SESSION = (
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO',"
    " foreign_key_checks = 0, innodb_lock_wait_timeout = 86400"
)


def _code_objects_item(conn: Any) -> Any:
    """Views, functions and triggers of a PostgreSQL source are not translated: one report line naming them."""
    from bulkmig.convert.report import Item
    from bulkmig.core.catalog import ACTION, CONVERTED

    rows = conn.execute(
        "SELECT 'view ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "UNION ALL SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1"
    ).fetchall()
    item = Item("view", "views, functions and triggers")
    if rows:
        item.note(
            ACTION,
            f"{len(rows)} not translated to MySQL (PL/pgSQL and PostgreSQL SQL): "
            + ", ".join(r[0] for r in rows[:20])
            + ("…" if len(rows) > 20 else "")
            + "; recreate them by hand",
        )
    else:
        item.note(CONVERTED, "none")
    return item


# What the stages may assume of this target (bulkmig.engines.protocols.TargetCapabilities).
CAPABILITIES = TargetCapabilities(
    name="mysql",
    transactional_ddl=False,  # DDL commits on its own: schema steps are recorded one by one
    schemas_are_databases=True,  # a table's "schema" is the target database
    max_identifier=64,
    disables_triggers=False,  # no session_replication_role: triggers are created after the data
    bulk_format="load-data-tsv",
    hash_diff_sources=frozenset(),  # none: validate compares value by value (bulkmig.engines.pairing)
    honours_renames=False,  # refused at plan: the converted DDL names the targets; no renames of it are built
    takes_pg_dump_schema=False,
)


class MysqlTarget(TargetBase):
    """The MySQL/MariaDB target of one task."""

    capabilities = CAPABILITIES
    ledger = ledger

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        if not self.endpoint.database:
            raise ConfigError(
                f"target {self.endpoint.redacted()} names no database", "write mysql://user@host:3306/database"
            )

    # ------------------------------------------------------------------------------- connections

    def connect(self, *, loading: bool = False) -> Any:
        """A target connection (autocommit off); ``loading``: with LOCAL INFILE and the loading session."""
        conn = mysql_connect(self.endpoint, local_infile=1) if loading else mysql_connect(self.endpoint)
        if loading:
            cur = conn.cursor()
            cur.execute(LOAD_SESSION)
            cur.close()
        return conn

    # ------------------------------------------------------------------------------- plan time

    def check_source(self) -> None:
        if self.task.source.engine not in ("mysql", "postgresql", "sqlite"):
            raise ConfigError(
                f"a {self.task.source.engine} source into a MySQL target is not supported yet",
                "use a MySQL/MariaDB or PostgreSQL source, or a PostgreSQL target",
            )
        if self.task.cdc and self.task.source.engine not in ("postgresql", "mysql"):
            raise ConfigError(
                f"migration_type {self.task.migration_type} from {self.task.source.engine} into a MySQL target is "
                "not supported (no change capture from this source)",
                "use migration_type: full-load",
            )

    def check_target(self, shaped: list[Table] | None = None) -> str:
        """``bulkmig check``: the target answers, takes LOCAL INFILE, and supports this source (read only;
        ``shaped``, the tables data-changing rules touch, are PostgreSQL's concern)."""
        self.check_source()
        conn = mysql_connect(self.endpoint)
        try:
            cur = conn.cursor()
            cur.execute("SELECT VERSION(), @@GLOBAL.local_infile")
            version, local_infile = cur.fetchone()
        finally:
            conn.close()
        if not local_infile:
            raise TargetError(
                f"target {self.endpoint.redacted()} has local_infile=OFF: LOAD DATA LOCAL INFILE is refused",
                "SET GLOBAL local_infile = ON on the target (or local_infile=1 in its my.cnf)",
            )
        return f"MySQL/MariaDB {version} at {self.endpoint.redacted()} (local_infile on)"

    def schema_from_postgres(self, conn: Any, chosen: list[Any], tmp: Path, store: Any, native: Any = None) -> Any:
        """A PostgreSQL source's schema for this target, converted with its assessment report (written to the
        volume next to the plan); refuses values MySQL cannot hold (``native``, pg_dump's, is not used).  Returns
        what ``plan`` keeps of pg_dump's output: ``.pre_data``/``.post_data`` files and ``.skipped``."""
        import json
        from types import SimpleNamespace

        from bulkmig.convert import report as report_mod
        from bulkmig.convert import to_mysql

        to_mysql.refuse_unholdable(to_mysql.scan_values(conn, [s.table for s in chosen]))
        out, _ = to_mysql.convert_postgres(conn, chosen, self.endpoint.database)
        out.items.append(_code_objects_item(conn))
        head = {
            "source": {
                "engine": "PostgreSQL",
                "dialect": "postgres",
                "server_version": "",
                "mariadb": False,
                "schema": ", ".join(sorted({s.table.schema for s in chosen})),
            },
            "target": {"engine": "MySQL/MariaDB", "schema": self.endpoint.database},
            "settings": {},
        }
        doc = report_mod.build(head, out.items, [])
        store.put_bytes(layout.ASSESSMENT_MD, report_mod.render_markdown(doc).encode())
        store.put_bytes(
            layout.ASSESSMENT_JSON, (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
        )
        pre, post = tmp / "pre-data.sql", tmp / "post-data.sql"
        pre.write_text(ddl.render(out.pre, f"PostgreSQL → {self.endpoint.database}: tables (pre-data)"))
        post.write_text(ddl.render(out.post, f"PostgreSQL → {self.endpoint.database}: indexes, keys"))
        summary = doc["summary"]
        say(
            f"plan: schema conversion to MySQL: {summary['total']} objects, {summary['needs_action']} need action; "
            f"see {store.url}/{layout.ASSESSMENT_MD}"
        )
        return SimpleNamespace(pre_data=pre, post_data=post, skipped=[])

    def convert_schema(self, catalog: Any, conversion: Any) -> Any:
        """The plan's schema for this target: a MySQL source's own DDL (see :mod:`.ddl`), tables as they are."""
        from bulkmig.convert import Conversion
        from bulkmig.convert import report as report_mod

        self.check_source()
        tables: list[Table] = conversion.tables
        if catalog.dialect != "mysql":
            return self._convert_foreign(catalog, conversion)
        for t in tables:
            self._homogeneous_columns(t, catalog.table(t.name))
        conn = mysql_connect(self.task.source)
        try:
            schema = ddl.read_homogeneous(conn, catalog, [t.name for t in tables])
        finally:
            conn.close()
        head = {
            "source": {
                "engine": "MariaDB" if catalog.mariadb else "MySQL",
                "dialect": catalog.dialect,
                "server_version": catalog.server_version,
                "mariadb": catalog.mariadb,
                "schema": catalog.schema,
            },
            "target": {"engine": "MySQL/MariaDB", "schema": self.endpoint.database},
            "settings": {"homogeneous": True},
        }
        doc = report_mod.build(head, schema.items, conversion.report.get("excluded_tables", []))
        pre = ddl.render(schema.pre, f"{catalog.schema} → {self.endpoint.database}: tables (pre-data)")
        post = ddl.render(schema.post, f"{catalog.schema} → {self.endpoint.database}: indexes, keys, code")
        return Conversion(tables, pre, post, doc)

    def _convert_foreign(self, catalog: Any, conversion: Any) -> Any:
        """A SQLite catalog: converted by :func:`bulkmig.convert.to_mysql.convert_catalog`, with its report."""
        from bulkmig.convert import Conversion, to_mysql
        from bulkmig.convert import report as report_mod

        out = to_mysql.convert_catalog(catalog, conversion.tables, self.endpoint.database)
        head = {
            "source": {
                "engine": "SQLite",
                "dialect": catalog.dialect,
                "server_version": catalog.server_version,
                "mariadb": False,
                "schema": catalog.schema,
            },
            "target": {"engine": "MySQL/MariaDB", "schema": self.endpoint.database},
            "settings": {},
        }
        doc = report_mod.build(head, out.items, conversion.report.get("excluded_tables", []))
        pre = ddl.render(out.pre, f"{catalog.schema} → {self.endpoint.database}: tables (pre-data)")
        post = ddl.render(out.post, f"{catalog.schema} → {self.endpoint.database}: indexes, keys")
        return Conversion(conversion.tables, pre, post, doc)

    def _homogeneous_columns(self, table: Table, source: Any) -> None:
        """Columns land under their own names and types; where the PostgreSQL-bound read changed a value's form
        for nothing here (booleans, SET as an array, spatial WKB without SRID, zero dates as NULL), read it as it
        is.  A text column in a character set other than UTF-8 says so in its target type (the loader converts
        into it)."""
        table.target_schema = self.endpoint.database
        table.target_name = None
        charsets = {cc.name: (cc.charset or "").lower() for cc in source.columns}
        for c in table.columns:
            c.target_name = None
            c.target_type = c.source_type
            if charsets.get(c.name) not in ("", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary"):
                c.target_type = f"{c.source_type} character set {charsets[c.name]}"
            if c.logical_type == "bool":  # tinyint(1): every value 0..255 kept, not only 0/1
                c.logical_type, c.arrow_type, c.read_as = "integer", "int16", None
            elif c.logical_type == "array":  # SET: its own text 'a,b', not a PostgreSQL array literal
                c.logical_type = "text"
            elif c.logical_type == "geometry":  # the internal form: SRID + WKB (see writer.load_column)
                c.read_as = None
            elif c.logical_type in ("date", "timestamp", "timestamptz"):
                # MySQL's own text, zero dates and zero months/days included (no Arrow date holds them); a
                # TIMESTAMP reads and loads as UTC (both sessions are time_zone '+00:00').
                c.read_as, c.arrow_type = "CAST({col} AS CHAR)", "string"

    # ------------------------------------------------------------------------------- load

    def apply_schema(self, statements_sql: str, section: str, volume_id: str) -> int:
        """One section of the schema, resumably.  With change data capture the triggers of post-data are held
        back until cutover: MySQL has no session setting that keeps a trigger from firing (PostgreSQL's
        ``session_replication_role``), so a trigger would rewrite or duplicate the rows replay copies."""
        statements = ddl.parse(statements_sql)
        if section == "post-data" and self.task.cdc:
            held = [st for st in statements if st.kind in HELD_BACK]
            statements = [st for st in statements if st.kind not in HELD_BACK]
            if held:
                say(f"load: {len(held)} trigger(s) held back until cutover (they would fire on the replayed rows)")
        conn = mysql_connect(self.endpoint)
        try:
            conn.autocommit(True)
            if section == "pre-data":
                self._refuse_occupied(conn, statements_sql, volume_id)
            return ddl.apply(conn, statements, volume_id, section, error_code)
        finally:
            conn.close()

    def finish_schema(self) -> int:
        """Cutover, once it is GO: create what :meth:`apply_schema` held back (the triggers); returns how many
        statements ran now (0 on a rerun: the schema steps record them)."""
        from bulkmig.fullload.load import _schema_file, find_volume

        if not self.task.cdc:
            return 0
        store, manifest, plan = find_volume(self.task)
        with tempfile.TemporaryDirectory(prefix="bulkmig-cutover-") as tmpname:
            post = _schema_file(store, manifest, layout.POST_DATA, Path(tmpname) / "post-data.sql")
            held = [st for st in ddl.parse(post.read_text()) if st.kind in HELD_BACK]
        if not held:
            return 0
        conn = mysql_connect(self.endpoint)
        try:
            conn.autocommit(True)
            return ddl.apply(conn, held, plan.volume_id, "cutover", error_code)
        finally:
            conn.close()

    def _refuse_occupied(self, conn: Any, statements_sql: str, volume_id: str) -> None:
        """A first load into a database that already holds one of the tables would mix two datasets."""
        cur = conn.cursor()
        if ledger.has_table(cur, "schema_steps"):
            cur.execute("SELECT 1 FROM bulkmig.schema_steps WHERE volume_id = %s LIMIT 1", (volume_id,))
            if cur.fetchone() is not None:
                return  # this volume's schema is under way: the steps say what is left
        names = [st.name for st in ddl.parse(statements_sql) if st.kind == "table"]
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
        there = sorted({r[0] for r in cur.fetchall()} & set(names))
        mode = getattr(self.task.settings, "existing_tables", "refuse")
        if there and mode != "refuse":
            raise ConfigError(
                f"settings.existing_tables {mode} (DMS TargetTablePrepMode) is supported for PostgreSQL targets "
                f"only yet, and {self.endpoint.database} already holds {', '.join(there[:5])}",
                "drop those tables on the MySQL target (or load into an empty database) and rerun `bulkmig load`",
            )
        if there:
            raise TargetError(
                f"target database {self.endpoint.database} already holds {len(there)} of the tables "
                f"({', '.join(there[:5])})",
                "load into an empty database, or drop those tables",
            )

    def ensure_ledger(self, conn: Any) -> None:
        ledger.ensure_ledger(conn)

    def loaded(self, conn: Any, volume_id: str) -> set[str]:
        return ledger.loaded(conn, volume_id)

    def load_part(
        self,
        conn: Any,
        store: Any,
        manifest: VolumeManifest,
        plan: Any,
        table: Table,
        index: int,
        tmp: Path,
        decrypt_with: Any = None,
    ) -> int:
        """Load one part in one transaction with its ledger row; returns rows loaded, 0 if it was loaded before."""
        key = layout.part_key(table.schema, table.name, index)
        entry = sealed_entry(manifest, key)
        local = tmp / f"{abs(hash(key))}.parquet"
        text = tmp / f"{abs(hash(key))}.tsv"
        store.download(key, local)
        try:
            digest = check_sealed(store, key, local, entry)
            cur = conn.cursor()
            try:
                cur.execute(
                    "INSERT INTO bulkmig.loaded_parts (volume_id, part_key, schema_name, table_name, part_rows, sha256,"
                    " copy_format) VALUES (%s, %s, %s, %s, -1, %s, %s)",
                    (plan.volume_id, key, table.schema, table.name, digest, self.capabilities.bulk_format),
                )
            except Exception as exc:
                conn.rollback()
                if error_code(exc) == ER_DUP_ENTRY:
                    return 0  # loaded before (or just now by another loader)
                raise
            columns = table.copied_columns
            parquet = open_part(local, decrypt_with, f"{store.url}/{key}")
            names = [c.name for c in columns]
            chunks = (
                encode_batch(batch, names)
                for group in range(parquet.num_row_groups)
                for batch in parquet.read_row_group(group).to_batches()
            )
            target = (self.endpoint.database, table.target_name or table.name)
            with TextPipe(text, chunks) as pipe:
                rows = cur.execute(load_sql(str(text), target, [load_column(c) for c in columns]))
                pipe.check()  # an encoding error ended the file early: refused below, with the rollback
            warnings = conn.warning_count()
            if warnings:
                cur.execute("SHOW WARNINGS LIMIT 1")
                first = cur.fetchone()
                conn.rollback()
                raise TargetError(
                    f"part {key}: the target changed or refused {warnings} value(s) or row(s); first: {first[2]}",
                    "fix the column's type or the value at the source, then rerun `bulkmig load` (nothing of this "
                    "part was kept)",
                )
            if rows != entry.rows:
                conn.rollback()
                raise IntegrityError(f"part {key} held {rows} rows, its manifest says {entry.rows}", "re-extract it")
            cur.execute(
                "UPDATE bulkmig.loaded_parts SET part_rows = %s WHERE volume_id = %s AND part_key = %s",
                (rows, plan.volume_id, key),
            )
            conn.commit()
            cur.close()
            return rows
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection: the server rolls back itself
                conn.rollback()
            raise
        finally:
            local.unlink(missing_ok=True)
            text.unlink(missing_ok=True)

    def apply_pre_data(self, pre: Path, volume_id: str) -> None:
        """The load ledger, then the tables (once per volume, statement by statement: see :meth:`apply_schema`)."""
        conn = self.connect()
        try:
            self.ensure_ledger(conn)
        finally:
            conn.close()
        self.apply_schema(pre.read_text(), "pre-data", volume_id)

    def apply_post_data(self, post: Path, volume_id: str, jobs: int = 1) -> None:
        """Secondary indexes and foreign keys after the data, then views, routines and (without CDC) triggers."""
        self.apply_schema(post.read_text(), "post-data", volume_id)

    def after_post_data(self, conn: Any, plan: Any) -> list[str]:
        """Nothing follows post-data here: names are the target's from the start, AUTO_INCREMENT counters are in
        the tables' DDL (and set again at cutover)."""
        return []

    def analyze(self, conn: Any, tables: list[Table]) -> None:
        """Nothing: InnoDB samples a table's statistics by itself once a tenth of its rows changed."""

    def error_text(self, exc: BaseException) -> str:
        return error_text(exc)

    # ------------------------------------------------------------------------------- validation reads

    def select_sql(self, table: Table, columns: list[Any], ordered: bool, where: str | None = None) -> str:
        """The target side of a value-by-value comparison: the same expressions as the MySQL source reads."""
        from bulkmig.engines.mysql.compare import source_expression

        by_name = {c.name: c for c in table.columns}
        if self.task.source.engine == "mysql":
            exprs = [source_expression(c).replace(quote_ident(c.name), quote_ident(c.target), 1) for c in columns]
        else:  # a foreign read_as is the source's own SQL: the target's columns are read as they are, a FLOAT
            # widened to the double it is exactly (MySQL's text for a FLOAT keeps 6 digits)
            exprs = [
                f"({quote_ident(c.target)} + 0E0)" if c.arrow_type == "float32" else quote_ident(c.target)
                for c in columns
            ]
        name = quote_ident(table.target_name or table.name)
        sql = f"SELECT {', '.join(exprs)} FROM {quote_ident(self.endpoint.database)}.{name}"
        if where:
            sql += f" WHERE {where}"
        if ordered and table.primary_key:
            sql += " ORDER BY " + ", ".join(quote_ident(by_name[k].target) for k in table.primary_key)
        return sql

    def sync_sequences(self) -> int:
        """Cutover: every AUTO_INCREMENT counter from a fresh read of the source (see :mod:`.counters`)."""
        from bulkmig.engines.mysql.target.counters import sync_counters
        from bulkmig.fullload.load import find_volume

        _, _, plan = find_volume(self.task)
        return sync_counters(self.task, plan.tables, self.endpoint.database)

    def replay_target(self, **session: Any) -> Any:
        """The target's side of one replay session (``bulkmig.replay.runner`` runs the loop; see :mod:`.apply`)."""
        from bulkmig.engines.mysql.target.apply import ReplayTarget
        from bulkmig.fullload.load import find_plan

        return ReplayTarget(self, find_plan, **session)

    def compare(self, task: Any, table: Table) -> Any:
        """Value-by-value comparison of one table (see :mod:`.compare`); a ``bulkmig.engines.pairing.Tally``."""
        from bulkmig.engines.mysql.target.compare import compare_table

        return compare_table(task, self, table)
