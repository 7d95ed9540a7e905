"""The operator's surface on a real migration: status --json against its schema, the dashboard in a real
headless browser (Debian's chromium through Selenium and chromium-driver), /metrics scraped during the run.

One full-load-and-cdc flow: the dashboard and the metrics endpoint start before plan; a stage is killed
mid-run and restarted; changes flow through capture and replay while the page's lag chart gains points.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "manifests" / "status.schema.json").read_text())
CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("BULKMIG_ARTIFACTS", ROOT / "test-artifacts"))

SOURCE_SQL = """
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.5 FROM generate_series(1, 4000) g;
CREATE TABLE events (id bigint PRIMARY KEY, account int, kind text, at timestamptz);
INSERT INTO events SELECT g, g % 4000 + 1, 'k' || g % 7, '2026-01-01'::timestamptz + g * interval '1 s'
FROM generate_series(1, 30000) g;
CREATE TABLE "Mixed Case" (k text PRIMARY KEY, v jsonb);
INSERT INTO "Mixed Case" SELECT 'k' || g, jsonb_build_object('g', g) FROM generate_series(1, 300) g;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 60) -> str:  # a scrape builds the status document: slow on a loaded machine
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback test server
        return r.read().decode()


def wait_for(predicate, timeout: float = 60, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def metric(text: str, name: str, labels: str = "") -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def browser(unavailable):  # noqa: ANN001, ANN201
    if not Path(CHROMIUM).exists() or not Path(DRIVER).exists():
        unavailable("Debian's chromium and chromium-driver are not installed (.ci/system-deps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def text_of(driver, element_id: str) -> str:  # noqa: ANN001
    """An element's text, read in one script run (the page may replace the element between two calls)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id
    )


def attribute_of(driver, element_id: str, name: str) -> str | None:  # noqa: ANN001
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.getAttribute(arguments[1]) : null",
        element_id,
        name,
    )


def page_tables(driver) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """The table rows as the page shows them, read in one script run: the page redraws its table on every
    refresh, so reading the cells one WebDriver call at a time can meet rows already replaced."""
    return driver.execute_script(
        """
        const out = {};
        for (const tr of document.querySelectorAll('#tables tbody tr')) {
          const cells = {};
          for (const td of tr.querySelectorAll('td')) cells[td.dataset.field] = td.innerText.trim();
          out[tr.dataset.table] = cells;
        }
        return out;
        """
    )


def test_dashboard_status_and_metrics_follow_a_real_migration(
    make_flow, pg_source, source_db, tmp_path, unavailable
) -> None:  # noqa: ANN001
    pg_source.execute(source_db, SOURCE_SQL)
    flow = make_flow(migration_type="full-load-and-cdc", settings={"workers": 2, "max_part_bytes": "256kB"})
    dport, mport, rport = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(
            flow.start(
                "dashboard",
                "--port",
                str(dport),
                "--interval",
                "1",
                "--metrics-port",
                str(mport),
                log=tmp_path / "dashboard.log",
            )
        )
        base = f"http://127.0.0.1:{dport}/"
        wait_for(lambda: _up(base), 30, "the dashboard to listen")
        driver = browser(unavailable)
        try:
            driver.get(base)
            # Before plan: the page loads and says so.
            wait_for(lambda: "plan" in text_of(driver, "stages"), 20, "the stages")
            # plan holds the slot's snapshot until every part is extracted: it runs beside extract.
            planner = flow.start("plan", log=tmp_path / "plan.log")
            wait_for(lambda: (flow.volume / "plan.json").exists() or planner.poll() is not None, 60, "plan")
            scrapes = {}  # /metrics after each stage: the counters of the stages done grow, the others wait
            for step in ("extract", "volume import", "load"):
                run = flow.bulkmig(step, timeout=120)
                assert run.code == 0, run.text
                if step == "extract":
                    assert planner.wait(timeout=60) == 0, (tmp_path / "plan.log").read_text()
                    seal = flow.run("volume", "seal", str(flow.volume))
                    assert seal.code == 0, seal.text
                text = get(f"http://127.0.0.1:{mport}/metrics")
                scrapes[step] = {
                    stage: metric(text, "bulkmig_parts_total", f'{{stage="{stage}",state="done"}}')
                    for stage in ("extract", "import", "load")
                } | {"rows": metric(text, "bulkmig_rows_total", '{stage="load"}')}
            planned = metric(
                get(f"http://127.0.0.1:{mport}/metrics"), "bulkmig_parts_total", '{stage="plan",state="planned"}'
            )
            assert planned is not None and planned > 3
            assert scrapes["extract"] == {"extract": planned, "import": 0, "load": 0, "rows": 0}
            assert scrapes["volume import"] == {"extract": planned, "import": planned, "load": 0, "rows": 0}
            assert scrapes["load"] == {"extract": planned, "import": planned, "load": planned, "rows": 34300}
            # A failing command leaves its one line (and fix) for the page: an unknown --redo part.
            bad = flow.bulkmig("extract", "--redo", "public.nosuch")
            assert bad.code != 0
            run = flow.bulkmig("validate")
            assert run.code == 0, run.text

            doc = json.loads(flow.bulkmig("status", "--json").out)
            jsonschema.validate(doc, SCHEMA)
            assert {t["table"] for t in doc["tables"]} == {"accounts", "events", "Mixed Case"}
            assert all(t["parts_loaded"] == t["parts"] == t["parts_on_volume"] for t in doc["tables"])
            rows = {t["table"]: t["full_load_rows"] for t in doc["tables"]}
            assert rows == {"accounts": 4000, "events": 30000, "Mixed Case": 300}
            assert sum(t["parts"] for t in doc["tables"]) > 3  # events is split into several parts
            assert doc["validation"]["equal"] is True and doc["errors"][0]["command"] == "extract"
            text = flow.bulkmig("status").out
            assert "public.events: replicating" in text and "30,000 rows" in text and "validate  equal" in text

            # The page shows every table with the numbers status --json gives.
            def page_matches() -> bool:
                shown = page_tables(driver)
                return all(
                    f"public.{t['table']}" in shown
                    and shown[f"public.{t['table']}"]["full_load_rows"] == f"{t['full_load_rows']:,}"
                    and shown[f"public.{t['table']}"]["parts_loaded"] == f"{t['parts_loaded']}/{t['parts']}"
                    and shown[f"public.{t['table']}"]["validation_state"] == "equal"
                    for t in doc["tables"]
                )

            wait_for(page_matches, 30, "the page to show status --json's numbers")
            assert "nosuch" in text_of(driver, "errors")

            # CDC: capture follows; replay follows with its own /metrics; a change burst, a capture crash.
            procs.append(flow.start("capture", log=tmp_path / "capture.log"))
            procs.append(flow.start("replay", "--follow", "--metrics-port", str(rport), log=tmp_path / "replay.log"))
            wait_for(lambda: _up(f"http://127.0.0.1:{rport}/metrics"), 30, "replay's /metrics")
            before = metric(get(f"http://127.0.0.1:{rport}/metrics"), "bulkmig_replayed_changes_total") or 0
            points0 = int(attribute_of(driver, "lag-line", "data-points") or 0)
            for i in range(5):
                pg_source.execute(
                    source_db,
                    f"UPDATE accounts SET balance = balance + 1 WHERE id % 50 = {i};"
                    f"INSERT INTO events VALUES ({100000 + i}, 1, 'new', now());"
                    f"DELETE FROM events WHERE id = {i + 1}",
                )
                time.sleep(1)
                if i == 2:  # the capture stage crashes and restarts; the dashboard keeps serving
                    os.killpg(procs[1].pid, signal.SIGKILL)
                    procs[1].wait()
                    assert _up(base)
                    procs[1] = flow.start("capture", log=tmp_path / "capture.log")

            def caught_up() -> dict | None:
                d = json.loads(flow.bulkmig("status", "--json").out)
                ev = next(t for t in d["tables"] if t["table"] == "events")
                return d if ev["inserts"] == 5 and ev["deletes"] == 5 and d["cdc"]["lag_changes"] == 0 else None

            doc = wait_for(caught_up, 120, "replay to apply the changes")
            jsonschema.validate(doc, SCHEMA)
            acc = next(t for t in doc["tables"] if t["table"] == "accounts")
            assert acc["updates"] == 5 * 80 and doc["cdc"]["lag_seconds"] == 0.0
            scraped = get(f"http://127.0.0.1:{rport}/metrics")
            assert (metric(scraped, "bulkmig_replayed_changes_total") or 0) >= before + 410
            assert metric(scraped, "bulkmig_cdc_lag_seconds") == pytest.approx(0, abs=1)
            dash_metrics = get(f"http://127.0.0.1:{mport}/metrics")
            assert metric(dash_metrics, "bulkmig_parts_total", '{stage="load",state="done"}') == sum(
                t["parts"] for t in doc["tables"]
            )
            assert metric(dash_metrics, "bulkmig_errors_total") is None  # the dashboard itself failed nothing

            wait_for(
                lambda: int(attribute_of(driver, "lag-line", "data-points") or 0) > points0 + 3,
                30,
                "the lag chart to gain points",
            )
            wait_for(lambda: page_tables(driver)["public.events"]["inserts"] == "5", 30, "the page's change counts")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        finally:
            driver.quit()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except Exception:  # noqa: BLE001
                os.killpg(p.pid, signal.SIGKILL)
        flow.bulkmig("cleanup")


def _up(url: str) -> bool:
    try:
        get(url, timeout=15)
        return True
    except OSError:
        return False


def test_dashboard_refuses_an_open_address_without_a_token(make_flow) -> None:  # noqa: ANN001
    flow = make_flow()
    run = flow.bulkmig("dashboard", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert run.code != 0 and "without a token" in run.err and "--token" in run.err
