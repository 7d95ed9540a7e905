"""A DMS task-settings file (``task_settings:``), used unchanged but for the key under test, through the real CLI
on real PostgreSQL servers: TargetTablePrepMode decides what load does with target tables that exist,
EnableValidation / ValidationOnly what migrate validates, the LOB mode what plan refuses.

The file is the DMS User Guide's "Saving task settings" export (``tests/unit/dms/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAVED = Path(__file__).parents[1] / "unit" / "dms" / "task-settings-saved.json"

SOURCE_SQL = """
CREATE TABLE public.film (film_id int PRIMARY KEY, title text NOT NULL, rating text);
INSERT INTO public.film SELECT g, 'film ' || g, (ARRAY['G', 'PG', 'R'])[1 + g % 3] FROM generate_series(1, 500) g;
"""
# The same table on the target, already holding rows of its own (another load, or the application's).
TARGET_SQL = """
CREATE TABLE public.film (film_id int PRIMARY KEY, title text NOT NULL, rating text);
CREATE INDEX film_title_own ON public.film (title);
INSERT INTO public.film VALUES (9001, 'only on the target', NULL), (9002, 'also only on the target', 'G');
"""


def settings_file(tmp_path: Path, **changes: dict[str, Any]) -> Path:
    doc = json.loads(SAVED.read_text())
    for section, values in changes.items():
        doc.setdefault(section, {}).update(values)
    path = tmp_path / "task-settings.json"
    path.write_text(json.dumps(doc, indent=4))
    return path


def test_target_table_prep_modes(make_flow, pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)

    # Without task settings, bulkmig refuses to load into tables that exist (someone else's data).
    pg_target.execute(target_db, TARGET_SQL)
    flow = make_flow()
    run = flow.bulkmig("migrate")
    assert run.code != 0
    assert "the target already holds" in run.err and "settings.existing_tables" in run.err

    # DO_NOTHING (the saved export's value): the table and its rows stay, the source's rows are added.
    path = settings_file(tmp_path)
    flow = make_flow(task_settings=path.name)
    # The saved export's CreatePkAfterFullLoad false (keys before the data) changes the task's inputs: plan anew.
    assert flow.bulkmig("plan", "--restart").code == 0
    run = flow.bulkmig("migrate")
    assert run.code == 5, run.text  # validate: the target holds two rows more than the source
    assert "existing_tables append: the target's 1 tables are kept with their rows" in run.err
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.film")[0][0] == 502
    assert pg_target.execute(target_db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'film_title_own'")[0][0] == 1

    # TRUNCATE_BEFORE_LOAD: the rows go, the table's definition (its own index) stays; a rerun truncates nothing.
    # (A new volume each time: the schema markers and the ledger rightly make a volume's load happen once.)
    path = settings_file(tmp_path, FullLoadSettings={"TargetTablePrepMode": "TRUNCATE_BEFORE_LOAD"})
    flow = make_flow(task_settings=path.name)
    assert flow.bulkmig("plan", "--restart").code == 0
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "all equal" in run.err and "are truncated" in run.err
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.film")[0][0] == 500
    assert pg_target.execute(target_db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'film_title_own'")[0][0] == 1
    again = flow.bulkmig("load")
    assert again.code == 0, again.text
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.film")[0][0] == 500

    # DROP_AND_CREATE: a table of another shape is dropped and created as the source's.
    pg_target.execute(target_db, "DROP TABLE public.film; CREATE TABLE public.film (film_id bigint, legacy text)")
    pg_target.execute(target_db, "INSERT INTO public.film VALUES (1, 'old')")
    path = settings_file(tmp_path, FullLoadSettings={"TargetTablePrepMode": "DROP_AND_CREATE"})
    flow = make_flow(task_settings=path.name)
    run = flow.bulkmig("plan", "--restart")
    assert run.code == 0, run.text
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "all equal" in run.err and "dropping 1 existing tables" in run.err
    columns = pg_target.execute(
        target_db,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'film' "
        "ORDER BY ordinal_position",
    )
    assert columns == [("film_id", "integer"), ("title", "text"), ("rating", "text")]


def test_validation_settings(make_flow, pg_source, pg_target, source_db, target_db, tmp_path) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)
    # EnableValidation false: migrate loads and says it did not validate.
    path = settings_file(tmp_path, ValidationSettings={"EnableValidation": False, "ThreadCount": 3})
    flow = make_flow(task_settings=path.name, settings=None)
    run = flow.bulkmig("migrate")
    assert run.code == 0, run.text
    assert "not validating (settings.validation.enabled is false)" in run.err and "all equal" not in run.err
    assert pg_target.execute(target_db, "SELECT count(*) FROM public.film")[0][0] == 500
    assert "MaxFullLoadSubTasks" not in run.err  # honoured (workers 8), so not warned about
    assert "CommitRate accepted, not used" in run.err  # DMS-only keys are named, once

    # ValidationOnly: nothing moves, the tables are compared; a changed row on the target is found.
    pg_target.execute(target_db, "UPDATE public.film SET title = 'changed' WHERE film_id = 7")
    ledger = pg_target.execute(target_db, "SELECT count(*) FROM bulkmig.loaded_parts")
    path = settings_file(tmp_path, ValidationSettings={"EnableValidation": True, "ValidationOnly": True})
    flow = make_flow(task_settings=path.name, settings=None)
    run = flow.bulkmig("migrate")
    assert run.code == 5, run.text
    assert "validation only" not in run.err  # it stopped at the difference, before the closing line
    assert "public.film" in run.err and "differ" in run.err
    assert pg_target.execute(target_db, "SELECT count(*) FROM bulkmig.loaded_parts") == ledger
    assert pg_target.execute(target_db, "SELECT title FROM public.film WHERE film_id = 7")[0][0] == "changed"


def test_limited_lob_mode_of_the_task_settings_is_refused_when_it_would_cut(
    make_flow, pg_source, source_db, tmp_path
) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE public.notes (id int PRIMARY KEY, body text); "
        "INSERT INTO public.notes VALUES (1, repeat('n', 40000)), (2, 'short');",
    )
    # The saved export's LOB mode: LimitedSizeLobMode with LobMaxSize 32 (KB); the largest body is 40,000 bytes.
    flow = make_flow(task_settings=settings_file(tmp_path).name)
    run = flow.bulkmig("plan")
    assert run.code == 2, run.text
    assert (
        "public.notes.body: its largest value is 40,000 bytes (40 KB), more than the limited LOB size 32,768 bytes "
        "(TargetMetadata.LobMaxSize 32 KB); DMS would truncate it"
    ) in run.err
    # Full LOB mode copies every value whole.
    path = settings_file(tmp_path, TargetMetadata={"FullLobMode": True, "LimitedSizeLobMode": False})
    flow = make_flow(task_settings=path.name)
    run = flow.bulkmig("plan", "--restart")
    assert run.code == 0, run.text
    # SupportLobs false would leave the column out: refused.
    path = settings_file(tmp_path, TargetMetadata={"SupportLobs": False, "LimitedSizeLobMode": False})
    flow = make_flow(task_settings=path.name)
    run = flow.bulkmig("plan", "--restart")
    assert run.code == 2, run.text
    assert "public.notes has LOB columns (body) that TargetMetadata.SupportLobs false would leave out" in run.err
