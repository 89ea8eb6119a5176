"""The TCP listener: accepts clients, enforces the connection limit, runs one thread each.

It also owns what a service manager sees: the metrics, liveness and readiness (served by
``mrzero.server.health`` on the health port) and the graceful stop. The accept loop survives
what the operating system runs out of (descriptors, buffers, memory): it backs off, logs,
counts and retries. Peers outside ``--allow`` are closed before a byte is read; with
``--tls-cert`` every connection is TLS. A watchdog thread ends connections that miss their
deadlines (header timeout, minimum data rate, scan deadline) and runs journal retention.
On SIGTERM (or Ctrl-C) the server stops accepting (readiness turns false), lets the scans in
progress finish for up to the drain timeout, ends the remaining ones with an error text
(``Connection.abort``), waits until every journal is closed, and returns.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from mrzero.pipelines import registry
from mrzero.server.connection import Connection
from mrzero.server.framing import close_message, serialized
from mrzero.server.health import HealthServer
from mrzero.server.limits import Settings
from mrzero.server.memory_budget import cgroup_memory_limit, over_budget
from mrzero.server.metrics import Metrics, free_bytes
from mrzero.server.processes import forkserver_alive, warm_up
from mrzero.server.recovery import recover_all
from mrzero.server.retention import JournalDirectory
from mrzero.server.session import DRAIN_TIMEOUT_S, WorkerSession, drain_and_close
from mrzero.server.tls_bridge import tls_bridge

log = logging.getLogger(__name__)

#: After the drain timeout, the connections ended by the server get this long to close their journals.
ABORT_GRACE_S = 30.0
#: accept() errors that mean "out of a resource for now": the loop backs off and retries.
RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: accept() errors about one connection that went away before it was accepted: retried at once.
TRANSIENT_ERRNOS = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR)
BACKOFF_S = (0.01, 1.0)
#: How often the watchdog checks deadlines; journal retention runs every RETENTION_EVERY_S.
WATCH_EVERY_S = 0.25
RETENTION_EVERY_S = 60.0
T = TypeVar("T")


def _listen(what: str, make: Callable[[], T]) -> T:
    """``make()``; an ``OSError`` (port taken, address not local) names the port it was for."""
    try:
        return make()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on the {what}: {exc.strerror or exc}") from None


class Server:
    """An MRD streaming server. ``start()`` listens in a background thread; ``serve_forever()``
    blocks until SIGTERM/Ctrl-C; ``stop()`` stops accepting and drains running connections."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._connections: dict[int, WorkerSession] = {}
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._stopping = threading.Event()
        #: Set by a second stop signal: end the drain now.
        self._hurry = threading.Event()
        #: Whether a stop signal (SIGTERM, Ctrl-C) has come: the next one sets :attr:`_hurry`.
        self._stop_signalled = False
        self._accept_thread: threading.Thread | None = None
        self._health: HealthServer | None = None
        self.metrics = Metrics(settings.data_dir)
        self.journals = JournalDirectory(
            settings.data_dir,
            settings.journal_prefix,
            settings.journal_max_bytes,
            settings.journal_keep_days,
            self.metrics.journals_pruned.inc,
        )
        self._tls: ssl.SSLContext | None = None
        #: Connections accepted so far (served or refused).
        self.accepted = 0

    def _recover_journals(self) -> None:
        """Before accepting connections: recover this server's journals that an earlier run did
        not close, from their write-ahead logs (``mrzero.server.recovery``); logged and counted."""
        recovered, failed = recover_all(self.settings.data_dir, self.settings.journal_prefix)
        for result in recovered:
            self.metrics.journals_recovered.labels(result.how).inc()
        self.metrics.journals_recovered.labels("failed").inc(len(failed))
        if recovered or failed:
            log.warning(
                "journals left open by an earlier run: %d recovered from their write-ahead logs, "
                "%d could not be (`mrzero journal recover` retries)",
                len(recovered),
                len(failed),
            )

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        assert self._listener is not None, "server not started"
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def health_address(self) -> tuple[str, int] | None:
        """The health endpoint's (host, port); None without ``Settings.health_port``."""
        return self._health.address if self._health is not None else None

    def bind(self) -> None:
        import importlib

        for module in self.settings.pipeline_modules:
            importlib.import_module(module)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.tls_cert is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        if self.settings.fallback_pipeline is not None:
            registry.get(self.settings.fallback_pipeline)  # an unknown fallback fails at start, not at a scan
        self._recover_journals()
        self.journals.prune()
        journal = self.settings.journal_buffer_bytes
        if problem := over_budget(self.settings.limits, cgroup_memory_limit(), journal):
            log.warning("memory limits do not fit: %s", problem)
        host, port = self.settings.host, self.settings.port
        self._listener = _listen(
            f"MRD port {host}:{port}", lambda: socket.create_server((host, port), backlog=64)
        )
        warm_up(self.settings.pipeline_modules)  # clients that connect meanwhile wait in the backlog
        limits = self.settings.limits
        log.info(
            "MRD server listening on %s:%d; journal in %s; pipelines: %s (default %s); "
            "max %d connections, message limit %d MB, pipeline timeout %g s, idle timeout %g s, "
            "memory limit %d MB, %d thread(s) per pipeline",
            *self.address,
            self.settings.data_dir,
            ", ".join(registry.names()),
            registry.DEFAULT_PIPELINE,
            limits.max_connections,
            limits.max_message_bytes >> 20,
            limits.pipeline_timeout_s,
            limits.idle_timeout_s,
            limits.memory_limit_bytes >> 20,
            self.settings.worker_threads(),
        )

    def start(self) -> Server:
        """Bind, start the health endpoint if configured, and accept in a background thread;
        returns at once."""
        self.bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="mrd accept", daemon=True)
        self._accept_thread.start()
        threading.Thread(target=self._watch, name="mrd deadlines", daemon=True).start()
        if self.settings.health_port is not None:
            host, port = self.settings.host, self.settings.health_port
            self._health = _listen(f"health port {host}:{port}", lambda: HealthServer(self, host, port))
            self._health.start()
        return self

    def serve_forever(self) -> bool:
        """Serve until Ctrl-C or SIGTERM (service managers, ``docker stop``, Kubernetes), then
        drain (:meth:`stop`). True if the server stopped cleanly: the accept loop did not fail,
        and every connection ended with its journal closed."""
        main = threading.current_thread() is threading.main_thread()
        if main:  # one handler for every stop signal: no moment where a second one is taken as the first
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._stop_signal)
        failed = False
        try:
            self.start()
            assert self._accept_thread is not None
            while self._accept_thread.is_alive():
                self._accept_thread.join(0.5)
            failed = True  # the loop ended by itself; it logged why
        except KeyboardInterrupt:
            log.info(
                "stopping: no new connections; running scans get up to %g s to finish",
                self.settings.drain_timeout_s,
            )
        return self.stop() and not failed

    def _stop_signal(self, signum: int, frame: object) -> None:
        """The first stop signal ends serving (the drain follows); a later one, even one that
        arrives before the drain has begun, cuts the drain short."""
        if not self._stop_signalled:
            self._stop_signalled = True
            raise KeyboardInterrupt
        log.warning("second stop signal (%s): ending the running scans now", signal.Signals(signum).name)
        self._hurry.set()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        backoff = BACKOFF_S[0]
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                if exc.errno in TRANSIENT_ERRNOS:
                    continue
                if exc.errno not in RESOURCE_ERRNOS:
                    log.exception("the accept loop failed; no more connections are accepted")
                    raise
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                self.metrics.accept_errors.labels(name).inc()
                log.error("accept failed (%s: %s); retrying in %g s", name, exc.strerror, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])
                continue
            backoff = BACKOFF_S[0]
            if not self._allowed(peer[0]):
                log.warning("closed a connection from %s:%d: not in --allow", *peer[:2])
                self.metrics.denied.inc()
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number = next(self._numbers)
            self.accepted = number
            try:
                self._dispatch(sock, peer, number)
            except RuntimeError as exc:  # no thread could be started (out of memory or threads)
                self.metrics.accept_errors.labels("thread").inc()
                log.error("cannot serve %s:%d: %s; closed", *peer[:2], exc)
                sock.close()

    def _dispatch(self, sock: socket.socket, peer: tuple[str, int], number: int) -> None:
        """Serve an accepted socket in a thread of its own, or refuse it when the limit is reached."""
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            busy = len(self._threads) >= self.settings.limits.max_connections
            if not busy:
                thread = threading.Thread(
                    target=self._serve, args=(sock, peer, number), name=f"connection {number}", daemon=True
                )
                thread.start()
                self._threads.add(thread)
        if busy:
            threading.Thread(target=self._refuse, args=(sock, peer), daemon=True).start()

    def _allowed(self, address: str) -> bool:
        if not self.settings.allow:
            return True
        ip = ipaddress.ip_address(address.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.settings.allow)

    def _watch(self) -> None:
        """End connections that missed a deadline; run journal retention now and then."""
        next_prune = time.monotonic() + RETENTION_EVERY_S
        while not self._stopping.wait(WATCH_EVERY_S):
            now = time.monotonic()
            with self._lock:
                connections = list(self._connections.values())
            for connection in connections:
                reason = connection.overdue(now)
                if reason is not None and connection.aborted is None:
                    connection.log.warning("deadline missed: %s", reason)
                    connection.abort(reason, "limit", ended=reason.partition(";")[0])
            if now >= next_prune:
                next_prune = now + RETENTION_EVERY_S
                self.journals.prune()

    def _session(self, sock: socket.socket, peer: tuple[str, int], number: int) -> WorkerSession:
        """What serves an accepted socket: an MRD :class:`Connection`."""
        return Connection(sock, peer, self.settings, number, self.metrics, self.journals)

    def _serve(self, sock: socket.socket, peer: tuple[str, int], number: int) -> None:
        if self._tls is not None:  # the handshake runs here, in the connection's thread
            try:
                sock = tls_bridge(sock, self._tls, True, self.settings.limits.header_timeout_s)
            except (ssl.SSLError, OSError) as exc:
                log.warning("TLS handshake with %s:%d failed: %s", *peer[:2], exc)
                self.metrics.tls_failures.inc()
                return
        connection = self._session(sock, peer, number)
        with self._lock:  # ended by ``stop`` after the drain timeout
            self._connections[number] = connection
        try:
            connection.run()
        finally:
            with self._lock:
                del self._connections[number]
            self.journals.prune()

    def _refuse(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Answer error + close, then drain what the client still sends (closing a socket with
        unread data would reset it and could discard the error text before the client reads it)."""
        limit = self.settings.limits.max_connections
        log.warning("refusing %s:%d: %d connections already running (limit)", *peer[:2], limit)
        self.metrics.refused.inc()
        try:
            if self._tls is not None:  # a TLS client can read the answer only through TLS
                sock = tls_bridge(sock, self._tls, True, DRAIN_TIMEOUT_S)
            sock.settimeout(DRAIN_TIMEOUT_S)
            sock.sendall(
                serialized(f"ERROR: server busy: {limit} connections already running; try again later")
                + close_message()
            )
        except OSError:  # ssl.SSLError too
            pass
        drain_and_close(sock)

    def _running(self) -> list[threading.Thread]:
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            return list(self._threads)

    def wait_idle(self, timeout_s: float = 60.0, interrupt: threading.Event | None = None) -> bool:
        """Wait until no connection is running (journals closed); False if ``timeout_s`` passed
        or ``interrupt`` was set first."""
        deadline = time.monotonic() + timeout_s
        while threads := self._running():
            left = deadline - time.monotonic()
            if left <= 0 or (interrupt is not None and interrupt.is_set()):
                return False
            threads[0].join(min(left, 0.2))
        return True

    def liveness(self) -> tuple[bool, str]:
        """Alive: the accept loop runs (or the server is draining) and the worker fork server lives."""
        accepting = self._accept_thread is not None and self._accept_thread.is_alive()
        if not accepting and not self._stopping.is_set():
            return False, "the accept loop is not running"
        if not forkserver_alive():
            return False, "the fork server that starts pipeline workers is not running"
        return True, "alive, draining" if self._stopping.is_set() else "alive"

    def readiness(self) -> tuple[bool, str]:
        """Ready: accepting new scans, below the connection limit, and the journal's disk above
        ``--min-free-mb``."""
        if self._stopping.is_set():
            return False, "draining: no new connections"
        if self._accept_thread is None or not self._accept_thread.is_alive():
            return False, "not accepting connections"
        minimum = self.settings.min_free_bytes
        if minimum and (free := free_bytes(self.settings.data_dir)) < minimum:
            return False, (
                f"disk nearly full: {free / 2**20:.0f} MB free in {self.settings.data_dir}, "
                f"below --min-free-mb {minimum / 2**20:.0f}"
            )
        running, limit = len(self._running()), self.settings.limits.max_connections
        if running >= limit:
            return False, f"busy: {running} of {limit} connections running"
        return True, f"ready: {running} of {limit} connections running"

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop accepting; let running connections finish for up to ``timeout_s`` (default the
        settings' drain timeout; a second SIGTERM/Ctrl-C cuts it short), then end the remaining
        ones with an error text and wait until their journals are closed. The health endpoint
        stops last. True if every connection ended."""
        timeout_s = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        self._stopping.set()
        self.metrics.draining.set(1)
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        drained = self.wait_idle(timeout_s, self._hurry)
        if not drained:
            with self._lock:
                connections = list(self._connections.values())
            log.warning("drain timeout: ending %d scan(s) still running", len(connections))
            for connection in connections:
                connection.abort(
                    f"server shutting down: the scan did not finish within the drain "
                    f"timeout of {timeout_s:g} s; the raw data received are journaled"
                )
            drained = self.wait_idle(ABORT_GRACE_S)
            if not drained:
                log.error(
                    "%d connection(s) did not end; their journals may be incomplete", len(self._running())
                )
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout_s)
        if self._health is not None:
            self._health.stop()
        log.info("stopped: %s", "every connection ended" if drained else "connections left running")
        return drained
