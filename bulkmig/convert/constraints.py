"""Keys, indexes, checks and foreign keys of a converted table: what PostgreSQL can build as the source has
it, what it builds with changes (a case-insensitive collation folded into an expression index, a prefix
index widened), and what needs action.  A mixin of the converter, which holds the shared state."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from bulkmig.config import names
from bulkmig.convert import collations, ddl, expressions
from bulkmig.convert.report import Item
from bulkmig.core.catalog import ACTION, CHANGED, CONVERTED, CatalogTable, Index
from bulkmig.engines.postgres.sql import ident, qualified

if TYPE_CHECKING:
    from bulkmig.convert.converter import _TableOut

_FK_RULES = {"RESTRICT", "CASCADE", "SET NULL", "NO ACTION", "SET DEFAULT"}


class Constraints:
    """Indexes, checks and foreign keys (methods of :class:`bulkmig.convert.converter._Converter`)."""

    def _indexes(self, o: _TableOut) -> None:
        ct, tn = o.ct, o.tn
        schema = tn.schema
        for idx in ct.indexes:
            if idx.primary:
                continue
            kind = "unique_key" if idx.unique else "index"
            item = Item(kind, f"{ct.table.name}.{idx.name}", table=ct.table.name)
            self.items.append(item)
            if any(idx.expressions) or idx.where is not None:
                self._translated_index(o, idx, item)
                continue
            missing = [c for c in idx.columns if c not in tn.columns]
            if missing:
                item.note(ACTION, f"its columns {', '.join(missing)} are not migrated: not created")
                item.suggestion = "keep the columns, or create a fitting index on the target"
                continue
            cols = [tn.columns[c] for c in idx.columns]
            types = {tn.columns[c.name]: c.mapping.target_type for c in ct.columns if c.name in tn.columns}
            if idx.fulltext:
                item.note(ACTION, "FULLTEXT index: PostgreSQL full-text search works differently; not created")
                doc = " || ' ' || ".join(f"coalesce({ident(c)}, '')" for c in cols)
                name = f"{tn.name}_{idx.name.lower()}_fts"
                item.suggestion = (
                    f"CREATE INDEX {ident(name)} ON {qualified(schema, tn.name)} USING gin "
                    f"(to_tsvector('simple', {doc})); and rewrite MATCH … AGAINST as "
                    f"to_tsvector('simple', {doc}) @@ plainto_tsquery('simple', …)"
                )
                continue
            if idx.spatial:
                if all(types[c].startswith("geometry") for c in cols):
                    name = self._index_name(tn.name, idx.name, item)
                    self.post["indexes"].append(
                        ddl.create_index(schema, tn.name, name, [ident(cols[0])], method="gist")
                    )
                    item.note(CHANGED, "SPATIAL index becomes a PostGIS GiST index")
                else:
                    item.note(ACTION, "SPATIAL index on a WKB bytea column (no PostGIS): not created")
                    item.suggestion = (
                        "install PostGIS on the target and set settings.mysql.postgis: true, then convert again"
                    )
                continue
            keys: list[str] = []
            expression = False
            folds = self._folds(ct, tn, idx)
            self._collation_notes(ct, tn, idx, item, folds)
            folded = [(col, f) for col, f in zip(cols, folds, strict=True) if f is not None and idx.unique]
            for col, prefix, desc, f in zip(cols, idx.prefix_lengths, idx.descending, folds, strict=False):
                inner = ident(col)
                if prefix:
                    t = types[col]
                    if idx.unique or t in ("text", "bytea") or t.startswith(("jsonb", "text")):
                        func = "substring({} FROM 1 FOR {})" if t == "bytea" else "left({}, {})"
                        inner = func.format(ident(col), prefix)
                        expression = True
                        item.note(CHANGED, f"prefix of {prefix} on {col}: indexes the expression ({inner})")
                    else:
                        item.note(CHANGED, f"prefix of {prefix} on {col}: PostgreSQL indexes the whole {t} value")
                if f is not None and idx.unique:  # the folded value is what the source kept unique
                    inner = f"{f.function}({inner})"
                    expression = True
                key = f"({inner})" if inner != ident(col) else inner
                if desc:
                    key += " DESC"
                    expression = True
                keys.append(key)
            name = self._index_name(tn.name, idx.name, item)
            if folded:
                self._folded_unique(o, idx, item, name, keys, cols, folded)
                continue
            if idx.unique and not expression:
                self.post["indexes"].append(ddl.add_unique(schema, tn.name, name, cols))
                o.constraint_ns.taken.add(name)
            else:
                self.post["indexes"].append(ddl.create_index(schema, tn.name, name, keys, unique=idx.unique))
            if idx.kind == "HASH":
                item.note(CONVERTED, "HASH index becomes a B-tree")
            elif idx.unique and not expression:
                item.note(CONVERTED, f"unique constraint ({', '.join(cols)})")
            else:
                item.note(CONVERTED, f"{'unique ' if idx.unique else ''}B-tree index ({', '.join(keys)})")

    def _folded_unique(
        self,
        o: _TableOut,
        idx: Index,
        item: Item,
        name: str,
        keys: list[str],
        cols: list[str],
        folded: list[tuple[str, collations.Fold]],
    ) -> None:
        """A unique key over a case-insensitive collation: a unique index on the folded values, guarded (the
        fold may be stricter than the collation: lower() folds all of Unicode, NOCASE only ASCII), plus the
        plain unique constraint when a foreign key points at the columns (PostgreSQL needs one there)."""
        tn = o.tn
        sql = ddl.create_index(tn.schema, tn.name, name, keys, unique=True)
        self.post["indexes"].append(expressions.guarded("index", tn.schema, name, sql.rstrip(";")))
        item.target_sql = sql
        for col, f in folded:
            item.note(CHANGED, f.unique_note(col))
        if (o.ct.table.name, frozenset(idx.columns)) in self.referenced:
            plain = self.names.schema_ns.claim(f"{tn.name}_{'_'.join(cols)}_key")
            o.constraint_ns.taken.add(plain)
            self.post["indexes"].append(ddl.add_unique(tn.schema, tn.name, plain, cols))
            item.note(
                CONVERTED,
                f"also unique constraint {plain} ({', '.join(cols)}) for the foreign keys that reference it "
                "(exact for the rows there are)",
            )

    def _translated_index(self, o: _TableOut, idx: Index, item: Item) -> None:
        """An index with expressions among its keys or a WHERE predicate (SQLite; MySQL 8 functional
        indexes): both translated by sqlglot, column names mapped like checks.  All or nothing: a partial
        unique index created without its predicate would refuse rows the source holds (and a partial
        index without it would index what the source did not), so when a part does not translate the
        index is reported with its original SQL and not created."""
        ct, tn = o.ct, o.tn
        item.source_sql = _index_source_sql(ct.table.name, idx)
        find = _column_finder(tn.columns)
        booleans = _boolean_columns(ct, tn)
        flags = idx.expressions or [False] * len(idx.columns)
        descending = idx.descending or [False] * len(idx.columns)
        keys: list[str] = []
        problems: list[str] = []
        changes: list[str] = []
        folds = self._folds(ct, tn, idx)
        folded: list[tuple[str, collations.Fold]] = []
        for part, is_expression, desc, f in zip(idx.columns, flags, descending, folds, strict=False):
            if is_expression:
                t = expressions.translate_expression(
                    part, self.dialect, find, what="index expression", immutable=True, booleans=booleans
                )
                if t.sql is None:
                    problems.append(t.problem or f"the index expression {part!r} does not translate")
                    continue
                changes.extend(t.changes)
                inner = t.sql
            elif part in tn.columns:
                inner = ident(tn.columns[part])
            else:
                problems.append(f"its column {part} is not migrated")
                continue
            wrapped = is_expression
            if f is not None and idx.unique:  # the folded value is what the source kept unique
                folded.append((inner if is_expression else tn.columns[part], f))
                inner, wrapped = f"{f.function}({inner})", True
            keys.append((f"({inner})" if wrapped else inner) + (" DESC" if desc else ""))
        where: str | None = None
        if idx.where is not None:
            t = expressions.translate_expression(
                idx.where, self.dialect, find, what="index predicate", immutable=True, booleans=booleans
            )
            if t.sql is None:
                problems.append(t.problem or f"the index predicate {idx.where!r} does not translate")
            else:
                where = t.sql
                changes.extend(t.changes)
        what = ("unique " if idx.unique else "") + ("partial " if idx.where is not None else "") + "index"
        if any(flags):
            what += " on expressions"
        if problems:
            item.target = None
            item.note(ACTION, f"{what}: {'; '.join(problems)}; not created (never without its expressions or WHERE)")
            item.suggestion = (
                "write the index in PostgreSQL SQL (the original is in this report) and create it after the load"
            )
            return
        name = self._index_name(tn.name, idx.name, item)
        sql = ddl.create_index(tn.schema, tn.name, name, keys, unique=idx.unique, where=where)
        self.post["indexes"].append(expressions.guarded("index", tn.schema, name, sql.rstrip(";")))
        item.target_sql = sql
        for change in changes:
            item.note(CHANGED, change)
        self._collation_notes(ct, tn, idx, item, folds)
        for part, f in folded:
            item.note(CHANGED, f.unique_note(part))
        shown = f"({', '.join(keys)})" + (f" WHERE {where}" if where is not None else "")
        item.note(
            CONVERTED,
            f"{what} {shown}, translated by sqlglot; should PostgreSQL refuse it, post-data goes on without it "
            "and records why in bulkmig.skipped_objects (load and status list it)",
        )

    def _index_name(self, table: str, index: str, item: Item) -> str:
        wanted = names.fold(index, self.identifiers)
        ns = self.names.schema_ns
        name = ns.claim(wanted) if names.truncate(wanted) not in ns.taken else ns.claim(f"{table}_{wanted}")
        item.target = name
        if name != index:
            why = "index names are unique per schema in PostgreSQL, per table in MySQL"
            if name == index.lower():
                item.note(CONVERTED, f"named {name} (folded to lower case)")
            else:
                item.note(CHANGED, f"named {name}: {why}")
        return name

    # ------------------------------------------------------------------------------- checks and FKs

    def _checks(self, o: _TableOut) -> None:
        ct, tn = o.ct, o.tn
        json_cols = {c.name for c in ct.columns if c.is_json}
        for chk in ct.checks:
            item = Item("check", f"{ct.table.name}.{chk.name}", table=ct.table.name, source_sql=chk.clause)
            self.items.append(item)
            m = _json_check(chk.clause)
            if m is not None and m in json_cols:
                item.note(CONVERTED, "json_valid check: the jsonb type itself refuses invalid JSON")
                continue
            t = expressions.translate_expression(
                chk.clause, self.dialect, _column_finder(tn.columns), what="check", booleans=_boolean_columns(ct, tn)
            )
            if t.sql is None:
                item.note(ACTION, f"{t.problem}; not created")
                item.suggestion = "write the check in PostgreSQL SQL and add it with ALTER TABLE … ADD CONSTRAINT"
                continue
            name = o.constraint_ns.claim(names.fold(chk.name, self.identifiers))
            item.target = name
            item.target_sql = t.sql
            self.post["checks"].append(ddl.add_check(tn.schema, tn.name, name, t.sql))
            for ch in t.changes:
                item.note(CHANGED, ch)
            if not t.changes:
                item.note(CONVERTED, "check constraint")

    def _foreign_keys(self, o: _TableOut) -> None:
        ct, tn = o.ct, o.tn
        for fk in ct.foreign_keys:
            item = Item("foreign_key", f"{ct.table.name}.{fk.name}", table=ct.table.name)
            self.items.append(item)
            missing = [c for c in fk.columns if c not in tn.columns]
            ref = self.by_source.get(fk.ref_table) if fk.ref_schema == self.catalog.schema else None
            if missing:
                item.note(ACTION, f"its columns {', '.join(missing)} are not migrated: not created")
                item.suggestion = "keep the columns, or drop the key"
                continue
            if ref is None:
                item.note(ACTION, f"references {fk.ref_schema}.{fk.ref_table}, which is not migrated: not created")
                item.suggestion = "migrate the referenced table too, or add the key on the target when it exists"
                continue
            ref_missing = [c for c in fk.ref_columns if c not in ref.tn.columns]
            if ref_missing:
                item.note(ACTION, f"references columns not migrated: {', '.join(ref_missing)}")
                item.suggestion = "keep the referenced columns"
                continue
            if not _has_unique(ref.ct, fk.ref_columns):
                item.note(
                    ACTION,
                    f"references ({', '.join(fk.ref_columns)}) of {fk.ref_table}, which is neither its primary key "
                    "nor a unique key: InnoDB allows that, PostgreSQL does not; not created",
                )
                item.suggestion = "add a unique constraint on the referenced columns, then the foreign key"
                continue
            rules = []
            for what, rule in (("ON UPDATE", fk.on_update), ("ON DELETE", fk.on_delete)):
                if rule.upper() not in _FK_RULES:
                    rules.append(f"{what} {rule} is unknown")
            if rules:
                item.note(ACTION, "; ".join(rules))
                item.suggestion = "add the foreign key on the target with the closest PostgreSQL rule"
                continue
            name = o.constraint_ns.claim(names.fold(fk.name, self.identifiers))
            item.target = name
            self.post["fks"].append(
                ddl.add_foreign_key(
                    tn.schema,
                    tn.name,
                    name,
                    [tn.columns[c] for c in fk.columns],
                    ref.tn.schema,
                    ref.tn.name,
                    [ref.tn.columns[c] for c in fk.ref_columns],
                    fk.on_update.upper(),
                    fk.on_delete.upper(),
                )
            )
            msg = f"→ {ref.tn.name} ({', '.join(ref.tn.columns[c] for c in fk.ref_columns)})"
            msg += f" ON UPDATE {fk.on_update} ON DELETE {fk.on_delete}"
            if fk.self_referencing:
                msg += "; self-referencing (added after the data, so row order does not matter)"
            item.note(CONVERTED, msg)

    # --------------------------------------------------------------------------------------- views


def _has_unique(ct: CatalogTable, columns: list[str]) -> bool:
    """Whether ``columns`` are exactly the primary key or a (whole-value) unique key of ``ct``.  A partial
    or expression unique index does not count: PostgreSQL's foreign keys need a plain one."""
    want = set(columns)
    for idx in ct.indexes:
        plain = not any(idx.prefix_lengths) and not any(idx.expressions) and idx.where is None
        if (idx.primary or idx.unique) and set(idx.columns) == want and plain:
            return True
    return set(ct.table.primary_key) == want and bool(want)


def _index_source_sql(table: str, idx: Index) -> str:
    """The index as a CREATE INDEX in the source's terms, for the report (the catalog keeps its parts)."""
    flags = idx.expressions or [False] * len(idx.columns)
    descending = idx.descending or [False] * len(idx.columns)
    parts = [
        (part if is_expression else ident(part)) + (" DESC" if desc else "")
        for part, is_expression, desc in zip(idx.columns, flags, descending, strict=False)
    ]
    # SQLite double-quotes identifiers and doubles embedded quotes exactly as PostgreSQL does.
    sql = f"CREATE {'UNIQUE ' if idx.unique else ''}INDEX {ident(idx.name)} ON {ident(table)} ({', '.join(parts)})"
    return sql + (f" WHERE {idx.where}" if idx.where is not None else "")


def _json_check(clause: str) -> str | None:
    m = re.match(r"^\s*json_valid\(\s*`((?:[^`]|``)+)`\s*\)\s*$", clause, re.I)
    return m.group(1).replace("``", "`") if m else None


def _column_finder(columns: dict[str, str]) -> Callable[[str], str | None]:
    """Source column → target column for expressions, ignoring case as MySQL and SQLite do."""

    def find(name: str) -> str | None:
        if name in columns:
            return columns[name]
        matches = [target for source, target in columns.items() if source.casefold() == name.casefold()]
        return matches[0] if len(matches) == 1 else None

    return find


def _boolean_columns(ct: CatalogTable, tn: names.TableNames) -> set[str]:
    """The target names of the table's columns that are boolean on the target (expressions compare them
    with TRUE/FALSE there, not 0/1)."""
    return {tn.columns[c.name] for c in ct.columns if c.name in tn.columns and c.mapping.target_type == "boolean"}
