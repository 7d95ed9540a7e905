"""Schema conversion (the SCT half of issue 5): a foreign source's catalog → PostgreSQL DDL + assessment.

``convert(catalog, task)`` is the one place that decides what the target looks like, and ``plan``,
``load`` and ``bulkmig convert`` all call it, so what the report says is what happens:

- ``tables``: the plan's tables, each column with its target name, PostgreSQL type and read expression;
- ``pre_data_sql``: schema, enum types, tables (with primary keys unless ``settings.schema.primary_keys``
  is ``after``) — applied before the data;
- ``post_data_sql``: identity restarts past the loaded maximum, keys, indexes, foreign keys, checks,
  views, ON UPDATE triggers — applied after the data, so they are built once over all rows;
- ``report`` (JSON-able) and ``render_markdown()``: every object converted, converted with changes
  (what and why) or needs action (why, and a suggestion).

Nothing here talks to a database: it reads a :class:`bulkmig.core.catalog.Catalog` and the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulkmig.convert.command import reflect_source, summary_lines, write_outputs
    from bulkmig.convert.converter import Conversion, convert

__all__ = ["Conversion", "convert", "reflect_source", "summary_lines", "write_outputs"]
_HOME = {"Conversion": "converter", "convert": "converter"} | dict.fromkeys(
    ("reflect_source", "summary_lines", "write_outputs"), "command"
)


def __getattr__(name: str) -> Any:
    """Imported on first use: the converter pulls in sqlglot (half a second), which ``load`` and the other
    other stages never need."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
