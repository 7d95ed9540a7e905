"""Disk full (issue 7, item 5) on a real small filesystem: a tmpfs mounted for the test.

- ``extract`` onto a volume whose device fills up stops with one line naming the device, its mount point
  and about how much the remaining parts need (the plan's estimate, scaled by how parts came out so far);
  a part cut short is never published, so nothing half-written is trusted.  After space is freed the
  rerun skips every part already on the volume and writes the rest.
- with several devices (``volumes:``), one device filling up stops only its own parts: the other
  devices' parts are all extracted, and the line names the full device.
- ``load`` downloads each part into a local temp dir (``TMPDIR``) before it is checked and copied: a full
  temp filesystem stops it the same way, naming the device and the part's size; the rerun resumes from
  the ledger.

Mounting needs root (CI runs as root); elsewhere these tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bulkmig.core.store import sha256_file

MiB = 1024 * 1024


class SmallFs:
    """A tmpfs of ``size`` bytes mounted at ``path``; :meth:`resize` grows or shrinks it in place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, size: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", f"bulkmig-{uuid.uuid4().hex[:6]}", str(self.path))

    def resize(self, size: int) -> None:
        _run("mount", "-o", f"remount,size={size}", str(self.path))

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {done.stderr.strip()}")


@pytest.fixture
def small_fs(tmp_path: Path, unavailable: Callable[[str], None]) -> Iterator[Callable[[str, int], SmallFs]]:
    """``small_fs(name, size)``: a fresh tmpfs under ``tmp_path``; unmounted afterwards."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root (CI runs as root)")
    mounted: list[SmallFs] = []

    def make(name: str, size: int) -> SmallFs:
        fs = SmallFs(tmp_path / name)
        try:
            fs.mount(size)
        except OSError as exc:
            unavailable(f"cannot mount a tmpfs here: {exc}")
        mounted.append(fs)
        return fs

    yield make
    for fs in mounted:
        fs.unmount()


def _source(pg_source, source_db: str, rows: int) -> None:  # noqa: ANN001
    """Hex text, so the parts compress only about 2:1 and really take space."""
    pg_source.execute(
        source_db,
        "CREATE TABLE t (id int PRIMARY KEY, a text, b text);"
        "INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 13)::text)"
        f" FROM generate_series(1, {rows}) g;"
        "CREATE TABLE small (id int PRIMARY KEY, v text);"
        "INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 300) g; ANALYZE t; ANALYZE small;",
    )


def _sidecars(volume: Path) -> list[Path]:
    return sorted(volume.glob("data/*/*/part-*.json"))


def test_extract_onto_a_full_volume_then_resume(
    make_flow, small_fs, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:  # noqa: ANN001
    _source(pg_source, source_db, 100_000)
    fs = small_fs("device", 8 * MiB)
    volume = fs.path / "volume"
    flow = make_flow(volume=str(volume), settings={"max_part_bytes": "256kB", "workers": 2})
    run = flow.bulkmig("plan")
    assert run.code == 0, run.text
    plan = json.loads((volume / "plan.json").read_text())
    parts = sum(len(t["partitions"]) for t in plan["tables"])
    # Something unrelated takes most of the device, leaving room for about half of the parts.
    ballast = fs.path / "someone-elses-file"
    ballast.write_bytes(b"\0" * (fs.free() - 2 * MiB))

    run = flow.bulkmig("extract")
    assert run.code == 1, run.text
    line = run.err.strip().splitlines()[-1]
    assert line.startswith(f"error: the volume {volume} is full: no space left on device "), line
    assert f"mounted at {fs.path}" in line and "parts not yet extracted need about" in line, line
    assert "rerun `bulkmig extract`" in line and "Traceback" not in run.text, line
    written = _sidecars(volume)
    assert 0 < len(written) < parts, (len(written), parts)
    # Nothing half-written is trusted: every part with a sidecar is whole, no temp file is left behind.
    for sidecar in written:
        doc = json.loads(sidecar.read_text())
        assert sha256_file(volume / doc["key"])[0] == doc["sha256"], doc["key"]
    assert list(volume.rglob("*.partial")) == []

    ballast.unlink()  # free space
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    assert f"{len(written)} of {parts} parts already on the volume and verified; skipping them" in run.err
    assert len(_sidecars(volume)) == parts
    assert flow.run("volume", "seal", str(volume)).code == 0
    for step in ("volume import", "load", "validate"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)


def test_one_of_two_devices_full_stops_only_its_own_parts(
    make_flow, small_fs, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:  # noqa: ANN001
    _source(pg_source, source_db, 100_000)
    fs = small_fs("device-b", 8 * MiB)
    devices = {"a": tmp_path / "dev-a", "b": fs.path / "volume"}
    volumes = [{"name": n, "path": str(p)} for n, p in devices.items()]
    flow = make_flow(volume=None, volumes=volumes, settings={"max_part_bytes": "256kB", "workers": 2})
    run = flow.bulkmig("plan")
    assert run.code == 0, run.text
    plan = json.loads((devices["a"] / "plan.json").read_text())
    on = {
        n: {(t["name"], p["index"]) for t in plan["tables"] for p in t["partitions"] if p["device"] == n} for n in "ab"
    }
    assert len(on["a"]) >= 4 and len(on["b"]) >= 4, on
    ballast = fs.path / "someone-elses-file"
    ballast.write_bytes(b"\0" * (fs.free() - 1 * MiB))  # device b has room for a part or two

    run = flow.bulkmig("extract")
    assert run.code == 1, run.text
    line = run.err.strip().splitlines()[-1]
    assert line.startswith(f"error: device b: the volume {devices['b']} is full: no space left on device "), line
    assert "the other devices' " in line and "rerun `bulkmig extract`" in line and "Traceback" not in run.text, line
    # Device a is complete, every part whole; device b holds only whole parts (with sidecars), no temp file.
    assert len(_sidecars(devices["a"])) == len(on["a"])
    assert len(_sidecars(devices["b"])) < len(on["b"])
    for device in devices.values():
        for sidecar in _sidecars(device):
            doc = json.loads(sidecar.read_text())
            assert sha256_file(device / doc["key"])[0] == doc["sha256"], doc["key"]
        assert list(device.rglob("*.partial")) == []

    ballast.unlink()
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    assert len(_sidecars(devices["b"])) == len(on["b"])
    for device in devices.values():
        assert flow.run("volume", "seal", str(device)).code == 0
    for step in ("volume import", "load", "validate"):
        run = flow.bulkmig(step)
        assert run.code == 0, (step, run.text)


def test_load_with_a_full_temp_dir_then_resume(
    make_flow, small_fs, pg_source, pg_target, source_db, target_db, tmp_path
) -> None:  # noqa: ANN001
    """One part is larger than the temp filesystem: load stops naming the device and the part's size."""
    _source(pg_source, source_db, 40_000)
    flow = make_flow(settings={"max_part_bytes": "64MB", "workers": 2})  # table t is one ~2 MB part
    for step in ("plan", "extract"):
        run = flow.bulkmig(step)
        assert run.code == 0, run.text
    assert flow.run("volume", "seal", str(flow.volume)).code == 0
    assert flow.bulkmig("volume import").code == 0
    big = max(flow.volume.glob("data/*/*/part-*.parquet"), key=lambda p: p.stat().st_size)
    fs = small_fs("tmp", 512 * 1024)
    assert big.stat().st_size > fs.free()
    flow.env["TMPDIR"] = str(fs.path)

    run = flow.bulkmig("load")
    assert run.code == 1, run.text
    line = run.err.strip().splitlines()[-1]
    assert "no space left on device bulkmig-" in line and f"mounted at {fs.path}" in line, line
    assert f"{big.stat().st_size:,} bytes needed" in line and "rerun" in line and "Traceback" not in run.text, line

    fs.resize(64 * MiB)
    run = flow.bulkmig("load")
    assert run.code == 0, run.text
    assert flow.bulkmig("validate").code == 0
    assert [p for p in fs.path.rglob("*") if p.is_file()] == []  # the temp dir is cleaned up
