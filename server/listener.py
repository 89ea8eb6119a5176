"""The TCP listener: accepts clients, enforces the connection limit, runs one thread each."""

from __future__ import annotations

import itertools
import logging
import signal
import socket
import threading

from pipelines import registry
from server.connection import Connection
from server.limits import Settings
from server.processes import warm_up
from server.protocol import close_message, serialized

log = logging.getLogger(__name__)


class Server:
    """An MRD streaming server. ``start()`` listens in a background thread; ``serve_forever()``
    blocks; ``stop()`` stops accepting and waits for running connections."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        #: Connections accepted so far (served or refused).
        self.accepted = 0

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        assert self._listener is not None, "server not started"
        host, port = self._listener.getsockname()[:2]
        return host, port

    def bind(self) -> None:
        import importlib

        for module in self.settings.pipeline_modules:
            importlib.import_module(module)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        warm_up(self.settings.pipeline_modules)
        self._listener = socket.create_server((self.settings.host, self.settings.port), backlog=64)
        limits = self.settings.limits
        log.info("MRD server listening on %s:%d; journal in %s; pipelines: %s (default %s); "
                 "max %d connections, message limit %d MB, pipeline timeout %g s, idle timeout %g s, "
                 "memory limit %d MB, %d thread(s) per pipeline", *self.address, self.settings.data_dir,
                 ", ".join(registry.names()), registry.DEFAULT_PIPELINE, limits.max_connections,
                 limits.max_message_bytes >> 20, limits.pipeline_timeout_s, limits.idle_timeout_s,
                 limits.memory_limit_bytes >> 20, self.settings.worker_threads())

    def start(self) -> Server:
        """Bind and accept in a background thread; returns at once."""
        self.bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="mrd accept", daemon=True)
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or SIGTERM (service managers, ``docker stop``), then stop gracefully."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.bind()
        try:
            self._accept_loop()
        except KeyboardInterrupt:
            log.info("stopping: no new connections; waiting up to 30 s for running ones")
        finally:
            self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number = next(self._numbers)
            self.accepted = number
            with self._lock:
                self._threads = {t for t in self._threads if t.is_alive()}
                busy = len(self._threads) >= self.settings.limits.max_connections
                if not busy:
                    thread = threading.Thread(target=self._serve, args=(sock, peer, number),
                                              name=f"connection {number}", daemon=True)
                    self._threads.add(thread)
                    thread.start()
            if busy:
                threading.Thread(target=self._refuse, args=(sock, peer), daemon=True).start()

    def _serve(self, sock: socket.socket, peer: tuple[str, int], number: int) -> None:
        Connection(sock, peer, self.settings, number).run()

    def _refuse(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Answer error + close, then drain what the client still sends (closing a socket with
        unread data would reset it and could discard the error text before the client reads it)."""
        limit = self.settings.limits.max_connections
        log.warning("refusing %s:%d: %d connections already running (limit)", *peer[:2], limit)
        try:
            sock.settimeout(5)
            sock.sendall(serialized(f"ERROR: server busy: {limit} connections already running; "
                                    "try again later") + close_message())
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(1 << 16):
                pass
        except OSError:
            pass
        sock.close()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until no connection is running (journals closed); False if ``timeout_s`` passed."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
        return not any(thread.is_alive() for thread in threads)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting; wait up to ``timeout_s`` for running connections to finish."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout_s)
