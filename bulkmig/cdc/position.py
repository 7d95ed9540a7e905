"""Change-stream positions as ints and text.

Every position in a stream document or batch manifest is written as PostgreSQL LSN text (``16/B374D848``)
and compared as an int.  A MySQL binlog position is encoded as the same 64-bit ordinal
(``engines.mysql.binlog.BinlogPos``), so every stage reads positions through these two functions whatever
the source engine.
"""

from __future__ import annotations

import re

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` → int.  LSNs are compared and stored as ints; the text form is only for people."""
    match = _LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a PostgreSQL LSN: {text!r} (expected two hex numbers like '16/B374D848')")
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(lsn: int) -> str:
    """int → ``"16/B374D848"``, exactly as PostgreSQL prints a ``pg_lsn``."""
    if not 0 <= lsn < 1 << 64:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_or_none(value: object) -> int | None:
    """A position from a document or manifest field: an int as it is, LSN text parsed, anything else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        try:
            return parse_lsn(value)
        except ValueError:
            return None
    return None
