"""Manifests: canonical bytes, round trips, refusal of unknown formats and newer versions, schemas."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bulkmig.core import layout
from bulkmig.core.errors import IntegrityError, PlanError
from bulkmig.core.manifest import (
    SCHEMAS_DIR,
    FileEntry,
    PartManifest,
    VolumeManifest,
    check_format,
    root_hash,
    validate_document,
)

EXAMPLES = SCHEMAS_DIR / "examples"


def part(**changes: object) -> PartManifest:
    base = PartManifest(
        volume_id="shop-20261127T065241Z-0a1b2c",
        schema="Sales Dept",
        table="Zoë's orders",
        index=7,
        key=layout.part_key("Sales Dept", "Zoë's orders", 7),
        rows=1234,
        bytes=56789,
        sha256="ab" * 32,
        bounds={"ctid_lo": [0, 0], "ctid_hi": [1000, 0]},
        columns=["id", "Note", "é"],
        row_groups=2,
        source_position=None,
        created_at="2026-11-27T06:52:41+00:00",
    )
    return dataclasses.replace(base, **changes)


def volume() -> VolumeManifest:
    p = part()
    files = [
        FileEntry(layout.PLAN, 100, "01" * 32),
        FileEntry(layout.PRE_DATA, 10, "02" * 32),
        FileEntry(p.key, p.bytes, p.sha256, p.rows),
        FileEntry(layout.sidecar_for(p.key), 300, "03" * 32),
    ]
    return VolumeManifest.build(p.volume_id, "01" * 32, files)


def test_part_round_trip_and_canonical_bytes() -> None:
    p = part()
    data = p.to_bytes()
    assert PartManifest.from_bytes(data) == p
    # Canonical: sorted keys, indent 1, UTF-8 (not \u escapes), one trailing newline.
    doc = json.loads(data)
    assert data == (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    assert "Zoë".encode() in data and data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert doc["format"] == "bulkmig-part" and doc["version"] == 1
    assert p.expected_key == "data/Sales%20Dept/Zo%C3%AB%27s%20orders/part-00007.parquet"


def test_volume_round_trip_sorted_and_indexed() -> None:
    v = volume()
    again = VolumeManifest.from_bytes(v.to_bytes())
    assert again.files == v.files and again.root_hash == v.root_hash
    assert [f.key for f in v.files] == sorted(f.key for f in v.files)
    assert again.entry(layout.PRE_DATA) == FileEntry(layout.PRE_DATA, 10, "02" * 32)
    assert again.entry("data/nope/part-00000.parquet") is None
    assert [f.key for f in again.parts] == [part().key]
    assert again.total_rows == 1234 and again.total_bytes == 100 + 10 + 56789 + 300


def test_same_files_same_root_hash_in_any_order() -> None:
    v = volume()
    shuffled = VolumeManifest.build(
        v.volume_id, v.plan_sha256, list(reversed(v.files)), sealed_at="2020-01-01T00:00:00Z"
    )
    assert shuffled.root_hash == v.root_hash
    changed = [*v.files[:-1], dataclasses.replace(v.files[-1], bytes=301)]
    assert root_hash(changed) != v.root_hash


@pytest.mark.parametrize(
    "cls,doc_of",
    [(PartManifest, lambda: part().to_dict()), (VolumeManifest, lambda: volume().to_dict())],
)
def test_newer_version_refused_by_name(cls: type, doc_of) -> None:  # noqa: ANN001
    doc = doc_of()
    doc["version"] = 2
    with pytest.raises(PlanError) as info:
        cls.from_bytes(json.dumps(doc).encode(), where="volume.json")
    assert str(info.value) == "volume.json is format version 2; this bulkmig reads up to 1 — upgrade bulkmig"


def test_unknown_format_and_missing_format_refused() -> None:
    doc = part().to_dict()
    with pytest.raises(PlanError, match="'bulkmig-part' document, expected 'bulkmig-volume'"):
        VolumeManifest.from_bytes(json.dumps(doc).encode())
    del doc["format"]
    with pytest.raises(PlanError, match="not a bulkmig document"):
        PartManifest.from_bytes(json.dumps(doc).encode())
    with pytest.raises(PlanError, match="no valid format version"):
        check_format({"format": "x", "version": "1"}, "x", 1, "x.json")


def test_damaged_json_is_an_integrity_error() -> None:
    data = part().to_bytes()
    with pytest.raises(IntegrityError, match="not valid JSON"):
        PartManifest.from_bytes(data[: len(data) // 2], where="data/a/b/part-00000.json")


def test_schema_rejects_wrong_fields_naming_them() -> None:
    doc = part().to_dict()
    doc["sha256"] = "XYZ"
    with pytest.raises(IntegrityError, match="at sha256"):
        PartManifest.from_bytes(json.dumps(doc).encode())
    doc = part().to_dict()
    doc["rows"] = -1
    with pytest.raises(IntegrityError, match="at rows"):
        validate_document(doc, "part")
    with pytest.raises(IntegrityError):
        part(key="data/x/part-1.parquet").to_bytes()  # refused on write too


def test_root_hash_mismatch_refused() -> None:
    doc = volume().to_dict()
    doc["files"][0]["bytes"] += 1  # edited by hand after sealing
    with pytest.raises(IntegrityError, match="root hash does not match"):
        VolumeManifest.from_bytes(json.dumps(doc).encode())


def test_duplicate_key_refused() -> None:
    v = volume()
    with pytest.raises(IntegrityError):
        VolumeManifest.build(v.volume_id, v.plan_sha256, [*v.files, v.files[0]])


def test_examples_validate_and_parse() -> None:
    part_doc = json.loads((EXAMPLES / "part.json").read_text())
    volume_doc = json.loads((EXAMPLES / "volume.json").read_text())
    validate_document(part_doc, "part")
    validate_document(volume_doc, "volume")
    assert PartManifest.from_bytes((EXAMPLES / "part.json").read_bytes()).rows == part_doc["rows"]
    v = VolumeManifest.from_bytes((EXAMPLES / "volume.json").read_bytes())
    side = (EXAMPLES / "part.json").read_bytes()
    # The example volume lists the example sidecar with its real size and hash.
    sidecar = next(f for f in v.files if f.key.endswith(".json") and f.key.startswith("data/"))
    assert (sidecar.bytes, sidecar.sha256) == (len(side), hashlib.sha256(side).hexdigest())


@pytest.mark.skipif(not all(shutil.which(t) for t in ("jq", "sort", "sha256sum")), reason="needs jq, sort, sha256sum")
def test_root_hash_recomputable_with_the_documented_one_liner(tmp_path: Path) -> None:
    path = tmp_path / "volume.json"
    path.write_bytes(volume().to_bytes())
    schema = json.loads((SCHEMAS_DIR / "volume.schema.json").read_text())
    one_liner = schema["description"].split("recompute it with: ", 1)[1]
    out = subprocess.run(["bash", "-c", one_liner], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == volume().root_hash
