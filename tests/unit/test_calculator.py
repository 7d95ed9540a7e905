"""The transfer calculator against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from bulkmig.ops.calculator import (
    Transfer,
    break_even_mbps,
    calculate,
    devices_needed,
    human_seconds,
    network_seconds,
)

TB = 10**12


def test_ten_terabytes_at_one_gigabit_is_about_22_hours() -> None:
    # 10e12 B * 8 = 8e13 bit; / 1e9 bit/s = 80 000 s = 22.2 h
    assert network_seconds(10 * TB, 1000) == pytest.approx(80_000)
    assert human_seconds(network_seconds(10 * TB, 1000)) == "22h 13m"
    assert network_seconds(10 * TB, 1000, 0.5) == pytest.approx(160_000)
    assert network_seconds(10 * TB, 1000, 0.8) == pytest.approx(100_000)


def test_devices_are_ceil_of_size_over_capacity() -> None:
    assert devices_needed(10 * TB, 80 * TB) == 1
    assert devices_needed(80 * TB, 80 * TB) == 1
    assert devices_needed(80 * TB + 1, 80 * TB) == 2
    assert devices_needed(250 * TB, 80 * TB) == 4
    assert devices_needed(0, 80 * TB) == 1


def test_break_even_is_the_bandwidth_that_matches_the_transit() -> None:
    # 10 TB in 5 days: 8e13 bit / 432 000 s = 185.185 Mbit/s
    assert break_even_mbps(10 * TB, 5 * 86400) == pytest.approx(185.185, rel=1e-4)


def test_whole_calculation_by_hand() -> None:
    t = calculate(
        Transfer(
            volume_bytes=10 * TB,
            network_mbps=100,
            device_capacity_bytes=80 * TB,
            ship_days=3,
            extract_bytes_per_second=200e6,  # 50 000 s
            import_bytes_per_second=500e6,  # 20 000 s
            load_bytes_per_second=100e6,  # 100 000 s
            change_bytes_per_second=1e6,
            replay_bytes_per_second=10e6,
        )
    )
    assert t.network_full_s == pytest.approx(800_000)
    assert t.devices == 1
    assert t.device_path_s == pytest.approx(50_000 + 3 * 86400 + 20_000 + 100_000)
    assert t.break_even_mbps == pytest.approx(8e13 / (3 * 86400 + 20_000) / 1e6)
    assert t.cdc_backlog_bytes == pytest.approx(1e6 * t.device_path_s)
    assert t.cdc_replay_s == pytest.approx(t.cdc_backlog_bytes / 10e6)


def test_bad_inputs_refused() -> None:
    with pytest.raises(ValueError):
        network_seconds(1, 0)
    with pytest.raises(ValueError):
        network_seconds(1, 10, 1.5)
    with pytest.raises(ValueError):
        devices_needed(1, 0)
    assert math.isinf(break_even_mbps(1, 0))
