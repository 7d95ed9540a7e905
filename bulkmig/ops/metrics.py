"""Prometheus metrics (prometheus-client): derived from the status document on each scrape, plus a few
process-local counters that stages bump through :func:`count`.

Derived (right after a restart, the same on any host): ``bulkmig_parts_total{stage,state}``,
``bulkmig_rows_total{stage}``, ``bulkmig_bytes_total{stage}``, ``bulkmig_cdc_lag_seconds``,
``bulkmig_cdc_lag_changes``, ``bulkmig_cdc_lag_bytes``, ``bulkmig_replayed_changes_total``,
``bulkmig_table_rows_total{table,op}``.  Process-local: ``bulkmig_errors_total{kind}`` and whatever a
stage counts.  A scrape that cannot read some state reports ``bulkmig_status_up 0`` instead of failing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=False)
_COUNTERS: dict[str, Counter] = {}
_LOCK = threading.Lock()


def count(name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to the process-local counter ``bulkmig_<name>_total``; a no-op cost when unscraped."""
    with _LOCK:
        metric = _COUNTERS.get(name)
        if metric is None:
            metric = Counter(f"bulkmig_{name}", f"bulkmig {name.replace('_', ' ')}", sorted(labels), registry=REGISTRY)
            _COUNTERS[name] = metric
    (metric.labels(**labels) if labels else metric).inc(amount)


class StatusCollector(Collector):
    """Turns the status document into metric families on every scrape."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self.build = build

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("bulkmig_status_up", "1 when the status document could be built")
        try:
            doc = self.build()
        except Exception:  # noqa: BLE001 - a scrape reports, it does not fail
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        parts = CounterMetricFamily("bulkmig_parts", "parts per stage that reached a state", labels=["stage", "state"])
        tables = doc.get("tables", [])
        for stage, field in (("extract", "parts_on_volume"), ("import", "parts_in_bucket"), ("load", "parts_loaded")):
            parts.add_metric([stage, "done"], sum(t[field] for t in tables))
        parts.add_metric(["plan", "planned"], sum(t["parts"] for t in tables))
        yield parts
        rows = CounterMetricFamily("bulkmig_rows", "rows per stage", labels=["stage"])
        rows.add_metric(["load"], sum(t["full_load_rows"] for t in tables))
        yield rows
        size = CounterMetricFamily("bulkmig_bytes", "bytes per stage", labels=["stage"])
        for s in doc.get("stages", []):
            if s.get("bytes") is not None:
                size.add_metric([s["name"]], s["bytes"])
        yield size
        changes = CounterMetricFamily("bulkmig_table_changes", "replayed changes per table", labels=["table", "op"])
        for t in tables:
            for op in ("inserts", "updates", "deletes", "ddls"):
                changes.add_metric([f"{t['schema']}.{t['table']}", op], t[op])
        yield changes
        cdc = doc.get("cdc")
        if cdc:
            replayed = CounterMetricFamily("bulkmig_replayed_changes", "changes applied to the target by replay")
            replayed.add_metric([], cdc.get("applied_changes") or 0)
            yield replayed
            for name, key, help_ in (
                ("bulkmig_cdc_lag_seconds", "lag_seconds", "age of the last applied source commit"),
                ("bulkmig_cdc_lag_changes", "lag_changes", "captured changes not applied yet"),
                ("bulkmig_cdc_lag_bytes", "lag_bytes", "source WAL/binlog bytes not applied yet"),
            ):
                if cdc.get(key) is not None:
                    g = GaugeMetricFamily(name, help_)
                    g.add_metric([], float(cdc[key]))
                    yield g


def serve(port: int, task: Any, addr: str = "127.0.0.1") -> None:
    """Start the /metrics endpoint in a daemon thread (prometheus-client's own server)."""
    from bulkmig.ops.statusdoc import build

    REGISTRY.register(StatusCollector(lambda: build(task)))
    start_http_server(port, addr=addr, registry=REGISTRY)
