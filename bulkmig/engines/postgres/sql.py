"""Quoting and session settings for PostgreSQL, in one place.

Every identifier bulkmig puts into SQL goes through :func:`ident`, whatever it is called: users name
columns ``select``, ``Op``, ``"quoted"`` or ``naïve name``, and generated SQL must never let such a
name shadow one of ours.
"""

from __future__ import annotations

# Session settings that make text output canonical and identical on every connection we open:
# text forms of dates, intervals and floats depend on them, and validation compares text.
CANONICAL_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
}


def ident(name: str) -> str:
    """A double-quoted identifier; embedded quotes are doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(value: str) -> str:
    """A standard-conforming string literal (E'' escapes are never needed with standard strings on)."""
    return "'" + value.replace("'", "''") + "'"


def options_string(settings: dict[str, str]) -> str:
    """The libpq ``options`` value that applies ``settings`` at connection start.

    Applying them at connect time (rather than with SET) keeps ``SET TRANSACTION SNAPSHOT`` the first
    statement of every worker's transaction, as PostgreSQL requires.
    """
    parts = []
    for key, value in settings.items():
        escaped = value.replace("\\", "\\\\").replace(" ", "\\ ")
        parts.append(f"-c {key}={escaped}")
    return " ".join(parts)
