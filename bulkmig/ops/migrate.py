"""`bulkmig migrate`: every stage in order on one machine, and the task-level wrappers of the volume
commands (which themselves work on a bare volume or bucket URL)."""

from __future__ import annotations

import threading

from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, IntegrityError
from bulkmig.core.log import Clock, Progress, human_duration, say
from bulkmig.core.store import Store, open_store
from bulkmig.fullload import devices
from bulkmig.fullload.extract import extract
from bulkmig.fullload.load import load
from bulkmig.fullload.plan import load_plan_for, make_plan
from bulkmig.ops.cutover import CaptureStopped, cutover
from bulkmig.validation.validate import ValidationReport, validate
from bulkmig.volume.device import device_of
from bulkmig.volume.importer import import_volume
from bulkmig.volume.seal import seal
from bulkmig.volume.verify import verify


def import_task(
    task: Task,
    *,
    workers: int | None = None,
    progress: bool = True,
    device: str | None = None,
    path: str | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
) -> str:
    """Import the task's sealed volume into ``<bucket>/volumes/<volume-id>/``; returns that URL.

    With several devices (``volumes:``): ``device`` (at ``path`` when it is mounted elsewhere now) or,
    without one, every device of the task that is here and sealed; the others are named as not here yet."""
    if not task.devices:
        if device is not None:
            raise ConfigError("--device: this task has one volume (volume:), not several devices", "drop --device")
        volume = open_store(path or task.volume, task.volume_s3_options())
        plan = load_plan_for(task, volume)
        return _import_one(task, volume, plan.volume_id, workers, progress, executor, scheduler)
    names = [d.name for d in task.devices]
    if device is not None and device not in names:
        raise ConfigError(f"--device {device}: the task names devices {', '.join(names)}", "give one of them")
    if path is not None and device is None:
        raise ConfigError("--path needs --device (which device is mounted there)", "add --device NAME")
    chosen = [d for d in task.devices if device is None or d.name == device]
    dest_url, absent = "", []
    for each in chosen:
        volume = open_store(path or each.path, task.volume_s3_options())
        if device is None and not volume.exists(layout.VOLUME_MANIFEST):
            absent.append(each.name)
            continue
        plan = load_plan_for(task, volume)
        found = device_of(volume)
        if found is None or found.name != each.name:
            raise IntegrityError(
                f"{volume.url} is not device {each.name} of this plan "
                f"({found.label() if found else 'it holds no device marker'})",
                "point --path at device " + each.name + ", or name the device that is mounted there",
            )
        dest_url = _import_one(task, volume, plan.volume_id, workers, progress, executor, scheduler)
    if not dest_url:
        raise IntegrityError(
            f"none of the task's devices ({', '.join(names)}) is here and sealed",
            "seal each device (`bulkmig volume seal PATH`), or give --device NAME --path PATH where one is mounted",
        )
    if absent:
        say(
            f"import: device(s) {', '.join(absent)} not here or not sealed; import each as it arrives "
            f"(`bulkmig volume import --task {task.path} --device NAME [--path PATH]`)"
        )
    return dest_url


def _import_one(
    task: Task,
    volume: Store,
    volume_id: str,
    workers: int | None,
    progress: bool,
    executor: str | None = None,
    scheduler: str | None = None,
) -> str:
    dest_url = layout.join(task.bucket, "volumes", volume_id)
    bucket = open_store(dest_url, task.s3_options())
    bar = Progress("import", 0, unit="objects", rows=None) if progress else None
    on_dask = (executor or task.settings.executor) == "dask"
    report = import_volume(
        volume,
        bucket,
        bar.callback() if bar else None,
        workers=workers or task.settings.workers,
        cluster=(scheduler or task.settings.scheduler or "") if on_dask else None,
        volume_options=task.volume_s3_options(),
        bucket_options=task.s3_options(),
    )
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
        for volume in devices.stores(task, plan.devices).values():  # one volume, or each device on its own
            seal(volume)
            report = verify(volume)
            if not report.ok:
                raise IntegrityError(
                    f"{volume.url} does not verify after sealing",
                    f"run `bulkmig volume verify {volume.url}` for details",
                )
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
