"""A fault-injecting HTTP proxy on loopback, put in front of an S3 endpoint (moto's server) in tests.

Why a proxy and not mocks: the code under test must meet faults exactly where the network would hand
them over — inside botocore's retry loop, s3transfer's multipart machinery and urllib3's connection
pool — and it runs as a real subprocess (the CLI), where nothing can be patched.  The proxy forwards
every request unchanged (the ``Host`` header included, so SigV4 signatures stay valid) and, when the
current :class:`FaultPlan` says so, does one of:

``reset``      read ``after_bytes`` of the request body, then reset the TCP connection (RST, not FIN):
               an upload cut mid-body.  What was forwarded upstream is cut as well, so the endpoint
               never completes the request.
``status``     read the whole request (it never reaches upstream), answer ``status`` with an S3 XML
               error body (``503 SlowDown``, ``500 InternalError``, ...).
``stall``      forward the request, then hold the response for ``seconds`` before sending it (longer
               than the client's read timeout = a timed-out request that *did* happen upstream).
``drop``       forward the request and let upstream complete it, then reset the connection instead of
               answering: the client cannot know its request succeeded (idempotency of retries).
``cut``        forward the request, send the response headers and ``after_bytes`` of its body, then
               reset: a download cut mid-body.

Which requests: a :class:`Fault` matches by HTTP method and a regular expression on the request target
(path and query, e.g. ``partNumber=`` for UploadPart, ``uploads`` for CreateMultipartUpload).  Among
matching requests it lets ``skip`` pass, then fires on every ``every``-th one with ``probability`` (from
the proxy's seeded RNG), at most ``limit`` times.  Faults are checked in plan order; the first that
fires wins.  :attr:`FaultProxy.injected` counts what was injected, per fault name and kind.

Bounded: it binds 127.0.0.1 only and refuses a non-loopback upstream; bodies are streamed in 64 KiB
chunks (never buffered whole); at most ``max_connections`` client connections are served at once; every
socket has a timeout; a stall wakes up at once when the proxy stops.  Stdlib only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, Self
from urllib.parse import urlsplit

from bulkmig.testing.service import Service

FaultKind = Literal["reset", "status", "stall", "drop", "cut"]
KINDS: tuple[str, ...] = ("reset", "status", "stall", "drop", "cut")
CHUNK = 64 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Headers that describe one hop, not the request: never forwarded as they are.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
S3_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
}


@dataclass
class Fault:
    """One rule of a fault plan (see the module docstring for the kinds and the matching rules)."""

    kind: FaultKind
    method: str | None = None  # exact HTTP method (case-insensitive); None = any
    path: str | None = None  # regex searched in the request target (path + query); None = any
    skip: int = 0  # matching requests to let through before the first injection
    every: int = 1  # after that, consider every N-th matching request
    probability: float = 1.0  # chance to fire on a considered request (the proxy's seeded RNG)
    limit: int | None = 1  # most injections of this rule; None = unlimited
    after_bytes: int = 0  # reset / cut: body bytes let through first
    status: int = 503  # status: the HTTP status ...
    code: str = "SlowDown"  # ... and the S3 error code in the XML body
    seconds: float = 0.0  # stall: how long the response is held
    name: str = ""  # a label for the counts; defaults to the kind
    matched: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.every < 1 or self.skip < 0 or not 0.0 <= self.probability <= 1.0:
            raise ValueError("every >= 1, skip >= 0 and 0 <= probability <= 1")
        self.name = self.name or self.kind
        self._pattern = re.compile(self.path) if self.path else None

    def matches(self, method: str, target: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self._pattern is None or self._pattern.search(target) is not None

    def fresh(self) -> Fault:
        """The same rule with its counters at zero, to arm it again for the next stage."""
        return dataclasses.replace(self)

    def decide(self, rng: random.Random) -> bool:
        """Count one matching request and say whether to inject into it (caller holds the plan lock)."""
        self.matched += 1
        if self.limit is not None and self.injected >= self.limit:
            return False
        ordinal = self.matched - self.skip
        if ordinal <= 0 or (ordinal - 1) % self.every:
            return False
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        self.injected += 1
        return True


@dataclass(frozen=True)
class Event:
    """One injected fault, for test assertions and for a readable failure message."""

    fault: str
    kind: str
    method: str
    target: str
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    proxy: FaultProxy

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        # Bound the number of served connections: the accept loop waits for a free slot.
        self.proxy._slots.acquire()
        try:
            super().process_request(request, client_address)  # type: ignore[arg-type]
        except BaseException:
            self.proxy._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)  # type: ignore[arg-type]
        finally:
            self.proxy._slots.release()


class _Reset(Exception):
    """The handler reset the client connection on purpose; nothing more is sent on it."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as botocore expects from S3
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: a test log full of proxy lines hides the failure

    # One entry point for every method: the proxy does not care what the request means.
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = do_GET  # noqa: N815

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.proxy.socket_timeout)

    def _proxy(self) -> None:
        proxy = self.server.proxy
        method, target = self.command, self.path
        fault = proxy._choose(method, target)
        try:
            if fault is not None and fault.kind == "status":
                self._drain_body()
                proxy._record(fault, method, target)
                self._send_error(fault)
                return
            self._forward(method, target, fault)
        except _Reset:
            self.close_connection = True
        except (OSError, http.client.HTTPException):
            # The client or upstream went away: the client sees a dropped connection, as on a real network.
            self.close_connection = True
            with contextlib.suppress(_Reset):
                self._reset()

    # ------------------------------------------------------------------ request body

    def _body_chunks(self) -> Iterator[bytes]:
        """The request body as it arrives, raw (chunked framing kept, so it can be forwarded verbatim)."""
        length = self.headers.get("Content-Length")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            yield from self._raw_chunked()
        elif length:
            yield from self._body_bytes(int(length))

    def _raw_chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise OSError("client closed the connection mid-body")
            yield line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = self.rfile.readline(8192)
                    yield trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return
            yield from self._body_bytes(size + 2)  # the chunk and its CRLF

    def _body_bytes(self, left: int) -> Iterator[bytes]:
        """The next ``left`` bytes of the request body, in pieces of at most CHUNK; a client gone mid-body
        is an OSError, like every other way the connection can break."""
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise OSError("client closed the connection mid-body")
            left -= len(data)
            yield data

    def _drain_body(self) -> None:
        for _ in self._body_chunks():
            pass

    # ------------------------------------------------------------------ faults

    def _reset(self) -> None:
        """Abort the client connection with a TCP RST (SO_LINGER 0), the way a dropped link looks."""
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            # detach() + close: the makefile() wrappers would otherwise delay the real close (and the RST).
            fd = sock.detach()
            if fd >= 0:
                socket.close(fd)
        raise _Reset

    def _send_error(self, fault: Fault) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        message = S3_MESSAGES.get(fault.code, "Injected by the test proxy.")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>faultproxy</HostId></Error>"
        ).encode()
        self.send_response_only(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", request_id)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # ------------------------------------------------------------------ forwarding

    def _forward(self, method: str, target: str, fault: Fault | None) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.socket_timeout)
        try:
            upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders()
            sent = 0
            for data in self._body_chunks():
                if fault is not None and fault.kind == "reset" and sent + len(data) > fault.after_bytes:
                    upstream.send(data[: max(0, fault.after_bytes - sent)])
                    proxy._record(fault, method, target)
                    _abort(upstream)  # upstream sees the same cut: it must not complete the request
                    self._reset()
                upstream.send(data)
                sent += len(data)
            if fault is not None and fault.kind == "reset":
                # The body was shorter than after_bytes (or absent): cut before the response instead.
                proxy._record(fault, method, target)
                _abort(upstream)
                self._reset()
            response = upstream.getresponse()
            if fault is not None and fault.kind == "drop":
                with contextlib.suppress(OSError, http.client.HTTPException):
                    while response.read(CHUNK):
                        pass
                proxy._record(fault, method, target)
                self._reset()
            if fault is not None and fault.kind == "stall":
                proxy._record(fault, method, target)
                if proxy._stopping.wait(fault.seconds):
                    self._reset()
            self._relay(response, method, target, fault)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, method: str, target: str, fault: Fault | None) -> None:
        proxy = self.server.proxy
        bodiless = method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        length = response.getheader("Content-Length")
        chunked = not bodiless and length is None
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            low = name.lower()
            if low in HOP_BY_HOP or low == "transfer-encoding" or (chunked and low == "content-length"):
                continue
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if bodiless:
            return
        sent = 0
        while data := response.read(CHUNK):
            if fault is not None and fault.kind == "cut" and sent + len(data) > fault.after_bytes:
                self.wfile.write(data[: max(0, fault.after_bytes - sent)])
                proxy._record(fault, method, target)
                self._reset()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
        if fault is not None and fault.kind == "cut":
            proxy._record(fault, method, target)  # the body was shorter than after_bytes: cut at its end
            self._reset()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


def _abort(conn: http.client.HTTPConnection) -> None:
    """Reset the upstream connection too, so the server sees a broken request, not a complete one."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class FaultProxy(Service):
    """The proxy: ``with FaultProxy("http://127.0.0.1:5000", seed=7) as proxy: ... proxy.endpoint_url``.

    Starts with an empty plan (a transparent proxy); :meth:`set_plan` / :meth:`add` change it at any
    time, from any thread.  :attr:`injected` counts injections per fault name and per kind.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        seed: int = 0,
        max_connections: int = 64,
        socket_timeout: float = 120.0,
        keep_events: int = 1000,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
            raise ValueError(f"upstream must be http://<loopback>:<port>, not {upstream_url!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.socket_timeout = socket_timeout
        self.requests: Counter[str] = Counter()  # per HTTP method, everything that passed through
        self.injected: Counter[str] = Counter()  # per fault name and per kind
        self.events: deque[Event] = deque(maxlen=keep_events)
        self._rng = random.Random(seed)
        self._plan: list[Fault] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.name = f"faultproxy-{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes stalled responses
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    # ------------------------------------------------------------------ the plan

    def set_plan(self, faults: Sequence[Fault]) -> None:
        """Replace the plan (an empty sequence makes the proxy transparent again)."""
        with self._lock:
            self._plan = list(faults)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._plan.append(fault)
        return fault

    def clear(self) -> None:
        self.set_plan([])

    @property
    def plan(self) -> list[Fault]:
        with self._lock:
            return list(self._plan)

    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected[k] for k in KINDS)

    def summary(self) -> str:
        """One line per fault rule plus totals, for assertion messages."""
        with self._lock:
            rules = [f"{f.name}: {f.injected} injected of {f.matched} matching" for f in self._plan]
            return "; ".join([*rules, f"requests {dict(self.requests)}"])

    def _choose(self, method: str, target: str) -> Fault | None:
        with self._lock:
            self.requests[method] += 1
            chosen = None
            for fault in self._plan:
                if fault.matches(method, target) and fault.decide(self._rng):
                    chosen = fault  # the first rule that fires wins; later rules do not see the request
                    break
            return chosen

    def _record(self, fault: Fault, method: str, target: str) -> None:
        with self._lock:
            self.injected[fault.name] += 1
            if fault.name != fault.kind:
                self.injected[fault.kind] += 1
            self.events.append(Event(fault.name, fault.kind, method, target, time.monotonic()))
