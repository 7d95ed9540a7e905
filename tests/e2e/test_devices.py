"""Several devices per migration (issue 13 item 3): a task with ``volumes:`` ships its parts on two devices.

pagila plus a big table split into many parts: plan assigns every part to one device (balanced, within
capacity), extract writes each part only onto its device, each device is sealed and verified on its own
(its volume.json names the plan and which device of how many it is), the devices are imported into the
same bucket tree in any order, load loads the tables whose parts have arrived and names the missing
device (exit 6), and finishes once it arrives; validate equal.  On a real Dask cluster the parts of
device b run only on the agents offering ``device-b`` — also while one of them is killed with -9.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from bulkmig.demo.servers import load_dataset

BIG_DIGEST = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || a || b, ',' ORDER BY id)) FROM big"


def _big(pg_source, source_db: str, rows: int = 200_000) -> None:  # noqa: ANN001
    pg_source.execute(
        source_db,
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 8) AS b "
        f"FROM generate_series(1, {rows}) g; ALTER TABLE big ADD PRIMARY KEY (id); ANALYZE big",
    )


def _two_devices(make_flow, tmp_path: Path, capacity: str | None = "1GB", **settings):  # noqa: ANN001, ANN003, ANN202
    devices = {name: tmp_path / f"dev-{name}" for name in ("a", "b")}
    volumes = [{"name": n, "path": str(p), **({"capacity": capacity} if capacity else {})} for n, p in devices.items()]
    flow = make_flow(volume=None, volumes=volumes, settings={"max_part_bytes": "2MB", **settings})
    return flow, devices


def _assignment(device: Path) -> dict[str, str]:
    """Part key -> the device the plan (as written on ``device``) assigned it to."""
    plan = json.loads((device / "plan.json").read_text())
    return {
        f"data/{t['schema']}/{t['name']}/part-{p['index']:05d}.parquet": p["device"]
        for t in plan["tables"]
        for p in t["partitions"]
    }


def _parts_on(device: Path) -> set[str]:
    return {str(p.relative_to(device)) for p in device.glob("data/*/*/part-*.parquet")}


def test_two_devices_sealed_each_imported_in_any_order_load_waits_for_the_missing_one(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:
    load_dataset(pg_source, "pagila", source_db)
    _big(pg_source, source_db)
    flow, devices = _two_devices(make_flow, tmp_path)

    run = flow.bulkmig("plan")
    assert run.code == 0, run.text
    assert "plan: 2 devices: a: " in run.err and "; b: " in run.err, run.err
    # The same plan on both devices, each with its own marker.
    assert (devices["a"] / "plan.json").read_bytes() == (devices["b"] / "plan.json").read_bytes()
    for index, (name, path) in enumerate(devices.items(), 1):
        marker = json.loads((path / "devices" / name / "device.json").read_text())
        assert (marker["name"], marker["index"], marker["count"]) == (name, index, 2)
    plan = json.loads((devices["a"] / "plan.json").read_text())
    assigned = _assignment(devices["a"])
    by_device = {n: {k for k, d in assigned.items() if d == n} for n in devices}
    assert by_device["a"] and by_device["b"] and set(assigned.values()) == {"a", "b"}
    # Balanced by estimated size: the two devices differ by no more than the largest part.
    est = {d["name"]: d["estimated_bytes"] for d in plan["devices"]}
    largest = max(p["estimated_bytes"] for t in plan["tables"] for p in t["partitions"])
    assert abs(est["a"] - est["b"]) <= largest, est
    big_parts = {k for k in assigned if "/big/" in k}
    assert len(big_parts) >= 6 and {assigned[k] for k in big_parts} == {"a", "b"}  # the big table spans both

    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    # Placement: every part on its own device, none on the other.
    assert _parts_on(devices["a"]) == by_device["a"]
    assert _parts_on(devices["b"]) == by_device["b"]

    for name, path in devices.items():
        assert flow.run("volume", "seal", str(path)).code == 0
        verify = flow.run("volume", "verify", str(path))
        assert verify.code == 0, verify.text
        sealed = json.loads((path / "volume.json").read_text())
        assert sealed["volume_id"] == plan["volume_id"]
        assert sealed["device"] == {"name": name, "index": 1 if name == "a" else 2, "count": 2}
        assert {f["key"] for f in sealed["files"] if f["key"].endswith(".parquet")} == by_device[name]

    # Device b arrives first: load loads the tables whose parts are all on b, and says a is missing.
    run = flow.bulkmig("volume import", "--device", "b")
    assert run.code == 0, run.text
    assert "imported device b (2 of 2) of volume" in run.err
    run = flow.bulkmig("load")
    assert run.code == 6, run.text
    line = run.err.strip().splitlines()[-1]
    assert "device(s) a (1 of 2) not imported yet" in line and "public.big" in line, line
    assert "bulkmig volume import" in line and "--device NAME" in line and "Traceback" not in run.text
    only_b = {t["name"] for t in plan["tables"] if all(p["device"] == "b" for p in t["partitions"])}
    loaded = pg_target.execute(target_db, "SELECT DISTINCT table_name FROM bulkmig.loaded_parts")
    assert {r[0] for r in loaded} == only_b and only_b, (loaded, only_b)
    status = json.loads(flow.bulkmig("status", "--json").out)
    assert status["bucket"]["devices_imported"] == ["b"] and status["bucket"]["imported"] is False
    assert [d["name"] for d in status["volume"]["devices"]] == ["a", "b"]

    # Then device a (a plain `volume import` imports every sealed device here; b's objects are skipped).
    run = flow.bulkmig("volume import")
    assert run.code == 0, run.text
    run = flow.bulkmig("load")
    assert run.code == 0, run.text
    bucket_copy = f"{flow.bucket}/volumes/{plan['volume_id']}"
    endpoint = flow.env["AWS_ENDPOINT_URL_S3"]
    verify = flow.run("volume", "verify", bucket_copy, "--s3-endpoint-url", endpoint, "--json")
    assert verify.code == 0, verify.text
    assert json.loads(verify.out)["parts"] == len(assigned)
    check = flow.bulkmig("validate", "--json")
    assert check.code == 0, check.text
    assert all(t["equal"] for t in json.loads(check.out)["tables"])
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)


def test_a_plan_that_does_not_fit_its_devices_is_refused(make_flow, pg_source, source_db, tmp_path) -> None:  # noqa: ANN001
    _big(pg_source, source_db, 100_000)
    flow, devices = _two_devices(make_flow, tmp_path, capacity="5MB")
    run = flow.bulkmig("plan")
    assert run.code == 4, run.text
    line = run.err.strip().splitlines()[-1]
    assert "the plan does not fit its devices" in line and "(a 5.0 MB, b 5.0 MB)" in line, line
    needed = int(line.split("name at least ")[1].split()[0])
    assert needed > 2 and "devices of 5.0 MB" in line
    assert not any((p / "plan.json").exists() for p in devices.values())


def test_task_volumes_errors_are_named(make_flow, tmp_path) -> None:  # noqa: ANN001
    flow = make_flow(volumes=[{"name": "a", "path": str(tmp_path / "x"), "capacity": "lots"}, {"name": "a"}])
    run = flow.bulkmig("plan")
    assert run.code == 2
    assert "volume and volumes are both set" in run.err, run.err
    flow = make_flow(
        volume=None, volumes=[{"name": "a b", "path": "x"}, {"path": "y", "capacity": "lots"}, {"name": "c"}]
    )
    run = flow.bulkmig("plan")
    assert run.code == 2
    assert "volumes[0].name: 'a b' must be" in run.err and "volumes[1].capacity: 'lots' is not a size" in run.err
    assert "volumes[2].path: missing" in run.err, run.err


# ----------------------------------------------------------------------------------------- on Dask

distributed = pytest.importorskip("distributed")


@pytest.fixture
def device_cluster(tmp_path: Path, free_port, start_dask) -> tuple[str, dict[str, object]]:  # noqa: ANN001
    """A scheduler and three agents: one offering ``device-a``, two offering ``device-b`` (as three hosts,
    two of which mount device b's appliance); killed at teardown (tests/e2e/conftest.py)."""
    port = str(free_port())
    address = f"tcp://127.0.0.1:{port}"
    start_dask("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log=tmp_path / "s.log")
    agents = {}
    for name, device in (("agent-a", "a"), ("agent-b1", "b"), ("agent-b2", "b")):
        agents[name] = start_dask(
            "worker", address, "--nthreads", "1", "--no-dashboard", "--name", name, "--resources",
            f"device-{device}=1", "--local-directory", str(tmp_path / name), log=tmp_path / f"{name}.log",
        )  # fmt: skip
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(3, timeout=120)
    return address, agents


def _units_by_worker(address: str) -> dict[str, set[int]]:
    """Worker name -> the numbers of the extract units it ran (from its own transition log)."""

    def keys(dask_worker) -> list[str]:  # noqa: ANN001 - runs inside the worker process
        return sorted({str(e[0]) for e in dask_worker.state.log if str(e[0]).startswith("extract-")})

    with distributed.Client(address, timeout="20s") as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        return {names[a]: {int(k.rsplit("-", 1)[1]) for k in ks} for a, ks in client.run(keys).items()}


def test_parts_run_only_on_their_devices_agents_also_when_one_is_killed(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, device_cluster, tmp_path
) -> None:
    address, agents = device_cluster
    _big(pg_source, source_db, 300_000)
    flow, devices = _two_devices(make_flow, tmp_path, executor="dask", scheduler=address)
    assert flow.bulkmig("plan").code == 0
    order = list(_assignment(devices["a"]).items())  # plan order: unit n is the plan's n-th part
    assert len(order) >= 8

    proc = flow.start("extract", log=tmp_path / "extract.log", quiet=False)
    deadline = time.monotonic() + 120
    while not list((devices["b"] / "data").rglob("*.json")):
        assert time.monotonic() < deadline, "no part on device b after 120 s"
        time.sleep(0.2)
    os.killpg(agents["agent-b1"].pid, signal.SIGKILL)  # one of device b's agents is lost mid-extract
    assert proc.wait(timeout=300) == 0, (tmp_path / "extract.log").read_text()

    ran = _units_by_worker(address)
    assert set(ran) == {"agent-a", "agent-b2"}
    assert ran["agent-a"] and ran["agent-b2"]
    assert {order[n][1] for n in ran["agent-a"]} == {"a"}
    assert {order[n][1] for n in ran["agent-b2"]} == {"b"}
    assert _parts_on(devices["a"]) == {k for k, d in order if d == "a"}
    assert _parts_on(devices["b"]) == {k for k, d in order if d == "b"}
    for path in devices.values():
        assert flow.run("volume", "seal", str(path)).code == 0
    # The agents are source-side hosts without the bucket's credentials: import and load run here.
    for step, args in (("volume import", ["--executor", "local"]), ("load", ["--executor", "local"]), ("validate", [])):
        run = flow.bulkmig(step, *args)
        assert run.code == 0, (step, run.text)
    # None doubled, none lost: every source row exactly once, every value as it was.
    assert pg_target.execute(target_db, BIG_DIGEST) == pg_source.execute(source_db, BIG_DIGEST)


def test_a_device_no_agent_offers_is_refused_before_any_part(  # noqa: ANN001
    make_flow,
    pg_source,
    source_db,
    cluster,
    tmp_path,
) -> None:
    """The plain cluster's workers offer no device resource: a part of device a would wait forever."""
    _big(pg_source, source_db, 20_000)
    flow, devices = _two_devices(make_flow, tmp_path, capacity=None)
    assert flow.bulkmig("plan").code == 0  # planned locally; extract goes to the cluster
    run = flow.bulkmig("extract", "--executor", "dask", "--scheduler", cluster.address, timeout=180)
    assert run.code == 2, run.text
    assert "no worker of the Dask cluster at" in run.err and "offers device-a, device-b" in run.err, run.err
    assert "--resources device-a=" in run.err and "Traceback" not in run.err
    assert not any(_parts_on(p) for p in devices.values())
