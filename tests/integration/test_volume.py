"""seal / verify / import on real files: tiny Parquet parts with sidecars, a local volume, and moto's S3
server over HTTP as the bucket (and as a device's S3 adapter)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulkmig.core import layout, store
from bulkmig.core.errors import ConfigError, ConnectError, IntegrityError, PlanError
from bulkmig.core.manifest import PartManifest, VolumeManifest, validate_document
from bulkmig.core.store import AlreadyExists, LocalStore, S3Options, S3Store, Store, open_store
from bulkmig.demo.servers import MotoS3Server, free_port
from bulkmig.volume import ImportReport, import_volume, seal, verify

VID = "test-20261127T000000Z-abcdef"
TABLES = {("public", "film"): 3, ("Sales Dept", "Order Items"): 2}
PRE_DATA = b"CREATE TABLE public.film (id bigint PRIMARY KEY, title text);\n"


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def s3(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> S3Options:
    """Options for the moto server, with its dummy credentials in the environment (boto3's chain)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return S3Options(endpoint_url=s3_server.endpoint_url, region=s3_server.region)


def write_part(
    vol: Store, schema: str, table: str, index: int, rows: int, *, blob_mib: int = 0, volume_id: str = VID
) -> PartManifest:
    """A real Parquet file and its sidecar, written the way extract does (part first, then sidecar)."""
    ids = list(range(index * 1000, index * 1000 + rows))
    columns: dict[str, Any] = {"id": pa.array(ids, pa.int64()), "title": [f"{table} #{i}" for i in ids]}
    if blob_mib:  # incompressible payload for the multipart test
        columns = {"id": pa.array(range(blob_mib), pa.int64()), "blob": [os.urandom(1 << 20) for _ in range(blob_mib)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.parquet"
        pq.write_table(pa.table(columns), path, compression="none" if blob_mib else "zstd")
        digest, size = store.sha256_file(path)
        key = layout.part_key(schema, table, index)
        vol.put_file(key, path)
    manifest = PartManifest(
        volume_id=volume_id,
        schema=schema,
        table=table,
        index=index,
        key=key,
        rows=len(columns["id"]),
        bytes=size,
        sha256=digest,
        bounds={"column": "id", "lo": ids[0] if ids else None, "hi": ids[-1] if ids else None},
        columns=list(columns),
        row_groups=1,
        source_position={"snapshot": "00000003-00000002-1", "lsn": "0/1A2B3C4"},
        created_at="2026-11-27T06:52:41+00:00",
    )
    vol.put_bytes(layout.sidecar_for(key), manifest.to_bytes())
    return manifest


def make_volume(vol: Store, tables: dict[tuple[str, str], int] = TABLES, big_mib: int = 0) -> dict[str, Any]:
    """plan.json + schema/pre-data.sql + every part with its sidecar.  ``big_mib`` makes part 0 of the
    first table that large (random bytes)."""
    vol.put_bytes(layout.PRE_DATA, PRE_DATA)
    plan = {
        "format": "bulkmig-plan",
        "version": 1,
        "volume_id": VID,
        "schema_files": {
            "pre-data": {"key": layout.PRE_DATA, "sha256": hashlib.sha256(PRE_DATA).hexdigest(), "bytes": len(PRE_DATA)}
        },
        "tables": [
            {"schema": s, "name": t, "partitions": [{"index": i} for i in range(n)]} for (s, t), n in tables.items()
        ],
    }
    vol.put_bytes(layout.PLAN, json.dumps(plan, indent=1, sort_keys=True).encode() + b"\n")
    for n, ((schema, table), parts) in enumerate(tables.items()):
        for i in range(parts):
            write_part(vol, schema, table, i, rows=10 + i, blob_mib=big_mib if (n, i) == (0, 0) else 0)
    return plan


def part_keys(tables: dict[tuple[str, str], int] = TABLES) -> list[str]:
    return [layout.part_key(s, t, i) for (s, t), n in tables.items() for i in range(n)]


@pytest.fixture
def volume(tmp_path: Path) -> LocalStore:
    vol = open_store(str(tmp_path / "volume"))
    assert isinstance(vol, LocalStore)
    make_volume(vol)
    return vol


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def kinds(problems: list[Any]) -> dict[str, str]:
    return {p.key: p.kind for p in problems}


class Recorder:
    """A store proxy recording the order of writes (import must put volume.json last)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.puts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_file(self, key: str, path: Path, **kw: Any) -> tuple[str, int]:
        stored = self.inner.put_file(key, path, **kw)
        self.puts.append(key)
        return stored

    def put_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        self.inner.put_bytes(key, data, if_absent)
        self.puts.append(key)


# ---------------------------------------------------------------------------------- seal & verify


def test_seal_then_verify_clean(volume: LocalStore) -> None:
    calls: list[tuple[int, int, int, int]] = []
    manifest = seal(volume, lambda *a: calls.append(a))
    assert calls[-1][0] == calls[-1][1] and calls[-1][2] == calls[-1][3] == 5 + 1  # parts + schema file
    doc = json.loads(volume.get_bytes(layout.VOLUME_MANIFEST))
    validate_document(doc, "volume")
    for key in part_keys():
        validate_document(json.loads(volume.get_bytes(layout.sidecar_for(key))), "part")
    keys = [f.key for f in manifest.files]
    assert keys == sorted(keys)
    expected = {layout.PLAN, layout.PRE_DATA} | set(part_keys()) | {layout.sidecar_for(k) for k in part_keys()}
    assert set(keys) == expected
    assert manifest.plan_sha256 == hashlib.sha256(volume.get_bytes(layout.PLAN)).hexdigest()
    assert manifest.total_rows == 10 + 11 + 12 + 10 + 11

    again = seal(volume)
    assert again.root_hash == manifest.root_hash and again.files == manifest.files

    report = verify(volume)
    assert report.ok and report.sealed and report.problems == []
    assert (report.parts, report.rows, report.files) == (5, 54, len(expected))
    assert report.bytes == manifest.total_bytes and report.root_hash == manifest.root_hash
    assert "OK" in report.render()


def test_seal_refuses_missing_and_bad_parts(volume: LocalStore) -> None:
    film = part_keys()[:3]
    volume.delete(film[0])  # a part gone
    volume.delete(layout.sidecar_for(film[1]))  # a part without its sidecar: incomplete
    flip_byte(volume.root / film[2])  # a part whose bytes no longer match its sidecar
    with pytest.raises(IntegrityError) as info:
        seal(volume)
    message = str(info.value)
    assert f"{film[0]} (missing" in message
    assert f"{layout.sidecar_for(film[1])} (missing" in message
    assert f"{film[2]} (altered" in message
    assert "3 of 6 files" in message and "bulkmig extract --task" in message
    assert not volume.exists(layout.VOLUME_MANIFEST)


def test_seal_refuses_unexpected_files_and_foreign_sidecars(volume: LocalStore, tmp_path: Path) -> None:
    volume.put_bytes("data/public/film/part-00099.parquet", b"not planned")
    with pytest.raises(IntegrityError, match=r"1 file\(s\) that are not part of .*part-00099\.parquet"):
        seal(volume)
    volume.delete("data/public/film/part-00099.parquet")

    other = open_store(str(tmp_path / "other"))
    write_part(other, "public", "film", 1, rows=3, volume_id="another-volume")
    key = layout.part_key("public", "film", 1)
    for k in (key, layout.sidecar_for(key)):
        volume.put_bytes(k, other.get_bytes(k))
    with pytest.raises(IntegrityError, match="bad-sidecar: belongs to volume another-volume"):
        seal(volume)


def test_seal_refuses_a_schema_file_changed_since_the_plan(volume: LocalStore) -> None:
    volume.put_bytes(layout.PRE_DATA, PRE_DATA.replace(b"bigint", b"int   "))
    with pytest.raises(IntegrityError, match=r"schema/pre-data\.sql \(altered"):
        seal(volume)


def test_seal_without_plan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="holds no plan.json"):
        seal(open_store(str(tmp_path / "empty")))


def test_verify_names_every_problem(volume: LocalStore) -> None:
    manifest = seal(volume)
    truncated, altered, deleted = part_keys()[0], part_keys()[1], part_keys()[3]
    path = volume.root / truncated
    path.write_bytes(path.read_bytes()[:-10])
    flip_byte(volume.root / altered)
    volume.delete(deleted)
    volume.put_bytes("data/public/film/part-00042.parquet", b"smuggled in")
    volume.put_bytes("notes.txt", b"hello")
    (volume.root / "data/public/film/part-00001.parquet.123-ab.partial").write_bytes(b"half")

    report = verify(volume)
    assert not report.ok
    assert kinds(report.problems) == {
        truncated: "truncated",
        altered: "altered",
        deleted: "missing",
        "data/public/film/part-00042.parquet": "extra",
        "notes.txt": "extra",
        "data/public/film/part-00001.parquet.123-ab.partial": "leftover-temp",
    }
    assert [p.kind for p in report.warnings] == ["leftover-temp"]
    detail = {p.key: p.detail for p in report.problems}
    size = manifest.entry(truncated).bytes  # type: ignore[union-attr]
    assert detail[truncated] == f"{size - 10:,} bytes, {size:,} recorded"
    text = report.render()
    assert all(k in text for k in (truncated, altered, deleted))


def test_leftover_temp_alone_is_only_a_warning(volume: LocalStore) -> None:
    seal(volume)
    (volume.root / "data/public/film/x.parquet.1-a.partial").write_bytes(b"half")
    report = verify(volume)
    assert report.ok and kinds(report.problems) == {"data/public/film/x.parquet.1-a.partial": "leftover-temp"}


def test_verify_unsealed_checks_parts_against_sidecars(volume: LocalStore) -> None:
    report = verify(volume)
    assert not report.ok and kinds(report.problems) == {layout.VOLUME_MANIFEST: "unsealed"}
    assert (report.parts, report.rows) == (5, 54)

    keys = part_keys()
    flip_byte(volume.root / keys[0])
    volume.delete(layout.sidecar_for(keys[1]))
    volume.put_bytes(layout.sidecar_for(keys[2]), b'{"format": "bulkmig-part", "version": 1}')
    report = verify(volume)
    assert kinds(report.problems) == {
        layout.VOLUME_MANIFEST: "unsealed",
        keys[0]: "altered",
        layout.sidecar_for(keys[1]): "missing",
        layout.sidecar_for(keys[2]): "bad-sidecar",
    }
    assert report.parts == 2


def test_verify_reports_an_edited_volume_json(volume: LocalStore) -> None:
    seal(volume)
    doc = json.loads(volume.get_bytes(layout.VOLUME_MANIFEST))
    doc["files"][0]["sha256"] = "0" * 64
    volume.put_bytes(layout.VOLUME_MANIFEST, json.dumps(doc).encode())
    report = verify(volume)
    assert kinds(report.problems) == {layout.VOLUME_MANIFEST: "altered"}
    assert "root hash" in report.problems[0].detail


# ------------------------------------------------------------------------------- S3 store itself


def test_s3_store_basics(s3: S3Options, bucket: str, tmp_path: Path) -> None:
    st = open_store(f"s3://{bucket}/some/prefix", s3)
    st.put_bytes("a/b.json", b"{}", if_absent=True)
    with pytest.raises(AlreadyExists):
        st.put_bytes("a/b.json", b"[]", if_absent=True)
    assert st.get_bytes("a/b.json") == b"{}"
    src = tmp_path / "f.bin"
    src.write_bytes(b"z" * 1000)
    st.put_file("a/c.bin", src)
    info = st.stat("a/c.bin")
    assert info is not None and (info.size, info.sha256) == (1000, hashlib.sha256(b"z" * 1000).hexdigest())
    assert st.stat("a/none") is None
    assert [i.key for i in st.list()] == ["a/b.json", "a/c.bin"]
    assert [i.key for i in open_store(f"s3://{bucket}/some", s3).list("prefix/a/c")] == ["prefix/a/c.bin"]
    with st.open_local("a/c.bin") as path:
        assert path.read_bytes() == b"z" * 1000
    st.download("a/c.bin", tmp_path / "d" / "copy")
    assert (tmp_path / "d" / "copy").read_bytes() == b"z" * 1000
    assert st.sha256("a/c.bin") == info.sha256
    # A tree inside the store: its own keys, the same checked client (no second client, no second bucket check).
    parent = open_store(f"s3://{bucket}/some", s3)
    sub = parent.under("prefix/a")
    assert isinstance(sub, S3Store) and isinstance(parent, S3Store) and sub.url == f"s3://{bucket}/some/prefix/a"
    assert sub.client is parent.client
    assert sub.get_bytes("b.json") == b"{}" and [i.key for i in sub.list()] == ["b.json", "c.bin"]
    local = LocalStore(tmp_path / "tree").under("x/y")
    assert isinstance(local, LocalStore) and local.url == str(tmp_path / "tree" / "x" / "y")
    st.delete("a/c.bin")
    assert not st.exists("a/c.bin") and st.free_bytes() is None


def test_s3_server_side_encryption_is_requested(s3: S3Options, s3_server: MotoS3Server, bucket: str) -> None:
    kms = S3Options(s3.endpoint_url, s3.region, sse="SSE_KMS", kms_key_id="alias/bulkmig")
    st = open_store(f"s3://{bucket}/enc", kms)
    st.put_bytes("a.json", b"{}")
    head = s3_server.client().head_object(Bucket=bucket, Key="enc/a.json")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "alias/bulkmig")


def test_s3_upload_is_checked_against_the_stored_checksum(
    s3: S3Options, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate the file changing between our hash and the upload: S3's checksum (computed by botocore
    from the bytes actually sent) then differs from ours, and the object must not stay."""
    st = open_store(f"s3://{bucket}", s3)
    src = tmp_path / "f.bin"
    src.write_bytes(b"real bytes")
    real = store.s3._hashes
    monkeypatch.setattr(store.s3, "_hashes", lambda p, n: ("0" * 64, *real(p, n)[1:]))
    with pytest.raises(IntegrityError, match="did not verify"):
        st.put_file("x.bin", src)
    assert st.stat("x.bin") is None


def test_s3_errors_are_one_clear_line(s3: S3Options, s3_server: MotoS3Server) -> None:
    with pytest.raises(ConfigError, match="bucket no-such-bucket-here does not exist") as info:
        open_store("s3://no-such-bucket-here/x", s3).stat("plan.json")
    assert "create it or fix `bucket:`" in str(info.value)

    dead = S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    started = time.monotonic()
    with pytest.raises(ConnectError, match="cannot reach the S3 endpoint http://127.0.0.1:"):
        open_store("s3://whatever/x", dead).get_bytes("plan.json")
    assert time.monotonic() - started < 20, "a dead endpoint must fail fast, not after the data-path retries"


def test_s3_credential_errors_map_to_connect_error() -> None:
    from botocore.exceptions import ClientError

    for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        exc = ClientError({"Error": {"Code": code, "Message": "nope"}}, "PutObject")
        mapped = store.map_s3_error(exc, "write", "s3://b/k", "b", "http://endpoint")
        assert isinstance(mapped, ConnectError) and "credentials" in str(mapped) and code in str(mapped)
    other = store.map_s3_error(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), "write", "s3://b/k", "b", "e")
    assert type(other).__name__ == "StoreError"


# ------------------------------------------------------------------------------ volume on S3


def test_seal_and_verify_a_volume_on_s3(s3: S3Options, s3_server: MotoS3Server, bucket: str) -> None:
    """A device's S3 adapter holds the volume: the same seal/verify work through the S3 store."""
    vol = open_store(f"s3://{bucket}/device", s3)
    make_volume(vol)
    manifest = seal(vol)
    assert verify(vol).ok
    client = s3_server.client()
    keys = part_keys()
    body = client.get_object(Bucket=bucket, Key=f"device/{keys[0]}")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"device/{keys[0]}", Body=body[:50] + b"X" + body[51:])
    client.delete_object(Bucket=bucket, Key=f"device/{keys[1]}")
    client.put_object(Bucket=bucket, Key=f"device/{keys[2]}", Body=body[:-1])
    report = verify(vol)
    assert kinds(report.problems) == {keys[0]: "altered", keys[1]: "missing", keys[2]: "truncated"}
    assert report.root_hash == manifest.root_hash


def test_seal_cli_encrypts_volume_json_on_s3(s3: S3Options, s3_server: MotoS3Server, bucket: str) -> None:
    """`volume seal --s3-sse aws:kms` on a device's S3 adapter: volume.json is stored encrypted like the parts."""
    import subprocess
    import sys

    make_volume(open_store(f"s3://{bucket}/kms", s3))
    done = subprocess.run(
        [sys.executable, "-m", "bulkmig.cli", "volume", "seal", f"s3://{bucket}/kms"]
        + ["--s3-endpoint-url", s3_server.endpoint_url, "--s3-region", "us-east-1"]
        + ["--s3-sse", "aws:kms", "--s3-kms-key-id", "alias/volume-key"],
        env={**os.environ, **s3_server.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    head = s3_server.client().head_object(Bucket=bucket, Key=f"kms/{layout.VOLUME_MANIFEST}")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("alias/volume-key")


# ------------------------------------------------------------------------------------- import


def bucket_store(bucket: str, s3: S3Options, volume_id: str = VID) -> S3Store:
    st = open_store(f"s3://{bucket}/shop/volumes/{volume_id}", s3)
    assert isinstance(st, S3Store)
    return st


def test_import_uploads_everything_then_skips_everything(
    volume: LocalStore, s3: S3Options, s3_server: MotoS3Server, bucket: str
) -> None:
    manifest = seal(volume)
    dest = Recorder(bucket_store(bucket, s3))
    calls: list[tuple[int, int, int, int]] = []
    report = import_volume(volume, dest, lambda *a: calls.append(a), workers=3)  # type: ignore[arg-type]
    n = len(manifest.files)
    assert isinstance(report, ImportReport)
    assert (report.files, report.uploaded, report.skipped, report.extra) == (n, n, 0, [])
    assert report.bytes_uploaded == manifest.total_bytes
    assert calls[-1] == (manifest.total_bytes, manifest.total_bytes, n, n)
    # volume.json last; every sidecar after its part.
    assert dest.puts[-1] == layout.VOLUME_MANIFEST and len(dest.puts) == n + 1
    for key in part_keys():
        assert dest.puts.index(key) < dest.puts.index(layout.sidecar_for(key))

    client = s3_server.client()
    prefix = f"shop/volumes/{VID}/"
    listed = [o["Key"][len(prefix) :] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert sorted(listed) == sorted([f.key for f in manifest.files] + [layout.VOLUME_MANIFEST])
    head = client.head_object(Bucket=bucket, Key=prefix + part_keys()[0], ChecksumMode="ENABLED")
    entry = manifest.entry(part_keys()[0])
    assert entry is not None and head["Metadata"]["sha256"] == entry.sha256
    assert bytes.fromhex(entry.sha256) == base64.b64decode(head["ChecksumSHA256"])

    copy = verify(bucket_store(bucket, s3))
    assert copy.ok and copy.root_hash == manifest.root_hash

    again = import_volume(volume, bucket_store(bucket, s3))
    assert (again.uploaded, again.skipped, again.bytes_uploaded) == (0, n, 0)


def test_import_resumes_with_only_what_is_missing(
    volume: LocalStore, s3: S3Options, s3_server: MotoS3Server, bucket: str
) -> None:
    seal(volume)
    import_volume(volume, bucket_store(bucket, s3))
    client = s3_server.client()
    prefix = f"shop/volumes/{VID}/"
    gone = [part_keys()[1], layout.sidecar_for(part_keys()[4])]
    for key in [*gone, layout.VOLUME_MANIFEST]:
        client.delete_object(Bucket=bucket, Key=prefix + key)
    client.put_object(Bucket=bucket, Key=prefix + part_keys()[2], Body=b"wrong")  # a bad copy is replaced
    same_size = bytearray(volume.get_bytes(part_keys()[3]))
    same_size[100] ^= 0xFF  # right size, wrong bytes: only the checksum tells
    client.put_object(Bucket=bucket, Key=prefix + part_keys()[3], Body=bytes(same_size), ChecksumAlgorithm="SHA256")
    report = import_volume(volume, bucket_store(bucket, s3))
    assert report.uploaded == 4 and report.skipped == report.files - 4
    assert verify(bucket_store(bucket, s3)).ok


def test_import_refuses_a_tampered_volume_naming_the_part(volume: LocalStore, s3: S3Options, bucket: str) -> None:
    seal(volume)
    bad = part_keys()[3]
    flip_byte(volume.root / bad)
    dest = bucket_store(bucket, s3)
    with pytest.raises(IntegrityError) as info:
        import_volume(volume, dest, workers=1)
    assert f"{volume.url}/{bad} does not match volume.json (sha256 differs)" in str(info.value)
    assert dest.stat(bad) is None, "a bad part is never uploaded"
    assert dest.stat(layout.VOLUME_MANIFEST) is None, "the bucket copy must read as incomplete"

    flip_byte(volume.root / bad)  # restored
    grown = part_keys()[0]
    path = volume.root / grown
    path.write_bytes(path.read_bytes() + b"more")
    with pytest.raises(IntegrityError) as info:
        import_volume(volume, dest, workers=1)
    assert f"{volume.url}/{grown} does not match volume.json (" in str(info.value)
    assert "bytes" in str(info.value) and dest.stat(grown) is None


def test_import_refuses_an_unsealed_volume(volume: LocalStore, s3: S3Options, bucket: str) -> None:
    with pytest.raises(IntegrityError, match="is not sealed"):
        import_volume(volume, bucket_store(bucket, s3))
    assert list(bucket_store(bucket, s3).list()) == []


def test_import_replaces_an_older_seal_in_the_bucket(volume: LocalStore, s3: S3Options, bucket: str) -> None:
    first = seal(volume)
    import_volume(volume, bucket_store(bucket, s3))
    write_part(volume, "public", "film", 0, rows=99)  # re-extracted part, resealed
    second = seal(volume)
    assert second.root_hash != first.root_hash
    report = import_volume(volume, bucket_store(bucket, s3))
    assert report.uploaded == 2  # the part and its sidecar
    copy = bucket_store(bucket, s3)
    assert VolumeManifest.from_bytes(copy.get_bytes(layout.VOLUME_MANIFEST)).root_hash == second.root_hash
    assert verify(copy).ok


def test_big_part_goes_multipart_and_verifies(
    tmp_path: Path, s3: S3Options, s3_server: MotoS3Server, bucket: str
) -> None:
    vol = open_store(str(tmp_path / "volume"))
    tables = {("public", "blobs"): 1}
    make_volume(vol, tables, big_mib=17)
    key = part_keys(tables)[0]
    size = vol.stat(key).size  # type: ignore[union-attr]
    assert size > store.MULTIPART_THRESHOLD
    manifest = seal(vol)
    report = import_volume(vol, bucket_store(bucket, s3))
    assert report.uploaded == len(manifest.files)

    client = s3_server.client()
    full = f"shop/volumes/{VID}/{key}"
    head = client.head_object(Bucket=bucket, Key=full, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-2"), "uploaded in two parts"
    attrs = client.get_object_attributes(Bucket=bucket, Key=full, ObjectAttributes=["Checksum"])
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE"
    entry = manifest.entry(key)
    assert entry is not None
    # S3's checksum is over the parts; stat still answers the file's sha256 (from our metadata).
    assert base64.b64decode(head["ChecksumSHA256"].split("-")[0]).hex() != entry.sha256
    assert bucket_store(bucket, s3).stat(key).sha256 == entry.sha256  # type: ignore[union-attr]
    assert verify(bucket_store(bucket, s3)).ok

    # Metadata is a claim, not proof: verify recomputes from the bytes and catches a swapped object.
    body = client.get_object(Bucket=bucket, Key=full)["Body"].read()
    client.put_object(Bucket=bucket, Key=full, Body=body[:-1] + b"\0", Metadata={"sha256": entry.sha256})
    assert kinds(verify(bucket_store(bucket, s3)).problems) == {key: "altered"}
