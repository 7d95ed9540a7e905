"""`bulkmig migrate`: every stage in order on one machine, and the task-level wrappers of the volume
commands (which themselves work on a bare volume or bucket URL)."""

from __future__ import annotations

import threading

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, IntegrityError
from bulkmig.core.log import Clock, Progress, human_duration, say
from bulkmig.core.store import open_store
from bulkmig.fullload.extract import extract
from bulkmig.fullload.load import load
from bulkmig.fullload.plan import load_plan_for, make_plan
from bulkmig.ops.cutover import CaptureStopped, cutover
from bulkmig.validation.validate import ValidationReport, validate
from bulkmig.volume.importer import import_volume
from bulkmig.volume.seal import seal
from bulkmig.volume.verify import verify


def import_task(task: Task, *, workers: int | None = None, progress: bool = True) -> str:
    """Import the task's sealed volume into ``<bucket>/volumes/<volume-id>/``; returns that URL."""
    volume = open_store(task.volume, task.volume_s3_options())
    plan = load_plan_for(task, volume)
    dest_url = layout.join(task.bucket, "volumes", plan.volume_id)
    bucket = open_store(dest_url, task.s3_options())
    bar = Progress("import", 0, unit="objects", rows=None) if progress else None
    report = import_volume(volume, bucket, bar.callback() if bar else None, workers=workers or task.settings.workers)
    if bar:
        bar.finish()
    say(report.render())
    return dest_url


def migrate(task: Task, *, workers: int | None = None, progress: bool = True) -> ValidationReport | None:
    """Every stage in order.  With full-load-and-cdc, capture runs in the background from the moment the
    parts are extracted, and the run ends with the cutover report (replay caught up, sequences set,
    tables equal) — stop the application's writes before it reaches that point, or rerun `cutover`.

    ``settings.validation.only`` (DMS ``ValidationOnly``): plan (which tables, which filters) and validate,
    moving nothing.  ``settings.validation.enabled`` false (DMS ``EnableValidation: false``): a full load ends
    after load, without validating (returns None); `bulkmig validate` still runs when asked.
    """
    clock = Clock()
    if task.migration_type == "cdc":
        raise ConfigError(
            "`migrate` runs a full load; migration_type cdc has none",
            "run `bulkmig capture` and `bulkmig replay --follow`, then `bulkmig cutover`",
        )
    if task.settings.validation.only:
        make_plan(task)
        clock.lap("plan")
        result = validate(task, workers=workers, progress=progress)
        took = human_duration(clock.total)
        say(f"migrate: validation only (settings.validation.only): nothing moved; done in {took}")
        return result
    plan, holder = make_plan(task, keep_snapshot=True)
    clock.lap("plan")
    try:
        extract(task, workers=workers, snapshot=plan.snapshot["name"] if holder else None, progress=progress)
        clock.lap("extract")
    finally:
        if holder is not None:
            holder.close()
    background = _BackgroundCapture(task) if task.cdc else None
    try:
        volume = open_store(task.volume, task.volume_s3_options())
        seal(volume)
        report = verify(volume)
        if not report.ok:
            raise IntegrityError("the volume does not verify after sealing", "run `bulkmig volume verify` for details")
        clock.lap("seal+verify")
        url = import_task(task, workers=workers, progress=progress)
        clock.lap("import")
        load(task, workers=workers, progress=progress)
        clock.lap("load")
        if background is not None:
            background.check()
            try:
                validation = cutover(task, abort=background.died).validation
                assert validation is not None  # cutover validates unless told not to
                result = validation
            except CaptureStopped:
                background.check()
                raise
            clock.lap("replay+cutover")
        elif task.settings.validation.enabled:
            result = validate(task, workers=workers, progress=progress)
            clock.lap("validate")
        else:
            say("migrate: not validating (settings.validation.enabled is false); run `bulkmig validate` to check")
            result = None
    finally:
        if background is not None:
            background.stop()
    say(f"migrate: done in {human_duration(clock.total)} ({clock.render()}); volume {task.volume}, bucket copy {url}")
    return result


class _BackgroundCapture:
    """`bulkmig capture` on a thread for the length of `migrate`; its first error is raised by check()."""

    def __init__(self, task: Task) -> None:
        from bulkmig.capture import capture

        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self.died = threading.Event()  # set if capture ends on an error: cutover stops waiting for it

        def run() -> None:
            try:
                capture(task, follow=True, stop=self._stop, heartbeat_interval=2.0, poll_interval=0.5)
            except BaseException as exc:  # noqa: BLE001 - raised on the main thread by check()
                self._errors.append(exc)
                self.died.set()

        self._thread = threading.Thread(target=run, name="capture", daemon=True)
        self._thread.start()
        say("migrate: capture runs in the background until cutover")

    def check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.check()
