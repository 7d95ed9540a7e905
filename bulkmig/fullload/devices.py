"""Several devices per migration: which part goes to which device, and where each device is.

A task with ``volumes: [{name: a, path: /mnt/dev-a, capacity: 80TB}, …]`` ships its parts on several
devices (Snowball-class appliances, disks).  ``plan`` assigns every part to one device by its estimated
size — largest parts first, each onto the device left least full relative to its capacity, never over
capacity — and writes the plan, the schema and a ``devices/<name>/device.json`` marker onto every device.
``extract`` writes each part only onto its device (on a Dask cluster: only on a worker offering the
resource ``device-<name>``), ``volume seal``/``verify`` work on one device at a time, each device is
imported into the same bucket tree as it arrives, and ``load`` loads the tables whose parts have all
arrived and names the devices still missing.

The estimate is the source's table bytes (heap + TOAST for PostgreSQL), which compressed Parquet rarely
exceeds; capacities should still leave a margin (the plan says how full each device is expected to be).
"""

from __future__ import annotations

import math
from typing import Any

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, PlanError
from bulkmig.core.log import human_bytes
from bulkmig.core.model import Table
from bulkmig.core.store import Store, open_store
from bulkmig.volume.device import marker_bytes


def resource(name: str) -> str:
    """The Dask worker resource an agent holding device ``name`` offers: ``device-b``."""
    return f"device-{name}"


def assign(tables: list[Table], devices: list[Any]) -> list[dict[str, Any]]:
    """Give every partition of ``tables`` a device (``Partition.device``); returns the plan's ``devices``
    list (name, capacity, parts, estimated bytes).  Refuses, naming how many devices it would take, a
    plan whose estimated size does not fit the devices' capacities."""
    load = {d.name: 0 for d in devices}
    count = {d.name: 0 for d in devices}
    capacity = {d.name: d.capacity for d in devices}
    parts = sorted(
        ((t, p) for t in tables for p in t.partitions), key=lambda tp: (-tp[1].estimated_bytes, tp[0].qualified)
    )
    total = sum(p.estimated_bytes for _, p in parts)
    for table, part in parts:
        size = part.estimated_bytes
        fits = [d.name for d in devices if capacity[d.name] is None or load[d.name] + size <= capacity[d.name]]
        if not fits:
            raise _does_not_fit(devices, total, f"{table.qualified} part {part.index} ({human_bytes(size)})")

        # The device left least full, as a share of its capacity (unbounded ones: by bytes alone).
        name = min(fits, key=lambda n, size=size: (_share(load[n] + size, capacity[n]), load[n]))
        part.device = name
        load[name] += size
        count[name] += 1
    return [
        {"name": d.name, "capacity": d.capacity, "parts": count[d.name], "estimated_bytes": load[d.name]}
        for d in devices
    ]


def _share(nbytes: int, capacity: int | None) -> float:
    return nbytes / capacity if capacity else 0.0


def _does_not_fit(devices: list[Any], total: int, first: str) -> PlanError:
    capacities = [d.capacity for d in devices if d.capacity]
    largest = max(capacities) if capacities else 0
    need = math.ceil(total / largest) if largest else len(devices) + 1
    have = ", ".join(f"{d.name} {human_bytes(d.capacity) if d.capacity else 'unbounded'}" for d in devices)
    return PlanError(
        f"the plan does not fit its devices: about {human_bytes(total)} of parts onto {len(devices)} device(s) "
        f"({have}); {first} fits on none of them",
        f"name at least {max(need, len(devices) + 1)} devices of {human_bytes(largest)} in the task's volumes: "
        "(or larger ones), then plan again",
    )


def render_assignment(plan_devices: list[dict[str, Any]]) -> str:
    """``a: 12 parts, ~41.2 GB of 80 TB (0%); b: …`` for the plan's one-line summary."""
    out = []
    for d in plan_devices:
        cap = d.get("capacity")
        share = f" of {human_bytes(cap)} ({d['estimated_bytes'] / cap:.0%})" if cap else ""
        out.append(f"{d['name']}: {d['parts']} parts, ~{human_bytes(d['estimated_bytes'])}{share}")
    return "; ".join(out)


def device_parts(plan_tables: list[Table], name: str | None) -> set[tuple[str, str, int]]:
    """(schema, table, index) of the parts on device ``name`` (None: every part — a single volume)."""
    return {(t.schema, t.name, p.index) for t in plan_tables for p in t.partitions if name is None or p.device == name}


def stores(task: Task, plan_devices: list[dict[str, Any]]) -> dict[str | None, Store]:
    """Each device's store by name (``{None: volume}`` for a single volume), refusing a task whose
    ``volumes:`` no longer name the plan's devices."""
    if not plan_devices:
        if task.devices:
            raise _devices_changed(task, [], [d.name for d in task.devices])
        return {None: open_store(task.volume, task.volume_s3_options())}
    planned = [str(d["name"]) for d in plan_devices]
    named = [d.name for d in task.devices]
    if sorted(planned) != sorted(named):
        raise _devices_changed(task, planned, named)
    return {d.name: open_store(d.path, task.volume_s3_options()) for d in task.devices}


def _devices_changed(task: Task, planned: list[str], named: list[str]) -> ConfigError:
    def say(names: list[str]) -> str:
        return ", ".join(names) if names else "one volume"

    return ConfigError(
        f"the task's volumes ({say(named)}) are not the plan's devices ({say(planned)})",
        "put the task's volumes: back as they were when planned (paths may change, names may not), or start "
        f"over with `bulkmig plan --task {task.path} --restart`",
    )


def write_files(url: str, s3_options: Any, files: list[tuple[str, bytes]]) -> int:
    """Put ``files`` onto the volume at ``url``, in order (the plan last).  A unit: on a Dask cluster it
    runs on the agent that mounts the device."""
    store = open_store(url, s3_options)
    for key, data in files:
        store.put_bytes(key, data)
    return len(files)


def publish(task: Task, volume_id: str, names: list[str], shared: dict[str, bytes], plan_bytes: bytes) -> None:
    """Write the schema files, each device's marker and the plan (last) onto every device of the task —
    from here, or with ``settings.executor: dask`` on the agent holding each device."""
    by_name = {d.name: d for d in task.devices}
    units = []
    for index, name in enumerate(names, 1):
        marker = (layout.device_marker(name), marker_bytes(volume_id, name, index, len(names)))
        units.append((name, [*shared.items(), marker, (layout.PLAN, plan_bytes)]))
    if task.settings.executor != "dask":
        for name, files in units:
            write_files(by_name[name].path, task.volume_s3_options(), files)
        return
    from bulkmig.core.executor import run_on_dask

    run_on_dask(
        "plan",
        task.settings.scheduler,
        min(len(units), task.settings.workers),
        write_files,
        units,
        lambda unit: (by_name[unit[0]].path, task.volume_s3_options(), unit[1]),
        lambda unit, _: None,
        resources=lambda unit: {resource(unit[0]): 1},
    )


def path(task: Task, name: str | None) -> str:
    """Where device ``name`` is mounted (its path or S3 URL in the task's ``volumes:``); the volume for None."""
    if name is None:
        return task.volume
    for device in task.devices:
        if device.name == name:
            return device.path
    raise _devices_changed(task, [name], [d.name for d in task.devices])
