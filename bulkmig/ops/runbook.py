"""`bulkmig runbook`: a Markdown runbook for this task, with the transfer calculator filled in.

Measured numbers (compression of a sample of each big table, the read rate of that sample, the source's
WAL/binlog growth over a short window) say where and when they were measured; every other rate is an
estimate and says so.  Every command in the steps is the exact command for this task file, in a
``sh`` block of its own, so a test (and an operator) can run them as printed.
"""

from __future__ import annotations

import io
import shlex
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq

from bulkmig.config.task import Task, parse_size
from bulkmig.core import layout
from bulkmig.core.log import human_bytes
from bulkmig.engines import foreign_source
from bulkmig.ops.calculator import Transfer, calculate, human_seconds
from bulkmig.targets import target_class, target_for

SAMPLE_ROWS = 20_000
BIG_TABLES = 3  # tables sampled for compression, largest first
# Estimates, used where nothing was measured; each is printed as an estimate.
EST_COMPRESSION = 0.35
EST_EXTRACT = 100e6  # B/s
EST_IMPORT = 400e6
EST_LOAD = 80e6
EST_REPLAY = 5e6


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def inventory(task: Task) -> list[dict[str, Any]]:
    """The selected tables from the source catalog (PostgreSQL): rows (planner estimate), heap and TOAST bytes."""
    from bulkmig.engines.postgres import reflect
    from bulkmig.engines.postgres.connect import connect
    from bulkmig.fullload.plan import _selected

    with connect(task.source, autocommit=True) as conn:
        found = _selected(task, reflect.list_tables(conn))
        sizes = dict(
            (oid, (heap, toast))
            for oid, heap, toast in conn.execute(
                "SELECT c.oid, pg_relation_size(c.oid), coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)"
                " FROM pg_class c WHERE c.oid = ANY(%s)",
                ([s.oid for s in found],),
            )
        )
        counts = {}
        for s in found:  # planner estimates are -1/0 before ANALYZE: count small tables exactly
            if s.table.estimated_rows <= 0:
                schema, name = s.table.schema, s.table.name
                sql = 'SELECT count(*) FROM "{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))
                counts[s.oid] = conn.execute(sql).fetchone()[0]
    out = []
    for s in found:
        heap, toast = sizes.get(s.oid, (0, 0))
        counted = s.oid in counts
        out.append(
            {
                "table": s.table.qualified,
                "schema": s.table.schema,
                "name": s.table.name,
                "rows": int(counts[s.oid] if counted else s.table.estimated_rows),
                "rows_how": "counted" if counted else "estimated",
                "heap_bytes": int(heap),
                "lob_bytes": int(toast),
                "keyless": not s.table.primary_key,
            }
        )
    return sorted(out, key=lambda t: -(t["heap_bytes"] + t["lob_bytes"]))


def inventory_foreign(task: Task, source: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The selected tables of a MySQL/MariaDB or SQLite source (the catalog's row and size estimates) and
    the schema conversion's summary lines: what `bulkmig convert` would say, so the runbook names what needs
    action before anything is extracted."""
    from bulkmig.convert import convert, summary_lines
    from bulkmig.core.catalog import ACTION

    catalog, _ = source.open_catalog(task)
    names = [(catalog.schema, t.table.name) for t in catalog.tables]
    chosen = {(sel.schema, sel.table) for sel in task.mappings.select_or_refuse(names)}
    out = []
    for ct in catalog.tables:
        if (catalog.schema, ct.table.name) not in chosen:
            continue
        t = ct.table
        out.append(
            {
                "table": t.qualified,
                "schema": t.schema,
                "name": t.name,
                "rows": int(t.estimated_rows),
                "rows_how": "estimated",
                "heap_bytes": int(t.estimated_bytes),
                "lob_bytes": 0,  # the catalog gives one size per table: LOBs are inside it
                "keyless": not t.primary_key,
            }
        )
    conversion = convert(catalog, task)
    conversion = target_for(task).convert_schema(catalog, conversion)  # a MySQL target keeps a MySQL source's DDL
    flagged: dict[str, list[str]] = {}
    for obj in conversion.report["objects"]:
        if obj["status"] == ACTION and obj["table"]:
            flagged.setdefault(obj["table"], []).append(obj["name"])
    for t in out:
        t["flagged"] = flagged.get(t["name"], [])
    return sorted(out, key=lambda t: -t["heap_bytes"]), summary_lines(conversion)


def sample_compression(task: Task, table: dict[str, Any]) -> dict[str, Any]:
    """Read up to SAMPLE_ROWS rows, write them as Parquet (zstd) in memory: the ratio and the read rate."""
    import adbc_driver_postgresql.dbapi as adbc

    from bulkmig.engines.postgres.connect import adbc_uri

    sql = 'SELECT * FROM "{}"."{}" LIMIT {}'.format(
        table["schema"].replace('"', '""'), table["name"].replace('"', '""'), SAMPLE_ROWS
    )
    started = time.monotonic()
    with adbc.connect(adbc_uri(task.source)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        data = cur.fetch_arrow_table()
    read_s = max(time.monotonic() - started, 1e-6)
    buf = io.BytesIO()
    pq.write_table(data, buf, compression="zstd")
    rows = data.num_rows
    per_row_src = (table["heap_bytes"] + table["lob_bytes"]) / max(table["rows"], 1)
    src_bytes = per_row_src * rows
    return {
        "rows": rows,
        "parquet_bytes": buf.tell(),
        "ratio": (buf.tell() / src_bytes) if src_bytes else EST_COMPRESSION,
        "read_bytes_per_second": src_bytes / read_s,
        "at": _now(),
    }


def change_rate(task: Task, seconds: float) -> dict[str, Any] | None:
    """WAL/binlog growth over ``seconds``: bytes per second, or None when the position cannot be read."""
    from bulkmig.replay import source_position

    first = source_position(task)
    t0 = time.monotonic()
    time.sleep(seconds)
    second = source_position(task)
    if first is None or second is None:
        return None
    return {"bytes_per_second": max(second - first, 0) / (time.monotonic() - t0), "window_s": seconds, "at": _now()}


def _cmd(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def steps(task: Task) -> list[dict[str, str]]:
    """Each step: title, the exact command, what done looks like, go/no-go, and what to do on failure."""
    t = str(task.path)
    vol = str(task.volume)
    out = [
        (
            "Pre-flight check",
            _cmd("bulkmig", "check", "--task", t),
            "every line PASS",
            "no FAIL line",
            "apply the fix each FAIL line names; rerun",
        ),
        (
            "Plan",
            _cmd("bulkmig", "plan", "--task", t),
            f"plan.json on {vol}; `status` shows `volume ... 0/N parts`",
            "plan printed the table count you expect",
            "fix the task file; `bulkmig plan --restart` after a change",
        ),
        (
            "Extract",
            _cmd("bulkmig", "extract", "--task", t),
            "`status`: `N/N parts extracted`",
            "every part extracted",
            "rerun the same command: it resumes; `--redo PART` for a damaged part",
        ),
        (
            "Seal",
            _cmd("bulkmig", "volume", "seal", vol),
            "`sealed ...: root hash ...`",
            "volume.json written",
            "rerun; a missing part is named: `bulkmig extract --redo` it",
        ),
        (
            "Verify before shipping",
            _cmd("bulkmig", "volume", "verify", vol),
            "report says OK",
            "no missing, extra or altered file",
            "`bulkmig extract --redo` the named parts, seal again",
        ),
        (
            "Import into the bucket",
            _cmd("bulkmig", "volume", "import", "--task", t),
            "`status`: `bucket ... imported`",
            "every object checked",
            "rerun: it resumes",
        ),
        (
            "Load",
            _cmd("bulkmig", "load", "--task", t),
            "`status`: `N/N parts loaded`",
            "every part loaded",
            "rerun: the ledger skips loaded parts",
        ),
        (
            "Validate",
            _cmd("bulkmig", "validate", "--task", t),
            "every table equal",
            "no table differs",
            "rerun `bulkmig load` if parts are missing, else investigate the named keys",
        ),
    ]
    if task.cdc:
        out += [
            (
                "Capture the changes (one pass; run it as a service with no --once)",
                _cmd("bulkmig", "capture", "--task", t, "--once"),
                "`capture: N batches ...`",
                "batches in the bucket",
                "rerun: capture resumes from its stored position",
            ),
            (
                "Replay until caught up",
                _cmd("bulkmig", "replay", "--task", t, "--until-caught-up"),
                "`replay: ... 0 batches pending`",
                "CDC lag about 0 s in `status`",
                "rerun: each batch applies once",
            ),
        ]
    out.append(("Status", _cmd("bulkmig", "status", "--task", t), "every stage done", "nothing unreadable", "-"))
    keys = ("title", "command", "done", "go", "fail")
    return [dict(zip(keys, s, strict=True)) for s in out]


def runbook(
    task: Task,
    network_mbps: float = 1000.0,
    device_capacity: str | int = "80TB",
    ship_days: float = 5.0,
    sample_seconds: float = 10.0,
) -> str:
    """The runbook text (Markdown)."""
    capacity = parse_size(device_capacity)
    source = foreign_source(task.source.engine)
    if source is None:
        tables = inventory(task)
        conversion = [
            "the schema is copied as pg_dump writes it"
            if target_class(task).capabilities.takes_pg_dump_schema
            else f"`bulkmig plan` converts the schema and writes {layout.ASSESSMENT_MD} to the volume"
        ]
    else:
        tables, conversion = inventory_foreign(task, source)
    samples = {}
    for t in tables[:BIG_TABLES] if source is None else []:  # sampled through the PostgreSQL reader only
        if t["rows"] > 0:
            samples[t["table"]] = sample_compression(task, t)
    ratios = [s["ratio"] for s in samples.values()]
    avg_ratio = sum(ratios) / len(ratios) if ratios else EST_COMPRESSION
    source_bytes = sum(t["heap_bytes"] + t["lob_bytes"] for t in tables)
    volume_bytes = sum(
        (t["heap_bytes"] + t["lob_bytes"]) * samples.get(t["table"], {}).get("ratio", avg_ratio) for t in tables
    )
    rates = [s["read_bytes_per_second"] for s in samples.values()]
    extract_rate = sum(rates) / len(rates) if rates else EST_EXTRACT
    change = change_rate(task, sample_seconds) if task.cdc or sample_seconds > 0 else None
    calc = calculate(
        Transfer(
            volume_bytes=max(volume_bytes, 1),
            network_mbps=network_mbps,
            device_capacity_bytes=capacity,
            ship_days=ship_days,
            extract_bytes_per_second=extract_rate * avg_ratio,  # volume bytes written per second
            import_bytes_per_second=EST_IMPORT,
            load_bytes_per_second=EST_LOAD,
            change_bytes_per_second=change["bytes_per_second"] if change else 0.0,
            replay_bytes_per_second=EST_REPLAY,
        )
    )
    L: list[str] = [f"# Runbook: {task.name} ({task.migration_type})", "", f"Generated {_now()} by `bulkmig runbook`."]
    L += [
        "",
        "## Inventory",
        "",
        "| table | rows | heap | LOB (TOAST) | key | volume (est.) |"
        if source is None
        else "| table | rows | data (catalog) | LOB | key | volume (est.) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for t in tables:
        ratio = samples.get(t["table"], {}).get("ratio", avg_ratio)
        L.append(
            f"| {t['table']} | {t['rows']:,} ({t['rows_how']}) | {human_bytes(t['heap_bytes'])} |"
            f" {human_bytes(t['lob_bytes']) if source is None else 'in data'} |"
            f" {'none: replay cannot match rows' if t['keyless'] else 'yes'} |"
            f" {human_bytes((t['heap_bytes'] + t['lob_bytes']) * ratio)} |"
        )
    keyless = [t["table"] for t in tables if t["keyless"]]
    flagged = [f"{t['table']} ({', '.join(t['flagged'])})" for t in tables if t.get("flagged")]
    L += [
        "",
        f"{len(tables)} tables, {human_bytes(source_bytes)} on the source; key-less: {', '.join(keyless) or 'none'}.",
        f"Tables whose conversion needs action: {'; '.join(flagged) or 'none'}.",
    ]
    L += ["", f"Schema conversion ({task.source.engine} to {task.target.engine}):", ""]
    L += [f"    {line}" for line in conversion]
    if source is not None:
        L.append(f"\nThe full assessment: `{_cmd('bulkmig', 'convert', '--task', str(task.path))}`.")
    L += ["", "Compression, measured on samples (Parquet, zstd):", ""]
    for name, s in samples.items():
        L.append(
            f"- {name}: {s['rows']:,} rows read at {s['at']}: {human_bytes(s['parquet_bytes'])} of Parquet,"
            f" ratio {s['ratio']:.2f}, read at {human_bytes(s['read_bytes_per_second'])}/s (measured)"
        )
    if not samples:
        why = "" if source is None else f" ({task.source.engine} sources are not sampled)"
        L.append(f"- nothing sampled{why}: ratio {EST_COMPRESSION} is an estimate")
    L += [
        "",
        f"Estimated volume size: **{human_bytes(volume_bytes)}**"
        + (
            f" (other tables at the mean sampled ratio {avg_ratio:.2f})."
            if samples
            else f" (every table at the estimated ratio {avg_ratio:.2f})."
        ),
    ]
    L += ["", "## Transfer calculator", ""]
    L += [
        "| path | time |",
        "|---|---:|",
        f"| network {network_mbps:g} Mbit/s at 100% | {human_seconds(calc.network_full_s)} |",
        f"| network at 80% | {human_seconds(calc.network_80_s)} |",
        f"| network at 50% | {human_seconds(calc.network_50_s)} |",
        f"| devices: extract (measured rate) | {human_seconds(calc.extract_s)} |",
        f"| devices: shipping ({ship_days:g} days, given) | {human_seconds(calc.ship_s)} |",
        f"| devices: import at {human_bytes(EST_IMPORT)}/s (estimate) | {human_seconds(calc.import_s)} |",
        f"| devices: load at {human_bytes(EST_LOAD)}/s (estimate) | {human_seconds(calc.load_s)} |",
        f"| **device path total** | **{human_seconds(calc.device_path_s)}** |",
        "",
        f"- Devices of {human_bytes(capacity)}: **{calc.devices}** (ceil of volume / capacity).",
        f"- Break-even bandwidth: **{calc.break_even_mbps:,.1f} Mbit/s**: above it, the network beats shipping.",
    ]
    if change:
        L.append(
            f"- Source change rate: {human_bytes(change['bytes_per_second'])}/s of WAL/binlog, measured over"
            f" {change['window_s']:g} s at {change['at']}; CDC backlog after the device path:"
            f" **{human_bytes(calc.cdc_backlog_bytes)}**, replayed in {human_seconds(calc.cdc_replay_s)}"
            f" at {human_bytes(EST_REPLAY)}/s (estimate)."
        )
    else:
        L.append("- Source change rate: not measurable (no position readable).")
    L += ["", "## Steps", "", "Run each command from the folder the task file's relative paths start from."]
    for i, s in enumerate(steps(task), 1):
        L += [
            "",
            f"### {i}. {s['title']}",
            "",
            "```sh",
            s["command"],
            "```",
            "",
            f"- Done: {s['done']}",
            f"- Go/no-go: {s['go']}",
            f"- On failure: {s['fail']}",
        ]
    L += [
        "",
        "Watch it: `bulkmig dashboard --task " + str(task.path) + "` (http://127.0.0.1:8787/), "
        "or Prometheus with `--metrics-port` on extract, load, capture, replay, migrate.",
    ]
    L += ["", "## Cutover checklist", ""]
    L += [
        "- [ ] writes to the source stopped (application in maintenance)",
        f"- [ ] `bulkmig cutover --task {task.path}`: replay caught up, sequences set, tables equal: GO",
        "- [ ] the application points at the target",
        "",
        "## Cleanup",
        "",
        f"- [ ] `bulkmig cleanup --task {task.path}`: drops the replication slot and the publication"
        " (a forgotten slot keeps WAL on the source until its disk fills)",
        "- [ ] a lifecycle rule expires the bucket's `volumes/` and `cdc/` prefixes once the target is accepted",
        "- [ ] the devices are wiped per the carrier's procedure",
    ]
    return "\n".join(L) + "\n"
