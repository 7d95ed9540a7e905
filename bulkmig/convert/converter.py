"""The conversion itself: one foreign catalog and the task in, the plan's tables, the DDL and the report out
(see the package docstring).  Indexes, checks and foreign keys are in :mod:`.constraints`."""

from __future__ import annotations

import copy
import difflib
import functools
from dataclasses import dataclass, field
from typing import Any

from bulkmig.config import names
from bulkmig.convert import collations, ddl, expressions, report
from bulkmig.convert.constraints import Constraints, _column_finder
from bulkmig.convert.report import Item
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, Catalog, CatalogColumn, CatalogTable, Index
from bulkmig.core.model import Column, Table
from bulkmig.engines.postgres.sql import ident, literal, qualified

_ENGINE_NAMES = {"mysql": "MySQL", "sqlite": "SQLite"}
_FK_RULES = {"RESTRICT", "CASCADE", "SET NULL", "NO ACTION", "SET DEFAULT"}
_ON_UPDATE_NOTE = "ON UPDATE CURRENT_TIMESTAMP"
_AS_IS = {"table": "created as it is", "column": "created as it is"}


@dataclass
class Conversion:
    """The result of :func:`convert` (see the module doc)."""

    tables: list[Table]
    pre_data_sql: str
    post_data_sql: str
    report: dict[str, Any]
    names: names.Names | None = field(default=None, repr=False)

    def render_markdown(self) -> str:
        return report.render_markdown(self.report)

    @property
    def needs_action(self) -> int:
        return int(self.report["summary"]["needs_action"])


def _settings(task: Any) -> tuple[str, str, Any]:
    """(identifiers, primary_keys, mysql type settings) from the task, with the defaults when absent."""
    from bulkmig.engines.mysql.types import TypeSettings

    s = task.settings
    return s.identifiers, s.schema.primary_keys, getattr(s, "mysql", None) or TypeSettings()


def convert(catalog: Catalog, task: Any) -> Conversion:
    """Convert ``catalog`` (one MySQL database or SQLite file) for ``task``.

    Tables the task's mappings do not select are left out (and listed in the report); views are
    converted unless an exclude rule names them.  Raises ConfigError when the DMS rules give two objects
    one target name.
    """
    return _Converter(catalog, task).run()


@dataclass
class _TableOut:
    ct: CatalogTable
    tn: names.TableNames
    model: Table
    item: Item
    columns: dict[str, Item]  # source column -> its report item
    constraint_ns: names.Namespace


class _Converter(Constraints):
    def __init__(self, catalog: Catalog, task: Any) -> None:
        self.catalog = catalog
        self.task = task
        self.identifiers, self.primary_keys, self.type_settings = _settings(task)
        self.dialect = catalog.dialect
        self.items: list[Item] = []
        self.function_ns = names.Namespace()
        self.owned_by: list[str] = []  # ALTER SEQUENCE … OWNED BY for the table being converted
        self.pre: dict[str, list[str]] = {"types": [], "sequences": [], "tables": [], "comments": []}
        self.post: dict[str, list[str]] = {
            "keys": [],
            "identity": [],
            "indexes": [],
            "checks": [],
            "fks": [],
            "triggers": [],
            "views": [],
        }

    # ------------------------------------------------------------------------------------------ run

    def run(self) -> Conversion:
        cat = self.catalog
        mappings = self.task.mappings
        selected = {s.table for s in mappings.select([(cat.schema, t.table.name) for t in cat.tables])}
        self.tables_in = [t for t in cat.tables if t.table.name in selected]
        self.excluded = [t.table.name for t in cat.tables if t.table.name not in selected]
        excluded_views = {
            v.name
            for v in cat.views
            if any(r.action == "exclude" and r.matches(cat.schema, v.name, "view") for r in mappings.selection_rules)
        }
        self.views_in = [v for v in cat.views if v.name not in excluded_views]
        self.names = names.decide(
            self.dialect,
            cat.schema,
            {t.table.name: [c.name for c in t.columns] for t in self.tables_in},
            [v.name for v in self.views_in],
            self.identifiers,
            mappings,
        )
        schema = self.names.schema
        schema_item = Item("schema", cat.schema, target=schema)
        if schema != cat.schema:
            why = "SQLite's main database" if self.dialect == "sqlite" else "folded to lower case"
            schema_item.note(CONVERTED, f"becomes schema {schema} ({why})")
        else:
            schema_item.note(CONVERTED, f"becomes schema {schema}")
        self.items.append(schema_item)
        for group in self.names.table_clashes:
            schema_item.note(
                CHANGED,
                f"{', '.join(group)} differ only in case: they keep their spelling (quote them in SQL)",
            )
        if self.dialect == "sqlite":
            self._unknown_column_types(schema_item)
        # Keys foreign keys point at: a unique key over a case-insensitive collation keeps a plain unique
        # constraint too when one does, since PostgreSQL's foreign keys need one (see _indexes).
        self.referenced = {
            (fk.ref_table, frozenset(fk.ref_columns))
            for t in self.tables_in
            for fk in t.foreign_keys
            if fk.ref_schema == cat.schema
        }
        outs = [self._table(t) for t in self.tables_in]
        self.by_source = {o.ct.table.name: o for o in outs}
        for o in outs:
            self._indexes(o)
        for o in outs:
            self._checks(o)
            self._foreign_keys(o)
        self._views()
        self._code_objects()
        return self._finish(outs)

    # --------------------------------------------------------------------------------------- tables

    def _table(self, ct: CatalogTable) -> _TableOut:
        tn = self.names.table(ct.table.name)
        schema = tn.schema
        item = Item("table", ct.table.name, table=ct.table.name, target=f"{schema}.{tn.name}")
        self._name_note(item, ct.table.name, tn.name)
        if ct.engine and ct.engine.upper() not in ("INNODB", "ARIA") and self.dialect == "mysql":
            item.note(CONVERTED, f"engine {ct.engine}: PostgreSQL tables are transactional")
        if ct.partitioned:
            item.note(CHANGED, "partitioned in MySQL: becomes one plain table")
            item.suggestion = "recreate the partitioning with PostgreSQL declarative partitioning if it is needed"
        if tn.removed:
            item.note(CHANGED, f"columns not migrated (table mappings): {', '.join(tn.removed)}")
        for group in tn.folded_clashes:
            item.note(CHANGED, f"columns {', '.join(group)} differ only in case: they keep their spelling")
        self.items.append(item)
        col_items: dict[str, Item] = {}
        defs: list[ddl.ColumnDef] = []
        model_cols: list[Column] = []
        on_update: list[str] = []
        by_model = {c.name: c for c in ct.table.columns}
        for cc in ct.columns:
            if cc.name in tn.removed:
                continue
            target = tn.columns[cc.name]
            citem = Item("column", f"{ct.table.name}.{cc.name}", table=ct.table.name, target=target)
            self.items.append(citem)
            col_items[cc.name] = citem
            col_def, generated_kept = self._column(ct, tn, cc, citem)
            defs.append(col_def)
            if cc.on_update_current_timestamp and col_def.type.startswith(("timestamp", "date", "time")):
                on_update.append(target)
            m = copy.copy(by_model[cc.name]) if cc.name in by_model else cc.to_model()
            m.target_name = target if target != cc.name else None
            m.target_type = col_def.type
            m.read_as = cc.mapping.read_as
            m.generated = generated_kept
            model_cols.append(m)
        # Primary key.
        pk_cols = list(ct.table.primary_key)
        pk: tuple[str, list[str]] | None = None
        constraint_ns = names.Namespace()
        pk_index = next((i for i in ct.indexes if i.primary), None)
        if pk_cols:
            pk_item = Item("primary_key", f"{ct.table.name}.PRIMARY", table=ct.table.name)
            self.items.append(pk_item)
            missing = [c for c in pk_cols if c in tn.removed]
            if missing:
                pk_item.note(ACTION, f"its columns {', '.join(missing)} are not migrated: no primary key")
                pk_item.suggestion = "keep the key's columns, or define a key on the target after the load"
            else:
                pk_name = self.names.schema_ns.claim(f"{tn.name}_pkey")
                constraint_ns.taken.add(pk_name)
                pk_item.target = pk_name
                pk = (pk_name, [tn.columns[c] for c in pk_cols])
                if pk_index is not None and any(pk_index.prefix_lengths):
                    pk_item.note(CHANGED, "MySQL keyed a prefix of a column: PostgreSQL keys the whole value")
                if pk_index is not None:
                    self._folded_primary_key(ct, tn, pk_index, pk_item)
                if self.primary_keys == "after":
                    pk_item.note(CONVERTED, "created after the data (settings.schema.primary_keys: after)")
                    self.post["keys"].append(ddl.add_primary_key(schema, tn.name, *pk))
                else:
                    pk_item.note(CONVERTED, f"primary key {pk_name}")
        else:
            item.note(CONVERTED, "no primary key on the source, none on the target")
        self.pre["tables"].append(ddl.create_table(schema, tn.name, defs, pk if self.primary_keys != "after" else None))
        self.pre["tables"].extend(self.owned_by)
        self.owned_by = []
        if ct.comment:
            self.pre["comments"].append(ddl.comment_on_table(schema, tn.name, ct.comment))
        for cc in ct.columns:
            if cc.comment and cc.name in tn.columns:
                self.pre["comments"].append(ddl.comment_on_column(schema, tn.name, tn.columns[cc.name], cc.comment))
        if on_update:
            fn = self.function_ns.claim(f"{tn.name}_on_update")
            trigger = constraint_ns.claim(f"{tn.name}_on_update")
            self.post["triggers"].append(ddl.on_update_trigger(schema, tn.name, fn, trigger, on_update))
        model = Table(
            schema=ct.table.schema,
            name=ct.table.name,
            columns=model_cols,
            primary_key=[c for c in pk_cols] if pk is not None else [],
            kind=ct.table.kind,
            parent=ct.table.parent,
            estimated_rows=ct.table.estimated_rows,
            estimated_bytes=ct.table.estimated_bytes,
            split=dict(ct.table.split),
            filter=ct.table.filter,
            target_schema=schema,
            target_name=tn.name,
        )
        return _TableOut(ct, tn, model, item, col_items, constraint_ns)

    def _folded_primary_key(self, ct: CatalogTable, tn: names.TableNames, pk: Index, item: Item) -> None:
        """A primary key over a case-insensitive (or trailing-space-blind) collation: the key stays on the
        columns — exact for the rows there are, since the source refused 'abc' next to 'ABC', so no two
        differ only so — and a unique index on the folded values keeps refusing such rows from now on."""
        folds = self._folds(ct, tn, pk)
        if not any(folds):
            return
        cols = [tn.columns[c] for c in pk.columns]
        keys = [f"({f.function}({ident(c)}))" if f else ident(c) for c, f in zip(cols, folds, strict=True)]
        functions = sorted({f.function for f in folds if f})
        name = self.names.schema_ns.claim(f"{tn.name}_{'_'.join(cols)}_{'_'.join(functions)}_key")
        sql = ddl.create_index(tn.schema, tn.name, name, keys, unique=True)
        self.post["indexes"].append(expressions.guarded("index", tn.schema, name, sql.rstrip(";")))
        item.target_sql = sql
        item.note(
            CHANGED,
            f"kept on ({', '.join(cols)}), exact for the rows there are (the source let no two differ only in what "
            f"its collation ignores), plus {name}",
        )
        for c, f in zip(cols, folds, strict=True):
            if f:
                item.note(CHANGED, f.unique_note(c))

    def _collations(self, ct: CatalogTable, idx: Index) -> list[str | None]:
        """The collation of each key part: the index's own (SQLite), else its column's (MySQL, hand-built
        catalogs); None for expressions without one."""
        if idx.collations:
            return list(idx.collations)
        flags = idx.expressions or [False] * len(idx.columns)
        by_name = {c.name: c.collation for c in ct.columns}
        parts = zip(idx.columns, flags, strict=False)
        return [None if is_expression else by_name.get(part) for part, is_expression in parts]

    def _folds(self, ct: CatalogTable, tn: names.TableNames, idx: Index) -> list[collations.Fold | None]:
        """Per key part, the fold that keeps a unique key over its collation (None: byte-wise already, or
        not text on the target, where a collation changes nothing)."""
        logical = {c.name: c.mapping.logical_type for c in ct.columns}
        flags = idx.expressions or [False] * len(idx.columns)
        out: list[collations.Fold | None] = []
        for part, is_expression, coll in zip(idx.columns, flags, self._collations(ct, idx), strict=False):
            text = is_expression or (logical.get(part) == "text" and part in tn.columns)
            out.append(collations.fold(self.dialect, coll) if text else None)
        return out

    def _collation_notes(
        self, ct: CatalogTable, tn: names.TableNames, idx: Index, item: Item, folds: list[collations.Fold | None]
    ) -> None:
        """What a plain index (not a unique one: those are folded) or an unknown collation changes."""
        for part, f, coll in zip(idx.columns, folds, self._collations(ct, idx), strict=False):
            shown = tn.columns.get(part, part)
            if f is not None and not idx.unique and self.dialect == "sqlite":
                item.note(
                    CHANGED,
                    f"{shown} compares with collation {f.collation} in SQLite: "
                    + f.plain.replace("(col)", f"({shown})"),
                )
            elif collations.unknown(self.dialect, coll):
                item.note(
                    CHANGED,
                    f"{shown} compares with collation {coll} (the application's own) in SQLite: PostgreSQL compares "
                    "byte-wise" + (", so the key refuses exact duplicates only" if idx.unique else ""),
                )

    def _unknown_column_types(self, item: Item) -> None:
        """``settings.sqlite.column_types`` keys naming no column: the override would silently not apply
        (keys are matched exactly, as "Table.Column" is spelled in the file)."""
        overrides = getattr(getattr(self.task.settings, "sqlite", None), "column_types", None) or {}
        known = [f"{t.table.name}.{c.name}" for t in self.catalog.tables for c in t.columns]
        for key in overrides:
            if key in known:
                continue
            same = [k for k in known if k.casefold() == key.casefold()]
            close = same or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            item.note(ACTION, f"settings.sqlite.column_types names {key!r}, which is no column: not applied{hint}")
            item.suggestion = "spell the key as table.column exactly as the SQLite file does"

    def _name_note(self, item: Item, source: str, target: str) -> None:
        if target == source:
            return
        if target == names.fold(source, self.identifiers):  # differs from source: folding made it
            item.note(CONVERTED, f"named {target} (folded to lower case)")
        else:
            item.note(CONVERTED, f"named {target} (table mappings)")

    def _column(
        self, ct: CatalogTable, tn: names.TableNames, cc: CatalogColumn, item: Item
    ) -> tuple[ddl.ColumnDef, bool]:
        """The column's definition and whether it stays a generated column (not copied)."""
        schema, mapping = tn.schema, cc.mapping
        target = tn.columns[cc.name]
        target_type = mapping.target_type
        item.details = {
            "column": cc.name,
            "source_type": cc.column_type,
            "target_type": target_type,
            "read_as": mapping.read_as,
        }
        self._name_note(item, cc.name, target)
        for n in mapping.notes:
            if cc.on_update_current_timestamp and _ON_UPDATE_NOTE in n.message:
                continue  # replaced below: conversion writes the trigger
            item.notes.append(n)
        if mapping.rule is None:
            item.suggestion = (
                f"choose a PostgreSQL type for {cc.column_type} (it is created as text and read as text meanwhile)"
            )
        if mapping.enum_type:
            type_name = self.names.schema_ns.claim(f"{tn.name}_{target}")
            self.pre["types"].append(ddl.create_enum(schema, type_name, mapping.enum_labels))
            target_type = qualified(schema, type_name)
            item.details["target_type"] = f"{schema}.{type_name}"
            item.note(CHANGED, f"enum type {schema}.{type_name} ({len(mapping.enum_labels)} labels)")
        col = ddl.ColumnDef(target, target_type, cc.nullable)
        generated_kept = False
        columns_of = _column_finder(tn.columns)
        if cc.generated:
            t = expressions.translate_expression(
                cc.generation_expression or "", self.dialect, columns_of, what="generation expression", immutable=True
            )
            if t.sql is not None:
                col.generated = t.sql
                generated_kept = True
                if cc.generated == "VIRTUAL":
                    item.note(CHANGED, "VIRTUAL generated column becomes STORED (PostgreSQL < 18 has no virtual)")
                else:
                    item.note(CONVERTED, "STORED generated column")
                for ch in t.changes:
                    item.note(CONVERTED, ch)
            else:
                item.note(ACTION, f"generated column: {t.problem}; its values are copied as a plain column")
                item.suggestion = "recreate the expression as a trigger or a generated column on the target"
                item.source_sql = cc.generation_expression
        if cc.auto_increment:
            if target_type in ddl.INTEGER_TYPES:
                col.identity = True
                self.names.schema_ns.claim(f"{tn.name}_{target}_seq")  # the name PostgreSQL gives its sequence
                item.note(CHANGED, "AUTO_INCREMENT becomes GENERATED BY DEFAULT AS IDENTITY, restarted after load")
            else:
                seq = self.names.schema_ns.claim(f"{tn.name}_{target}_seq")
                self.pre["sequences"].append(ddl.create_sequence(schema, seq))
                col.default = f"nextval({literal(qualified(schema, seq))}::regclass)"
                self.owned_by.append(ddl.sequence_owned_by(schema, seq, tn.name, target))
                item.note(
                    CHANGED,
                    f"AUTO_INCREMENT on {target_type} (no identity on that type): sequence {schema}.{seq} as default",
                )
            self.post["identity"].append(
                ddl.restart_identity(schema, tn.name, target, ct.auto_increment, None if col.identity else seq)
            )
        elif cc.default is not None and not cc.generated:
            t = expressions.default_sql(
                cc.default,
                logical=mapping.logical_type,
                target_type=target_type,
                dialect=self.dialect,
                columns=columns_of,
            )
            if t.sql is not None:
                col.default = t.sql
                for ch in t.changes:
                    item.note(CHANGED, f"default {ch}")
            elif t.problem:
                item.note(ACTION, f"default {cc.default}: {t.problem}; created without a default")
                item.suggestion = item.suggestion or "set the default on the target by hand (ALTER COLUMN SET DEFAULT)"
            else:
                for ch in t.changes:
                    item.note(CHANGED, ch)
        if cc.on_update_current_timestamp:
            if target_type.startswith(("timestamp", "date", "time")):
                item.note(CHANGED, "ON UPDATE CURRENT_TIMESTAMP becomes a BEFORE UPDATE trigger (post-data)")
            else:
                item.note(ACTION, "ON UPDATE CURRENT_TIMESTAMP on a non-timestamp target type is not converted")
        return col, generated_kept

    # -------------------------------------------------------------------------------------- indexes

    def _views(self) -> None:
        cat, nm = self.catalog, self.names
        fold = functools.partial(names.fold, mode=self.identifiers)
        tables = {src: (tn.name, dict(tn.columns)) for src, tn in nm.tables.items()}
        keys = {t.table.name: list(t.table.primary_key) for t in self.tables_in}
        pending = {v.name: v for v in self.views_in}
        items: dict[str, Item] = {}
        for v in self.views_in:
            items[v.name] = Item(
                "view", v.name, target=f"{nm.schema}.{nm.views[v.name]}", source_sql=v.create_sql or v.definition
            )
            self.items.append(items[v.name])
        converted: dict[str, str] = {}
        failed: dict[str, str] = {}
        engine = _ENGINE_NAMES.get(self.dialect, self.dialect)
        # Views read views: translate each after the views it reads; one that reads a failed view fails too.
        for name in expressions.view_order({v.name: v.definition for v in self.views_in}, self.dialect, cat.schema):
            v, item = pending[name], items[name]
            reads = {r.casefold() for r in expressions.view_reads(v.definition, self.dialect, cat.schema)}
            reads_failed = sorted(f for f in failed if f.casefold() in reads)
            if reads_failed:
                t = expressions.Translated(
                    None, problem=f"it reads views that are not created: {', '.join(reads_failed)}"
                )
            else:
                ctx = expressions.ViewContext(self.dialect, cat.schema, nm.schema, tables, converted, fold, keys)
                t = expressions.translate_view(v.definition, ctx)
            if t.sql is None:
                item.target = None
                item.note(ACTION, f"{t.problem}; not created")
                item.suggestion = "rewrite the view in PostgreSQL SQL (the original is in this report) and create it"
                failed[name] = t.problem or ""
                continue
            target = nm.views[name]
            sql = expressions.create_view_sql(
                nm.schema,
                target,
                t.sql,
                check_option=v.details.get("check_option"),
                invoker=v.details.get("security") == "INVOKER",
            )
            self.post["views"].append(expressions.guarded("view", nm.schema, target, sql))
            item.target_sql = sql + ";"
            item.note(
                CHANGED,
                f"translated from {engine} SQL by sqlglot: check the result against the original; should "
                "PostgreSQL refuse it, post-data goes on without it and records why in bulkmig.skipped_objects "
                "(load and status list it)",
            )
            converted[name] = target

    def _code_objects(self) -> None:
        for trg in self.catalog.triggers:
            item = Item("trigger", trg.name, table=trg.table, source_sql=trg.create_sql or trg.definition)
            timing, event = trg.details.get("timing", ""), trg.details.get("event", "")
            item.note(ACTION, f"{timing} {event} trigger on {trg.table}: trigger bodies are not converted".strip())
            item.suggestion = (
                "rewrite the body as a PL/pgSQL function RETURNS trigger (NEW/OLD work alike) and "
                f"CREATE TRIGGER … {timing} {event} ON {trg.table} FOR EACH ROW EXECUTE FUNCTION …"
            )
            item.details = dict(trg.details)
            self.items.append(item)
        for r in self.catalog.routines:
            kind = r.kind if r.kind in ("procedure", "function") else "function"
            item = Item(kind, r.name, source_sql=r.create_sql or r.definition)
            item.note(ACTION, f"stored {kind}s are not converted")
            item.suggestion = f"rewrite it as a PL/pgSQL {kind} (CREATE {kind.upper()} … LANGUAGE plpgsql)"
            item.details = {k: v for k, v in r.details.items() if k != "definer"}
            self.items.append(item)

    # -------------------------------------------------------------------------------------- finish

    def _finish(self, outs: list[_TableOut]) -> Conversion:
        schema = self.names.schema
        header = (
            f"-- bulkmig convert: {_ENGINE_NAMES.get(self.dialect, self.dialect)} {self.catalog.schema} → {schema}\n\n"
        )
        pre = header + ddl.create_schema(schema) + "\n\n"
        pre += ddl.section("enum types (MySQL ENUM columns)", self.pre["types"])
        pre += ddl.section("sequences (AUTO_INCREMENT columns whose type cannot be an identity)", self.pre["sequences"])
        pre += ddl.section("tables", self.pre["tables"])
        pre += ddl.section("comments", self.pre["comments"])
        post = header
        post += ddl.section("primary keys (settings.schema.primary_keys: after)", self.post["keys"])
        post += ddl.section(
            "identities restart past the loaded maximum and the source's AUTO_INCREMENT", self.post["identity"]
        )
        post += ddl.section("unique keys and indexes", self.post["indexes"])
        post += ddl.section("check constraints", self.post["checks"])
        post += ddl.section("foreign keys", self.post["fks"])
        post += ddl.section("ON UPDATE CURRENT_TIMESTAMP triggers", self.post["triggers"])
        post += ddl.section("views (translated by sqlglot)", self.post["views"])
        cat = self.catalog
        head = {
            "source": {
                "engine": "MariaDB" if cat.mariadb else _ENGINE_NAMES.get(cat.dialect, cat.dialect),
                "dialect": cat.dialect,
                "server_version": cat.server_version,
                "mariadb": cat.mariadb,
                "schema": cat.schema,
            },
            "target": {"engine": "PostgreSQL", "schema": schema},
            "settings": self._settings_doc(),
        }
        for item in self.items:
            if not item.notes:
                item.note(CONVERTED, _AS_IS.get(item.kind, "converted as it is"))
        doc = report.build(head, self.items, self.excluded)
        return Conversion([o.model for o in outs], pre.rstrip() + "\n", post.rstrip() + "\n", doc, self.names)

    def _settings_doc(self) -> dict[str, Any]:
        ts = self.type_settings
        doc: dict[str, Any] = {"identifiers": self.identifiers, "primary_keys": self.primary_keys}
        if self.dialect == "mysql":
            doc.update(
                tinyint1_as_boolean=ts.tinyint1_as_boolean,
                zero_dates=ts.zero_dates,
                time_as=ts.time_as,
                postgis=ts.postgis,
            )
        return doc
