"""Cutting post-data into the key and index builds that run side by side and the rest, which keeps its order."""

from __future__ import annotations

import pytest

from bulkmig.engines.postgres.schema.builds import Build, run_builds, split_builds

PROLOGUE = """--
-- PostgreSQL database dump
--

\\restrict abc123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

"""


def entry(name: str, kind: str, sql: str, schema: str = "public") -> str:
    return f"--\n-- Name: {name}; Type: {kind}; Schema: {schema}; Owner: -\n--\n\n{sql}\n\n\n"


PK = entry(
    "film film_pkey", "CONSTRAINT", "ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_pkey PRIMARY KEY (film_id);"
)
IDX = entry("idx_title", "INDEX", "CREATE INDEX idx_title ON public.film USING btree (title);")
PARENT_IDX = entry("pay_idx", "INDEX", "CREATE INDEX pay_idx ON ONLY public.payment USING btree (customer_id);")
ATTACH = entry("pay_p1_idx", "INDEX ATTACH", "ALTER INDEX public.pay_idx ATTACH PARTITION public.pay_p1_idx;")
FK = entry(
    "film film_language_id_fkey",
    "FK CONSTRAINT",
    "ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_language_id_fkey FOREIGN KEY (language_id)"
    " REFERENCES public.language(language_id);",
)
TRIGGER = entry(
    "film last_updated", "TRIGGER", "CREATE TRIGGER last_updated BEFORE UPDATE ON public.film FOR EACH ROW EXECUTE ..."
)
REFRESH = (
    "--\n-- bulkmig: materialized views that were populated on the source\n--\n\n"
    "REFRESH MATERIALIZED VIEW public.mv;\n\n"
)
CLOSING = "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n"


def test_keys_and_indexes_are_builds_and_the_rest_keeps_its_order() -> None:
    text = PROLOGUE + PK + IDX + PARENT_IDX + ATTACH + FK + TRIGGER + REFRESH + CLOSING
    builds, rest = split_builds(text)
    assert [(b.marker, b.label) for b in builds] == [
        ("post-data/CONSTRAINT/public/film film_pkey", "CONSTRAINT public.film film_pkey"),
        ("post-data/INDEX/public/idx_title", "INDEX public.idx_title"),
        ("post-data/INDEX/public/pay_idx", "INDEX public.pay_idx"),
    ]
    # Each build is the dump's session settings and its entry, without psql's meta-commands (\restrict).
    settings = PROLOGUE.replace("\\restrict abc123\n", "")
    assert builds[0].sql == settings + PK
    assert builds[1].sql == settings + IDX
    # Attachments, foreign keys, triggers, bulkmig's REFRESH and the closing lines stay, in order, in the rest.
    assert rest == PROLOGUE + ATTACH + FK + TRIGGER + REFRESH + CLOSING
    assert not any("REFRESH" in b.sql or "\\" in b.sql for b in builds)


def test_refresh_after_the_last_index_is_never_part_of_its_build() -> None:
    builds, rest = split_builds(PROLOGUE + IDX + REFRESH + CLOSING)
    assert [b.marker for b in builds] == ["post-data/INDEX/public/idx_title"]
    assert "REFRESH" not in builds[0].sql and rest == PROLOGUE + REFRESH + CLOSING


def test_a_file_that_is_not_pg_dumps_runs_whole() -> None:
    converted = (
        '-- bulkmig convert: MySQL shop\n\nALTER TABLE ONLY "shop"."t" ADD CONSTRAINT "t_pkey" PRIMARY KEY ("id");\n'
    )
    assert split_builds(converted) == ([], converted)


class Conn:
    """What run_builds needs of a connection: one per worker, closed when the worker ends."""

    opened: list[Conn] = []

    def __init__(self) -> None:
        self.closed = False
        Conn.opened.append(self)

    def close(self) -> None:
        self.closed = True


def test_run_builds_skips_what_is_marked_and_stops_at_the_first_failure() -> None:
    found = [Build(f"post-data/INDEX/public/i{n}", f"INDEX public.i{n}", f"CREATE INDEX i{n} …") for n in range(5)]
    ran: list[tuple[Conn, str]] = []

    def run_one(conn: Conn, build: Build) -> None:
        ran.append((conn, build.marker))

    assert run_builds(found, 2, {"post-data/INDEX/public/i1"}, Conn, run_one) == 4
    assert sorted(m for _, m in ran) == [f"post-data/INDEX/public/i{n}" for n in (0, 2, 3, 4)]
    assert len(Conn.opened) <= 2 and all(c.closed for c in Conn.opened)  # pooled: one connection per worker

    def failing(conn: Conn, build: Build) -> None:
        raise RuntimeError(f"{build.label} failed")

    with pytest.raises(RuntimeError, match="failed"):
        run_builds(found, 2, set(), Conn, failing)
