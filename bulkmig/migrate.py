"""`bulkmig migrate`: every stage in order on one machine, and the task-level wrappers of the volume
commands (which themselves work on a bare volume or bucket URL)."""

from __future__ import annotations

import time

from bulkmig import layout
from bulkmig.errors import IntegrityError
from bulkmig.extract import extract
from bulkmig.load import load
from bulkmig.log import Progress, human_duration, say
from bulkmig.plan import load_plan_for, make_plan
from bulkmig.store import open_store
from bulkmig.task import Task
from bulkmig.validate import ValidationReport, validate
from bulkmig.volume.importer import import_volume
from bulkmig.volume.seal import seal
from bulkmig.volume.verify import verify


def import_task(task: Task, *, workers: int | None = None, progress: bool = True) -> str:
    """Import the task's sealed volume into ``<bucket>/volumes/<volume-id>/``; returns that URL."""
    volume = open_store(task.volume, task.volume_s3_options())
    plan = load_plan_for(task, volume)
    dest_url = layout.join(task.bucket, "volumes", plan.volume_id)
    bucket = open_store(dest_url, task.s3_options())
    bar = Progress("import", 0) if progress else None
    report = import_volume(volume, bucket, bar.callback() if bar else None, workers=workers or task.settings.workers)
    if bar:
        bar.finish()
    say(report.render())
    return dest_url


def migrate(task: Task, *, workers: int | None = None, progress: bool = True) -> ValidationReport:
    started = time.monotonic()
    timings: list[tuple[str, float]] = []

    def step(name: str, t0: float) -> None:
        timings.append((name, time.monotonic() - t0))

    t0 = time.monotonic()
    plan, holder = make_plan(task, keep_snapshot=True)
    step("plan", t0)
    try:
        t0 = time.monotonic()
        extract(task, workers=workers, snapshot=plan.snapshot["name"] if holder else None, progress=progress)
        step("extract", t0)
    finally:
        if holder is not None:
            holder.close()
    volume = open_store(task.volume, task.volume_s3_options())
    t0 = time.monotonic()
    seal(volume)
    report = verify(volume)
    if not report.ok:
        raise IntegrityError("the volume does not verify after sealing", "run `bulkmig volume verify` for details")
    step("seal+verify", t0)
    t0 = time.monotonic()
    url = import_task(task, workers=workers, progress=progress)
    step("import", t0)
    t0 = time.monotonic()
    load(task, workers=workers, progress=progress)
    step("load", t0)
    t0 = time.monotonic()
    result = validate(task, workers=workers)
    step("validate", t0)
    total = time.monotonic() - started
    say(
        "migrate: done in "
        + human_duration(total)
        + " ("
        + ", ".join(f"{n} {s:.1f}s" for n, s in timings)
        + f"); volume {task.volume}, bucket copy {url}"
    )
    return result
