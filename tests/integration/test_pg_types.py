"""Every PostgreSQL type, with edge values, through the exact data path: ADBC read -> Parquet -> CSV COPY.

This is the check behind the type table in ``engines/postgres/types.py``: a value the driver would
alter must travel as text, and every value must come back identical (compared as the server's own
canonical text for each column, so a changed digit, byte, padding or time zone shows).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bulkmig.config.task import Endpoint
from bulkmig.core.model import Partition
from bulkmig.core.parquet import write_parquet
from bulkmig.engines.postgres import reflect
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.reader import FarValue, SnapshotReader, arrow_schema
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.postgres.writer import to_copy_csv

HERE = Path(__file__).parent


def endpoint(server, db: str, role: str) -> Endpoint:  # noqa: ANN001 - a devservers.PostgresServer
    return Endpoint.parse(server.url(db), role).with_password(server.password)


def column_texts(conn, columns: list[str]) -> list[tuple]:  # noqa: ANN001
    """Every column as the server's canonical text, in key order (the alias cannot clash with a column)."""
    sql = "SELECT id AS k__, " + ", ".join(f"{ident(c)}::text" for c in columns) + " FROM everything ORDER BY k__"
    return conn.execute(sql).fetchall()


def test_every_type_round_trips_exactly(pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    pg_source.psql_file(source_db, HERE / "everything.sql")
    src, dst = endpoint(pg_source, source_db, "source"), endpoint(pg_target, target_db, "target")
    # The target gets the same table definition from the source's own pg_dump.
    dump = subprocess.run(
        [str(Path(pg_source.bindir) / "pg_dump"), "--schema-only", "-d", source_db],
        env=pg_source.env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (tmp_path / "schema.sql").write_text(dump)
    pg_target.psql_file(target_db, tmp_path / "schema.sql")

    src_conn = connect(src, autocommit=True)
    table = next(t.table for t in reflect.list_tables(src_conn) if t.table.name == "everything")
    by_name = {c.name: c for c in table.columns}
    # The type table's decisions, pinned: what the driver alters must go as text.
    assert by_name["tm"].transfer == "text"  # 24:00:00 would come back as 00:00
    assert by_name["a2"].transfer == "text"  # multi-dimensional arrays would be flattened
    assert by_name["m"].transfer == "text"  # money would come back as raw cents
    assert by_name["n"].arrow_type == "string"  # numeric never goes through a float
    assert by_name["dom"].read_as == "integer"
    assert by_name["gen"].generated and "gen" not in [c.name for c in table.copied_columns]

    reader = SnapshotReader(src, None)
    part_file = tmp_path / "part.parquet"
    as_text: frozenset[str] = frozenset()
    fallbacks = []
    while True:
        try:
            rows, groups = write_parquet(
                reader.batches(table, Partition(0, None), as_text), arrow_schema(table, as_text), part_file, 3
            )
            break
        except FarValue as far:
            fallbacks.append(far.column)
            as_text = as_text | {far.column}
    reader.close()
    assert rows == 9 and groups == 3
    # Row 5 holds 5874897-12-31 and 294276-12-31: beyond Arrow's range, so those columns went as text.
    assert sorted(fallbacks) == ["d", "ts", "tstz"]
    parquet = pq.ParquetFile(part_file)
    assert parquet.schema_arrow.field("n").metadata[b"source_type"] == b"numeric"

    dst_conn = connect(dst, autocommit=True)
    cols = ", ".join(ident(c.name) for c in table.copied_columns)
    with dst_conn.cursor().copy(f"COPY everything ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for group in range(parquet.num_row_groups):
            for batch in parquet.read_row_group(group).to_batches():
                copy.write(to_copy_csv(batch))

    names = [c.name for c in table.columns]
    want, got = column_texts(src_conn, names), column_texts(dst_conn, names)
    assert len(want) == len(got) == 9
    diffs = [
        (w[0], name, str(a)[:60], str(b)[:60])
        for w, g in zip(want, got, strict=True)
        for name, a, b in zip(["id", *names], w, g, strict=True)
        if a != b
    ]
    assert diffs == []
    # The multi-megabyte values arrived whole, and NULL and '' stayed apart.
    assert dst_conn.execute("SELECT length(t), length(b) FROM everything WHERE id = 8").fetchone() == (
        6_000_000,
        4_500_000,
    )
    assert dst_conn.execute("SELECT t IS NULL, vc = '' FROM everything WHERE id IN (0, 2) ORDER BY id").fetchall() == [
        (True, None),
        (False, True),
    ]


@pytest.mark.parametrize("value", ["infinity", "-infinity", "4713-01-01 BC", "2000-02-29"])
def test_temporal_flags_restore_infinities(pg_source, source_db, value: str) -> None:  # noqa: ANN001
    pg_source.execute(source_db, "CREATE TABLE t (id int PRIMARY KEY, d date, ts timestamptz)")
    pg_source.execute(source_db, f"INSERT INTO t VALUES (1, '{value}', '{value}')")
    src = endpoint(pg_source, source_db, "source")
    table = next(t.table for t in reflect.list_tables(connect(src)) if t.table.name == "t")
    reader = SnapshotReader(src, None)
    batch = next(iter(reader.batches(table, Partition(0, None))))
    reader.close()
    csv = to_copy_csv(batch).decode().strip()
    assert csv.split(",")[1].strip('"') == value
