"""AWS DMS task settings (``task_settings: file.json`` in the task): the JSON users export from a DMS task, read
unchanged.

Why: a DMS user's task settings say how the target is prepared, how many tables load at once, whether to
validate, how LOBs move.  bulkmig reads every key of that file and does one of three things with it, never a
fourth (ignoring it silently):

- **honoured**: mapped onto bulkmig's own settings — ``MaxFullLoadSubTasks`` → ``settings.workers``,
  ``TargetTablePrepMode`` → ``settings.existing_tables`` (what load does with target tables that exist),
  ``CreatePkAfterFullLoad`` → ``settings.schema.primary_keys``, ``EnableValidation`` /
  ``ThreadCount`` / ``ValidationOnly`` → ``settings.validation``, ``TargetSchema`` → a schema rename that
  the table mappings' own renames override (as in DMS), the LOB mode → the LOB limit :mod:`bulkmig.fullload.lobs`
  enforces;
- **accepted with a one-line warning**, when the key only tunes DMS's own machinery (buffers, batch-apply
  timers, CloudWatch logging, control tables): the warning names the keys and what bulkmig does instead;
- **refused**, when honouring it would need something bulkmig does not do (stopping ``migrate`` between full
  load and change processing, character substitution).

An unknown key or a wrong value is an error naming the key and the allowed values, all problems at once.  A
value of ``null`` means DMS's default, as DMS exports write it.  A setting the task file gives itself
(``settings.workers``, …) wins over the DMS file, with a warning when the two differ.

Keys and values are those of the DMS User Guide ("Specifying task settings for AWS Database Migration Service
tasks" and its sub-pages, and the example exports in "Task settings example" and "Saving task settings").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bulkmig.config.reading import did_you_mean, parse_json, read_text
from bulkmig.config.table_settings import FULL, KB, LobLimit
from bulkmig.core.errors import ConfigError

PREP_MODES = {"DO_NOTHING": "append", "DROP_AND_CREATE": "drop", "TRUNCATE_BEFORE_LOAD": "truncate"}

# Why a key is only accepted: the text of its warning, grouped per section.
_LOB_TUNING = "they tune how DMS fetches LOBs; bulkmig always reads each value whole"
_DMS_TARGETS = "they tune DMS's loaders for streaming, DynamoDB or Redshift targets, which bulkmig does not have"
_BATCH_APPLY = (
    "they tune DMS's apply buffers and timers; bulkmig replays each source transaction once, in commit order, "
    "with the ledger"
)
_DMS_FILES = "they size DMS's own CSV load files and recovery table"
_FULL_LOAD_TUNING = (
    "bulkmig reads one consistent snapshot (it never waits for open transactions) and commits one part per "
    "transaction with its ledger row"
)
_LOGGING = "bulkmig logs to stderr and `bulkmig status --json`; CloudWatch log settings are DMS's"
_VALIDATION_TUNING = "bulkmig never suspends or delays validation: it compares every row and reports every difference"
_LOB_VALIDATION = "bulkmig validates LOB columns whole"
_COLLATION = "bulkmig pairs rows by value, not by collation order"

T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """One key of a section: its type, allowed values and — when it is only accepted — why (``note``)."""

    kind: str  # bool | int | enum | str | list | object
    allowed: tuple[Any, ...] = ()  # enum: the values; int: (minimum, maximum or None)
    note: str = ""  # empty: honoured (or checked and acted on below); else the warning's reason


def _int(lo: int = 0, hi: int | None = None, note: str = "") -> Key:
    return Key("int", (lo, hi), note)


def _bool(note: str = "") -> Key:
    return Key("bool", (), note)


def _ints(note: str, *names: str) -> dict[str, Key]:
    """Several integer keys accepted for one reason (``note``)."""
    return {name: _int(note=note) for name in names}


def _bools(note: str, *names: str) -> dict[str, Key]:
    """Several flags accepted for one reason (``note``)."""
    return {name: _bool(note=note) for name in names}


def _enum(*values: str, note: str = "") -> Key:
    return Key("enum", values, note)


def _str(note: str = "") -> Key:
    return Key("str", (), note)


_ERROR_POLICIES = ("IGNORE_RECORD", "LOG_ERROR", "SUSPEND_TABLE", "STOP_TASK")
_ERRORS = (
    "bulkmig never skips, logs past or suspends a row: any data or apply error stops the stage with the row "
    "named, and lost connections are retried for settings.retry_timeout seconds"
)
LOG_COMPONENTS = (
    "ADDONS",
    "ASSESSMENT",
    "COMMON",
    "COMMUNICATION",
    "DATA_RESYNC",
    "DATA_STRUCTURE",
    "FILE_FACTORY",
    "FILE_TRANSFER",
    "IO",
    "METADATA_MANAGER",
    "PERFORMANCE",
    "REST_SERVER",
    "SERVICE",
    "SORTER",
    "SORTER_STORAGE",
    "SOURCE_CAPTURE",
    "SOURCE_UNLOAD",
    "TABLES_MANAGER",
    "TARGET_APPLY",
    "TARGET_LOAD",
    "TASK_MANAGER",
    "TRANSFORMATION",
    "VALIDATOR",
    "VALIDATOR_EXT",
)
LOG_SEVERITIES = (
    "LOGGER_SEVERITY_ERROR",
    "LOGGER_SEVERITY_WARNING",
    "LOGGER_SEVERITY_INFO",
    "LOGGER_SEVERITY_DEFAULT",
    "LOGGER_SEVERITY_DEBUG",
    "LOGGER_SEVERITY_DETAILED_DEBUG",
)

SECTIONS: dict[str, dict[str, Key]] = {
    "TargetMetadata": {
        "TargetSchema": _str(),
        "SupportLobs": _bool(),
        "FullLobMode": _bool(),
        "LobChunkSize": _int(note=_LOB_TUNING),
        "LimitedSizeLobMode": _bool(),
        "LobMaxSize": _int(),
        "InlineLobMaxSize": _int(0, 102400, note=_LOB_TUNING),
        "LoadMaxFileSize": _int(0, 100000, note=_DMS_FILES),
        **_ints(
            _DMS_TARGETS,
            "ParallelLoadThreads",
            "ParallelLoadBufferSize",
            "ParallelLoadQueuesPerThread",
            "ParallelApplyThreads",
            "ParallelApplyBufferSize",
            "ParallelApplyQueuesPerThread",
        ),
        "BatchApplyEnabled": _bool(note=_BATCH_APPLY),
        "TaskRecoveryTableEnabled": _bool(note=_DMS_FILES),
    },
    "FullLoadSettings": {
        "TargetTablePrepMode": _enum(*PREP_MODES),
        "CreatePkAfterFullLoad": _bool(),
        "StopTaskCachedChangesApplied": _bool(),
        "StopTaskCachedChangesNotApplied": _bool(),
        "MaxFullLoadSubTasks": _int(1, 49),
        "TransactionConsistencyTimeout": _int(note=_FULL_LOAD_TUNING),
        "CommitRate": _int(1, 50000, note=_FULL_LOAD_TUNING),
    },
    "Logging": {
        "EnableLogging": _bool(note=_LOGGING),
        "EnableLogContext": _bool(note=_LOGGING),
        "LogComponents": Key("list", (), _LOGGING),
        "CloudWatchLogGroup": _str(note=_LOGGING),
        "CloudWatchLogStream": _str(note=_LOGGING),
        "DeleteTaskLogs": _bool(note=_LOGGING),
        "LogConfiguration": Key("object", (), _LOGGING),
    },
    "ChangeProcessingTuning": {
        "BatchApplyPreserveTransaction": _bool(note=_BATCH_APPLY),
        **_ints(
            _BATCH_APPLY,
            "BatchApplyTimeoutMin",
            "BatchApplyTimeoutMax",
            "BatchApplyMemoryLimit",
            "BatchSplitSize",
            "MinTransactionSize",
            "CommitTimeout",
            "MemoryLimitTotal",
            "MemoryKeepTime",
        ),
        "StatementCacheSize": _int(0, 200, note=_BATCH_APPLY),
        "RecoveryTimeout": _int(-1, note=_BATCH_APPLY),
    },
    "ValidationSettings": {
        "EnableValidation": _bool(),
        "ValidationMode": _enum("ROW_LEVEL"),
        "ThreadCount": _int(1),
        "PartitionSize": _int(1),
        "FailureMaxCount": _int(1),
        **_ints(
            _VALIDATION_TUNING,
            "TableFailureMaxCount",
            "RecordFailureDelayInMinutes",
            "RecordSuspendDelayInMinutes",
            "RecordFailureDelayLimitInMinutes",
            "MaxKeyColumnSize",
            "ValidationQueryCdcDelaySeconds",
        ),
        "ValidationOnly": _bool(),
        "HandleCollationDiff": _bool(note=_COLLATION),
        "SkipLobColumns": _bool(note=_LOB_VALIDATION),
        "ValidationPartialLobSize": _int(note=_LOB_VALIDATION),
    },
    "ControlTablesSettings": {
        "ControlSchema": _str(note="bulkmig keeps its ledger in the target's bulkmig schema"),
        "HistoryTimeslotInMinutes": _int(note="DMS's control tables; bulkmig keeps its ledger in the bulkmig schema"),
        # DMS exports write this one twice, once in lower camel case ("Saving task settings" shows it).
        "historyTimeslotInMinutes": _int(note="DMS's control tables; bulkmig keeps its ledger in the bulkmig schema"),
        "HistoryTableEnabled": _bool(note="DMS's control tables; bulkmig keeps its ledger in the bulkmig schema"),
        "SuspendedTablesTableEnabled": _bool(note="DMS's control tables; bulkmig never suspends a table"),
        "StatusTableEnabled": _bool(note="DMS's control tables; `bulkmig status` reports the state"),
        "FullLoadExceptionTableEnabled": _bool(note="DMS's control tables; bulkmig stops on the first bad row"),
        "CommitPositionTableEnabled": _bool(note="DMS's control tables; bulkmig's replay marks keep the position"),
    },
    "StreamBufferSettings": {
        **_ints(
            "they size DMS's in-memory stream buffers",
            "StreamBufferCount",
            "StreamBufferSizeInMB",
            "CtrlStreamBufferSizeInMB",
        ),
    },
    "ChangeProcessingDdlHandlingPolicy": {
        **_bools(
            "bulkmig replays row changes; it does not replay source DDL",
            "HandleSourceTableDropped",
            "HandleSourceTableTruncated",
            "HandleSourceTableAltered",
        ),
    },
    "ErrorBehavior": {
        "DataErrorPolicy": _enum(*_ERROR_POLICIES, note=_ERRORS),
        "DataTruncationErrorPolicy": _enum(*_ERROR_POLICIES, note=_ERRORS),
        "DataMaskingErrorPolicy": _enum(*_ERROR_POLICIES, note=_ERRORS),
        "DataErrorEscalationPolicy": _enum("SUSPEND_TABLE", "STOP_TASK", note=_ERRORS),
        "DataErrorEscalationCount": _int(note=_ERRORS),
        "EventErrorPolicy": _enum("IGNORE", "STOP_TASK", note=_ERRORS),
        "TableErrorPolicy": _enum("SUSPEND_TABLE", "STOP_TASK", note=_ERRORS),
        "TableErrorEscalationPolicy": _enum("SUSPEND_TABLE", "STOP_TASK", note=_ERRORS),
        "TableErrorEscalationCount": _int(note=_ERRORS),
        "RecoverableErrorCount": _int(-1, note=_ERRORS),
        "RecoverableErrorInterval": _int(note=_ERRORS),
        "RecoverableErrorThrottling": _bool(note=_ERRORS),
        "RecoverableErrorThrottlingMax": _int(note=_ERRORS),
        "RecoverableErrorStopRetryAfterThrottlingMax": _bool(note=_ERRORS),
        "ApplyErrorDeletePolicy": _enum(*_ERROR_POLICIES, note=_ERRORS),
        "ApplyErrorInsertPolicy": _enum(*_ERROR_POLICIES, "INSERT_RECORD", note=_ERRORS),
        "ApplyErrorUpdatePolicy": _enum(*_ERROR_POLICIES, "UPDATE_RECORD", note=_ERRORS),
        "ApplyErrorEscalationPolicy": _enum("LOG_ERROR", "SUSPEND_TABLE", "STOP_TASK", note=_ERRORS),
        "ApplyErrorEscalationCount": _int(note=_ERRORS),
        "ApplyErrorFailOnTruncationDdl": _bool(note=_ERRORS),
        "FailOnNoTablesCaptured": _bool(note="bulkmig always refuses table mappings that select no table"),
        "FailOnTransactionConsistencyBreached": _bool(note="for Oracle sources with CDC"),
        "FullLoadIgnoreConflicts": _bool(note=_ERRORS),
    },
    "BeforeImageSettings": {
        "EnableBeforeImage": _bool(note="before images are for DMS's Kinesis and Kafka targets"),
        "FieldName": _str(note="before images are for DMS's Kinesis and Kafka targets"),
        "ColumnFilter": _enum(
            "pk-only", "non-lob", "all", note="before images are for DMS's Kinesis and Kafka targets"
        ),
    },
}
# Sections whose content is nested DMS-only configuration: checked to be an object (or null) and accepted.
OPAQUE_SECTIONS: dict[str, str] = {
    "TTSettings": "Time Travel writes DMS's own change logs to S3; bulkmig's capture batches are in the bucket",
    "LoopbackPreventionSettings": "for DMS's bidirectional replication; bulkmig replicates one way",
    "PostProcessingRules": "DMS post-processing rules",
}
TOP_LEVEL = {
    **{name: "section" for name in SECTIONS},
    **{name: "opaque" for name in OPAQUE_SECTIONS},
    "CharacterSetSettings": "charset",
    "FailTaskWhenCleanTaskResourceFailed": "flag",
}


@dataclass(frozen=True)
class DmsTaskSettings:
    """What a DMS task-settings file asks of bulkmig, after checking every key (None: the file does not say)."""

    origin: str
    target_schema: str | None = None
    lob: LobLimit = FULL
    existing_tables: str | None = None  # settings.existing_tables from TargetTablePrepMode
    primary_keys: str | None = None  # settings.schema.primary_keys from CreatePkAfterFullLoad
    workers: int | None = None  # MaxFullLoadSubTasks
    validation_enabled: bool | None = None
    validation_threads: int | None = None
    validation_only: bool | None = None
    validation_partition_size: int | None = None  # ValidationSettings.PartitionSize
    validation_failure_max_count: int | None = None  # ValidationSettings.FailureMaxCount
    warnings: tuple[str, ...] = ()

    # ------------------------------------------------------------------------------------------ reading

    @classmethod
    def load(cls, path: Path, migration_type: str | None = None) -> DmsTaskSettings:
        text = read_text(path, "task settings", "fix task_settings in the task file (a path relative to the task file)")
        doc = parse_json(text, str(path), "fix the task-settings JSON (the file an AWS DMS task exports)")
        return cls.from_doc(doc, str(path), migration_type)

    @classmethod
    def from_doc(cls, doc: Any, origin: str = "task settings", migration_type: str | None = None) -> DmsTaskSettings:
        """Check every key of a task-settings document; every problem is reported in one ConfigError."""
        reader = _Reader(origin)
        result = reader.read(doc, migration_type)
        if reader.problems:
            raise ConfigError(
                f"{origin}: " + "; ".join(reader.problems),
                "fix the task-settings JSON (AWS DMS task settings; see the README's AWS DMS section)",
            )
        return result

    # ----------------------------------------------------------------------------------------- applying

    def apply_to(self, settings: T, explicit: Mapping[str, Any]) -> tuple[T, list[str]]:
        """``settings`` (:class:`bulkmig.config.task.Settings`) with what this file honours, unless the task
        file's own ``settings`` (``explicit``: its raw mapping) sets it; a warning for each such override."""
        notes: list[str] = []
        s: Any = settings

        def pick(path: str, ours: Any, theirs: Any, key: str) -> Any:
            section, _, name = path.rpartition(".")
            raw = explicit.get(section, {}) if section else explicit
            if theirs is None:
                return ours
            if isinstance(raw, Mapping) and raw.get(name) is not None:
                if ours != theirs:
                    notes.append(
                        f"{self.origin}: {key} {theirs!r} is overridden by the task file's settings.{path} {ours!r}"
                    )
                return ours
            return theirs

        workers = pick("workers", s.workers, self.workers, "FullLoadSettings.MaxFullLoadSubTasks")
        existing = pick(
            "existing_tables", s.existing_tables, self.existing_tables, "FullLoadSettings.TargetTablePrepMode"
        )
        keys = pick(
            "schema.primary_keys", s.schema.primary_keys, self.primary_keys, "FullLoadSettings.CreatePkAfterFullLoad"
        )
        enabled = pick(
            "validation.enabled", s.validation.enabled, self.validation_enabled, "ValidationSettings.EnableValidation"
        )
        threads = pick(
            "validation.threads", s.validation.threads, self.validation_threads, "ValidationSettings.ThreadCount"
        )
        only = pick("validation.only", s.validation.only, self.validation_only, "ValidationSettings.ValidationOnly")
        size = pick(
            "validation.partition_size",
            s.validation.partition_size,
            self.validation_partition_size,
            "ValidationSettings.PartitionSize",
        )
        cap = pick(
            "validation.failure_max_count",
            s.validation.failure_max_count,
            self.validation_failure_max_count,
            "ValidationSettings.FailureMaxCount",
        )
        out = dataclasses.replace(
            s,
            workers=workers,
            existing_tables=existing,
            schema=dataclasses.replace(s.schema, primary_keys=keys),
            # CreatePkAfterFullLoad sets the key placement: it is no longer the default the task left out.
            defaulted=s.defaulted - {"schema.primary_keys"} if self.primary_keys is not None else s.defaulted,
            validation=dataclasses.replace(
                s.validation,
                enabled=enabled,
                threads=threads,
                only=only,
                partition_size=size,
                failure_max_count=cap,
            ),
        )
        return out, notes

    def apply_to_mappings(self, mappings: T) -> T:
        """``mappings`` (:class:`bulkmig.config.mappings.Mappings`) with ``TargetSchema`` as a schema rename
        applied before every rule of the file, so the table mappings' own schema renames win (as in DMS:
        "Renaming a schema in data mapping takes precedence over this setting")."""
        if not self.target_schema:
            return mappings
        from bulkmig.config.mapping_rules import Pattern, TransformationRule

        m: Any = mappings
        first = min((r.rule_id for r in m.transformations), default=1) - 1
        rule = TransformationRule(
            first, "TargetMetadata.TargetSchema", "rename", "schema", Pattern("%"), value=self.target_schema
        )
        out: T = dataclasses.replace(m, transformations=(rule, *m.transformations))
        return out


class _Reader:
    """Checks a task-settings document key by key, collecting problems and warnings."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def read(self, doc: Any, migration_type: str | None) -> DmsTaskSettings:
        if not isinstance(doc, dict):
            self.problem("expected a JSON object of sections (TargetMetadata, FullLoadSettings, …)")
            return DmsTaskSettings(self.origin)
        values: dict[str, dict[str, Any]] = {}
        for name, body in doc.items():
            kind = TOP_LEVEL.get(name)
            if kind is None:
                self.problem(f"{name}: unknown section{did_you_mean(name, TOP_LEVEL)}; allowed: {', '.join(TOP_LEVEL)}")
            elif kind == "section":
                values[name] = self.section(name, body)
            elif kind == "opaque":
                if body is not None and not isinstance(body, dict | list):
                    self.problem(f"{name}: must be an object or null, not {body!r}")
                elif body:
                    self.warnings.append(f"{self.origin}: {name} accepted, not used: {OPAQUE_SECTIONS[name]}")
            elif kind == "charset":
                self.charset(body)
            elif body is not None and not isinstance(body, bool):
                self.problem(f"{name}: must be true or false, not {body!r}")
            elif body:
                self.warnings.append(f"{self.origin}: {name} accepted, not used: DMS's own task clean-up")
        return self.settings(values, migration_type)

    def section(self, name: str, body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        spec = SECTIONS[name]
        if not isinstance(body, dict):
            self.problem(f"{name}: must be an object of settings ({', '.join(spec)})")
            return {}
        out: dict[str, Any] = {}
        unused: dict[str, list[str]] = {}
        for key, value in body.items():
            where = f"{name}.{key}"
            key_spec = spec.get(key)
            if key_spec is None:
                self.problem(f"{where}: unknown key{did_you_mean(key, spec)}; allowed: {', '.join(spec)}")
                continue
            if value is None:
                continue
            if not self.check(where, key_spec, value):
                continue
            out[key] = value
            if key_spec.note:
                unused.setdefault(key_spec.note, []).append(key)
        for note, keys in unused.items():
            self.warnings.append(f"{self.origin}: {name} {', '.join(keys)} accepted, not used: {note}")
        return out

    def check(self, where: str, spec: Key, value: Any) -> bool:
        if spec.kind == "bool" and not isinstance(value, bool):
            self.problem(f"{where}: must be true or false, not {value!r}")
            return False
        if spec.kind == "int":
            lo, hi = spec.allowed
            if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
                span = f"from {lo} to {hi}" if hi is not None else f"≥ {lo}"
                self.problem(f"{where}: must be an integer {span}, not {value!r}")
                return False
        if spec.kind == "enum" and value not in spec.allowed:
            hint = did_you_mean(str(value), spec.allowed)
            self.problem(f"{where}: {value!r} is not one of {', '.join(spec.allowed)}{hint}")
            return False
        if spec.kind == "str" and not isinstance(value, str):
            self.problem(f"{where}: must be a string, not {value!r}")
            return False
        if spec.kind == "object" and not isinstance(value, dict):
            self.problem(f"{where}: must be an object, not {value!r}")
            return False
        if spec.kind == "list":
            return self.log_components(where, value)
        return True

    def log_components(self, where: str, value: Any) -> bool:
        if not isinstance(value, list):
            self.problem(f'{where}: must be a list of {{"Id": …, "Severity": …}}')
            return False
        ok = True
        for i, item in enumerate(value, 1):
            if not isinstance(item, dict) or set(item) - {"Id", "Severity"}:
                self.problem(f'{where} entry {i}: must be {{"Id": …, "Severity": …}}, not {item!r}')
                ok = False
                continue
            if item.get("Id") not in LOG_COMPONENTS:
                hint = did_you_mean(str(item.get("Id")), LOG_COMPONENTS)
                self.problem(
                    f"{where} entry {i}: Id {item.get('Id')!r} is not one of {', '.join(LOG_COMPONENTS)}{hint}"
                )
                ok = False
            if item.get("Severity") not in LOG_SEVERITIES:
                hint = did_you_mean(str(item.get("Severity")), LOG_SEVERITIES)
                allowed = ", ".join(LOG_SEVERITIES)
                self.problem(f"{where} entry {i}: Severity {item.get('Severity')!r} is not one of {allowed}{hint}")
                ok = False
        return ok

    def charset(self, body: Any) -> None:
        """Character substitution changes data; bulkmig does not do it, so a file asking for it is refused."""
        if body is None:
            return
        if not isinstance(body, dict):
            self.problem(f"CharacterSetSettings: must be an object or null, not {body!r}")
            return
        unknown = [k for k in body if k not in ("CharacterReplacements", "CharacterSetSupport")]
        for key in unknown:
            self.problem(
                f"CharacterSetSettings.{key}: unknown key; allowed: CharacterReplacements, CharacterSetSupport"
            )
        asks = [k for k in ("CharacterReplacements", "CharacterSetSupport") if body.get(k)]
        if asks:
            self.problem(
                f"CharacterSetSettings.{', '.join(asks)}: bulkmig does not substitute characters (it copies every "
                "value exactly); remove the setting, or change the values on the target after the migration"
            )

    # --------------------------------------------------------------------------------------- meaning

    def settings(self, v: dict[str, dict[str, Any]], migration_type: str | None) -> DmsTaskSettings:
        meta, full, valid = v.get("TargetMetadata", {}), v.get("FullLoadSettings", {}), v.get("ValidationSettings", {})
        lob = self.lob(meta)
        prep = full.get("TargetTablePrepMode")
        cdc = migration_type in ("full-load-and-cdc", "cdc")
        for key in ("StopTaskCachedChangesApplied", "StopTaskCachedChangesNotApplied"):
            if full.get(key) and cdc:
                self.problem(
                    f"FullLoadSettings.{key}: bulkmig's migrate does not stop between the full load and the cached "
                    "changes; set it to false and run the stages yourself (plan … load, then replay when you choose)"
                )
            elif full.get(key):
                self.warnings.append(f"{self.origin}: FullLoadSettings.{key} has no effect on a full-load task")
        only = valid.get("ValidationOnly")
        if only and prep not in (None, "DO_NOTHING"):
            self.problem(
                f"ValidationSettings.ValidationOnly needs FullLoadSettings.TargetTablePrepMode DO_NOTHING, not {prep}"
                " (a validation-only task must not touch the target; DMS has the same rule)"
            )
        if only and valid.get("EnableValidation") is False:
            self.problem("ValidationSettings.ValidationOnly needs EnableValidation true")
        create_pk = full.get("CreatePkAfterFullLoad")
        return DmsTaskSettings(
            origin=self.origin,
            target_schema=meta.get("TargetSchema") or None,
            lob=lob,
            existing_tables=PREP_MODES[prep] if prep else None,
            primary_keys=None if create_pk is None else ("after" if create_pk else "before"),
            workers=full.get("MaxFullLoadSubTasks"),
            validation_enabled=True if only else valid.get("EnableValidation"),
            validation_threads=valid.get("ThreadCount"),
            validation_only=only,
            validation_partition_size=valid.get("PartitionSize"),
            validation_failure_max_count=valid.get("FailureMaxCount"),
            warnings=tuple(self.warnings),
        )

    def lob(self, meta: dict[str, Any]) -> LobLimit:
        """The task's LOB mode: DMS's ``SupportLobs`` / ``FullLobMode`` / ``LimitedSizeLobMode`` + ``LobMaxSize``."""
        support, full, limited = meta.get("SupportLobs"), meta.get("FullLobMode"), meta.get("LimitedSizeLobMode")
        if support is False:
            return LobLimit("excluded", None, "TargetMetadata.SupportLobs false")
        if full and limited:
            self.problem("TargetMetadata: FullLobMode and LimitedSizeLobMode are both true; set one of them")
            return FULL
        if limited:
            size = meta.get("LobMaxSize")
            if not size:
                self.problem("TargetMetadata.LobMaxSize: LimitedSizeLobMode needs a non-zero LobMaxSize (KB)")
                return FULL
            return LobLimit("limited", size * KB, f"TargetMetadata.LobMaxSize {size} KB")
        if support and not full:
            self.problem(
                "TargetMetadata: SupportLobs is true, so set FullLobMode or LimitedSizeLobMode true (DMS rule)"
            )
        return FULL
