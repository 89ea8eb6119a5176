"""The health and metrics HTTP endpoint on its own port (``--health-port``, ``MRZERO_HEALTH_PORT``).

* ``/healthz`` (liveness): 200 while the accept loop (or, after SIGTERM, the drain) and the
  fork server that starts pipeline workers are alive; 503 otherwise, so a supervisor restarts
  the server.
* ``/readyz`` (readiness): 200 while the server accepts scans and runs fewer than
  ``--max-connections``; 503 while busy or draining, so a load balancer sends scans elsewhere.
* ``/metrics``: :class:`mrzero.server.metrics.Metrics` in Prometheus text format.

A ``ThreadingHTTPServer`` in a daemon thread of the server process: probes never wait for a
scan, and the MRD port never sees HTTP. It cannot be held open: a request must arrive and be
answered within :data:`REQUEST_TIMEOUT_S`, and at most :data:`MAX_HANDLERS` requests are served
at once; more are closed unanswered (a probe retries) and logged.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST

from mrzero.server.metrics import Metrics

log = logging.getLogger(__name__)

#: Seconds a client has to send its request (and to read the answer).
REQUEST_TIMEOUT_S = 5.0
#: Requests served at once.
MAX_HANDLERS = 16


class Probed(Protocol):
    """What the endpoint asks the MRD server (``mrzero.server.listener.Server``)."""

    metrics: Metrics

    def liveness(self) -> tuple[bool, str]: ...

    def readiness(self) -> tuple[bool, str]: ...


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], probed: Probed):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.probed = probed
        self._slots = threading.BoundedSemaphore(MAX_HANDLERS)
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            log.warning(
                "health endpoint: %d requests already being served; closed one from %s",
                MAX_HANDLERS,
                client_address[0],
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        log.debug("health endpoint: request from %s failed", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "mrzero-health"
    timeout = REQUEST_TIMEOUT_S  # socket timeout of each request: an idle client is closed

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        path = self.path.split("?", 1)[0]
        probed = self.server.probed
        if path == "/metrics":
            self._answer(200, probed.metrics.render(), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, reason = probed.liveness() if path == "/healthz" else probed.readiness()
            self._answer(200 if ok else 503, f"{reason}\n".encode())
        else:
            self._answer(404, b"unknown path; this port serves /healthz, /readyz and /metrics\n")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (http.server's signature)
        log.debug("health %s: " + format, self.client_address[0], *args)


class HealthServer:
    """Serves the endpoints of ``probed`` on ``(host, port)`` in a background thread."""

    def __init__(self, probed: Probed, host: str, port: int):
        self._http = _HTTPServer((host, port), probed)
        self._thread = threading.Thread(target=self._http.serve_forever, name="health http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", *self.address)
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
