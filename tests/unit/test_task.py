"""The task file: strict validation, all problems at once, and no password ever shown or fingerprinted."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bulkmig.config.task import (
    Endpoint,
    MiB,
    S3Settings,
    Settings,
    Task,
    load_task,
    merge_overrides,
    parse_size,
    redact_url,
)
from bulkmig.core.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "pa'ss w\\rd-s3cret"


def base_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "source": "postgresql://app@127.0.0.1:5432/shop",
        "target": "postgresql://admin@127.0.0.1:5433/shop",
        "migration_type": "full-load",
        "volume": "./volume",
        "bucket": "s3://migration/shop",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def make(tmp_path: Path, env: dict[str, str] | None = None, **changes: Any) -> Task:
    return Task.from_dict(base_doc(**changes), tmp_path, env=env or {})


def problems(tmp_path: Path, env: dict[str, str] | None = None, **changes: Any) -> str:
    with pytest.raises(ConfigError) as info:
        make(tmp_path, env, **changes)
    return str(info.value)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ loading


def test_example_task_file_loads() -> None:
    task = load_task(EXAMPLES / "task.yaml", env={})
    assert task.name == "shop"
    assert task.source.engine == "postgresql" and task.source.port == 5432 and task.source.user == "app"
    assert task.target.params == {"sslmode": "prefer"}
    assert task.migration_type == "full-load" and task.full_load and not task.cdc
    assert task.volume == str(EXAMPLES / "volume")
    assert task.bucket == "s3://migration/shop"
    assert task.s3 == S3Settings(endpoint_url="http://127.0.0.1:5000", region="us-east-1")
    assert task.settings.max_part_bytes == 256_000_000
    assert not task.mappings.is_default
    assert task.mappings.selection_rules[0].rule_name == "all-public-tables"


def test_minimal_task_defaults(tmp_path: Path) -> None:
    task = make(tmp_path)
    assert task.settings == Settings()
    assert task.settings.workers == 2 and task.settings.max_part_bytes == 256 * MiB
    assert task.settings.max_row_group_rows == 65536 and task.settings.compression == "zstd"
    assert task.settings.identifiers == "lower" and task.settings.validation.enabled
    assert not task.settings.schema.owners and not task.settings.schema.privileges
    assert task.mappings.is_default
    assert task.s3 == S3Settings() and task.volume_s3 is None
    assert task.name == "task" and task.path is None
    assert task.volume == str(tmp_path / "volume")


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    f = write(tmp_path / "nightly-shop.yaml", _yaml(base_doc()))
    assert load_task(f, env={}).name == "nightly-shop"
    assert load_task(f, {"name": "other"}, env={}).name == "other"


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    f = write(tmp_path / "t.yaml", "source: postgresql://a@h/db\ntarget: [unclosed\nbucket: s3://b/p\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: not valid YAML at line \d+, column \d+"):
        load_task(f, env={})


def test_duplicate_yaml_key_is_refused_with_line(tmp_path: Path) -> None:
    f = write(tmp_path / "t.yaml", "source: postgresql://a@h/db\nvolume: ./v\nvolume: ./w\n")
    with pytest.raises(ConfigError, match=r"at line 3, column 1: duplicate key 'volume'"):
        load_task(f, env={})


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read task file"):
        load_task(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_task(write(tmp_path / "list.yaml", "- a\n- b\n"))


def test_empty_file_reports_every_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_task(write(tmp_path / "empty.yaml", ""), env={})
    msg = str(info.value)
    for key in ("source", "target", "migration_type", "volume", "bucket"):
        assert f"{key}: missing" in msg


def test_all_problems_reported_at_once_with_suggestions(tmp_path: Path) -> None:
    msg = problems(
        tmp_path,
        migraton_type="cdc",
        migration_type="full_load",
        bucket="https://example.com/x",
        s3={"endpoint": "http://x"},
        settings={"max_part_byts": "1GB", "workers": 0, "compression": "zstdd", "schema": {"owner": True}},
    )
    assert "migraton_type: unknown key (did you mean 'migration_type'?)" in msg
    assert (
        "migration_type: 'full_load' is not one of full-load, full-load-and-cdc, cdc (did you mean 'full-load'?)" in msg
    )
    assert "bucket: 'https://example.com/x' is not an s3:// URL" in msg
    assert "s3.endpoint: unknown key (did you mean 'endpoint_url'?)" in msg
    assert "settings.max_part_byts: unknown key (did you mean 'max_part_bytes'?)" in msg
    assert "settings.workers: must be an integer ≥ 1" in msg
    assert "settings.compression: 'zstdd' is not one of" in msg
    assert "settings.schema.owner: unknown key (did you mean 'owners'?)" in msg
    assert msg.count("; ") >= 7


def test_overrides_nested_and_dotted(tmp_path: Path) -> None:
    f = write(tmp_path / "t.yaml", _yaml(base_doc(settings={"workers": 2, "compression": "zstd"})))
    task = load_task(f, {"settings.workers": 8, "settings": {"compression": "gzip"}, "name": None}, env={})
    assert task.settings.workers == 8 and task.settings.compression == "gzip"
    assert task.name == "t"
    doc = {"a": {"b": 1, "c": {"d": 2}}}
    assert merge_overrides(doc, {"a.c.e": 3, "a.b": None, "x.y": 1}) == {
        "a": {"b": 1, "c": {"d": 2, "e": 3}},
        "x": {"y": 1},
    }
    assert doc == {"a": {"b": 1, "c": {"d": 2}}}  # the input is not modified


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    f = write(tmp_path / "t.yaml", _yaml(base_doc()))
    with pytest.raises(ConfigError, match="settings.workers: must be an integer"):
        load_task(f, {"settings.workers": -1}, env={})


# ----------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("mysql://u@h/db", "mysql"),
        ("mysql+pymysql://u@h:3307/db", "mysql"),
        ("mariadb://u@h/db", "mysql"),
        ("sqlite:///rel.db", "sqlite"),
        ("sqlite:////abs/dir/x.db", "sqlite"),
    ],
)
def test_url_schemes(url: str, engine: str) -> None:
    ep = Endpoint.parse(url, "source", Path("/base"))
    assert ep.engine == engine
    expected = "sqlite:////base/rel.db" if url == "sqlite:///rel.db" else url
    assert ep.redacted() == expected  # the scheme is kept as written


def test_sqlite_paths(tmp_path: Path) -> None:
    assert Endpoint.parse("sqlite:///data/x.db", "source", tmp_path).database == str(tmp_path / "data" / "x.db")
    assert Endpoint.parse("sqlite:////abs/x.db", "source", tmp_path).database == "/abs/x.db"
    assert Endpoint.parse("sqlite:////abs/x.db", "source", tmp_path).redacted() == "sqlite:////abs/x.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="names no database file"):
            Endpoint.parse(bad, "source", tmp_path)


def test_url_parts_and_params() -> None:
    ep = Endpoint.parse(
        "postgresql://app@db.example.com:6543/my%20db?sslmode=verify-full&sslrootcert=certs/ca.pem", "target"
    )
    assert (ep.role, ep.host, ep.port, ep.user, ep.database) == ("target", "db.example.com", 6543, "app", "my db")
    assert ep.params == {"sslmode": "verify-full", "sslrootcert": "certs/ca.pem"}
    ipv6 = Endpoint.parse("postgresql://[::1]:5432/db", "source")
    assert ipv6.host == "::1" and ipv6.redacted() == "postgresql://[::1]:5432/db"
    socket = Endpoint.parse("postgresql://app@%2Fvar%2Frun%2Fpostgresql/db", "source")
    assert socket.host == "/var/run/postgresql" and socket.port is None
    query_host = Endpoint.parse("postgresql:///db?host=/tmp&port=5433", "source")
    assert (query_host.host, query_host.port, query_host.database) == ("/tmp", 5433, "db")
    no_db = Endpoint.parse("postgresql://h?sslmode=disable", "source")
    assert no_db.host == "h" and no_db.database is None and no_db.params == {"sslmode": "disable"}


def test_multi_host_url_and_libpq_params_survive() -> None:
    """libpq's own parser reads the URL: a multi-host list, options and sslmode reach the conninfo intact."""
    ep = Endpoint.parse(
        "postgresql://u@h1:5432,h2:5433/db?sslmode=require&target_session_attrs=read-write"
        "&options=-c%20search_path%3Dapp",
        "source",
    ).with_password("pw")
    assert (ep.host, ep.port, ep.user, ep.database) == ("h1,h2", None, "u", "db")
    assert ep.params == {
        "sslmode": "require",
        "target_session_attrs": "read-write",
        "options": "-c search_path=app",
        "port": "5432,5433",
    }
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(ep.libpq_conninfo()) == {
        "host": "h1,h2",
        "port": "5432,5433",
        "user": "u",
        "dbname": "db",
        "password": "pw",
        "sslmode": "require",
        "target_session_attrs": "read-write",
        "options": "-c search_path=app",
    }
    env = ep.libpq_env()
    assert (env["PGHOST"], env["PGPORT"], env["PGOPTIONS"]) == ("h1,h2", "5432,5433", "-c search_path=app")
    # the redacted form is a URL libpq reads back to the same endpoint
    again = Endpoint.parse(ep.redacted(), "source")
    assert (again.host, again.port, again.params) == (ep.host, ep.port, ep.params)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oracle://u@h/db", "unsupported scheme 'oracle'"),
        ("not a url", "expected a database URL"),
        ("postgresql://u@h:99999/db", "port '99999' is not a number"),
        ("postgresql://u@h1:5432,h2:x/db", "port 'x' is not a number"),
        ("postgresql://u@h/db?sslmod=require", "unknown libpq parameter 'sslmod' (did you mean 'sslmode'?)"),
        ("postgresql://u@h/db?host=other", "host is given twice"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        Endpoint.parse(url, "source")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@h/db",
        "postgresql://app:s3cret@h/db",
        "postgresql://app:s3c/ret@h:5432/db",
        "postgresql://app:s3c?ret@h/db",
        "mysql://app:s3cret@h/db",
        "postgresql://app@h/db?password=s3cret",
        "postgresql://app@h/db?sslpassword=s3cret",
    ],
)
def test_password_in_url_is_refused_without_echoing_it(tmp_path: Path, url: str) -> None:
    msg = problems(tmp_path, source=url)
    assert "BULKMIG_SOURCE_PASSWORD" in msg
    assert "s3c" not in msg and SECRET not in msg


def test_password_from_env_then_file(tmp_path: Path) -> None:
    write(tmp_path / "secrets" / "target.pw", "from-file\n")
    env = {"BULKMIG_SOURCE_PASSWORD": SECRET}
    task = make(tmp_path, env, target_password_file="secrets/target.pw", source_password_file="secrets/target.pw")
    assert task.source.password == SECRET  # the environment wins over the file
    assert task.target.password == "from-file"  # trailing newline stripped
    assert make(tmp_path).source.password is None  # then libpq's PGPASSWORD / .pgpass apply
    # The mapping form of an endpoint.
    task = make(tmp_path, target={"url": "postgresql://admin@h2/db", "password_file": "secrets/target.pw"})
    assert task.target.password == "from-file"


def test_password_file_problems(tmp_path: Path) -> None:
    write(tmp_path / "empty.pw", "\n")
    msg = problems(tmp_path, source_password_file="missing.pw", target_password_file="empty.pw")
    assert "source_password_file: cannot read" in msg and "missing.pw" in msg
    assert "target_password_file:" in msg and "is empty" in msg
    msg = problems(
        tmp_path,
        source_password_file="x",
        source={"url": "postgresql://a@h/db", "password_file": "y", "pasword_file": "z"},
    )
    assert "both set" in msg and "source.pasword_file: unknown key (did you mean 'password_file'?)" in msg


def test_password_never_in_repr_str_or_fingerprint(tmp_path: Path) -> None:
    env = {"BULKMIG_SOURCE_PASSWORD": SECRET, "BULKMIG_TARGET_PASSWORD": SECRET}
    task = make(tmp_path, env)
    assert task.source.password == SECRET
    for text in (repr(task), str(task), repr(task.source), str(task.source), task.source.redacted(), f"{task.target}"):
        assert SECRET not in text and "s3cret" not in text
    assert task.fingerprint() == make(tmp_path).fingerprint()
    assert SECRET not in task.fingerprint()
    # The password does take part where it must: the driver connection string and pg_dump's environment.
    assert task.source.libpq_env()["PGPASSWORD"] == SECRET
    assert "password='pa\\'ss w\\\\rd-s3cret'" in task.source.libpq_conninfo()


def test_libpq_conninfo_and_env(tmp_path: Path) -> None:
    ep = Endpoint.parse(
        "postgresql://my user@h:5433/shop db?sslmode=verify-ca&sslrootcert=/certs/ca.pem&keepalives=1", "source"
    ).with_password("p w")
    assert ep.libpq_conninfo() == (
        "host=h port=5433 user='my user' dbname='shop db' password='p w' "
        "sslmode=verify-ca sslrootcert=/certs/ca.pem keepalives=1"
    )
    assert ep.libpq_env() == {
        "PGHOST": "h",
        "PGPORT": "5433",
        "PGUSER": "my user",
        "PGDATABASE": "shop db",
        "PGPASSWORD": "p w",
        "PGSSLMODE": "verify-ca",
        "PGSSLROOTCERT": "/certs/ca.pem",
    }
    bare = Endpoint.parse("postgresql:///shop", "source")
    assert bare.libpq_conninfo() == "dbname=shop" and bare.libpq_env() == {"PGDATABASE": "shop"}
    with pytest.raises(ConfigError, match="PostgreSQL only"):
        Endpoint.parse("mysql://u@h/db", "source").libpq_conninfo()


def test_same_source_and_target_is_refused(tmp_path: Path) -> None:
    msg = problems(tmp_path, target="postgres://other_user@127.0.0.1/shop?sslmode=require")
    assert "source and target are the same database" in msg


# ------------------------------------------------------------------------------- volume, bucket, s3


def test_volume_and_bucket_forms(tmp_path: Path) -> None:
    task = make(
        tmp_path,
        volume="s3://snow-bucket/vol1/",
        bucket="s3://migration/",
        volume_s3={"endpoint_url": "http://192.0.2.10:8080", "region": "snow"},
    )
    assert task.volume == "s3://snow-bucket/vol1" and task.volume_is_s3
    assert task.bucket == "s3://migration"
    assert task.volume_s3 == S3Settings(endpoint_url="http://192.0.2.10:8080", region="snow")
    assert make(tmp_path, volume="/mnt/device/vol").volume == "/mnt/device/vol"
    assert make(tmp_path, volume="../up/vol").volume == str(tmp_path.parent / "up" / "vol")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bucket": "migration/shop"}, "is not an s3:// URL"),
        ({"bucket": "s3://Migration/shop"}, "'Migration' is not a valid bucket name"),
        ({"bucket": "s3://ab"}, "not a valid bucket name"),
        ({"bucket": "s3://bucket//x"}, "empty path segment"),
        ({"volume": "ftp://host/dir"}, "neither a directory nor an s3:// URL"),
        ({"volume": 5}, "volume: must be a directory path"),
        ({"s3": {"endpoint_url": "127.0.0.1:5000"}}, "must start with http:// or https://"),
        ({"s3": {"sse": "KMS"}}, "s3.sse: 'KMS' is not one of"),
        ({"s3": {"kms_key_id": "alias/x"}}, "only used with sse: SSE_KMS"),
        ({"s3": "http://x"}, "s3: must be a mapping"),
    ],
)
def test_bad_storage_settings(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    assert message in problems(tmp_path, **changes)


def test_sse_spellings(tmp_path: Path) -> None:
    assert make(tmp_path, s3={"sse": "SSE_S3"}).s3.sse == "AES256"
    kms = make(tmp_path, s3={"sse": "SSE_KMS", "kms_key_id": "alias/k"}).s3
    assert (kms.sse, kms.kms_key_id) == ("aws:kms", "alias/k")


def test_s3_options_build_the_stores_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeOptions:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw

    monkeypatch.setitem(sys.modules, "bulkmig.core.store", types.SimpleNamespace(S3Options=FakeOptions))
    task = make(tmp_path, s3={"endpoint_url": "http://127.0.0.1:5000", "region": "us-east-1"})
    assert task.s3_options().kw == {
        "endpoint_url": "http://127.0.0.1:5000",
        "region": "us-east-1",
        "sse": None,
        "kms_key_id": None,
    }
    assert task.volume_s3_options().kw == task.s3_options().kw  # no volume_s3: the bucket's endpoint
    task = make(tmp_path, volume_s3={"endpoint_url": "http://192.0.2.10:8080", "region": "snow"})
    assert task.volume_s3_options().kw["region"] == "snow"


# ----------------------------------------------------------------------------------------- mappings


def test_table_mappings_file_inline_and_json(tmp_path: Path) -> None:
    rules = {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": "1",
                "rule-name": "1",
                "object-locator": {"schema-name": "public", "table-name": "%"},
                "rule-action": "include",
            }
        ]
    }
    import json

    write(tmp_path / "conf" / "m.json", json.dumps(rules))
    from_file = make(tmp_path, table_mappings="conf/m.json").mappings
    inline = make(tmp_path, table_mappings=rules).mappings
    as_json = make(tmp_path, table_mappings=json.dumps(rules)).mappings
    assert from_file.canonical() == inline.canonical() == as_json.canonical()
    assert not from_file.is_default


def test_table_mappings_problems_join_the_task_problems(tmp_path: Path) -> None:
    bad = {"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "r1", "rule-action": "includ"}]}
    msg = problems(tmp_path, table_mappings=bad, settings={"wokers": 2})
    assert "rule 'r1': unknown rule-action 'includ'" in msg
    assert "settings.wokers: unknown key (did you mean 'workers'?)" in msg
    assert "cannot read table mappings" in problems(tmp_path, table_mappings="nope.json")
    assert "not valid JSON at line 1" in problems(tmp_path, table_mappings="{oops")


# ----------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1024, 1024),
        ("1000", 1000),
        ("256MB", 256_000_000),
        ("256mb", 256_000_000),
        ("256 MB", 256_000_000),
        ("256M", 256_000_000),
        ("256MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("1.5GiB", 3 * 2**29),
        ("2GB", 2 * 10**9),
        ("512k", 512_000),
        ("512KiB", 512 * 1024),
        ("1TB", 10**12),
        ("10B", 10),
    ],
)
def test_parse_size(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "12 XB", "1iB", "0", 0, -5, True, "1.5.2GB"])
def test_parse_size_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_settings_values(tmp_path: Path) -> None:
    task = make(
        tmp_path,
        settings={
            "workers": 8,
            "max_part_bytes": "1GiB",
            "max_row_group_rows": 1000,
            "compression": "none",
            "identifiers": "preserve",
            "allow_replica_identity_full": True,
            "slot_name": "bulkmig_shop",
            "publication_name": "Shop Pub",
            "schema": {"owners": True, "privileges": True},
            "validation": {"enabled": False},
        },
    )
    s = task.settings
    assert (s.workers, s.max_part_bytes, s.max_row_group_rows) == (8, 2**30, 1000)
    assert (s.compression, s.identifiers, s.allow_replica_identity_full) == ("none", "preserve", True)
    assert (s.slot_name, s.publication_name) == ("bulkmig_shop", "Shop Pub")
    assert s.schema.owners and s.schema.privileges and not s.validation.enabled
    assert (s.executor, s.scheduler) == ("local", None)


def test_dask_executor_settings_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    """Where parts are read (threads here, a Dask cluster) never changes them: a volume extracted by one
    executor resumes under the other."""
    local = make(tmp_path)
    dask = make(tmp_path, settings={"executor": "dask", "scheduler": "tcp://10.0.0.5:8786"})
    assert (dask.settings.executor, dask.settings.scheduler) == ("dask", "tcp://10.0.0.5:8786")
    assert dask.fingerprint() == local.fingerprint()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers": True}, "settings.workers: must be an integer"),
        ({"workers": "2"}, "settings.workers: must be an integer"),
        ({"max_part_bytes": "lots"}, "settings.max_part_bytes: 'lots' is not a size"),
        ({"identifiers": "upper"}, "settings.identifiers: 'upper' is not one of lower, preserve"),
        ({"allow_replica_identity_full": "yes please"}, "must be true or false"),
        ({"slot_name": "Bulkmig-Slot"}, "settings.slot_name: 'Bulkmig-Slot' is not a valid name"),
        ({"validation": {"enabled": "no"}}, "settings.validation.enabled: must be true or false"),
        ({"schema": True}, "settings.schema: must be a mapping"),
        ({"executor": "ray"}, "settings.executor: 'ray' is not one of local, dask"),
        ({"scheduler": "host:8786"}, "settings.scheduler: must be a Dask scheduler address like tcp://host:8786"),
        ("fast", "settings: must be a mapping"),
    ],
)
def test_bad_settings(tmp_path: Path, settings: Any, message: str) -> None:
    assert message in problems(tmp_path, settings=settings)


# -------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_tracks_what_determines_the_data(tmp_path: Path) -> None:
    base = make(tmp_path).fingerprint()
    assert len(base) == 64 and int(base, 16) >= 0
    assert make(tmp_path).fingerprint() == base  # deterministic
    same = [
        make(tmp_path, settings={"workers": 16}),
        make(tmp_path, target="postgresql://x@elsewhere/db"),
        make(tmp_path, volume="s3://other-bucket/v", bucket="s3://other/x"),
        make(tmp_path, source="postgresql://someone_else@127.0.0.1/shop?sslmode=require"),  # same database
        make(tmp_path, name="renamed"),
        make(tmp_path, settings={"validation": {"enabled": False}}),
    ]
    for task in same:
        assert task.fingerprint() == base
    different = [
        make(tmp_path, migration_type="full-load-and-cdc"),
        make(tmp_path, source="postgresql://app@127.0.0.1:5432/other"),
        make(tmp_path, settings={"max_part_bytes": "64MB"}),
        make(tmp_path, settings={"compression": "snappy"}),
        make(tmp_path, settings={"schema": {"owners": True}}),
        make(
            tmp_path,
            table_mappings={
                "rules": [
                    {
                        "rule-type": "selection",
                        "rule-id": "1",
                        "rule-name": "1",
                        "object-locator": {"schema-name": "public", "table-name": "%"},
                        "rule-action": "include",
                    }
                ]
            },
        ),
    ]
    prints = {t.fingerprint() for t in different}
    assert base not in prints and len(prints) == len(different)


def test_default_mappings_fingerprint_equals_explicit_include_all(tmp_path: Path) -> None:
    # No table_mappings means DMS's "include %.%": writing that rule out does not change the task.
    rule = {
        "rule-type": "selection",
        "rule-id": "1",
        "rule-name": "everything",
        "object-locator": {"schema-name": "%", "table-name": "%"},
        "rule-action": "include",
    }
    assert make(tmp_path, table_mappings={"rules": [rule]}).fingerprint() == make(tmp_path).fingerprint()


# ------------------------------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://app:s3cret@h:5432/db?sslmode=require", "postgresql://app@h:5432/db?sslmode=require"),
        ("postgresql://app:s3c/ret@h/db", "postgresql://app@h/db"),
        ("postgresql://app:s3c?ret@h/db", "postgresql://app@h/db"),
        ("postgresql://:s3cret@h/db", "postgresql://@h/db"),
        ("postgresql://app@h/db?password=s3cret&sslmode=x", "postgresql://app@h/db?password=***&sslmode=x"),
        ("postgresql://app@h/db?application_name=a@b", "postgresql://app@h/db?application_name=a@b"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=s3cret&a=1",
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=***&a=1",
        ),
        ("host=h password=s3cret user=u", "host=h password=*** user=u"),
        ("host=h password='s3 cret' user=u", "host=h password=*** user=u"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("./volume", "./volume"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
