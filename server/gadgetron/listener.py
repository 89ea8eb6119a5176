"""The external gadget's TCP listener: the MRD server's accept loop, serving Gadgetron sessions.

Gadgetron opens one connection per reconstruction of a chain with an ``<external><connect>``
node; each is served by :class:`mrzero.server.gadgetron.session.ExternalSession` in its own thread,
up to the connection limit (more are answered with Gadgetron's error message and close).
"""

from __future__ import annotations

import importlib
import logging
import socket

from mrzero.pipelines import registry
from mrzero.server.framing import close_message
from mrzero.server.gadgetron.session import ExternalSession
from mrzero.server.gadgetron.wire import error_message
from mrzero.server.limits import Settings
from mrzero.server.listener import Server
from mrzero.server.processes import warm_up
from mrzero.server.session import drain_and_close

log = logging.getLogger(__name__)


class ExternalServer(Server):
    """Listens for Gadgetron; ``default_pipeline`` serves nodes without a ``pipeline`` property.

    Raises :class:`mrzero.pipelines.registry.UnknownPipelineError` at construction for an unknown
    default, so a typo fails when the service starts, not at the first scan.
    """

    def __init__(self, settings: Settings, default_pipeline: str = registry.DEFAULT_PIPELINE):
        super().__init__(settings)
        for module in settings.pipeline_modules:
            importlib.import_module(module)
        self.default_pipeline = registry.get(default_pipeline).name

    def bind(self) -> None:
        warm_up(self.settings.pipeline_modules)
        self._listener = socket.create_server((self.settings.host, self.settings.port), backlog=64)
        limits = self.settings.limits
        log.info(
            "Gadgetron external gadget listening on %s:%d; pipelines: %s (default %s); max %d "
            "connections, message limit %d MB, pipeline timeout %g s, %d thread(s) per pipeline",
            *self.address,
            ", ".join(registry.names()),
            self.default_pipeline,
            limits.max_connections,
            limits.max_message_bytes >> 20,
            limits.pipeline_timeout_s,
            self.settings.worker_threads(),
        )

    def _session(self, sock: socket.socket, peer: tuple[str, int], number: int) -> ExternalSession:
        return ExternalSession(sock, peer, self.settings, self.default_pipeline, number)

    def _refuse(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        limit = self.settings.limits.max_connections
        log.warning("refusing Gadgetron %s:%d: %d connections already running (limit)", *peer[:2], limit)
        try:
            sock.sendall(
                error_message(f"mrzero external gadget busy: {limit} connections already running")
                + close_message()
            )
        except OSError:
            pass
        drain_and_close(sock)
