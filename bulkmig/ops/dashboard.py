"""`bulkmig dashboard`: one page, served by this process with the standard library's HTTP server.

The page (``dashboard.html``, package data, no build step) polls ``/api/status`` every few seconds; that
answer is the status document (:func:`bulkmig.ops.statusdoc.build`, the one `status --json` prints)
plus the CDC lag history this process sampled.  A sampler thread rebuilds the document on an interval,
so a page load never waits on a database, and a stage that crashes or restarts only shows up as its
state changing: the dashboard reads durable state, never a stage's process.

Bound to 127.0.0.1 by default.  Any other address needs a token (``--token`` or
``BULKMIG_DASHBOARD_TOKEN``), given as ``?token=`` on the page's URL or an ``Authorization: Bearer``
header; without one the dashboard refuses to start.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlparse

from bulkmig.core.errors import ConfigError

LOCAL = ("127.0.0.1", "localhost", "::1")
HISTORY = 720  # samples of lag kept: an hour at the default 5 s interval


class Sampler:
    """Rebuilds the document every ``interval`` seconds in a daemon thread; keeps the lag history."""

    def __init__(self, build: Callable[[], dict[str, Any]], interval: float = 5.0) -> None:
        self.build = build
        self.interval = interval
        self.doc: dict[str, Any] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def sample(self) -> None:
        try:
            doc = self.build()
        except Exception as exc:  # noqa: BLE001 - the page shows it and the next sample tries again
            with self.lock:
                self.doc = {**self.doc, "sample_error": f"{type(exc).__name__}: {exc}"}
            return
        cdc = doc.get("cdc") or {}
        with self.lock:
            self.doc = doc
            if doc.get("cdc") is not None:
                self.history.append(
                    {"t": time.time(), "lag_seconds": cdc.get("lag_seconds"), "lag_changes": cdc.get("lag_changes")}
                )

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {**self.doc, "lag_history": list(self.history)}


def page() -> bytes:
    return files("bulkmig.ops").joinpath("dashboard.html").read_bytes()


def make_handler(sampler: Sampler, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: the operator's terminal is not an access log
            pass

        def _authorised(self) -> bool:
            if token is None:
                return True
            given = parse_qs(urlparse(self.path).query).get("token", [""])[0]
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[len("Bearer ") :]
            return hmac.compare_digest(given.encode(), token.encode())

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            if not self._authorised():
                self._send(401, b"token required: open the URL bulkmig dashboard printed\n", "text/plain")
                return
            route = urlparse(self.path).path
            if route == "/":
                self._send(200, page(), "text/html; charset=utf-8")
            elif route == "/api/status":
                body = json.dumps(sampler.snapshot(), default=str).encode()
                self._send(200, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


def check_bind(host: str, token: str | None) -> None:
    if host not in LOCAL and not token:
        raise ConfigError(
            f"the dashboard would listen on {host} without a token",
            "pass --token (or set BULKMIG_DASHBOARD_TOKEN), or leave --host at 127.0.0.1",
        )


def serve(
    task: Any,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str | None = None,
    interval: float = 5.0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted.  ``ready`` gets the URL to open (with the token) once listening."""
    from bulkmig.ops.statusdoc import build

    check_bind(host, token)
    sampler = Sampler(lambda: build(task), interval)
    sampler.sample()
    threading.Thread(target=sampler.run, name="dashboard-sampler", daemon=True).start()
    server = ThreadingHTTPServer((host, port), make_handler(sampler, token if host not in LOCAL else token or None))
    url = f"http://{host}:{server.server_address[1]}/" + (f"?token={token}" if token else "")
    if ready:
        ready(url)
    try:
        server.serve_forever()
    finally:
        sampler.stop.set()
        server.server_close()
