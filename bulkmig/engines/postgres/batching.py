"""Whole pgoutput transactions into one change :class:`~bulkmig.cdc.batch.Batch`, whatever read them.

Both readers of the slot (the replication stream and the SQL peek, ``session.py``) hand whole
transactions to a :class:`BatchBuilder`; it keeps one column list per table (a table's definition change
ends the batch: :meth:`BatchBuilder.fits`), numbers the rows in commit order over the batch, and turns
Relation differences against the stream's stored definitions into ``schema_changes``.

This is the per-change hot path of capture (issue 16: 100k changes/s), so the loop over changes avoids
per-value work where the common case allows: a tuple without markers is copied as is.
"""

from __future__ import annotations

from collections.abc import Callable

from bulkmig.cdc.batch import Batch, TableColumns, Values, epoch_micros
from bulkmig.cdc.position import format_lsn
from bulkmig.core.errors import SourceError
from bulkmig.core.log import say
from bulkmig.core.manifest import utc_now
from bulkmig.engines.postgres.pgoutput import (
    NOT_IN_KEY,
    UNCHANGED_TOAST,
    Column,
    Delete,
    Insert,
    LogicalMessage,
    PgoutputError,
    Relation,
    Row,
    SchemaChange,
    Truncate,
    Update,
)
from bulkmig.engines.postgres.pgoutput_transactions import Transaction

TypeName = Callable[[int, int], str]  # (oid, typmod) -> format_type text, from the source
ColumnFacts = Callable[[int, str], tuple[str | None, bool | None]]  # (rel_id, column) -> (default, not null)


def _values(row: Row) -> tuple[Values, list[int]]:
    """Text values of a new tuple, and the indexes of unchanged TOAST values (sent as None, never NULL).

    The decoder capture uses refuses binary values (``Decoder(binary=False)``), so a tuple holds text,
    None and markers only."""
    if UNCHANGED_TOAST not in row:
        return row, []  # type: ignore[return-value]  # the common case: the decoder's tuple, as is
    values: list[str | None] = []
    unchanged: list[int] = []
    for i, v in enumerate(row):
        if v is UNCHANGED_TOAST:
            values.append(None)
            unchanged.append(i)
        elif v is None or isinstance(v, str):
            values.append(v)
        else:
            raise PgoutputError(f"unexpected value {v!r} in a new tuple", "read the slot without the 'binary' option")
    return values, unchanged


def _old(row: Row) -> Values:
    """An old key (columns outside the key → None) or a whole old row, as text."""
    if NOT_IN_KEY not in row and UNCHANGED_TOAST not in row:
        return row  # type: ignore[return-value]
    out: list[str | None] = []
    for v in row:
        if v is None or isinstance(v, str):
            out.append(v)
        elif v is NOT_IN_KEY:
            out.append(None)
        else:  # Update/Delete.check_key() has refused unsent key values before this runs
            raise PgoutputError(f"unexpected value {v!r} in an old tuple", "read the slot without the 'binary' option")
    return out


def relations_of(txn: Transaction) -> dict[int, Relation]:
    """The one definition per table this transaction's changes use; two for one table cannot be batched."""
    used: dict[int, Relation] = {}
    last: Relation | None = None
    for change in txn.changes:
        if change.__class__ is Truncate:
            rels: tuple[Relation, ...] = change.relations  # type: ignore[union-attr]
        elif change.__class__ is LogicalMessage:
            continue
        else:
            rel: Relation = change.relation  # type: ignore[union-attr]
            if rel is last:  # runs of changes to one table: the common case, checked by identity
                continue
            last = rel
            rels = (rel,)
        for r in rels:
            seen = used.setdefault(r.rel_id, r)
            if seen is not r and seen != r:
                raise SourceError(
                    f"transaction {txn.xid} (commit {format_lsn(txn.commit_lsn)}) changed rows of "
                    f"{r.qualname} both before and after altering it ("
                    + "; ".join(c.describe() for c in r.diff(seen))
                    + "): one batch cannot hold two column lists for one table",
                    "the stream cannot continue past this transaction; a new full load is needed",
                )
    return used


def has_rows(txn: Transaction) -> bool:
    return any(c.__class__ is not LogicalMessage for c in txn.changes)


class BatchBuilder:
    """Turns whole transactions into one :class:`Batch`: per table one column list, rows in commit order
    with one ``seq`` over the batch, and the schema drift against ``known``."""

    def __init__(self, known: dict[int, Relation], type_name: TypeName, column_facts: ColumnFacts) -> None:
        self.known = dict(known)  # updated as transactions are taken; the caller adopts it once durable
        self.type_name = type_name
        self.column_facts = column_facts
        self.tables: dict[int, TableColumns] = {}
        self.shapes: dict[int, Relation] = {}
        self.schema_changes: list[dict[str, object]] = []
        # Positions only: the transactions' change objects are freed as soon as their rows are taken.
        self.transactions = 0
        self.first_commit = 0  # commit LSN of the first transaction
        self.last_end = 0  # commit end LSN of the last
        self.rows = 0

    def fits(self, used: dict[int, Relation]) -> bool:
        """False if a transaction using ``used`` (:func:`relations_of`) uses another definition of a table
        this batch already holds rows of."""
        return all(self.shapes.get(rel_id, rel) == rel for rel_id, rel in used.items())

    def add(self, txn: Transaction, used: dict[int, Relation]) -> None:
        """Take the whole transaction (``used`` is :func:`relations_of` of it)."""
        for rel_id, rel in used.items():
            before = self.known.get(rel_id)
            if before is not None and before != rel:
                self.schema_changes += [self._change_doc(rel, c) for c in rel.diff(before)]
            elif before is None:
                say(f"capture: {rel.qualname} was not in the stream's tables; capturing its changes as well")
            self.known[rel_id] = rel
            self.shapes[rel_id] = rel
        pos = format_lsn(txn.commit_lsn)
        xid, ts = txn.xid, epoch_micros(txn.commit_ts)
        seq = self.rows
        last: Relation | None = None
        table: TableColumns | None = None
        for change in txn.changes:
            cls = change.__class__
            before_row: Values | None = None
            unchanged_names: list[str] | tuple[str, ...] = ()
            if cls is Insert:
                rel = change.relation  # type: ignore[union-attr]
                values, unchanged = _values(change.new)  # type: ignore[union-attr]
                op = "I"
            elif cls is Update:
                rel = change.relation  # type: ignore[union-attr]
                change.check_key()  # type: ignore[union-attr]  # refuses an unidentifiable row before it is stored
                values, unchanged = _values(change.resolved_new())  # type: ignore[union-attr]
                if change.old is not None:  # type: ignore[union-attr]
                    before_row = _old(change.old)  # type: ignore[union-attr]
                op = "U"
            elif cls is Delete:
                rel = change.relation  # type: ignore[union-attr]
                change.check_key()  # type: ignore[union-attr]
                values = _old(change.old)  # type: ignore[union-attr]
                before_row, unchanged = (values if values.__class__ is tuple else list(values)), []
                op = "D"
            elif cls is Truncate:
                for r in change.relations:  # type: ignore[union-attr]
                    seq += 1
                    self._row(self._table(r), "T", pos, seq, xid, ts, (None,) * len(r.columns), (), None)
                last = None
                continue
            else:
                continue  # transactional logical messages carry no table data
            if rel is not last:
                last = rel
                table = self._table(rel)
            if unchanged:
                unchanged_names = [table.columns[i] for i in unchanged]  # type: ignore[union-attr]
            seq += 1
            self._row(table, op, pos, seq, xid, ts, values, unchanged_names, before_row)  # type: ignore[arg-type]
        self.rows = seq
        if not self.transactions:
            self.first_commit = txn.commit_lsn
        self.transactions += 1
        self.last_end = txn.end_lsn

    @staticmethod
    def _row(
        t: TableColumns,
        op: str,
        pos: str,
        seq: int,
        xid: int,
        ts: int,
        values: Values,
        unchanged: list[str] | tuple[str, ...],
        before: Values | None,
    ) -> None:
        t.ops.append(op)
        t.pos.append(pos)
        t.seq.append(seq)
        t.xid.append(xid)
        t.commit_us.append(ts)
        t.values.append(values)
        t.unchanged.append(unchanged)
        t.before.append(before)

    def _table(self, rel: Relation) -> TableColumns:
        table = self.tables.get(rel.rel_id)
        if table is None:
            table = TableColumns(
                schema=rel.namespace,
                table=rel.name,
                columns=list(rel.column_names),
                types=[self.type_name(c.type_oid, c.typmod) for c in rel.columns],
                key=list(rel.key_columns),
                identity=rel.replica_identity,
            )
            self.tables[rel.rel_id] = table
        return table

    def _change_doc(self, rel: Relation, change: SchemaChange) -> dict[str, object]:
        def tname(c: Column | None) -> str | None:
            return self.type_name(c.type_oid, c.typmod) if c is not None else None

        typ = tname(change.after) if change.after is not None else tname(change.before)
        detail = change.describe()
        if change.kind == "column_added":
            detail = f"column {change.column!r} added ({typ})"
        elif change.kind == "column_dropped":
            detail = f"column {change.column!r} dropped (was {typ})"
        elif change.kind == "type_changed":
            detail = f"column {change.column!r} changed type from {tname(change.before)} to {typ}"
        doc: dict[str, object] = {
            "schema": rel.namespace,
            "table": rel.name,
            "kind": change.kind,
            "column": change.column,
            "type": typ,
            "detail": detail,
        }
        if change.kind == "column_added" and change.column is not None:
            # ADD COLUMN … DEFAULT fills the existing rows on the source without a single change in the
            # stream: replay must add the same default (or refuse), or those rows differ on the target.
            default, not_null = self.column_facts(rel.rel_id, change.column)
            doc.update(default=default, not_null=not_null)
            if default is not None:
                doc["detail"] = f"{detail} default {default}"
        return doc

    def batch(self, stream_id: str, seq: int) -> Batch:
        return Batch(
            stream_id=stream_id,
            seq=seq,
            first_pos=format_lsn(self.first_commit),
            last_pos=format_lsn(self.last_end),
            transactions=self.transactions,
            tables=list(self.tables.values()),
            schema_changes=self.schema_changes,
            created_at=utc_now(),
        )
