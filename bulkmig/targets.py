"""Which target engine a task loads into: the one dispatch the stages use (issue 18).

``None`` means PostgreSQL, whose code still lives in the stages themselves (load.py, replay.py, validate.py);
any other engine is an object with the target-engine methods (``capabilities``, ``convert_schema``,
``apply_schema``, ``load_part``, ``load``, validation reads).  When the target protocol lands, PostgreSQL gets
its own object here and the ``None`` case goes away.
"""

from __future__ import annotations

from typing import Any

from bulkmig.core.errors import ConfigError


def target_engine(task: Any) -> Any | None:
    """The task's target engine object, or None for PostgreSQL."""
    engine = task.target.engine
    if engine == "postgresql":
        return None
    if engine == "mysql":
        from bulkmig.engines.mysql.target import MysqlTarget

        return MysqlTarget(task)
    raise ConfigError(f"target engine {engine!r} is not supported", "use a postgresql:// or mysql:// target")
