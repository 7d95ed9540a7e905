"""Issue 7 §2: a part damaged on the volume after seal is named by `volume verify`, refused by import, and
`extract --redo PART` re-extracts just it — inside the plan's snapshot while that is held, else only when
the operator says `--not-consistent` (and never where replay could not converge it exactly)."""

from __future__ import annotations

import json
import time

from bulkmig.core.layout import sidecar_key


def _damage(path) -> None:  # noqa: ANN001
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))


def test_redo_a_damaged_part_after_seal(make_flow, pg_source, pg_target, source_db, target_db) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g; ANALYZE t;",
    )
    flow = make_flow(settings={"max_part_bytes": "256kB"})
    for step in ("plan", "extract"):
        assert flow.bulkmig(step).code == 0
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    parts = sorted(flow.volume.glob("data/public/t/part-*.parquet"))
    assert len(parts) >= 3
    damaged = parts[1]
    kept = {p: p.stat().st_mtime_ns for p in parts if p != damaged}
    _damage(damaged)

    verify = flow.run("volume", "verify", str(flow.volume))
    assert verify.code == 4 and "data/public/t/part-00001.parquet" in verify.text
    refused = flow.bulkmig("volume import")
    assert refused.code == 4 and "part-00001.parquet" in refused.text

    # The snapshot the other parts were read in ended with that extract run: redo says so and offers the choices.
    key = "data/public/t/part-00001.parquet"
    no = flow.bulkmig("extract", "--redo", key)
    assert no.code != 0 and "--not-consistent" in no.err and "plan --restart" in no.err
    assert damaged.exists(), "a refused redo must not touch the volume"
    unknown = flow.bulkmig("extract", "--redo", "public.t:99")
    assert unknown.code == 2 and "names no part of this plan" in unknown.err

    pg_source.execute(source_db, "UPDATE t SET v = 'changed' WHERE id = 1")  # a later moment of the source
    yes = flow.bulkmig("extract", "--redo", key, "--not-consistent")
    assert yes.code == 0, yes.text
    assert "re-extracting 1 part" in yes.err
    # Only that part was rewritten; its sidecar records the new snapshot.
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())
    sidecars = {
        p: json.loads((flow.volume / sidecar_key("public", "t", i)).read_text())["source_position"]["snapshot"]
        for i, p in enumerate(parts)
    }
    assert sidecars[damaged] != sidecars[parts[0]]

    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    assert flow.run("volume", "verify", str(flow.volume)).code == 0
    assert flow.bulkmig("volume import").code == 0
    assert flow.bulkmig("load").code == 0
    # The redone part holds rows of the later moment: only row 1 (in part 0, not redone) differs.
    validate = flow.bulkmig("validate")
    assert validate.code == 5 and "public.t" in validate.text
    pg_target.execute(target_db, "UPDATE t SET v = 'changed' WHERE id = 1")
    assert flow.bulkmig("validate").code == 0


def test_redo_inside_the_held_snapshot_and_keyless_refusal(make_flow, pg_source, source_db, tmp_path) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE k (id int PRIMARY KEY, v text); CREATE TABLE bag (v text) ;"
        "ALTER TABLE bag REPLICA IDENTITY FULL;"
        "INSERT INTO k SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"
        "INSERT INTO bag SELECT md5(g::text) FROM generate_series(1, 500) g; ANALYZE;",
    )
    flow = make_flow(migration_type="full-load-and-cdc", settings={"allow_replica_identity_full": True})
    # `plan` holds the stream's snapshot until every part is on the volume.
    plan = flow.start("plan", log=tmp_path / "plan.log")
    try:
        deadline = time.monotonic() + 60
        while not (flow.volume / "plan.json").exists():
            assert plan.poll() is None and time.monotonic() < deadline, (tmp_path / "plan.log").read_text()
            time.sleep(0.2)
        # While the snapshot is held, a part is redone inside it: no --not-consistent needed.
        assert flow.bulkmig("extract", "--agent", "1/2").code == 0
        first = sorted(flow.volume.glob("data/*/*/part-*.parquet"))
        assert first
        key = str(first[0].relative_to(flow.volume))
        redo = flow.bulkmig("extract", "--agent", "1/2", "--redo", key)
        assert redo.code == 0, redo.text
        assert flow.bulkmig("extract").code == 0
        assert plan.wait(timeout=60) == 0, (tmp_path / "plan.log").read_text()
    finally:
        if plan.poll() is None:
            plan.kill()
    # Now the snapshot is gone: redoing the key-less table cannot converge under replay, even when told so.
    bag = flow.bulkmig("extract", "--redo", "public.bag", "--not-consistent")
    assert bag.code != 0 and "public.bag" in bag.err and "without a primary key" in bag.err
    keyed = flow.bulkmig("extract", "--redo", "public.k", "--not-consistent")
    assert keyed.code == 0, keyed.text
