"""One Gadgetron connection to the external gadget: configuration, header, data, images back.

The pipeline is the external node's ``pipeline`` property (else the listener's default), looked
up in the same registry as the MRD server's config names; the other properties are the
pipeline's parameters. It starts when the header arrives and runs in the MRD server's worker
process (``mrzero.server.worker``: same isolation, memory limit and progress timeout), so the images
are those the MRD server returns for the same data. Images go back as MRD image messages while
the data still stream in.

Failures (unknown pipeline, bad configuration or header, a data type no pipeline takes, a
pipeline that fails) are logged and sent to Gadgetron as its error message; the session then
reads what Gadgetron still sends until its close and answers close. A Gadgetron that
disconnects mid-stream stops the pipeline; either way the connection ends cleanly.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from mrzero.pipelines.parameters import ParameterError
from mrzero.pipelines.registry import UnknownPipelineError, get
from mrzero.server.framing import (
    Message,
    MessageId,
    ProtocolError,
    TruncatedMessage,
    close_message,
    config_override,
    parse_header,
    parse_parameters,
)
from mrzero.server.gadgetron.wire import ACCEPTED, ExternalReader, error_message, parse_configuration
from mrzero.server.limits import Settings
from mrzero.server.session import WorkerSession, drain_and_close

log = logging.getLogger(__name__)


class ExternalSession(WorkerSession):
    """Serves one Gadgetron connection; :meth:`run` returns when it is over. A failure
    (:meth:`fail`, also :meth:`abort` after the drain timeout) goes to our log and to
    Gadgetron's as its error message."""

    _GONE_WHILE_SENDING = (logging.ERROR, "Gadgetron %s gone while sending: %s; stopping the pipeline")

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        settings: Settings,
        default_pipeline: str,
        number: int,
    ):
        super().__init__(sock, peer, settings, f"g{number:05d}", log)
        self.default_pipeline = default_pipeline
        self._rfile = sock.makefile("rb", buffering=1 << 20)
        self.parameters: dict[str, Any] = {}
        self.configured = False
        self.items = 0

    def _error_message(self, text: str) -> bytes:
        return error_message(f"mrzero external gadget: {text}")

    # -- the connection's life -------------------------------------------------------------
    def run(self) -> None:
        self.log.info("Gadgetron connected from %s", self.peer)
        self.sock.settimeout(self.limits.idle_timeout_s)
        try:
            ended = self._read_all()
        except TruncatedMessage as exc:
            ended = self._disconnected(f"inside a message ({exc})")
        except ProtocolError as exc:
            ended = "protocol error"
            self.fail(str(exc))
        except TimeoutError:
            ended = "idle timeout"
            self.fail(f"Gadgetron sent nothing for {self.limits.idle_timeout_s:g} s (idle timeout)")
        except OSError as exc:
            ended = self._disconnected(f"({exc})")
        except Exception as exc:
            log.debug("internal error", exc_info=True)
            ended = "internal error"
            self.fail(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._finish()
        self.log.info(
            "pipeline %s: %d items in, %d images out, %.2f s, ended by %s%s",
            self.pipeline or "-",
            self.items,
            self.images_sent,
            time.monotonic() - self.started,
            ended,
            f"; error: {self.failure}" if self.failure else "",
        )

    def _disconnected(self, how: str) -> str:
        self.peer_gone = True
        if self.failure is None:
            self.log.error(
                "Gadgetron %s disconnected mid-stream %s after %d data items, without a "
                "close message; pipeline %s stopped, no more images sent",
                self.peer,
                how,
                self.items,
                self.pipeline or "-",
            )
        if self.worker is not None:
            self.worker.stop()
        return "disconnect"

    def _read_all(self) -> str:
        reader = ExternalReader(self._rfile, self.limits.max_message_bytes)
        while True:
            msg = reader.next()
            if msg is None:
                if self.failure is not None:
                    return "disconnect after the error"
                return self._disconnected("between messages")
            if msg.id == MessageId.CLOSE:
                return "close"
            if self.failure is None:
                self._handle(msg)
            elif msg.is_data:
                self.items += 1  # after a failure: read on until Gadgetron's close

    def _handle(self, msg: Message) -> None:
        if msg.id == MessageId.CONFIG_TEXT:
            self._configuration(msg.text)
        elif msg.id == MessageId.HEADER:
            self._header(msg.text)
        elif msg.id == MessageId.TEXT:
            self._text(msg.text)
        elif msg.is_data:
            self._data(msg)
        else:
            self.fail(
                f"unexpected {MessageId(msg.id).name.lower()} message from Gadgetron; "
                f"this external gadget takes a configuration, a header and {ACCEPTED}"
            )

    def _configuration(self, text: str) -> None:
        if self.configured or self.header_xml is not None:
            self.fail("a second configuration, or one after the header; Gadgetron sends one, first")
            return
        self.configured = True
        self.parameters.update(parse_configuration(text))
        self.log.info("configuration properties: %s", ", ".join(sorted(self.parameters)) or "(none)")

    def _text(self, text: str) -> None:
        params = parse_parameters(text)
        if params is None or self.worker is not None:
            self.log.info("text from Gadgetron (not used): %s", text[:200])
        else:
            self.parameters.update(params)

    def _header(self, xml: str) -> None:
        if self.header_xml is not None:
            self.fail("a second MRD header; one connection carries one scan")
            return
        self.header_xml = xml
        try:
            parse_header(xml)
        except ProtocolError as exc:
            self.fail(str(exc))
            return
        self._start_pipeline()

    def _start_pipeline(self) -> None:
        name = self.parameters.get("pipeline")
        if name is not None and not isinstance(name, str):
            self.fail(f"the pipeline property must be a name, got {name!r}")
            return
        name = name or config_override(self.parameters) or self.default_pipeline
        try:
            spec = get(name)
        except UnknownPipelineError as exc:
            self.fail(str(exc))
            return
        parameters = {k: v for k, v in self.parameters.items() if k != "pipeline"}
        try:
            spec.parse(parameters)
        except ParameterError as exc:
            self.fail(str(exc))
            return
        self.pipeline = spec.name
        self.log.info("pipeline %r", spec.name)
        self._start_worker(spec.name, parameters, None)  # Settings.device is the MRD server's

    def _data(self, msg: Message) -> None:
        self.items += 1
        if self.header_xml is None:
            self.fail(f"{MessageId(msg.id).name.lower()} before the MRD header")
            return
        if self.worker is None:  # the header failed: already reported
            return
        try:
            self.worker.send(msg.wire)
        except OSError:
            pass  # the worker died or was stopped: the relay reports why

    def _pipeline_said(self, tag: str, text: str) -> None:
        if tag == "T":  # Gadgetron takes no text messages from an external gadget
            self.log.info("pipeline text: %s", text)
        elif not self.peer_gone:
            self.fail(text)

    def _finish(self) -> None:
        self._wait_for_relay()  # every image sent
        self._send(close_message())  # before reaping the worker: Gadgetron need not wait for that
        if self.worker is not None:
            self.worker.close()
        self._rfile.close()
        drain_and_close(self.sock)
