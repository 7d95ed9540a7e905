"""A SQLite table's keys, indexes, foreign keys and checks, as reflection reads them (and, with the value scan,
the rows that break a foreign key or compare differently under a collation).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

from bulkmig.core.catalog import (
    ACTION,
    CheckConstraint,
    ForeignKey,
    Index,
    Note,
)
from bulkmig.engines.sqlite import sqltext
from bulkmig.engines.sqlite.tables import SCHEMA, ReflectedColumn, RowRef, collation, fetch_all, quote_ident


def read_indexes(
    conn: sqlite3.Connection,
    table: str,
    index_rows: list[tuple[Any, ...]],
    parsed: sqltext.TableDef,
    primary_key: list[str],
    rowid_alias: bool,
) -> list[Index]:
    out: list[Index] = []
    pk_def = next((k for k in parsed.keys if k.kind == "PRIMARY"), None)
    if rowid_alias:  # the rowid is the key: no index of its own, but the target needs one
        out.append(
            Index(
                (pk_def.name if pk_def else None) or "PRIMARY",
                list(primary_key),
                True,
                True,
                "BTREE",
                [None],
                [False],
                collations=[None],  # an integer: no collation applies
            )
        )
    for _seq, name, unique, origin, partial in sorted(index_rows, key=lambda r: (r[3] != "pk", r[1])):
        parts = [r for r in fetch_all(conn, f"PRAGMA main.index_xinfo({quote_ident(name)})") if r[5]]  # key columns
        sql_rows = fetch_all(conn, "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND name = ?", (name,))
        sql = (sql_rows[0][0] if sql_rows else None) or ""
        idef = sqltext.parse_create_index(sql) if sql else sqltext.IndexDef([], None)
        columns, expressions = [], []
        for seqno, cid, cname, _desc, _coll, _key in parts:  # _coll: the part's own COLLATE, else its column's
            if cid == -2:
                columns.append(idef.parts[seqno] if seqno < len(idef.parts) else "?")
                expressions.append(True)
            else:
                columns.append(cname if cid != -1 else "rowid")
                expressions.append(cid == -1)
        if origin in ("pk", "u"):  # made for a PRIMARY KEY / UNIQUE constraint: named after it
            kind = "PRIMARY" if origin == "pk" else "UNIQUE"
            match = next(
                (
                    k
                    for k in parsed.keys
                    if k.kind == kind and [c.lower() for c in k.columns] == [c.lower() for c in columns]
                ),
                None,
            )
            name = (match.name if match else None) or (
                "PRIMARY" if origin == "pk" else f"{table}_{'_'.join(columns)}_key"
            )
        out.append(
            Index(
                name=name,
                columns=columns,
                unique=bool(unique),
                primary=origin == "pk",
                kind="BTREE",
                prefix_lengths=[None] * len(columns),
                descending=[bool(p[3]) for p in parts],
                expressions=expressions if any(expressions) else [],
                where=idef.where if partial else None,
                collations=[collation(p[4]) for p in parts],
            )
        )
    return out


def read_foreign_keys(
    conn: sqlite3.Connection, table: str, parsed: sqltext.TableDef, own: list[str], tables: list[str]
) -> list[ForeignKey]:
    grouped: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in fetch_all(conn, f"PRAGMA main.foreign_key_list({quote_ident(table)})"):
        grouped[row[0]].append(row)
    named = list(parsed.foreign_keys)
    out, used = [], set()
    for fid in sorted(grouped):
        rows = sorted(grouped[fid], key=lambda r: r[1])
        parent = fetch_all(conn, f"PRAGMA main.table_info({quote_ident(rows[0][2])})")
        # SQLite matches names case-insensitively: give them as their tables declare them.
        ref_table = next((t for t in tables if t.lower() == rows[0][2].lower()), rows[0][2])
        own_names = {c.lower(): c for c in own}
        parent_names = {r[1].lower(): r[1] for r in parent}
        cols = [own_names.get(r[3].lower(), r[3]) for r in rows]
        ref_cols = [parent_names.get(r[4].lower(), r[4]) if r[4] is not None else None for r in rows]
        if any(c is None for c in ref_cols):  # REFERENCES parent without columns: the parent's primary key
            pk = [r[1] for r in sorted(parent, key=lambda r: r[5]) if r[5]]
            ref_cols = pk if len(pk) == len(cols) else ref_cols
        match = next(
            (
                d
                for d in named
                if [c.lower() for c in d.columns] == [c.lower() for c in cols]
                and d.ref_table.lower() == ref_table.lower()
                and id(d) not in used
            ),
            None,
        )
        if match is not None:
            used.add(id(match))
        name = (match.name if match else None) or f"{table}_{'_'.join(cols)}_fkey"
        out.append(
            ForeignKey(
                name=name,
                columns=cols,
                ref_schema=SCHEMA,
                ref_table=ref_table,
                ref_columns=[c or "?" for c in ref_cols],
                on_update=rows[0][5],
                on_delete=rows[0][6],
                self_referencing=ref_table.lower() == table.lower(),
            )
        )
    # foreign_key_list numbers constraints last-declared first; report them in declaration order.
    return list(reversed(out))


def check_foreign_keys(
    conn: sqlite3.Connection, table: str, fks: list[ForeignKey], cols: list[ReflectedColumn]
) -> None:
    """Rows that break a foreign key (SQLite enforces them only with PRAGMA foreign_keys=ON, off by default):
    PostgreSQL would refuse to create the constraint after the load."""
    try:
        broken = fetch_all(conn, f"PRAGMA main.foreign_key_check({quote_ident(table)})")
    except sqlite3.DatabaseError as exc:  # "foreign key mismatch": the parent key is not unique, or missing
        if fks and cols:
            first = next((c for c in cols if c.name == fks[0].columns[0]), cols[0])
            first.notes.append(Note(ACTION, f"the foreign keys of {table} cannot be checked: {exc}"))
        return
    n_fks = len(fks)
    per_fk: dict[int, list[Any]] = defaultdict(list)
    for _t, rowid, _parent, fkid in broken:
        per_fk[fkid].append(rowid)
    by_name = {c.name: c for c in cols}
    for fkid, rowids in per_fk.items():
        fk = fks[n_fks - 1 - fkid] if 0 <= fkid < n_fks else None  # fks are in declaration order (reversed ids)
        if fk is None:
            continue
        where = f"rowid {rowids[0]}" if rowids[0] is not None else "a row"
        target = by_name.get(fk.columns[0])
        if target is not None:
            target.notes.append(
                Note(
                    ACTION,
                    f"{len(rowids)} row(s) break foreign key {fk.name} ({', '.join(fk.columns)} → {fk.ref_table}), "
                    f"e.g. {where}: PostgreSQL will refuse the constraint; fix or delete those rows",
                )
            )


def check_foreign_key_collations(
    conn: sqlite3.Connection, table: str, fks: list[ForeignKey], cols: list[ReflectedColumn], ref: RowRef
) -> None:
    """Rows whose foreign key finds its parent only through the parent key's collation: SQLite compares
    with it (child 'ABC' matches parent 'abc' under NOCASE), PostgreSQL compares exactly and would refuse
    the constraint after the load.  Rows with no parent at all are :func:`check_foreign_keys`' business."""
    by_name = {c.name: c for c in cols}
    for fk in fks:
        target = by_name.get(fk.columns[0])
        sql = fetch_all(conn, "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (fk.ref_table,))
        if target is None or not sql or not sql[0][0] or "?" in fk.ref_columns:
            continue
        parent = sqltext.parse_create_table(sql[0][0])
        colls = [collation(d.collation) if (d := parent.columns.get(c.lower())) else None for c in fk.ref_columns]
        if not any(colls):
            continue
        pairs = list(zip(fk.ref_columns, fk.columns, strict=True))
        # Found under the parent's collation (its key index answers), but not byte-wise: NOT IN over an
        # explicit BINARY left side, which SQLite answers from one transient index (a correlated
        # NOT EXISTS could not use the parent's NOCASE index and would scan the parent once per row).
        loose = " AND ".join(f"p.{quote_ident(pc)} = c.{quote_ident(cc)}" for pc, cc in pairs)  # the parent's
        present = " AND ".join(f"c.{quote_ident(cc)} IS NOT NULL" for cc in fk.columns)
        keys = ", ".join(f"c.{quote_ident(cc)} COLLATE BINARY" for cc in fk.columns)
        parent_keys = ", ".join(f"p.{quote_ident(pc)}" for pc in fk.ref_columns)
        parent_present = " AND ".join(f"p.{quote_ident(pc)} IS NOT NULL" for pc in fk.ref_columns)
        parent_sql = f"main.{quote_ident(fk.ref_table)} AS p"
        r = ref.sql or "NULL"
        try:
            count, first = fetch_all(
                conn,
                f"SELECT count(*), min(r) FROM (SELECT {r} AS r FROM main.{quote_ident(table)} AS c WHERE {present} "
                f"AND EXISTS (SELECT 1 FROM {parent_sql} WHERE {loose}) "
                f"AND ({keys}) NOT IN (SELECT {parent_keys} FROM {parent_sql} WHERE {parent_present}))",
            )[0]
        except sqlite3.DatabaseError:  # row values (several columns) need SQLite 3.15
            continue
        if count:
            used = ", ".join(f"{pc} {c}" for pc, c in zip(fk.ref_columns, colls, strict=True) if c)
            target.notes.append(
                Note(
                    ACTION,
                    f"{count} row(s) find their parent in {fk.ref_table} only through its collation ({used}), "
                    f"e.g. {ref.describe(first)}: PostgreSQL compares exactly and will refuse foreign key "
                    f"{fk.name}; spell those values as their parent rows do",
                )
            )


def read_checks(table: str, parsed: sqltext.TableDef) -> list[CheckConstraint]:
    """CHECK constraints, named as written, else as PostgreSQL would name them (``t_col_check``, ``t_check``)."""
    out, taken = [], set()
    for chk in parsed.checks:
        name = chk.name
        if not name:
            base = f"{table}_{chk.column}_check" if chk.column else f"{table}_check"
            name, n = base, 0
            while name.lower() in taken:
                n += 1
                name = f"{base}{n}"
        taken.add(name.lower())
        out.append(CheckConstraint(name, chk.clause))
    return out
