"""What an MRD connection and a Gadgetron session share: one accepted socket served by one
pipeline worker.

:class:`WorkerSession` sends under a lock and notices a peer that went away, records the first
failure and reports it to the peer once, lets the listener abort it during the drain, starts the
worker with its relay thread and relays the worker's images and log lines. The subclasses
(:class:`mrzero.server.connection.Connection`, :class:`mrzero.server.gadgetron.session.ExternalSession`) read
their own protocol and say how an error reaches their peer. :func:`drain_and_close` ends a
socket without losing the last messages (the Gadgetron session, and both listeners' refusals).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from mrzero.pipelines.dicom_folder import dicom_folder
from mrzero.server.framing import decode_wire
from mrzero.server.limits import Settings
from mrzero.server.worker import Worker

#: How long a finished session waits for its peer to close its side before closing the socket.
DRAIN_TIMEOUT_S = 5.0


def drain_and_close(sock: socket.socket, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Shut our side, read until the peer closes (closing with unread data would reset the
    connection and could discard our last messages before the peer reads them), close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout_s)
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass
    sock.close()


class _Prefixed(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['id']}] {msg}", kwargs


class WorkerSession:
    """One accepted socket whose scan a pipeline worker reconstructs; :meth:`run` (in the
    subclass) returns when it is over."""

    #: How a failed send is logged: level and message (arguments: the peer, the error).
    _GONE_WHILE_SENDING = (logging.WARNING, "client %s gone while sending: %s")

    def __init__(
        self, sock: socket.socket, peer: tuple[str, int], settings: Settings, id: str, logger: logging.Logger
    ):
        self.sock = sock
        self.peer = f"{peer[0]}:{peer[1]}"
        self.settings = settings
        self.limits = settings.limits
        self.id = id
        self.log = _Prefixed(logger, {"id": id})
        self._send_lock = threading.Lock()
        self._fail_lock = threading.Lock()
        #: The peer went away (a send failed, or it disconnected mid-stream).
        self.peer_gone = False
        self.failure: str | None = None
        #: Why another thread ended this session (:meth:`abort`), if it did.
        self.aborted: str | None = None
        self.header_xml: str | None = None
        self.pipeline: str | None = None
        self.worker: Worker | None = None
        self._relay: threading.Thread | None = None
        self.images_sent = 0
        self.started = time.monotonic()

    def run(self) -> None:
        """Serve the socket until the session is over: read, reconstruct, answer, close."""
        raise NotImplementedError

    # -- sending -------------------------------------------------------------------------
    def _send(self, wire: bytes) -> None:
        if self.peer_gone:
            return
        try:
            with self._send_lock:
                self.sock.sendall(wire)
        except OSError as exc:
            self.peer_gone = True
            level, message = self._GONE_WHILE_SENDING
            self.log.log(level, message, self.peer, exc)
            if self.worker is not None:
                self.worker.stop()

    def _error_message(self, text: str) -> bytes:
        """The message that tells the peer the reconstruction failed with ``text``."""
        raise NotImplementedError

    def _count_error(self, kind: str) -> None:
        """Count a failure of ``kind`` (``mrzero.server.metrics.ERROR_KINDS``) where the server keeps
        metrics."""

    def fail(self, text: str, kind: str = "internal") -> None:
        """End the reconstruction (not the reading) with ``text`` in our log and sent to the peer;
        only the first failure counts. ``kind`` is what the metrics count it as."""
        with self._fail_lock:
            if self.failure is not None:
                return
            self.failure = text
        self._count_error(kind)
        self.log.error("%s", text)
        self._send(self._error_message(text))
        if self.worker is not None:
            self.worker.stop()

    def abort(self, reason: str, kind: str = "drain_timeout", ended: str = "drain timeout") -> None:
        """End this session from another thread (the listener's drain timeout after SIGTERM, a
        missed deadline): the peer gets the error, the pipeline is stopped, and reading ends
        after what already arrived; then the session finishes as usual, ``ended`` by this."""
        self.aborted = ended
        self.fail(reason, kind)
        try:  # wakes the reading thread: end of stream (socket's own method: keeps a TLS session)
            socket.socket.shutdown(self.sock, socket.SHUT_RD)
        except OSError:
            pass

    def overdue(self, now: float) -> str | None:
        """Why this session missed a deadline at ``now`` (monotonic), if it did (the listener
        then aborts it)."""
        return None

    # -- the pipeline ----------------------------------------------------------------------
    def _start_worker(self, pipeline: str, parameters: dict[str, Any], device: str | None) -> None:
        """Start ``pipeline`` on the header in a worker process, and the thread that relays its output."""
        assert self.header_xml is not None
        self.worker = Worker(
            pipeline,
            self.header_xml,
            parameters,
            self.settings.pipeline_modules,
            self.limits.memory_limit_bytes,
            self.limits.pipeline_timeout_s,
            self.settings.worker_threads(),
            self.settings.bundle_store,
            device,
        )
        self._dicom = dicom_folder(self.settings.dicom_dir, self.header_xml, pipeline, self.id)
        self._relay = threading.Thread(target=self._relay_results, name=f"{self.id} relay", daemon=True)
        self._relay.start()

    def _relay_results(self) -> None:
        assert self.worker is not None
        for tag, payload in self.worker.results():
            if tag == "I":
                self._send(payload)
                if self._dicom is not None:
                    self._dicom.add(decode_wire(payload))
                self.images_sent += 1
                self._image_sent()
            elif tag == "L":
                level, _, text = payload.decode("utf-8", "replace").partition("\t")
                self.log.log(int(level), "pipeline: %s", text)
            elif tag in ("T", "E"):
                self._pipeline_said(tag, payload.decode("utf-8", "replace"))

    def _image_sent(self) -> None:
        """Called after each image the relay sent."""

    def _pipeline_said(self, tag: str, text: str) -> None:
        """A text (``tag`` T) or the error (E) of the pipeline."""
        raise NotImplementedError

    def _wait_for_relay(self) -> None:
        """End the worker's input and wait until the relay has passed on all it produced."""
        if self.worker is not None:
            self.worker.end_input()
            assert self._relay is not None
            self._relay.join()
