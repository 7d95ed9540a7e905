"""AWS DMS task-settings files (``task_settings:``), read unchanged: each key honoured, accepted with a warning,
or refused; a wrong value or an unknown key is an error naming the key and the allowed values.

The two files in ``dms/`` are the DMS User Guide's own, unchanged (see ``dms/README.md``): the export shown in
"Saving task settings" (DMS's defaults) and the file of "Task settings example".
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.dms_settings import DmsTaskSettings
from bulkmig.config.table_settings import LobLimit
from bulkmig.config.task import Task
from bulkmig.core.errors import ConfigError

DMS = Path(__file__).parent / "dms"
SAVED = DMS / "task-settings-saved.json"
EXAMPLE = DMS / "task-settings-example.json"


def saved() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAVED.read_text())
    return doc


def task(tmp_path: Path, settings_file: Path | dict[str, Any], **changes: Any) -> Task:
    if isinstance(settings_file, Path):
        shutil.copy(settings_file, tmp_path / settings_file.name)
        ref: Any = settings_file.name  # relative to the task file, as users write it
    else:
        ref = settings_file
    doc: dict[str, Any] = {
        "source": "postgresql://app@127.0.0.1:5432/shop",
        "target": "postgresql://admin@127.0.0.1:5433/shop",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://migration/shop",
        "task_settings": ref,
        **changes,
    }
    return Task.from_dict(doc, tmp_path, env={})


def refused(doc: dict[str, Any], migration_type: str = "full-load") -> str:
    with pytest.raises(ConfigError) as info:
        DmsTaskSettings.from_doc(doc, "settings.json", migration_type)
    return str(info.value)


# ------------------------------------------------------------------------------------------ honoured


def test_saved_export_is_read_unchanged_and_honoured(tmp_path: Path) -> None:
    t = task(tmp_path, SAVED)
    assert t.dms is not None
    # FullLoadSettings: MaxFullLoadSubTasks 8 -> workers, DO_NOTHING -> append, CreatePkAfterFullLoad false.
    assert t.settings.workers == 8
    assert t.settings.existing_tables == "append"
    assert t.settings.schema.primary_keys == "before"
    # TargetMetadata: LimitedSizeLobMode with LobMaxSize 32 (KB) is the task's LOB limit.
    assert t.dms.lob == LobLimit("limited", 32 * 1024, "TargetMetadata.LobMaxSize 32 KB")
    assert t.dms.target_schema is None  # "" means the source's schema
    # No ValidationSettings section: bulkmig's own defaults stay.
    assert t.settings.validation.enabled is True and t.settings.validation.threads is None
    # Nothing silently ignored: every key that only tunes DMS is named in a one-line warning, per section.
    notes = "\n".join(t.notes)
    assert all("\n" not in n for n in t.notes)
    for section, keys in {
        "TargetMetadata": ["LobChunkSize", "InlineLobMaxSize", "ParallelLoadThreads", "BatchApplyEnabled"],
        "FullLoadSettings": ["TransactionConsistencyTimeout", "CommitRate"],
        "Logging": ["EnableLogging", "LogComponents"],
        "ControlTablesSettings": ["HistoryTimeslotInMinutes"],
        "StreamBufferSettings": ["StreamBufferCount", "CtrlStreamBufferSizeInMB"],
        "ChangeProcessingDdlHandlingPolicy": ["HandleSourceTableDropped"],
        "ErrorBehavior": ["DataErrorPolicy", "RecoverableErrorCount", "FullLoadIgnoreConflicts"],
        "ChangeProcessingTuning": ["BatchApplyTimeoutMin", "MemoryLimitTotal", "StatementCacheSize"],
    }.items():
        lines = [n for n in t.notes if f": {section} " in n]
        assert lines, section
        for key in keys:
            assert any(key in line and "accepted, not used: " in line for line in lines), (section, key)
    # Honoured keys are not in any warning.
    for key in ("MaxFullLoadSubTasks", "TargetTablePrepMode", "CreatePkAfterFullLoad", "LobMaxSize", "SupportLobs"):
        assert not re.search(rf"\b{key}\b", notes), key


def test_task_file_settings_win_over_the_dms_file_with_a_warning(tmp_path: Path) -> None:
    t = task(tmp_path, SAVED, settings={"workers": 3, "existing_tables": "refuse"})
    assert t.settings.workers == 3 and t.settings.existing_tables == "refuse"
    assert any("MaxFullLoadSubTasks 8 is overridden by the task file's settings.workers 3" in n for n in t.notes)
    assert any("TargetTablePrepMode 'append' is overridden" in n for n in t.notes)


@pytest.mark.parametrize(
    ("mode", "existing"), [("DO_NOTHING", "append"), ("DROP_AND_CREATE", "drop"), ("TRUNCATE_BEFORE_LOAD", "truncate")]
)
def test_target_table_prep_modes(tmp_path: Path, mode: str, existing: str) -> None:
    doc = saved()
    doc["FullLoadSettings"]["TargetTablePrepMode"] = mode
    assert task(tmp_path, doc).settings.existing_tables == existing


def test_validation_settings_are_honoured(tmp_path: Path) -> None:
    doc = saved()
    doc["ValidationSettings"] = {
        "EnableValidation": True,
        "ThreadCount": 10,
        "PartitionSize": 5000,
        "FailureMaxCount": 200,
    }
    doc["FullLoadSettings"]["CreatePkAfterFullLoad"] = True
    t = task(tmp_path, doc)
    assert t.settings.validation.enabled is True and t.settings.validation.threads == 10
    assert t.settings.validation.only is False
    assert t.settings.schema.primary_keys == "after"
    assert t.settings.validation.partition_size == 5000 and t.settings.validation.failure_max_count == 200
    assert not any("PartitionSize" in n for n in t.notes)
    doc["ValidationSettings"] = {"EnableValidation": False}
    assert task(tmp_path, doc).settings.validation.enabled is False
    doc["ValidationSettings"] = {"EnableValidation": True, "ValidationOnly": True}
    assert task(tmp_path, doc).settings.validation.only is True


def test_target_schema_is_a_rename_the_table_mappings_override(tmp_path: Path) -> None:
    doc = saved()
    doc["TargetMetadata"]["TargetSchema"] = "dms_sample"
    t = task(tmp_path, doc)
    assert t.mappings.target_table_name("public", "film") == ("dms_sample", "film")
    rename = {
        "rule-type": "transformation",
        "rule-id": "2",
        "rule-name": "2",
        "rule-target": "schema",
        "object-locator": {"schema-name": "hr"},
        "rule-action": "rename",
        "value": "people",
    }
    include = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "1",
        "object-locator": {"schema-name": "%", "table-name": "%"},
        "rule-action": "include",
    }
    t = task(tmp_path, doc, table_mappings={"rules": [include, rename]})
    assert t.mappings.target_table_name("hr", "staff") == ("people", "staff")
    assert t.mappings.target_table_name("public", "film") == ("dms_sample", "film")
    # It changes where rows land, so the fingerprint changes with it.
    assert t.fingerprint() != task(tmp_path, saved()).fingerprint()


def test_lob_modes(tmp_path: Path) -> None:
    doc = saved()
    doc["TargetMetadata"].update(FullLobMode=True, LimitedSizeLobMode=False, LobChunkSize=64)
    assert task(tmp_path, doc).dms.lob.mode == "full"  # type: ignore[union-attr]
    doc["TargetMetadata"].update(SupportLobs=False, FullLobMode=False)
    assert task(tmp_path, doc).dms.lob == LobLimit("excluded", None, "TargetMetadata.SupportLobs false")  # type: ignore[union-attr]


def test_stop_task_settings(tmp_path: Path) -> None:
    doc = saved()
    doc["FullLoadSettings"]["StopTaskCachedChangesNotApplied"] = True
    # A full load has no cached changes: no effect, said so.
    assert any("StopTaskCachedChangesNotApplied has no effect" in n for n in task(tmp_path, doc).notes)
    msg = refused(doc, "full-load-and-cdc")
    assert "FullLoadSettings.StopTaskCachedChangesNotApplied: bulkmig's migrate does not stop" in msg


# ------------------------------------------------------------------------------------------- refused


def test_the_documented_example_is_refused_for_its_character_substitution(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        task(tmp_path, EXAMPLE)
    msg = str(info.value)
    assert "CharacterSetSettings.CharacterReplacements, CharacterSetSupport: bulkmig does not substitute" in msg
    # That is its only problem: the message is that one refusal and the hint.
    assert msg.split(".json: ", 1)[1].startswith("CharacterSetSettings.") and msg.count(" — ") == 2
    # Without that section, everything else of it is honoured or accepted.
    doc = json.loads(EXAMPLE.read_text())
    doc["CharacterSetSettings"] = None
    t = task(tmp_path, doc)
    assert t.settings.validation.enabled is False and t.settings.validation.threads == 5
    assert t.settings.existing_tables == "append" and t.settings.workers == 8
    assert any("TTSettings accepted, not used" in n for n in t.notes)
    assert any("LoopbackPreventionSettings accepted, not used" in n for n in t.notes)
    assert any("ValidationSettings" in n and "FailureMaxCount" in n for n in t.notes)


def test_wrong_values_and_unknown_keys_name_the_key_and_the_allowed_values() -> None:
    doc = saved()
    doc["FullLoadSettings"]["TargetTablePrepMode"] = "TRUNCATE"
    doc["FullLoadSettings"]["MaxFullLoadSubTasks"] = 50
    doc["FullLoadSettings"]["MaxFullLoadSubtasks"] = 4
    doc["TargetMetadata"]["SupportLobs"] = "yes"
    doc["Logging"]["LogComponents"][0]["Severity"] = "LOGGER_SEVERITY_LOUD"
    doc["ValidationSettings"] = {"ValidationMode": "GROUP_LEVEL", "ThreadCount": 0}
    doc["ChangeProcessingTuning"]["StatementCacheSize"] = 500
    doc["ErrorBehavior"]["ApplyErrorInsertPolicy"] = "UPDATE_RECORD"
    doc["FullLoadSetings"] = {}
    msg = refused(doc)
    for expected in (
        "FullLoadSettings.TargetTablePrepMode: 'TRUNCATE' is not one of DO_NOTHING, DROP_AND_CREATE, "
        "TRUNCATE_BEFORE_LOAD",
        "FullLoadSettings.MaxFullLoadSubTasks: must be an integer from 1 to 49, not 50",
        "FullLoadSettings.MaxFullLoadSubtasks: unknown key (did you mean 'MaxFullLoadSubTasks'?); allowed: "
        "TargetTablePrepMode, CreatePkAfterFullLoad",
        "TargetMetadata.SupportLobs: must be true or false, not 'yes'",
        "Logging.LogComponents entry 1: Severity 'LOGGER_SEVERITY_LOUD' is not one of LOGGER_SEVERITY_ERROR",
        "ValidationSettings.ValidationMode: 'GROUP_LEVEL' is not one of ROW_LEVEL",
        "ValidationSettings.ThreadCount: must be an integer ≥ 1, not 0",
        "ChangeProcessingTuning.StatementCacheSize: must be an integer from 0 to 200, not 500",
        "ErrorBehavior.ApplyErrorInsertPolicy: 'UPDATE_RECORD' is not one of IGNORE_RECORD, LOG_ERROR, "
        "SUSPEND_TABLE, STOP_TASK, INSERT_RECORD",
        "FullLoadSetings: unknown section (did you mean 'FullLoadSettings'?)",
    ):
        assert expected in msg, expected
    assert msg.startswith("settings.json: ")


def test_contradictions_are_refused() -> None:
    doc = saved()
    doc["ValidationSettings"] = {"EnableValidation": True, "ValidationOnly": True}
    doc["FullLoadSettings"]["TargetTablePrepMode"] = "DROP_AND_CREATE"
    assert "ValidationOnly needs FullLoadSettings.TargetTablePrepMode DO_NOTHING, not DROP_AND_CREATE" in refused(doc)
    doc = saved()
    doc["TargetMetadata"]["LimitedSizeLobMode"] = False
    assert "SupportLobs is true, so set FullLobMode or LimitedSizeLobMode true" in refused(doc)
    doc["TargetMetadata"].update(FullLobMode=True, LimitedSizeLobMode=True)
    assert "FullLobMode and LimitedSizeLobMode are both true" in refused(doc)
    doc = saved()
    doc["TargetMetadata"]["LobMaxSize"] = 0
    assert "LimitedSizeLobMode needs a non-zero LobMaxSize" in refused(doc)


def test_null_means_the_dms_default_and_a_bad_file_is_one_clear_error(tmp_path: Path) -> None:
    doc = copy.deepcopy(saved())
    doc["FullLoadSettings"]["MaxFullLoadSubTasks"] = None
    doc["Logging"]["CloudWatchLogGroup"] = None
    assert task(tmp_path, doc).settings.workers == 2  # bulkmig's default
    (tmp_path / "broken.json").write_text('{"TargetMetadata": {,}')
    with pytest.raises(ConfigError) as info:
        Task.from_dict(
            {
                "source": "postgresql://app@127.0.0.1:5432/shop",
                "target": "postgresql://admin@127.0.0.1:5433/shop",
                "migration_type": "full-load",
                "volume": "./volume",
                "bucket": "s3://migration/shop",
                "task_settings": "broken.json",
            },
            tmp_path,
            env={},
        )
    assert "broken.json: not valid JSON at line 1, column 21" in str(info.value)
