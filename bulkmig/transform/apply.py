"""The plan's masks and added columns applied to the batches extract reads, before anything is written.

Masks first, then the added columns: an expression reads the masked values, so an added column can never
carry an unmasked value (``$ssn || ''`` next to a masked ``ssn`` stays masked).  The part's schema is the
source columns (masked ones still text) followed by the added columns in rule order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from bulkmig.core.model import Table, arrow_type
from bulkmig.transform import masking
from bulkmig.transform.expressions import compile_expression, evaluate
from bulkmig.transform.plan import added_columns, constants, expression_types
from bulkmig.transform.types import convert, parse_data_type


def part_schema(table: Table, schema: pa.Schema) -> pa.Schema:
    """``schema`` (the source columns' fields) with the added columns after them."""
    fields = list(schema)
    for col in added_columns(table):
        fields.append(
            pa.field(
                col.name,
                arrow_type(col.arrow_type),
                nullable=True,
                metadata={"source_type": col.source_type, "transfer": col.transfer, "added": "true"},
            )
        )
    return pa.schema(fields)


class Transformer:
    """Compiled once per part: the masks and expressions of one table.  ``only`` names the added columns to
    compute (validation recomputes those without change headers); the others come out null."""

    def __init__(
        self, table: Table, plan_snapshot: dict[str, Any] | None = None, only: Iterable[str] | None = None
    ) -> None:
        self.table = table
        self.masks = table.transform.get("masks", [])
        self.types = expression_types(table)
        values = constants(table, str((plan_snapshot or {}).get("taken_at") or ""))
        self.added = []
        wanted = None if only is None else set(only)
        for a in table.transform.get("added", []):
            dt, _ = parse_data_type(a["data_type"])
            assert dt is not None
            computed = a["expression"] and (wanted is None or a["name"] in wanted)
            compiled = compile_expression(a["expression"], a["rule"], self.types, values) if computed else None
            self.added.append((a, dt, compiled))

    @property
    def active(self) -> bool:
        return bool(self.masks or self.added)

    def apply(self, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
        """One batch masked and extended, as ``schema`` (:func:`part_schema`) says."""
        arrays = {name: batch.column(name) for name in batch.schema.names}
        for m in self.masks:
            arrays[m["column"]] = masking.mask(arrays[m["column"]], m["action"], m.get("value"))
        masked = pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))
        extra = []
        for a, dt, compiled in self.added:
            if compiled is None:
                extra.append(pa.nulls(batch.num_rows, arrow_type(a["arrow_type"])))
            else:
                extra.append(convert(evaluate(compiled, masked, self.types), dt, a["rule"]))
        return pa.RecordBatch.from_arrays(list(masked.columns) + extra, schema=schema)

    def batches(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield self.apply(batch, schema)
