"""Which target engine a task loads into: the one dispatch the stages use (issue 18).

:func:`target_for` returns the task's target engine object (``engines/postgres/target``, ``engines/mysql/target``):
the target protocol's methods (``bulkmig.engines.protocols.TargetEngine``), each engine's facts in its
``capabilities``.
"""

from __future__ import annotations

from typing import Any

from bulkmig.core.errors import ConfigError


def target_class(task: Any) -> Any:
    """The class of the task's target engine (its ``capabilities`` read without connecting anywhere)."""
    engine = task.target.engine
    if engine == "postgresql":
        from bulkmig.engines.postgres.target import PostgresTarget

        return PostgresTarget
    if engine == "mysql":
        from bulkmig.engines.mysql.target import MysqlTarget

        return MysqlTarget
    raise ConfigError(f"target engine {engine!r} is not supported", "use a postgresql:// or mysql:// target")


def target_for(task: Any) -> Any:
    """The task's target engine object."""
    return target_class(task)(task)
