"""The two reference tables of issue 3, generated with SQL so every run measures the same bytes.

``wide`` has one column of each type a migration meets most (the jsonb and timestamptz columns are the
ones that make text COPY slow); ``narrow`` is many short rows, where per-row overhead dominates.  The
values are random with a fixed seed (``setseed`` before the INSERT), so two runs of the same size hold
the same data, and they compress about as much as the reference table of ``reference/bench.md`` did
(its Parquet files were ~0.45 × the heap): a generator of neat patterns would flatter every compressor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: str  # the column list of CREATE TABLE, without the primary key
    key: str
    select: str  # SELECT ... FROM generate_series(1::bigint, {n}) AS g
    full_rows: int
    quick_rows: int

    def create_sql(self, *, with_key: bool) -> str:
        key = f",\n  PRIMARY KEY ({self.key})" if with_key else ""
        return f"CREATE TABLE public.{self.name} (\n  {self.columns}{key}\n)"

    def insert_sql(self, rows: int) -> str:
        """The fill, seeded: run it in one session so random() repeats from run to run."""
        return f"SELECT setseed(0.42); INSERT INTO public.{self.name} {self.select.format(n=rows)}"

    def add_key_sql(self) -> str:
        return f"ALTER TABLE public.{self.name} ADD PRIMARY KEY ({self.key})"


WIDE = TableSpec(
    name="wide",
    columns=""",
  """.join(
        [
            "id bigint NOT NULL",
            "qty integer NOT NULL",
            "amount numeric(12,2)",
            "score double precision",
            "note text",  # ~40 characters
            "code varchar(20)",
            "created_at timestamptz",
            "day date",
            "active boolean",
            "attrs jsonb",  # small
            "ref uuid",
            "digest bytea",  # 32 bytes
            "maybe bigint",  # ~20 % NULL
        ]
    ),
    key="id",
    select="""SELECT g,
       (random() * 100000)::int,
       round((random() * 1000000)::numeric, 2),
       random() * 1000,
       'note ' || md5(g::text) || ' ' || (g % 1000),
       'C-' || lpad((random() * 10000000)::int::text, 8, '0'),
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1500 days',
       date '2000-01-01' + (random() * 9000)::int,
       random() < 0.5,
       jsonb_build_object('k', (random() * 100)::int, 'tag', 't' || (g % 7), 'ok', random() < 0.5),
       md5('uuid' || g)::uuid,
       sha256(int8send(g)),
       CASE WHEN random() < 0.2 THEN NULL ELSE (random() * 1e12)::bigint END
FROM generate_series(1::bigint, {n}) AS g""",
    full_rows=5_000_000,
    quick_rows=500_000,
)

NARROW = TableSpec(
    name="narrow",
    columns="id bigint NOT NULL,\n  a integer NOT NULL,\n  b integer NOT NULL,\n  c integer NOT NULL",
    key="id",
    select="SELECT g, (g % 1000003)::int, (g * 7 % 65537)::int, (g / 3)::int FROM generate_series(1::bigint, {n}) AS g",
    full_rows=20_000_000,
    quick_rows=2_000_000,
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (WIDE, NARROW)}
