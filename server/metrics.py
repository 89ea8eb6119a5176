"""The server's Prometheus metrics, served as text on the health port's ``/metrics``.

One registry per :class:`mrzero.server.listener.Server` (not the process-global default), so that
several servers in one process (tests, benchmarks) count apart. Connections update the
counters as messages arrive, so a scrape during a scan shows it in progress.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no ``*_created`` timestamp series: they double the output and help nobody here

#: Why a connection's reconstruction failed (label ``kind`` of ``mrzero_pipeline_errors_total``);
#: each one is exported from the start, so dashboards see zeros rather than missing series.
ERROR_KINDS = (
    "protocol",          # bytes that are no valid MRD message, data before the header, a second header
    "bad_header",        # an XML header that does not parse
    "bad_config",        # a config text the server cannot run (a Gadgetron XML chain)
    "unknown_pipeline",  # a config name that is not registered
    "invalid_data",      # an acquisition that fails validation (NaN, wrong size...)
    "pipeline",          # the pipeline refused its input (PipelineError)
    "pipeline_crash",    # the pipeline raised anything else
    "memory",            # the worker exceeded its memory limit
    "pipeline_timeout",  # the pipeline made no progress for --timeout seconds
    "worker_died",       # the worker process ended without an answer (killed, segfault)
    "idle_timeout",      # the client sent nothing for --idle-timeout seconds
    "client_gone",       # the client vanished before its images were sent
    "journal",           # the raw-data journal could not be written
    "drain_timeout",     # the scan was still running when the drain timeout after SIGTERM passed
    "internal",          # a bug in the server
)

#: Seconds from a scan's last acquisition to its last image: interactive scans take well under
#: a second, iterative and network reconstructions of large scans up to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Counters of one server; every method is thread-safe (prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Counter("mrzero_connections", "MRD connections served", registry=r)
        self.refused = Counter("mrzero_connections_refused", "MRD connections refused because "
                               "--max-connections were running", registry=r)
        self.active = Gauge("mrzero_connections_active", "MRD connections being served now", registry=r)
        self.bytes_in = Counter("mrzero_received_bytes", "Bytes received from MRD clients", registry=r)
        self.acquisitions = Counter("mrzero_acquisitions", "Acquisitions received", registry=r)
        self.images_out = Counter("mrzero_images_sent", "Images sent to clients", registry=r)
        self.errors = Counter("mrzero_pipeline_errors", "Connections whose reconstruction failed, by kind",
                              ["kind"], registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.latency = Histogram("mrzero_scan_latency_seconds", "From a scan's last acquisition to its "
                                 "last image (scans that gave images without error)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.journal_files = Counter("mrzero_journal_files", "Raw-data journal files written", registry=r)
        self.draining = Gauge("mrzero_draining", "1 after SIGTERM while scans in progress finish", registry=r)

    def error(self, kind: str) -> None:
        """Count one failed reconstruction of ``kind`` (one of :data:`ERROR_KINDS`)."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; known: {', '.join(ERROR_KINDS)}")
        self.errors.labels(kind).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
