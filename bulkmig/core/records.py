"""Operator records that no stage keeps elsewhere: the last validation result and the last errors.

They live in a small local folder next to the task file, ``.bulkmig/<task name>/`` (``BULKMIG_STATE_DIR``
overrides), because an error worth recording is often that the bucket or a database cannot be reached.
Both files are written whole (errors: appended one JSON line each) and read by ``status --json`` and
the dashboard.  They hold messages and fix lines only; connection strings never reach them (the errors
bulkmig raises never contain a secret).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ERRORS = "errors.jsonl"
VALIDATION = "validation.json"
KEEP_ERRORS = 20


def state_dir(task: Any) -> Path:
    """Where this task's records live (created on first write)."""
    base = os.environ.get("BULKMIG_STATE_DIR")
    root = Path(base) if base else (Path(task.path).parent if task.path else Path.cwd()) / ".bulkmig"
    return root / task.name


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_error(task: Any, command: str, message: str, fix: str, kind: str) -> None:
    """Append one failure (what, the fix line, which command) for the dashboard; never raises."""
    try:
        folder = state_dir(task)
        folder.mkdir(parents=True, exist_ok=True)
        line = {"at": _now(), "command": command, "kind": kind, "message": message, "fix": fix}
        with (folder / ERRORS).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError:
        pass


def last_errors(task: Any, n: int = KEEP_ERRORS) -> list[dict[str, Any]]:
    path = state_dir(task) / ERRORS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[-n:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write
    return list(reversed(out))


def record_validation(task: Any, report: dict[str, Any]) -> None:
    """Keep the latest validation report (``ValidationReport.to_json``'s document plus when)."""
    try:
        folder = state_dir(task)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (VALIDATION + ".tmp")
        tmp.write_text(json.dumps({"at": _now(), **report}, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / VALIDATION)
    except OSError:
        pass


def last_validation(task: Any) -> dict[str, Any] | None:
    path = state_dir(task) / VALIDATION
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
