"""One client connection: read and journal its stream, route it to a pipeline, send images back.

The connection's thread reads messages (``mrzero.server.framing``), writes each one to the journal
*before* anything else looks at it, validates acquisitions, and forwards them to the pipeline
worker process. A relay thread sends the worker's images to the client as they come. When
the reconstruction fails (unknown pipeline, invalid data, a pipeline that raises, hangs or runs
out of memory) the client gets an ``ERROR: ...`` text at once, and the connection keeps reading
and journaling until the client closes, so the raw data of a failed reconstruction are kept
for reprocessing. Only errors that break the framing (truncated or unknown messages, a size
over the limit) end the reading. At the end: the pipeline's texts, a summary text, close.
The server's :class:`mrzero.server.metrics.Metrics` count bytes and acquisitions as they arrive.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import datetime, timezone
from typing import Any

from mrzero.pipelines import registry
from mrzero.pipelines.parameters import ParameterError
from mrzero.pipelines.registry import UnknownPipelineError, get
from mrzero.server.framing import (
    Message,
    MessageId,
    MessageReader,
    ParametersRefused,
    ProtocolError,
    close_message,
    config_override,
    parse_parameters,
    serialized,
)
from mrzero.server.header_check import scan_shape
from mrzero.server.journal import Journal
from mrzero.server.limits import Settings
from mrzero.server.metrics import Metrics, free_bytes
from mrzero.server.retention import JournalDirectory
from mrzero.server.session import WorkerSession, drain_and_close
from mrzero.server.validation import AcquisitionChecker, InvalidData

log = logging.getLogger(__name__)


class Connection(WorkerSession):
    """Serves one accepted socket; :meth:`run` returns when the connection is over. A failure
    (:meth:`fail`) ends the reconstruction, not the journal; after :meth:`abort` (the drain
    timeout) the client gets ``ERROR: reason`` and what already arrived is journaled."""

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        settings: Settings,
        number: int,
        metrics: Metrics,
        journals: JournalDirectory | None = None,
    ):
        super().__init__(sock, peer, settings, f"c{number:05d}", log)
        self.journals = journals
        # 64 KiB: small messages are read in batches, large bodies go straight into their buffer
        self._rfile = sock.makefile("rb", buffering=1 << 16)
        self.journal: Journal | None = None
        self.checker: AcquisitionChecker | None = None
        self.config_name: str | None = None
        self.parameters: dict[str, Any] = {}
        self.texts_out: list[str] = []
        self.acquisitions = 0
        self.metrics = metrics
        self._last_acquisition_at: float | None = None
        self._last_image_at: float | None = None
        self._reader: MessageReader | None = None
        #: When the header arrived (monotonic) and the bytes read by then; None before it.
        self._header_at: tuple[float, int] | None = None
        self._reading = True
        self._journal_warned = False

    def _error_message(self, text: str) -> bytes:
        return serialized(f"ERROR: {text}")

    def _count_error(self, kind: str) -> None:
        self.metrics.error("client_gone" if self.peer_gone else kind, self._pipeline_label())

    def _pipeline_label(self) -> str | None:
        """The metrics' ``pipeline`` label: a registered name only, never a client's string (a
        label per name a client makes up would grow the metrics without bound)."""
        name = self.pipeline or config_override(self.parameters) or self.config_name
        return name if name in registry.names() else None

    def overdue(self, now: float) -> str | None:
        """The header timeout, then the minimum data rate and the scan deadline, while reading."""
        if not self._reading:
            return None
        limits, elapsed = self.limits, now - self.started
        if self._header_at is None:
            if elapsed > limits.header_timeout_s:
                return (
                    f"no XML header within {limits.header_timeout_s:g} s of connecting (header timeout); "
                    "closing"
                )
            return None
        if limits.scan_deadline_s and elapsed > limits.scan_deadline_s:
            return f"the scan is still sending after {limits.scan_deadline_s:g} s (scan deadline); closing"
        since, at_header = self._header_at
        data_s = now - since
        if limits.min_data_rate and data_s > max(limits.idle_timeout_s, limits.header_timeout_s):
            assert self._reader is not None
            rate = (self._reader.bytes_read - at_header) / data_s
            if rate < limits.min_data_rate:
                return (
                    f"data arrive at {rate:.0f} bytes/s on average since the header, below the minimum "
                    f"of {limits.min_data_rate:g} bytes/s (minimum data rate); closing"
                )
        return None

    def _refuse_low_disk(self) -> bool:
        """Refuse the scan before reading anything when the journal's disk is below --min-free-mb."""
        minimum = self.settings.min_free_bytes
        if not minimum:
            return False
        free = free_bytes(self.settings.data_dir)
        if free >= minimum:
            return False
        text = (
            f"server disk nearly full: {free / 2**20:.0f} MB free for raw data, below the minimum of "
            f"{minimum / 2**20:.0f} MB (--min-free-mb); scan refused, try another server"
        )
        self.log.error("%s", text)
        self.metrics.error("limit")
        try:
            self.sock.sendall(serialized(f"ERROR: {text}") + close_message())
        except OSError:
            pass
        self._rfile.close()  # the socket closes with its last file
        drain_and_close(self.sock)
        return True

    def run(self) -> None:
        self.log.info("connection from %s", self.peer)
        self.metrics.connections.inc()
        if self._refuse_low_disk():
            return
        self.metrics.active.inc()
        self.sock.settimeout(self.limits.idle_timeout_s)
        ended = "close"
        try:
            ended = self._read_all()
        except ProtocolError as exc:
            ended = f"protocol error: {exc}"
            self.fail(f"protocol error: {exc}", "protocol")
        except TimeoutError:
            ended = "idle timeout"
            self.fail(f"no data for {self.limits.idle_timeout_s:g} s (idle timeout); closing", "idle_timeout")
        except OSError as exc:
            ended = f"client gone: {exc}"
            self.peer_gone = True
        except Exception as exc:
            self.log.exception("internal error")
            ended = f"internal error: {exc}"
            self.fail(f"internal server error: {type(exc).__name__}: {exc}", "internal")
        finally:
            self._reading = False
            self._finish(self.aborted or ended)

    def _read_all(self) -> str:
        reader = self._reader = MessageReader(self._rfile, self.limits.max_message_bytes)
        counted = 0
        while True:
            msg = reader.next()
            self.metrics.bytes_in.inc(reader.bytes_read - counted)
            counted = reader.bytes_read
            if msg is None:
                self.log.warning("stream ended without a close message; keeping what arrived")
                return "disconnect without close"
            if msg.id == MessageId.CLOSE:
                if self.header_xml is None and self.journal is None:
                    self.log.info("close before any header (dependency query)")
                return "close"
            self._handle(msg)
            if self.journal is not None and self.journal.failure is not None and not self._journal_warned:
                self._journal_failed(self.journal.failure)

    def _journal(self) -> Journal:
        if self.journal is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            name = f"{stamp}-{self.id}-{self.peer.replace(':', '-')}.h5"
            if self.settings.journal_prefix:
                name = f"{self.settings.journal_prefix}-{name}"
            path = self.settings.data_dir / name
            if self.journals is not None:
                self.journals.opened(path)
            self.journal = Journal(
                path,
                self.settings.journal_buffer_bytes,
                self.settings.journal_flush_interval_s,
                self.metrics.journal_bytes.inc,
            )
            if self.journal.failure is None:
                self.metrics.journal_files.inc()
                self.log.info("journal %s", self.journal.path)
            self.journal.set_attribute("client", self.peer)
        return self.journal

    def _journal_failed(self, reason: str) -> None:
        """Images first: the scan goes on from memory; the client, the log and the metrics hear it once."""
        self._journal_warned = True
        self.metrics.error("journal", self._pipeline_label())
        self.log.error("raw data journal failed, reconstruction goes on from memory: %s", reason)
        self._send(
            serialized(
                f"WARNING: the raw data of this scan were not (fully) kept by the server: "
                f"{reason}. Reconstruction goes on; keep the raw data on the scanner."
            )
        )

    def _handle(self, msg: Message) -> None:
        journal = self._journal()
        if msg.id == MessageId.CONFIG_FILE:
            journal.set_attribute("config", msg.text)
            self.config_name = msg.text
            self.log.info("config %r", msg.text)
        elif msg.id == MessageId.CONFIG_TEXT:
            journal.set_attribute("config_text", msg.text)
            self._config_text(msg.text.strip())
        elif msg.id == MessageId.TEXT:
            journal.text(msg.text)
            self._text(msg.text)
        elif msg.id == MessageId.HEADER:
            journal.header(msg.text)
            self._header(msg.text)
            assert self._reader is not None
            self._header_at = (time.monotonic(), self._reader.bytes_read)
        else:
            journal.data(msg.id, msg.body)
            self._data(msg)

    def _config_text(self, text: str) -> None:
        """A config text may carry JSON parameters or a bare pipeline name; an XML chain (a
        Gadgetron configuration) cannot be run here."""
        if text.startswith("{"):
            self._text(text)
        elif text and not text.startswith("<") and len(text.split()) == 1:
            self.config_name = text
            self.log.info("config %r (config text)", text)
        else:
            self.fail(
                "XML configurations (config text messages) are not supported; select a "
                "pipeline by name (config file message or JSON parameters)",
                "bad_config",
            )

    def _text(self, text: str) -> None:
        try:
            params = parse_parameters(text)
        except ParametersRefused as exc:
            self.fail(str(exc), "protocol")  # the reading and journaling go on
            return
        if params is None:
            self.log.info("client text: %s", text[:200])
        elif self.pipeline is not None:
            self.log.warning("JSON parameters after the data started are journaled but not used")
        else:
            self.parameters.update(params)
            self.log.info("JSON parameters: %s", ", ".join(sorted(params)) or "(empty)")

    def _header(self, xml: str) -> None:
        if self.header_xml is not None:
            self.fail("a second XML header arrived; one connection carries one scan", "protocol")
            return
        self.header_xml = xml
        size, limit = len(xml.encode("utf-8", "replace")), self.limits.max_header_bytes
        if size > limit:
            self.fail(
                f"the XML header has {size >> 10} KB, more than the limit of {limit >> 10} KB "
                "(--max-header-kb); refused",
                "limit",
            )
            return
        try:
            self.checker = AcquisitionChecker(scan_shape(xml, self.limits.header_parse_timeout_s))
        except ProtocolError as exc:
            self.fail(str(exc), "bad_header")

    def _data(self, msg: Message) -> None:
        index = self.acquisitions
        if msg.id == MessageId.ACQUISITION:
            self.acquisitions += 1
            self.metrics.acquisitions.inc()
            self._last_acquisition_at = time.monotonic()
        if self.failure is not None:
            return
        if self.header_xml is None:
            self.fail(f"{MessageId(msg.id).name.lower()} before the XML header", "protocol")
            return
        if self.checker is None:  # the header was malformed: already failed
            return
        if msg.id == MessageId.ACQUISITION:
            try:
                self.checker.check(index, msg.body)
            except InvalidData as exc:
                self.fail(str(exc), "invalid_data")
                return
        if self.pipeline is None and not self._start_pipeline():
            return
        if self.worker is None:  # a journal-only pipeline: the journal is all it needs
            return
        try:
            self.worker.send(msg.wire)
        except OSError:
            pass  # the worker died or was stopped: the relay reports why

    def _start_pipeline(self) -> bool:
        name = config_override(self.parameters) or self.config_name
        try:
            spec = get(name)
        except UnknownPipelineError as exc:
            fallback = self.settings.fallback_pipeline
            if fallback is None:
                self.fail(str(exc), "unknown_pipeline")
                return False
            self.log.warning("unknown pipeline %r: using the fallback pipeline %r", name, fallback)
            self.texts_out.append(
                f"WARNING: unknown pipeline {name!r}; reconstructed with the server's "
                f"fallback pipeline {fallback!r} (--fallback-pipeline)"
            )
            spec = get(fallback)
        try:  # before the worker starts: the client hears at once which parameter is wrong
            spec.parse(self.parameters)
        except ParameterError as exc:
            self.fail(str(exc), "bad_parameters")
            return False
        self.pipeline = spec.name
        self._journal().set_attribute("pipeline", spec.name)
        self.log.info(
            "pipeline %r (%s)%s",
            spec.name,
            f"config {name!r}" if name else "default: the client named none",
            "; journal only, no worker" if spec.journal_only else "",
        )
        if not spec.journal_only:
            self._start_worker(spec.name, self.parameters, self.settings.device)
        return True

    def _image_sent(self) -> None:
        self.metrics.images_out.inc()
        self._last_image_at = time.monotonic()

    def _pipeline_said(self, tag: str, text: str) -> None:
        if tag == "T":
            self.texts_out.append(text)
        else:
            assert self.worker is not None
            self.fail(text, self.worker.error_kind or "internal")

    def _finish(self, ended: str) -> None:
        if (
            self.pipeline is None
            and self.failure is None
            and self.header_xml is not None
            and self.checker is not None
        ):
            self._start_pipeline()  # a scan without data still gets its pipeline's answer
        if self.worker is not None and self.peer_gone:
            self.worker.stop()  # nobody to send images to
        self._wait_for_relay()
        if self.worker is not None:
            self.worker.close()
        for text in self.texts_out:
            self._send(serialized(text))
        elapsed = time.monotonic() - self.started
        mb = self.journal.bytes / 1e6 if self.journal else 0.0
        summary = (
            f"pipeline {self.pipeline or '-'}: {self.acquisitions} acquisitions ({mb:.1f} MB), "
            f"{self.images_sent} images, {elapsed:.2f} s"
        )
        if self.journal is not None:  # complete on disk before the client hears close
            self.journal.close(ended if self.failure is None else f"{ended}; failed: {self.failure}")
            if self.journal.failure is not None:
                if not self._journal_warned:
                    self._journal_failed(self.journal.failure)
                summary += f"; raw data journal incomplete, it holds {self.journal.held} acquisitions"
        if self.header_xml is not None:
            self._send(serialized(f"mrzero server: {summary}" + (" (failed)" if self.failure else "")))
        if self.failure is None and self._last_image_at is not None and self._last_acquisition_at is not None:
            self.metrics.latency.observe(max(0.0, self._last_image_at - self._last_acquisition_at))
        self.metrics.active.dec()  # before close: a client that then scrapes sees the connection counted
        self._send(close_message())
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._rfile.close()
        self.sock.close()
        if self.journals is not None and self.journal is not None:
            self.journals.closed(self.journal.path)
        self.log.info(
            "%s from %s, ended by %s%s",
            summary,
            self.peer,
            ended,
            f", error: {self.failure}" if self.failure else "",
        )
