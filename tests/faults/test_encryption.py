"""Encryption (issue 7, item 8): S3 server-side encryption of everything bulkmig puts in the bucket, and
parts encrypted at rest on the volume (``settings.encryption.key_file``, :mod:`bulkmig.core.crypto`).

A lost device must reveal no row: the parts' raw bytes hold none of the source's values (not even column
names or the Parquet footer's statistics) and no Parquet reader opens them, while ``volume verify`` and
``volume import`` work without the key, because the checksums cover the bytes on the device.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulkmig.core import crypto
from bulkmig.core.crypto import CHUNK, EncryptingWriter, Key, load_key, open_encrypted
from bulkmig.core.errors import EXIT_CONFIG, EXIT_INTEGRITY, ConfigError, IntegrityError
from bulkmig.core.parquet import open_part, write_parquet
from bulkmig.core.store import MULTIPART_THRESHOLD

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


# --------------------------------------------------------------------------- the format, without servers


def _encrypt(data: bytes, key: Key, chunk: int) -> bytes:
    out = io.BytesIO()
    out.close = lambda: None  # keep the buffer readable after the writer closes it
    writer = EncryptingWriter(out, key, chunk=chunk)
    for start in range(0, len(data), 777):  # odd-sized writes, as a Parquet writer makes them
        writer.write(data[start : start + 777])
    writer.close()
    return out.getvalue()


def _decrypt(blob: bytes, key: Key, tmp_path: Path) -> bytes:
    path = tmp_path / "blob"
    path.write_bytes(blob)
    with open_encrypted(path, key, "blob") as plain:
        return plain.read()


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3000, 4567])
def test_round_trip_at_every_chunk_boundary(tmp_path: Path, size: int) -> None:
    key = Key.from_bytes(os.urandom(32))
    data = os.urandom(size)
    blob = _encrypt(data, key, chunk=1000)
    assert _decrypt(blob, key, tmp_path) == data
    if size >= 64:
        assert data[:64] not in blob


def test_random_access_reads(tmp_path: Path) -> None:
    key = Key.from_bytes(os.urandom(32))
    data = os.urandom(10_000)
    (tmp_path / "blob").write_bytes(_encrypt(data, key, chunk=1000))
    with open_encrypted(tmp_path / "blob", key) as plain:
        assert plain.size == len(data)
        for offset, length in ((0, 10), (995, 10), (9_990, 50), (4_000, 3_000), (10_000, 5)):
            plain.seek(offset)
            assert plain.read(length) == data[offset : offset + length]
        plain.seek(-7, io.SEEK_END)
        assert plain.read() == data[-7:]


@pytest.mark.parametrize(
    "damage",
    ["cut-at-chunk-boundary", "cut-mid-chunk", "flip-a-bit", "swap-chunks", "drop-a-chunk", "header-nonce"],
)
def test_any_damage_is_refused(tmp_path: Path, damage: str) -> None:
    key = Key.from_bytes(os.urandom(32))
    blob = bytearray(_encrypt(os.urandom(3500), key, chunk=1000))
    head, step = crypto.HEADER.size, 1000 + crypto.TAG
    chunks = [blob[head + i * step : head + (i + 1) * step] for i in range(4)]
    if damage == "cut-at-chunk-boundary":
        blob = blob[: head + 3 * step]  # three whole chunks: only the missing last one was marked last
    elif damage == "cut-mid-chunk":
        blob = blob[:-100]
    elif damage == "flip-a-bit":
        blob[head + step + 10] ^= 0x01
    elif damage == "swap-chunks":
        blob = blob[:head] + chunks[1] + chunks[0] + chunks[2] + chunks[3]
    elif damage == "drop-a-chunk":
        blob = blob[:head] + chunks[0] + chunks[2] + chunks[3]
    else:
        blob[head - 1] ^= 0x01
    with pytest.raises(IntegrityError, match="does not decrypt"):
        _decrypt(bytes(blob), key, tmp_path)


def test_wrong_key_is_refused_by_id(tmp_path: Path) -> None:
    key, other = Key.from_bytes(os.urandom(32)), Key.from_bytes(os.urandom(32))
    with pytest.raises(ConfigError, match=f"encrypted with key {key.id}, not with key {other.id}"):
        _decrypt(_encrypt(b"rows", key, CHUNK), other, tmp_path)


def test_key_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as missing:
        load_key(tmp_path / "nope.key")
    assert "copy the key file here" in str(missing.value)
    for text in ("", "abc", "zz" * 32, "00" * 31, "00" * 33):
        (tmp_path / "bad.key").write_text(text)
        with pytest.raises(ConfigError, match="does not hold a key"):
            load_key(tmp_path / "bad.key")
    material = os.urandom(32)
    (tmp_path / "good.key").write_text(material.hex() + "\n")
    key = load_key(tmp_path / "good.key")
    assert key.material == material and key.id == Key.from_bytes(material).id
    assert material.hex() not in repr(key) and material.hex()[:16] != key.id


def test_parquet_part_encrypted_as_written(tmp_path: Path) -> None:
    key = Key.from_bytes(os.urandom(32))
    table = pa.table({"very_private_column": [f"needle-{i:06d}" for i in range(50_000)], "n": range(50_000)})
    rows, groups = write_parquet(table.to_batches(7_000), table.schema, tmp_path / "p", max_rows=20_000, key=key)
    assert (rows, groups) == (50_000, 3)
    raw = (tmp_path / "p").read_bytes()
    assert b"needle-" not in raw and b"very_private_column" not in raw and b"PAR1" not in raw
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(tmp_path / "p")
    assert open_part(tmp_path / "p", key, "p").read().equals(table)
    assert list(tmp_path.iterdir()) == [tmp_path / "p"]  # no plaintext temp file beside it


# ------------------------------------------------------------------------------- S3 server-side encryption


def _source(pg_source, source_db: str, blobs: int = 0) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE people (id int PRIMARY KEY, email text, note text);"
        "INSERT INTO people SELECT g, 'person' || g || '@example.org', md5(g::text) FROM generate_series(1, 5000) g;"
        "CREATE TABLE blobs (id int PRIMARY KEY, b bytea);",
    )
    if blobs:
        with psycopg.connect(pg_source.conninfo(source_db), autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO blobs VALUES (%s, %s)", [(i, os.urandom(1024 * 1024)) for i in range(blobs)])


def _objects(s3_server, bucket: str) -> dict[str, int]:  # noqa: ANN001
    out: dict[str, int] = {}
    for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["Size"]
    return out


@pytest.mark.parametrize(
    ("sse", "kms_key_id", "expect"),
    [("SSE_S3", None, "AES256"), ("SSE_KMS", KMS_KEY, "aws:kms")],
    ids=["sse-s3", "sse-kms"],
)
def test_server_side_encryption_of_every_object(
    make_flow, pg_source, source_db, s3_server, bucket, sse: str, kms_key_id: str | None, expect: str
) -> None:  # noqa: ANN001
    multipart = sse == "SSE_KMS"  # one variant also sends a part of ~20 MiB: a multipart upload
    _source(pg_source, source_db, blobs=20 if multipart else 0)
    s3 = {"sse": sse, **({"kms_key_id": kms_key_id} if kms_key_id else {})}
    flow = make_flow(s3=s3)
    for step in ("plan", "extract"):
        assert flow.bulkmig(step).code == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    for step in ("volume import", "load", "validate"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)
    objects = _objects(s3_server, bucket)
    assert any(size >= MULTIPART_THRESHOLD for size in objects.values()) == multipart, objects
    assert any(k.endswith(".parquet") for k in objects) and any(k.endswith("volume.json") for k in objects)
    client = s3_server.client()
    for key in objects:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head.get("ServerSideEncryption") == expect, key
        assert head.get("SSEKMSKeyId") == kms_key_id, key


def test_change_batches_carry_sse_kms(make_flow, pg_source, source_db, s3_server, bucket) -> None:  # noqa: ANN001
    _source(pg_source, source_db)
    flow = make_flow(migration_type="cdc", s3={"sse": "aws:kms", "kms_key_id": KMS_KEY})
    assert flow.bulkmig("plan").code == 0
    pg_source.execute(source_db, "UPDATE people SET note = 'changed' WHERE id <= 100; DELETE FROM people WHERE id = 7")
    run = flow.bulkmig("capture", "--once")
    assert run.code == 0, run.text
    objects = _objects(s3_server, bucket)
    batches = [k for k in objects if "/cdc/" in k and "/batch-" in k]
    assert batches, objects
    client = s3_server.client()
    for key in objects:
        head = client.head_object(Bucket=bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", KMS_KEY), key


def test_sse_kms_key_id_without_kms_is_refused(make_flow, one_error) -> None:  # noqa: ANN001
    flow = make_flow(s3={"sse": "SSE_S3", "kms_key_id": KMS_KEY})
    one_error(flow.bulkmig("plan"), EXIT_CONFIG, "s3.kms_key_id: only used with sse: SSE_KMS")


# ------------------------------------------------------------------------------- the volume at rest


def _known_values(pg_source, source_db: str) -> list[bytes]:  # noqa: ANN001
    """Values any plaintext part of ``people`` would hold (Parquet stores strings as plain UTF-8)."""
    rows = pg_source.execute(source_db, "SELECT email, note FROM people WHERE id % 250 = 0")
    return [v.encode() for row in rows for v in row] + [b"@example.org", b"email"]


def test_encrypted_volume_reveals_no_row(
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path: Path, one_error
) -> None:  # noqa: ANN001
    _source(pg_source, source_db)
    key_file = tmp_path / "keys" / "volume.key"
    key_file.parent.mkdir()
    key_file.write_text(secrets.token_hex(32) + "\n")
    key_file.chmod(0o600)
    flow = make_flow(settings={"workers": 2, "max_part_bytes": "100kB", "encryption": {"key_file": str(key_file)}})
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)

    # The plan stays readable (names, not rows) and records which key, not the key.
    plan = json.loads((flow.volume / "plan.json").read_text())
    key = load_key(key_file)
    assert plan["settings"]["encryption"] == {
        "cipher": "AES-256-GCM",
        "format": "bulkmig-enc1",
        "chunk_bytes": CHUNK,
        "key_id": key.id,
    }
    assert key_file.read_text().strip() not in json.dumps(plan)

    # Every part: no known value, no column name, and no Parquet reader opens it.
    parts = sorted(flow.volume.glob("data/**/*.parquet"))
    assert len(parts) >= 3
    needles = _known_values(pg_source, source_db)
    for part in parts:
        raw = part.read_bytes()
        assert raw.startswith(crypto.MAGIC) and b"PAR1" not in raw, part
        for needle in needles:
            assert needle not in raw, (part, needle)
        with pytest.raises(pa.ArrowInvalid):
            pq.ParquetFile(part)
    # With the key, the parts hold every row.
    total = sum(open_part(p, key, p.name).metadata.num_rows for p in parts)
    assert total == 5000

    # The key leaves this host: seal, verify and import work without it.
    hidden = tmp_path / "elsewhere.key"
    shutil.move(key_file, hidden)
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 0, verify.text
    run = flow.bulkmig("volume import")
    assert run.code == 0, run.text

    # load needs it: one clear line without it, or with another key; nothing reaches the target.
    one_error(flow.bulkmig("load"), EXIT_CONFIG, f"the key file {key_file} does not exist", "copy the key file here")
    key_file.write_text(secrets.token_hex(32))
    one_error(flow.bulkmig("load"), EXIT_CONFIG, f"was encrypted with key {key.id}", "use the key file the volume")
    assert pg_target.execute(target_db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'bulkmig'") == [(0,)]
    shutil.move(hidden, key_file)
    run = flow.bulkmig("load")
    assert run.code == 0, run.text
    run = flow.bulkmig("validate")
    assert run.code == 0, run.text


def test_tampered_encrypted_part_is_named(make_flow, pg_source, source_db, tmp_path: Path, one_error) -> None:  # noqa: ANN001
    """The sha256 catches damage before decryption; decryption would catch it too (see the unit tests)."""
    _source(pg_source, source_db)
    key_file = tmp_path / "volume.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    flow = make_flow(settings={"max_part_bytes": "100kB", "encryption": {"key_file": str(key_file)}})
    for step in ("plan", "extract"):
        assert flow.bulkmig(step).code == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    part = sorted(flow.volume.glob("data/public/people/part-*.parquet"))[1]
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    part.write_bytes(bytes(raw))
    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == EXIT_INTEGRITY and part.name in verify.text, verify.text
    one_error(flow.bulkmig("volume import"), EXIT_INTEGRITY, part.name)
