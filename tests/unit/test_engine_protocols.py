"""Every registered engine satisfies the contract the stages call (bulkmig.engines.protocols): a source module
missing a function, or a target lacking a method, fails here rather than in the middle of a migration."""

from __future__ import annotations

import inspect

import pytest

from bulkmig import engines
from bulkmig.config.task import ENGINES
from bulkmig.core.errors import ConfigError
from bulkmig.engines import protocols
from bulkmig.engines.mysql.target import MysqlTarget
from bulkmig.engines.postgres.target import PostgresTarget


@pytest.mark.parametrize("engine", [e for e, m in engines.SOURCE_MODULES.items() if m])
def test_foreign_source_modules_satisfy_the_source_protocol(engine: str) -> None:
    module = engines.foreign_source(engine)
    assert isinstance(module, protocols.SourceEngine), engine
    for name in ("open_catalog", "partition_tables", "open_snapshot"):
        assert callable(getattr(module, name)), name
    assert issubclass(module.Snapshot, protocols.ClosingSnapshot)
    params = inspect.signature(module.open_snapshot).parameters
    assert list(params)[:2] == ["endpoint", "workers"] and "batch_rows" in params


@pytest.mark.parametrize("target", [PostgresTarget, MysqlTarget])
def test_every_target_satisfies_the_target_protocol(target: type) -> None:
    wanted = [n for n, v in vars(protocols.TargetEngine).items() if callable(v) and not n.startswith("_")]
    missing = [n for n in wanted if not callable(getattr(target, n, None))]
    assert wanted and not missing
    assert isinstance(target.capabilities.hash_diff_sources, frozenset)


def test_every_target_engine_is_found_by_its_url_scheme() -> None:
    from types import SimpleNamespace

    from bulkmig.targets import target_for

    for engine, cls in (("postgresql", PostgresTarget), ("mysql", MysqlTarget)):
        endpoint = SimpleNamespace(engine=engine, database="db")
        assert type(target_for(SimpleNamespace(target=endpoint))) is cls
    with pytest.raises(ConfigError, match="target engine 'sqlite' is not supported"):
        target_for(SimpleNamespace(target=SimpleNamespace(engine="sqlite", database="x")))


def test_every_source_engine_has_capabilities_and_they_agree_with_the_registries() -> None:
    assert set(protocols.SOURCE_CAPABILITIES) == set(ENGINES)  # every engine a task file may name
    for engine, caps in protocols.SOURCE_CAPABILITIES.items():
        assert caps.change_capture == (engine in engines.CDC_DRIVERS), engine
        if engine in engines.SOURCE_MODULES:
            assert caps.native_schema == (engines.SOURCE_MODULES[engine] is None), engine
    with pytest.raises(ConfigError, match="no source support for engine 'oracle'"):
        protocols.source_capabilities("oracle")
