"""Several devices: the task's ``volumes:``, the plan's assignment of parts to devices, the device keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmig.config.task import Device, Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, PlanError
from bulkmig.core.model import Column, Partition, Table
from bulkmig.fullload.devices import assign, render_assignment, resource

GB = 10**9


def _task(tmp_path: Path, volumes: list[dict]) -> Task:
    doc = {
        "source": "postgresql://app@127.0.0.1:5432/shop",
        "target": "postgresql://admin@127.0.0.1:5433/shop",
        "migration_type": "full-load",
        "volumes": volumes,
        "bucket": "s3://migration/shop",
    }
    return Task.from_dict(doc, tmp_path, env={})


def _table(name: str, sizes: list[int]) -> Table:
    column = Column("id", "integer", "integer", "int32", nullable=False)
    parts = [Partition(i, None, {}, size) for i, size in enumerate(sizes)]
    return Table("public", name, [column], ["id"], partitions=parts)


def test_volumes_become_devices_and_the_first_is_the_home_volume(tmp_path: Path) -> None:
    task = _task(tmp_path, [{"path": "dev-a", "capacity": "80TB"}, {"name": "b2", "path": "s3://dev-b/x"}])
    assert task.devices == (Device("a", str(tmp_path / "dev-a"), 80 * 10**12), Device("b2", "s3://dev-b/x", None))
    assert task.volume == str(tmp_path / "dev-a")  # plan.json is read there, as from a single volume
    assert resource("b2") == "device-b2"


@pytest.mark.parametrize(
    ("volumes", "said"),
    [
        ([{"path": "a"}], "volumes: must be a list of two or more devices"),
        ([{"path": "a"}, {"path": "a"}], "volumes: two devices share a path"),
        ([{"name": "x", "path": "a"}, {"name": "x", "path": "b"}], "volumes: two devices share a name"),
        ([{"path": "a", "size": 1}, {"path": "b"}], "volumes[0].size: unknown key"),
        ([{"path": "a", "capacity": "-1"}, {"path": "b"}], "volumes[0].capacity:"),
        ([{"path": "a"}, {"path": "ftp://b"}], "volumes[1].path: 'ftp://b' is neither a directory nor an s3:// URL"),
    ],
)
def test_bad_volumes_are_named(tmp_path: Path, volumes: list[dict], said: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        _task(tmp_path, volumes)
    assert said in str(info.value), str(info.value)


def test_parts_are_balanced_largest_first_and_every_part_gets_a_device() -> None:
    tables = [_table("big", [5 * GB, 4 * GB, 3 * GB, 3 * GB, 2 * GB]), _table("small", [1 * GB, 1 * GB])]
    devices = assign(tables, [Device("a", "/a", 10 * GB), Device("b", "/b", 10 * GB)])
    assert {p.device for t in tables for p in t.partitions} == {"a", "b"}
    loads = {d["name"]: d["estimated_bytes"] for d in devices}
    assert loads == {"a": 10 * GB, "b": 9 * GB} or loads == {"a": 9 * GB, "b": 10 * GB}
    assert sum(d["parts"] for d in devices) == 7
    assert "a: " in render_assignment(devices) and "of 10.0 GB" in render_assignment(devices)


def test_capacity_is_never_exceeded_and_shares_follow_capacities() -> None:
    tables = [_table("t", [1 * GB] * 9)]
    devices = assign(tables, [Device("a", "/a", 6 * GB), Device("b", "/b", 3 * GB)])
    assert {d["name"]: d["parts"] for d in devices} == {"a": 6, "b": 3}


def test_a_plan_larger_than_the_devices_is_refused_with_how_many_are_needed() -> None:
    tables = [_table("t", [1 * GB] * 25)]
    with pytest.raises(PlanError) as info:
        assign(tables, [Device("a", "/a", 10 * GB), Device("b", "/b", 10 * GB)])
    assert "about 25.0 GB of parts onto 2 device(s)" in info.value.message
    assert "name at least 3 devices of 10.0 GB" in info.value.hint


def test_device_keys() -> None:
    assert layout.device_marker("b") == "devices/b/device.json"
    assert layout.device_manifest("b") == "devices/b/volume.json"
    assert layout.parse_device_key("devices/b/volume.json") == ("b", "volume.json")
    assert layout.parse_device_key("devices/b/other.json") is None
    assert layout.parse_device_key("data/devices/b") is None
