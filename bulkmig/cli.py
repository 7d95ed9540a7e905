"""The `bulkmig` command: parses, calls one library function, renders.  One error handler.

Every failure bulkmig expects becomes one line on stderr, ``error: <what> — <what to do>``, and a
documented exit code (see ``errors.py`` and the README).  ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bulkmig import __version__
from bulkmig.core.errors import EXIT_FAILED, EXIT_INTEGRITY, EXIT_INTERRUPTED, EXIT_OK, BulkmigError
from bulkmig.core.log import Progress, close_bar, open_bar, set_quiet

if TYPE_CHECKING:
    from bulkmig.core.store import Store

T = TypeVar("T")

DESCRIPTION = """\
Move a live database through a shipped Parquet volume, S3 and change replay.

stages (each resumable; `migrate` chains them on one machine):
  check            pre-flight: every connection, privilege and server setting, one line each (read-only)
  convert          MySQL/SQLite catalog -> PostgreSQL DDL + assessment report (never touches the target)
  plan             source catalog + task -> plan.json, schema and partitions on the volume
  extract          source (one snapshot) -> Parquet parts + sidecar manifests on the volume
  volume seal      volume -> volume.json with every part's sha256 and a root hash
  volume verify    volume or bucket -> a report naming every missing, extra or altered part
  volume import    volume -> bucket, each object checked against the manifest
  load             bucket -> target tables; a ledger row per loaded part
  validate         source + target -> equal or not, per table, with the differing keys
  capture          source changes -> change batches in the bucket (long-running; resumes)
  replay           change batches -> target, each in one transaction with its position
  cutover          replay caught up + sequences set + tables equal -> go / no-go
  cleanup          drop the replication slot and the publication
  export           bucket -> an AWS DMS S3 target layout (LOAD00000001.parquet, CDC files, Op column)
  status           every stage's progress at a glance, from its durable state (--json: the status document)
  runbook          this task's runbook: inventory, transfer calculator, every step's command and checks
  dashboard        a live web page of the migration (127.0.0.1:8787), read from durable state
  migrate          all of the above in order
"""


# What a dms-s3:// source (an AWS DMS S3 target's folder) is read by; the other stages need a database.
DMS_SOURCE_COMMANDS = ("load", "replay", "migrate")


def _task(args: argparse.Namespace):  # noqa: ANN202 - Task, imported lazily to keep --help fast
    from bulkmig.config.task import load_task
    from bulkmig.core.errors import ConfigError

    task = load_task(Path(args.task))
    if task.source.engine == "dms-s3" and args.command not in DMS_SOURCE_COMMANDS:
        raise ConfigError(
            f"`bulkmig {args.command}` needs a source database; {task.source.redacted()} is a DMS S3 folder",
            "a dms-s3:// source is read by `bulkmig load` (its full-load files) and `bulkmig replay` (its CDC "
            "files), or `bulkmig migrate` (both)",
        )
    return task


def cmd_convert(args: argparse.Namespace) -> int:
    from bulkmig.convert import convert, reflect_source, summary_lines, write_outputs

    task = _task(args)
    conversion = convert(reflect_source(task), task)
    out = Path(args.out) if args.out else Path(f"convert-{task.name}")
    write_outputs(conversion, out)
    for line in summary_lines(conversion):
        print(line)
    n = conversion.needs_action
    if n:
        print(f"convert: {n} object{'s' if n != 1 else ''} need action: see {out / 'assessment.md'} (Needs action)")
    print(f"convert: wrote pre-data.sql, post-data.sql, assessment.md, assessment.json to {out}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from bulkmig.ops.check import check

    report = check(_task(args))
    print(report.to_json() if args.json else report.render())
    if not report.ok:
        names = ", ".join(r.name for r in report.failed)
        print(
            f"error: {len(report.failed)} check{'s' if len(report.failed) != 1 else ''} failed ({names}) — "
            "apply the fix each FAIL line names, then rerun bulkmig check",
            file=sys.stderr,
        )
    return report.exit_code


def cmd_plan(args: argparse.Namespace) -> int:
    from bulkmig.capture.start import start_cdc_stream
    from bulkmig.fullload.plan import make_plan

    task = _task(args)
    if task.migration_type == "cdc":
        started = start_cdc_stream(task)
        print("plan: change stream started" if started else "plan: the change stream already exists")
        return EXIT_OK
    make_plan(task, force=args.force)
    return EXIT_OK


def _on_workers(args: argparse.Namespace) -> dict[str, Any]:
    """The options every stage that spreads parts over workers takes alike (extract, import, load, validate):
    how many workers, where they run (``--executor``, ``--scheduler``), and a progress bar unless ``--quiet``."""
    return {"workers": args.workers, "executor": args.executor, "scheduler": args.scheduler, "progress": not args.quiet}


def cmd_extract(args: argparse.Namespace) -> int:
    from bulkmig.fullload.extract import extract

    extract(_task(args), agent=args.agent, redo=args.redo, not_consistent=args.not_consistent, **_on_workers(args))
    return EXIT_OK


def _walk_volume(args: argparse.Namespace, stage: str, walk: Callable[[Store, Any], T]) -> tuple[Store, T]:
    """``walk`` (seal or verify) over the volume ``args.volume`` names, with an objects bar unless --quiet."""
    from bulkmig.core.store import open_store

    store = open_store(args.volume, _s3_options(args))
    bar = Progress(stage, 0, unit="objects", rows=None) if not args.quiet else None
    result = walk(store, bar.callback() if bar else None)
    if bar:
        bar.finish()
    return store, result


def cmd_seal(args: argparse.Namespace) -> int:
    from bulkmig.volume.seal import seal

    store, manifest = _walk_volume(args, "seal", seal)
    print(f"sealed {store.url}: {len(manifest.files)} files, root hash {manifest.root_hash}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from bulkmig.volume.verify import verify

    _, report = _walk_volume(args, "verify", verify)
    print(report.to_json() if args.json else report.render())
    return EXIT_OK if report.ok else EXIT_INTEGRITY


def cmd_import(args: argparse.Namespace) -> int:
    from bulkmig.ops.migrate import import_task

    import_task(_task(args), device=args.device, path=args.path, **_on_workers(args))
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    from bulkmig.dms.read import is_dms_source, load_dms
    from bulkmig.fullload.load import load

    task = _task(args)
    if is_dms_source(task):  # an AWS DMS S3 target's folder: its LOAD files, with the same ledger
        load_dms(task, progress=not args.quiet)
        return EXIT_OK
    load(task, **_on_workers(args))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from bulkmig.validation.validate import validate

    report = validate(_task(args), raise_on_difference=False, repair=args.repair, **_on_workers(args))
    if args.json:
        print(report.to_json())
    if not report.equal:
        from bulkmig.core.errors import NotEqual

        bad = [t.table for t in report.tables if not t.equal]
        raise NotEqual(
            f"{len(bad)} of {len(report.tables)} tables differ: {', '.join(bad[:10])}", "see the report above"
        )
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from bulkmig.dms.changes import replay_dms
    from bulkmig.dms.read import is_dms_source, load_dms
    from bulkmig.ops.migrate import migrate

    task = _task(args)
    if is_dms_source(task):  # nothing to plan or extract: the DMS files are loaded, then their changes applied
        if task.full_load:
            load_dms(task, progress=not args.quiet)
        if task.cdc:
            replay_dms(task)
        return EXIT_OK
    migrate(task, workers=args.workers, progress=not args.quiet)
    return EXIT_OK


def _stop_on_signals() -> threading.Event:
    """SIGTERM (systemd, kill) stops a long-running stage between batches, like Ctrl-C does."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def cmd_capture(args: argparse.Namespace) -> int:
    from bulkmig.capture import capture
    from bulkmig.cdc.position import parse_lsn

    stop = _stop_on_signals()
    until = parse_lsn(args.until) if args.until else None
    task = _task(args)
    if task.migration_type == "cdc":
        from bulkmig.capture.start import start_cdc_stream

        start_cdc_stream(task)
    if not args.quiet:
        open_bar(Progress("capture", 0, unit="batches", rows="changes"))
    try:
        report = capture(task, follow=not args.once, until_pos=until, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        close_bar("capture")
    print(json.dumps(report.to_dict(), default=str) if args.json else _capture_line(report))
    return EXIT_OK


def _capture_line(report: Any) -> str:
    return (
        f"capture: {report.batches} batches, {report.transactions} transactions, {report.changes} changes "
        f"({report.changes_per_second:,.0f}/s); captured through {report.captured_through}"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from bulkmig.dms.changes import replay_dms
    from bulkmig.dms.read import is_dms_source
    from bulkmig.replay import replay

    stop = _stop_on_signals()
    task = _task(args)
    if not args.quiet:
        open_bar(Progress("replay", 0, unit="batches", rows="changes"))
    try:
        if is_dms_source(task):  # an AWS DMS S3 target's CDC files, one batch each, in file-name order
            report = replay_dms(task, follow=args.follow, stop=stop)
        else:
            report = replay(
                task,
                follow=args.follow,
                until_caught_up=args.until_caught_up,
                stop=stop,
                skip_drift_check=args.skip_drift_check,
            )
    finally:
        close_bar("replay")
    print(
        f"replay: {report.batches} batches, {report.changes} changes ({report.changes_per_second:,.0f}/s); "
        f"applied through {report.applied_pos} (batch {report.applied_seq}); {report.pending} batches pending"
    )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from bulkmig.dms.write import export_dms

    export_dms(
        _task(args),
        args.to,
        Path(args.settings) if args.settings else None,
        before_image_prefix=args.before_image_prefix,
        before_image_suffix=args.before_image_suffix,
        progress=not args.quiet,
    )
    return EXIT_OK


def cmd_cutover(args: argparse.Namespace) -> int:
    from bulkmig.ops.cutover import cutover

    cutover(_task(args), timeout=args.timeout, check=not args.no_validate)
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    from bulkmig.ops.cutover import cleanup

    cleanup(_task(args), delete_from_bucket=args.delete_batches)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from bulkmig.ops.status import render
    from bulkmig.ops.statusdoc import build

    doc = build(_task(args))
    print(json.dumps(doc, indent=1, default=str) if args.json else render(doc))
    return EXIT_OK


def cmd_runbook(args: argparse.Namespace) -> int:
    from bulkmig.ops.runbook import runbook

    text = runbook(
        _task(args),
        network_mbps=args.network,
        device_capacity=args.device_capacity,
        ship_days=args.ship_days,
        sample_seconds=args.sample_seconds,
    )
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"runbook: wrote {args.out}")
    else:
        print(text)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os

    from bulkmig.ops.dashboard import serve

    token = args.token or os.environ.get("BULKMIG_DASHBOARD_TOKEN") or None
    serve(
        _task(args),
        host=args.host,
        port=args.port,
        token=token,
        interval=args.interval,
        ready=lambda url: print(f"dashboard: {url}" + (" (add ?token=<your token>)" if token else ""), flush=True),
    )
    return EXIT_OK


def _start_metrics(args: argparse.Namespace) -> None:
    """``--metrics-port``: serve /metrics for the task in a background thread while the command runs."""
    port = getattr(args, "metrics_port", None)
    if port is not None:
        from bulkmig.ops.metrics import serve

        serve(port, _task(args))


def _record_error(args: argparse.Namespace, exc: BulkmigError) -> None:
    """Keep the failure for `status --json` and the dashboard (never fails the command further)."""
    from bulkmig.ops.metrics import count

    count("errors", kind=type(exc).__name__)
    if getattr(args, "task", None) and args.command not in ("status", "dashboard", "runbook"):
        try:
            from bulkmig.core.records import record_error

            record_error(_task(args), args.command, exc.message, exc.hint, type(exc).__name__)
        except BulkmigError:
            pass  # the task file itself is the problem: nothing to record it against


def _s3_options(args: argparse.Namespace):  # noqa: ANN202
    from bulkmig.core.store import S3Options

    sse, key = getattr(args, "s3_sse", None), getattr(args, "s3_kms_key_id", None)
    return S3Options(endpoint_url=args.s3_endpoint_url, region=args.s3_region, sse=sse, kms_key_id=key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkmig", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"bulkmig {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
        task: bool = True,
        parent: argparse._SubParsersAction | None = None,
    ) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name, help=help_, description=help_)
        if task:
            p.add_argument("--task", required=True, metavar="TASK.yaml", help="the task file")
        p.set_defaults(func=func)
        return p

    p = add("check", cmd_check, "check connections, privileges and server settings; changes nothing")
    p.add_argument("--json", action="store_true", help="print the checks as a JSON list")
    p = add("convert", cmd_convert, "write the PostgreSQL DDL and the assessment report for a MySQL/SQLite source")
    p.add_argument("--out", metavar="DIR", help="where to write the four files (default: ./convert-<task name>)")
    p = add("plan", cmd_plan, "write plan.json, the schema and the partitions onto the volume")
    p.add_argument(
        "--restart",
        "--force",
        dest="force",
        action="store_true",
        help="discard the plan and parts already on the volume and plan again (after the task's inputs changed)",
    )
    p = add("extract", cmd_extract, "extract the planned parts onto the volume (resumes)")
    p.add_argument("--workers", type=int, help="parallel readers (default: settings.workers)")
    p.add_argument("--agent", metavar="I/N", help="take only this agent's share of the parts, e.g. 2/4")
    p.add_argument(
        "--executor", choices=("local", "dask"), help="where parts are read: local threads or a Dask cluster"
    )
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler (default: settings.scheduler)")
    p.add_argument(
        "--redo",
        nargs="+",
        metavar="PART",
        help="re-extract these parts (as `volume verify` names them, or schema.table[:N]) even if present",
    )
    p.add_argument(
        "--not-consistent",
        action="store_true",
        help="read in a new snapshot when the plan's (or the other parts') snapshot is gone",
    )

    vol = sub.add_parser("volume", help="seal, verify or import a volume").add_subparsers(
        dest="volume_command", metavar="ACTION", required=True
    )
    for name, func, help_ in (
        ("seal", cmd_seal, "write volume.json: every file's sha256 and a root hash"),
        ("verify", cmd_verify, "recompute every checksum; name what is missing, extra or altered"),
    ):
        p = add(name, func, help_, task=False, parent=vol)
        p.add_argument("volume", metavar="VOLUME_OR_S3_URL")
        p.add_argument("--s3-endpoint-url", help="S3 endpoint (a device's S3 adapter, moto, LocalStack)")
        p.add_argument("--s3-region", help="S3 region")
        if name == "verify":
            p.add_argument("--json", action="store_true", help="print the report as JSON")
        else:  # seal writes volume.json: on a device's S3 adapter, encrypted like everything else there
            p.add_argument("--s3-sse", choices=("AES256", "aws:kms"), help="server-side encryption of volume.json")
            p.add_argument("--s3-kms-key-id", help="the KMS key for --s3-sse aws:kms")
    p = add("import", cmd_import, "copy the sealed volume into the bucket, checking every object", parent=vol)
    p.add_argument("--workers", type=int, help="parallel uploads")
    p.add_argument(
        "--device", metavar="NAME", help="several devices (volumes:): import this one (default: every one here)"
    )
    p.add_argument("--path", metavar="PATH_OR_S3_URL", help="where --device is mounted now, if not at its task path")
    p.add_argument("--executor", choices=("local", "dask"), help="where files are copied: local threads or Dask")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler (default: settings.scheduler)")

    p = add("load", cmd_load, "load the imported volume from the bucket into the target (resumes)")
    p.add_argument("--workers", type=int, help="parallel loaders")
    p.add_argument(
        "--executor", choices=("local", "dask"), help="where parts are loaded: local threads or a Dask cluster"
    )
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler (default: settings.scheduler)")
    p = add("validate", cmd_validate, "compare every selected table between source and target")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("local", "dask"), help="where tables are compared: local threads or Dask")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler (default: settings.scheduler)")
    p.add_argument("--json", action="store_true", help="also print the report as JSON on stdout")
    p.add_argument(
        "--repair",
        action="store_true",
        help="PostgreSQL source and target: re-copy the differing rows from the source (one transaction per"
        " table), then compare them again",
    )
    p = add("capture", cmd_capture, "stream committed source changes to the bucket as change batches (resumes)")
    p.add_argument("--once", action="store_true", help="one pass up to the source's current position, then stop")
    p.add_argument("--until", metavar="LSN", help="stop once everything up to this source position is captured")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p = add("replay", cmd_replay, "apply the change batches to the target, each batch in one transaction")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--follow", action="store_true", help="keep applying new batches until stopped")
    how.add_argument(
        "--until-caught-up", action="store_true", help="return once the source's position at start is applied"
    )
    p.add_argument(
        "--skip-drift-check",
        action="store_true",
        help="accept the schema drift of the batch replay stopped at, after applying it on the target by hand",
    )
    p = add("cutover", cmd_cutover, "wait for replay to catch up, set sequences, print the go/no-go report")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for replay to catch up")
    p.add_argument("--no-validate", action="store_true", help="skip the table comparison")
    p = add("cleanup", cmd_cleanup, "drop the replication slot and the publication on the source")
    p.add_argument("--delete-batches", action="store_true", help="also delete the stream's batches from the bucket")
    p = add("export", cmd_export, "write the full load and the change batches as AWS DMS's S3 target writes them")
    p.add_argument("--format", choices=("dms",), required=True, help="dms: the AWS DMS S3 target layout")
    p.add_argument("--to", required=True, metavar="s3://BUCKET/FOLDER", help="where (DMS's BucketName/BucketFolder)")
    p.add_argument("--settings", metavar="S3SETTINGS.json", help="the DMS S3 endpoint settings (default: DMS's)")
    p.add_argument(
        "--before-image-prefix",
        metavar="PREFIX",
        help="add the key's old values as columns PREFIX<key> (DMS add-before-image-columns, pk-only; e.g. BI_)",
    )
    p.add_argument("--before-image-suffix", default="", metavar="SUFFIX", help="suffix of the before-image columns")
    p = add("status", cmd_status, "the whole migration at a glance: parts, capture and replay lag")
    p.add_argument("--json", action="store_true", help="print the status document (manifests/status.schema.json)")
    p = add("migrate", cmd_migrate, "plan, extract, seal, import, load and validate on this machine")
    p.add_argument("--workers", type=int)
    p = add("runbook", cmd_runbook, "write this task's runbook: inventory, transfer calculator, steps, cutover")
    p.add_argument("--network", type=float, default=1000.0, metavar="MBPS", help="link speed in Mbit/s")
    p.add_argument("--device-capacity", default="80TB", metavar="SIZE", help="usable space per device")
    p.add_argument("--ship-days", type=float, default=5.0, metavar="N", help="days a device is in transit")
    p.add_argument("--sample-seconds", type=float, default=10.0, help="window to measure the source's change rate")
    p.add_argument("-o", "--out", metavar="RUNBOOK.md", help="write to this file instead of stdout")
    p = add("dashboard", cmd_dashboard, "serve a live web page of the migration, read from durable state")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --token")
    p.add_argument("--token", help="required on a non-loopback address (or BULKMIG_DASHBOARD_TOKEN)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples of the state")
    for name in ("extract", "load", "capture", "replay", "migrate", "dashboard"):
        sub.choices[name].add_argument(
            "--metrics-port", type=int, metavar="PORT", help="serve Prometheus /metrics on 127.0.0.1:PORT"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    set_quiet(args.quiet)
    try:
        _start_metrics(args)
        return args.func(args)
    except BulkmigError as exc:
        _record_error(args, exc)
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted — rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into one line
        if args.debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"error: unexpected {type(exc).__name__}: {first} — rerun with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_FAILED


def run() -> None:
    """The ``bulkmig`` console script and ``python -m bulkmig``: :func:`main`, then an exit that pyarrow's
    native teardown cannot turn into an abort (``bulkmig.core.process``)."""
    from bulkmig.core.process import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
