"""The server's Prometheus metrics, served as text on the health port's ``/metrics``.

One registry per :class:`mrzero.server.listener.Server` (not the process-global default), so that
several servers in one process (tests, benchmarks) count apart. Connections update the
counters as messages arrive, so a scrape during a scan shows it in progress.
"""

from __future__ import annotations

import platform
import shutil
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no ``*_created`` timestamp series: they double the output and help nobody here

#: Why a connection's reconstruction failed (label ``kind`` of ``mrzero_pipeline_errors_total``, with
#: the label ``pipeline``, ``none`` before one was chosen); each kind is exported from the start
#: with ``pipeline="none"``, so dashboards see zeros rather than missing series.
ERROR_KINDS = (
    "protocol",  # bytes that are no valid MRD message, data before the header, a second header
    "bad_header",  # an XML header that does not parse
    "bad_config",  # a config text the server cannot run (a Gadgetron XML chain)
    "unknown_pipeline",  # a config name that is not registered
    "bad_parameters",  # a JSON parameter the pipeline does not declare, or an invalid value
    "invalid_data",  # an acquisition that fails validation (NaN, wrong size...)
    "pipeline",  # the pipeline refused its input (PipelineError)
    "bundle_missing",  # the pipeline found no deployed bundle for the scan (BundleError)
    "pipeline_crash",  # the pipeline raised anything else
    "memory",  # the worker exceeded its memory limit
    "pipeline_timeout",  # the pipeline made no progress for --timeout seconds
    "worker_died",  # the worker process ended without an answer (killed, segfault)
    "idle_timeout",  # the client sent nothing for --idle-timeout seconds
    "limit",  # a per-connection limit: header timeout, data rate, scan deadline, header size,
    # disk below --min-free-mb
    "client_gone",  # the client vanished before its images were sent
    "journal",  # the raw-data journal could not be created or written (the scan goes on)
    "drain_timeout",  # the scan was still running when the drain timeout after SIGTERM passed
    "internal",  # a bug in the server
)

#: Seconds from a scan's last acquisition to its last image: interactive scans take well under
#: a second, iterative and network reconstructions of large scans up to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Counters of one server; every method is thread-safe (prometheus_client locks)."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Counter("mrzero_connections", "MRD connections served", registry=r)
        self.refused = Counter(
            "mrzero_connections_refused",
            "MRD connections refused because --max-connections were running",
            registry=r,
        )
        self.active = Gauge("mrzero_connections_active", "MRD connections being served now", registry=r)
        self.bytes_in = Counter("mrzero_received_bytes", "Bytes received from MRD clients", registry=r)
        self.acquisitions = Counter("mrzero_acquisitions", "Acquisitions received", registry=r)
        self.images_out = Counter("mrzero_images_sent", "Images sent to clients", registry=r)
        self.errors = Counter(
            "mrzero_pipeline_errors",
            "Connection errors (a failed reconstruction, or a "
            "journal that could not be kept), by kind and pipeline",
            ["kind", "pipeline"],
            registry=r,
        )
        for kind in ERROR_KINDS:
            self.errors.labels(kind, "none")
        self.accept_errors = Counter(
            "mrzero_accept_errors",
            "accept() failures the listener backed off "
            "from (out of descriptors, buffers, memory), by errno name",
            ["errno"],
            registry=r,
        )
        self.denied = Counter(
            "mrzero_connections_denied", "Connections closed unread: the peer is outside --allow", registry=r
        )
        self.tls_failures = Counter(
            "mrzero_tls_handshake_failures", "TLS handshakes that failed or timed out", registry=r
        )
        self.journal_bytes = Counter(
            "mrzero_journal_bytes", "Data bytes flushed to raw-data journals", registry=r
        )
        self.journals_pruned = Counter(
            "mrzero_journals_pruned",
            "Closed journals removed by retention (--journal-max-gb, --journal-keep-days)",
            registry=r,
        )
        self.journals_recovered = Counter(
            "mrzero_journals_recovered",
            "Journals an earlier run left open, recovered at start from their write-ahead logs, "
            "by outcome (marked: the file held everything; rebuilt; failed: files left as they were)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("marked", "rebuilt", "failed"):
            self.journals_recovered.labels(outcome)
        if data_dir is not None:
            free = Gauge("mrzero_data_dir_free_bytes", "Free bytes on the journal's file system", registry=r)
            free.set_function(lambda: free_bytes(data_dir))
        build = Gauge(
            "mrzero_build_info",
            "Versions of this server (value 1)",
            ["version", "python", "ismrmrd"],
            registry=r,
        )
        build.labels(_version("mrzero-server"), platform.python_version(), _version("ismrmrd")).set(1)
        self.latency = Histogram(
            "mrzero_scan_latency_seconds",
            "From a scan's last acquisition to its last image (scans that gave images without error)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_files = Counter("mrzero_journal_files", "Raw-data journal files written", registry=r)
        self.draining = Gauge("mrzero_draining", "1 after SIGTERM while scans in progress finish", registry=r)

    def error(self, kind: str, pipeline: str | None = None) -> None:
        """Count one error of ``kind`` (one of :data:`ERROR_KINDS`) of a scan for ``pipeline``."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; known: {', '.join(ERROR_KINDS)}")
        self.errors.labels(kind, pipeline or "none").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def free_bytes(path: Path) -> float:
    """Free bytes for unprivileged users on ``path``'s file system (NaN where it cannot be read)."""
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return float("nan")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
