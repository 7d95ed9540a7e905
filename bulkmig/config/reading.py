"""Reading the files a task names (the task itself, table mappings, DMS task settings) and naming what is wrong.

Why one place: every file a migration reads is refused the same way, with the file, the reason and the fix
in one line (``cannot read table mappings …: No such file or directory``), and every unknown word gets the
same "did you mean"; three copies of each drifted apart in wording before.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bulkmig.core.errors import ConfigError


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_text(path: Path, what: str, hint: str) -> str:
    """The UTF-8 text of ``path``; a :class:`ConfigError` naming ``what`` it is and ``hint`` when unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}", hint) from None


def parse_json(text: str, origin: str, hint: str) -> Any:
    """``text`` as JSON; a :class:`ConfigError` locating the first syntax error by line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", hint
        ) from None
