"""The rename step's statements on PostgreSQL -> PostgreSQL: columns, then tables, then schemas."""

from __future__ import annotations

from bulkmig.core.model import Column, Table
from bulkmig.engines.postgres.target.renames import has_renames, rename_statements


def _table(schema: str, name: str, **kw: object) -> Table:
    cols = [Column("id", "integer", "integer", "int32"), Column("first_name", "text", "text", "string")]
    return Table(schema, name, cols, **kw)  # type: ignore[arg-type]


def test_nothing_renamed_gives_no_statement() -> None:
    tables = [_table("public", "actor")]
    assert not has_renames(tables)
    assert rename_statements(tables) == []


def test_columns_then_tables_then_schemas() -> None:
    actor = _table("public", "actor", target_schema="dms_sample", target_name="ACTOR")
    actor.columns[1].target_name = "given_name"
    film = _table("public", "film", target_schema="dms_sample")
    parents = {("public", "payment"): "payment_hist"}
    assert has_renames([actor, film])
    assert rename_statements([actor, film], parents) == [
        'ALTER TABLE "public"."actor" RENAME COLUMN "first_name" TO "given_name"',
        'ALTER TABLE "public"."actor" RENAME TO "ACTOR"',
        'ALTER TABLE "public"."payment" RENAME TO "payment_hist"',
        'ALTER SCHEMA "public" RENAME TO "dms_sample"',
        "CREATE SCHEMA public",
    ]
