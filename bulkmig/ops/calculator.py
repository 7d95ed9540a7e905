"""The transfer calculator: network vs. shipped devices, as plain arithmetic (no I/O, unit-tested).

Units are bytes, bits per second and seconds throughout; callers format.  Sizes use powers of ten
(1 TB = 10**12 bytes) because link speeds and device capacities are sold that way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

DAY = 86400.0


def network_seconds(size_bytes: float, mbps: float, utilisation: float = 1.0) -> float:
    """Seconds to send ``size_bytes`` over a ``mbps`` (10**6 bit/s) link used at ``utilisation`` (0..1]."""
    if mbps <= 0 or not 0 < utilisation <= 1:
        raise ValueError("bandwidth must be positive and utilisation in (0, 1]")
    return size_bytes * 8 / (mbps * 1e6 * utilisation)


def devices_needed(size_bytes: float, capacity_bytes: float) -> int:
    """Devices of ``capacity_bytes`` usable space that hold ``size_bytes``: ceil(size / capacity), at least 1."""
    if capacity_bytes <= 0:
        raise ValueError("device capacity must be positive")
    return max(1, math.ceil(size_bytes / capacity_bytes))


def break_even_mbps(size_bytes: float, device_seconds: float, utilisation: float = 1.0) -> float:
    """The bandwidth at which the network takes as long as the device path: above it, send over the wire."""
    if device_seconds <= 0:
        return math.inf
    return size_bytes * 8 / (device_seconds * utilisation) / 1e6


@dataclass
class Transfer:
    """Inputs and results of one calculation; every figure in base units (bytes, seconds, Mbit/s)."""

    volume_bytes: float  # what travels: the Parquet volume (compressed)
    network_mbps: float
    device_capacity_bytes: float
    ship_days: float
    extract_bytes_per_second: float  # reading the source into the volume (measured or estimated)
    import_bytes_per_second: float  # device -> bucket at the receiving site
    load_bytes_per_second: float  # bucket -> target
    change_bytes_per_second: float  # source WAL/binlog growth
    replay_bytes_per_second: float  # how fast replay consumes that change volume

    # results
    network_full_s: float = 0.0
    network_80_s: float = 0.0
    network_50_s: float = 0.0
    devices: int = 0
    extract_s: float = 0.0
    ship_s: float = 0.0
    import_s: float = 0.0
    load_s: float = 0.0
    device_path_s: float = 0.0
    break_even_mbps: float = 0.0
    cdc_backlog_bytes: float = 0.0
    cdc_replay_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calculate(t: Transfer) -> Transfer:
    """Fill the results of ``t`` from its inputs (and return it).

    The device path is extract + ship + import + load, one after the other (the conservative reading:
    load can overlap import, but an operator plans for the sum).  The network path also extracts and
    loads; only the transit differs, so break-even compares transit (network) against ship + import.
    The CDC backlog is the source's change volume accumulated over the whole device path, replayed at
    the replay rate once the load is done.
    """
    t.network_full_s = network_seconds(t.volume_bytes, t.network_mbps, 1.0)
    t.network_80_s = network_seconds(t.volume_bytes, t.network_mbps, 0.8)
    t.network_50_s = network_seconds(t.volume_bytes, t.network_mbps, 0.5)
    t.devices = devices_needed(t.volume_bytes, t.device_capacity_bytes)
    t.extract_s = t.volume_bytes / t.extract_bytes_per_second
    t.ship_s = t.ship_days * DAY
    t.import_s = t.volume_bytes / t.import_bytes_per_second
    t.load_s = t.volume_bytes / t.load_bytes_per_second
    t.device_path_s = t.extract_s + t.ship_s + t.import_s + t.load_s
    t.break_even_mbps = break_even_mbps(t.volume_bytes, t.ship_s + t.import_s)
    t.cdc_backlog_bytes = t.change_bytes_per_second * t.device_path_s
    t.cdc_replay_s = t.cdc_backlog_bytes / t.replay_bytes_per_second if t.replay_bytes_per_second > 0 else math.inf
    return t


def human_seconds(seconds: float) -> str:
    """``2d 03h``, ``22h 13m``, ``4m 10s``: durations an operator plans with (never fractions of a second)."""
    if math.isinf(seconds):
        return "never"
    s = int(round(seconds))
    if s >= DAY:
        return f"{s // 86400}d {s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"
