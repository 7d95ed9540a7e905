"""The task fingerprint across versions: a default that changed (primary keys after the data since version 2)
must not orphan a volume planned by an older bulkmig, and must not let a changed task through either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.dms_settings import DmsTaskSettings
from bulkmig.config.task import FINGERPRINT_VERSION, Task, plan_version
from bulkmig.core.errors import ConfigError, PlanError
from bulkmig.core.store import open_store
from bulkmig.fullload.plan import Plan, load_plan_for, new_plan

# What bulkmig computed before the bump (fingerprint version 1, primary keys "before" by default) for the task of
# base_doc() without settings, with `settings.schema.primary_keys: before`, and with `after`.
V1_DEFAULT = "4435f85abf295cb762e0d7cbc7fb3718205603d4b49d6bbb368629a93a94d416"
V1_AFTER = "3f1809b89fdab9aa02e5cc4301b207b83cb2fa643804326ec106179987274600"


def base_doc(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "source": "postgresql://app@127.0.0.1:5432/shop",
        "target": "postgresql://admin@127.0.0.1:5433/shop",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://migration/shop",
    }
    if settings is not None:
        doc["settings"] = settings
    return doc


def make(tmp_path: Path, settings: dict[str, Any] | None = None) -> Task:
    return Task.from_dict(base_doc(settings), tmp_path, env={})


def keys(primary_keys: str) -> dict[str, Any]:
    return {"schema": {"primary_keys": primary_keys}}


def old_plan(task_fingerprint: str, task_inputs: dict[str, Any] | None) -> Plan:
    """A plan as the older bulkmig recorded it (only what the fingerprint check reads matters)."""
    return Plan(
        volume_id="task-20260101T000000Z-abcdef",
        created_at="2026-01-01T00:00:00+00:00",
        task_name="task",
        task_fingerprint=task_fingerprint,
        migration_type="full-load",
        source={"engine": "postgresql"},
        snapshot={},
        schema_files={},
        sequences=[],
        tables=[],
        settings={},
        task_inputs=task_inputs,
    )


def test_the_default_is_after_and_the_version_is_bumped(tmp_path: Path) -> None:
    task = make(tmp_path)
    assert task.settings.schema.primary_keys == "after"
    assert FINGERPRINT_VERSION == 2
    assert task.fingerprint_inputs()["version"] == 2
    assert task.settings.defaulted == frozenset({"schema.primary_keys"})
    assert make(tmp_path, keys("after")).settings.defaulted == frozenset()


def test_version_1_is_what_the_older_bulkmig_computed(tmp_path: Path) -> None:
    # Left out, the key counts with version 1's default ("before"), exactly as that bulkmig hashed it.
    assert make(tmp_path).fingerprint(1) == V1_DEFAULT
    assert make(tmp_path, keys("before")).fingerprint(1) == V1_DEFAULT
    assert make(tmp_path, keys("after")).fingerprint(1) == V1_AFTER
    assert make(tmp_path).fingerprint_inputs(1)["settings"]["schema"]["primary_keys"] == "before"


def test_a_plan_of_the_older_bulkmig_is_made_by_the_unchanged_task(tmp_path: Path) -> None:
    default, before, after = make(tmp_path), make(tmp_path, keys("before")), make(tmp_path, keys("after"))
    recorded = default.fingerprint_inputs(1)
    for plan in (old_plan(V1_DEFAULT, recorded), old_plan(V1_DEFAULT, None)):  # inputs kept or not (older still)
        assert plan_version(plan.task_inputs) == 1
        assert plan.made_by(default) and plan.made_by(before)
        assert not plan.made_by(after)  # it was planned with the keys before the data
    after_plan = old_plan(V1_AFTER, after.fingerprint_inputs(1))
    assert after_plan.made_by(after)
    assert not after_plan.made_by(default)  # left out meant "before" then: the plan did not come from this task


def test_a_new_plan_takes_the_new_default(tmp_path: Path) -> None:
    default, before, after = make(tmp_path), make(tmp_path, keys("before")), make(tmp_path, keys("after"))
    plan = new_plan(default, "v", None, source={}, snapshot={}, schema_files={}, sequences=[], tables=[])
    assert plan_version(plan.task_inputs) == FINGERPRINT_VERSION
    assert plan.made_by(default) and plan.made_by(after)
    assert not plan.made_by(before)
    assert default.fingerprint() != V1_DEFAULT  # a new plan is not mistaken for an old one either


def test_a_changed_task_is_told_what_changed_in_the_plans_own_terms(tmp_path: Path) -> None:
    """An old plan refused for a real change names that change, not the version nor the default's move."""
    store = open_store(str(tmp_path / "volume"))
    default = make(tmp_path)
    store.put_bytes("plan.json", old_plan(V1_DEFAULT, default.fingerprint_inputs(1)).to_bytes())
    assert load_plan_for(default, store).task_fingerprint == V1_DEFAULT
    with pytest.raises(PlanError) as info:
        load_plan_for(make(tmp_path, keys("after")), store)
    assert "changed since: settings.schema.primary_keys (before -> after)" in str(info.value)
    assert "version" not in str(info.value)


def test_a_plan_from_a_newer_bulkmig_is_refused_by_name(tmp_path: Path) -> None:
    plan = old_plan("0" * 64, {"version": FINGERPRINT_VERSION + 1})
    with pytest.raises(ConfigError, match=f"fingerprint version {FINGERPRINT_VERSION + 1}"):
        plan.made_by(make(tmp_path))


@pytest.mark.parametrize(("create_pk", "primary_keys"), [(False, "before"), (True, "after")])
def test_dms_create_pk_after_full_load_is_a_choice_not_a_default(
    tmp_path: Path, create_pk: bool, primary_keys: str
) -> None:
    dms = DmsTaskSettings.from_doc({"FullLoadSettings": {"CreatePkAfterFullLoad": create_pk}})
    settings, _ = dms.apply_to(make(tmp_path).settings, {})
    assert settings.schema.primary_keys == primary_keys
    assert settings.defaulted == frozenset()
