"""The part of an SQL literal every source engine writes alike, for generated SQL (mapping filters, part bounds).

NULL and numbers are spelt the same in every dialect bulkmig reads; only booleans (``TRUE`` or ``1``) and the
escaping of text and bytes differ, so each engine's ``literal`` starts here and adds its own.
"""

from __future__ import annotations

from typing import Any


def scalar_literal(value: Any, *, true: str, false: str) -> str | None:
    """``value`` as a literal when it is None, a bool (``true`` / ``false``: the dialect's spelling) or a number;
    None for anything else, which the engine's own ``literal`` quotes."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return true if value else false
    if isinstance(value, int | float):
        return repr(value)
    return None
