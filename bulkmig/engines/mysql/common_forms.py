"""The binlog value converters whose text is the same in both value forms (PostgreSQL's and MySQL's).

:mod:`.changes` (PostgreSQL's text input forms) and :mod:`.forms` (MySQL's own) each hold one converter per rule of
the type map.  Where the two targets read the very same text — integers, DECIMAL, FLOAT/DOUBLE, BIT, YEAR, a TIME
duration, a MySQL binary JSON document, UUID, INET4/INET6 — the converter lives here once, so a fix reaches both
tables.  Where the targets differ the converter stays in its own module, side by side with the reason: text is the
one easy to overlook, since PostgreSQL's text cannot hold NUL and MySQL's can, so each module keeps its own
``_text`` (and its own ``_json`` for MariaDB, whose JSON is a LONGTEXT read through that ``_text``).

Each converter takes the decoder's value (never None) and the column (``changes.Col``: ``bits``, ``length``), and
returns the text.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

# A zero TIMESTAMP ('0000-00-00 00:00:00') is stored as second 0, which the decoder gives as this (a real
# TIMESTAMP starts at second 1).
EPOCH = dt.datetime(1970, 1, 1)


def raw(v: bytes | str) -> bytes:
    """The value's bytes (the decoder hands an empty string over as ``''``: Python decodes b"" without a codec)."""
    return bytes(v) if isinstance(v, bytes | bytearray) else str(v).encode()


def integer(v: Any, c: Any) -> str:
    return str(v)


def unsigned(v: Any, c: Any) -> str:
    """A signed value read for an UNSIGNED column, wrapped back by the column's width."""
    return str(v + (1 << c.bits) if v < 0 else v)


def decimal(v: Decimal, c: Any) -> str:
    return format(v, "f")


def floating(v: float, c: Any) -> str:
    return repr(float(v))  # shortest text that reads back as the same double (and so the same float32)


def bit(v: str, c: Any) -> str:
    return v.zfill(c.length)


def year(v: int, c: Any) -> str:
    return "0" if v == 1900 else str(v)  # YEAR 0000 is stored as 0, which the decoder adds 1900 to


def duration(v: dt.timedelta, c: Any) -> str:
    """``[-]H:MM:SS[.ffffff]`` with as many hours as it takes (both targets read a whole signed TIME so)."""
    us = (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
    sign, us = ("-" if us < 0 else ""), abs(us)
    seconds, frac = divmod(us, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minute:02d}:{sec:02d}" + (f".{frac:06d}" if frac else "")


def _json_text(v: Any) -> Any:
    """The decoded binary JSON with every bytes key and value as text (the decoder leaves them bytes)."""
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8")
    if isinstance(v, dict):
        return {_json_text(k): _json_text(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_text(x) for x in v]
    return v


def json_document(v: Any) -> str:
    """MySQL's binary JSON, decoded, as the document's text (MariaDB's JSON is text: each form's ``_json``)."""
    return json.dumps(_json_text(v), ensure_ascii=False)


def uuid_text(v: bytes, c: Any) -> str:
    return str(uuid.UUID(bytes=raw(v).ljust(16, b"\x00")))  # the binlog strips the zero padding


def inet4(v: bytes, c: Any) -> str:
    return str(ipaddress.IPv4Address(raw(v).ljust(4, b"\x00")))


def inet6(v: bytes, c: Any) -> str:
    return str(ipaddress.IPv6Address(raw(v).ljust(16, b"\x00")))


# The rules of the character and the byte-string types: each form has one converter for every rule of a group (its
# own ``_text``, and bytes as PostgreSQL's bytea or MySQL's hex).
TEXT_RULES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")
BLOB_RULES = ("varbinary", "tinyblob", "blob", "mediumblob", "longblob")

# The rules of the type map (types.RULES, by its ``source``) whose converter is the same in both value forms; each
# form's CONVERTERS starts from these and adds the rules where its target reads other text.
CONVERTERS: dict[str, Callable[[Any, Any], str]] = {
    "tinyint": integer,
    "tinyint unsigned": unsigned,
    "smallint": integer,
    "smallint unsigned": unsigned,
    "mediumint": integer,
    "mediumint unsigned": unsigned,
    "int": integer,
    "int unsigned": unsigned,
    "bigint": integer,
    "bigint unsigned": unsigned,
    "decimal": decimal,
    "decimal unsigned": decimal,
    "float": floating,
    "float unsigned": floating,
    "double": floating,
    "double unsigned": floating,
    "bit": bit,
    "year": year,
    "time/interval": duration,  # both read '-838:59:59.5' as minus the whole duration
    "uuid": uuid_text,
    "inet4": inet4,
    "inet6": inet6,
}
