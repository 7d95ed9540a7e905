"""The JSON Schemas in manifests/ agree with the code that reads and writes those documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bulkmig.config import task as task_module
from bulkmig.core.errors import IntegrityError
from bulkmig.core.manifest import SCHEMAS_DIR, validate_document

EXAMPLES = Path(__file__).parents[2] / "examples"


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(SCHEMAS_DIR.glob("*.schema.json")), ids=lambda p: p.name)
def test_every_schema_is_a_valid_json_schema(path: Path) -> None:
    """validate_document trusts the shipped schemas (no meta-schema check per command); this is that check."""
    import jsonschema

    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)  # raises SchemaError naming the fault


def test_task_schema_knows_exactly_the_keys_the_task_reader_takes() -> None:
    schema = _schema("task")
    assert set(schema["properties"]) == set(task_module.TOP_KEYS)
    # a cdc-only task has no volume; a dms-s3:// source needs neither volume nor bucket
    assert set(schema["required"]) == set(task_module.REQUIRED_KEYS) - {"volume", "bucket"}
    assert schema["allOf"][0]["then"]["then"]["required"] == ["volume"]  # unless volumes: names several devices
    assert schema["allOf"][1]["then"]["required"] == ["bucket"]
    settings = schema["properties"]["settings"]["anyOf"][1]["properties"]
    assert set(settings) == set(task_module.SETTINGS_KEYS)
    nested = {
        "schema": task_module.SCHEMA_SETTINGS_KEYS,
        "validation": task_module.VALIDATION_SETTINGS_KEYS,
        "mysql": task_module.MYSQL_SETTINGS_KEYS,
        "encryption": task_module.ENCRYPTION_KEYS,
        "sqlite": task_module.SQLITE_SETTINGS_KEYS,
        "dms": task_module.DMS_SETTINGS_KEYS,
    }
    for key, keys in nested.items():
        assert set(settings[key]["anyOf"][1]["properties"]) == set(keys), key
    assert set(schema["properties"]["s3"]["anyOf"][1]["properties"]) == set(task_module.S3_KEYS)


def test_example_task_matches_and_a_wrong_one_does_not() -> None:
    doc = yaml.safe_load((EXAMPLES / "task.yaml").read_text())
    validate_document(doc, "task")
    with pytest.raises(IntegrityError, match="settings"):
        validate_document({**doc, "settings": {"wokers": 2}}, "task")
    no_volume = {k: v for k, v in doc.items() if k != "volume"}
    validate_document({**no_volume, "migration_type": "cdc"}, "task")
    validate_document({**doc, "table_mappings": None, "settings": {"workers": None}}, "task")  # empty = default
    with pytest.raises(IntegrityError, match="'volume' is a required property"):
        validate_document({**no_volume, "migration_type": "full-load"}, "task")
    # An AWS DMS S3 target's folder as the source: its files are read in place, no volume or bucket of ours.
    no_bucket = {k: v for k, v in no_volume.items() if k != "bucket"}
    validate_document({**no_bucket, "source": "dms-s3://dms-out/folder", "migration_type": "full-load"}, "task")
    with pytest.raises(IntegrityError, match="'bucket' is a required property"):
        validate_document({**no_bucket, "migration_type": "cdc"}, "task")


def _batch() -> dict:
    return {
        "format": "bulkmig-batch",
        "version": 1,
        "stream_id": "s1",
        "seq": 3,
        "first_pos": "0/16B3740",
        "last_pos": "0/16B3900",
        "transactions": 2,
        "rows": 5,
        "tables": [
            {"schema": "public", "table": "t", "file": "public.t.parquet", "rows": 5, "bytes": 10, "sha256": "a" * 64}
        ],
        "schema_changes": [],
        "created_at": "2026-12-06T10:00:00+00:00",
    }


def test_batch_schema() -> None:
    validate_document(_batch(), "batch")
    bad = _batch()
    bad["tables"][0]["sha256"] = "not-a-hash"
    with pytest.raises(IntegrityError, match="tables/0/sha256"):
        validate_document(bad, "batch")


def test_stream_schema_requires_each_engines_facts() -> None:
    common = {
        "format": "bulkmig-stream",
        "version": 1,
        "stream_id": "s1",
        "slot": "bulkmig_s1",
        "start_pos": "0/16B3740",
        "tables": [{"schema": "public", "table": "t"}],
        "source": "postgresql://app@h/db",
        "created_at": "2026-12-06T10:00:00+00:00",
    }
    validate_document({**common, "engine": "postgresql", "publication": "p", "relations": []}, "stream")
    with pytest.raises(IntegrityError, match="publication"):
        validate_document({**common, "engine": "postgresql", "relations": []}, "stream")
    with pytest.raises(IntegrityError, match="start_binlog"):
        validate_document({**common, "engine": "mysql", "server_uuid": "u"}, "stream")
