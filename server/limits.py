"""The server's settings: where it listens, where it journals, and the limits that protect it."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9002
MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Per-connection limits (SI units: seconds, bytes)."""

    #: Largest single message (header, text, acquisition, waveform, image) accepted; a larger
    #: claim is refused before any buffer is allocated.
    max_message_bytes: int = 256 * MB
    #: A pipeline that neither accepts input nor produces output for this long, while it owes
    #: either, is stopped (this bounds the reconstruction time after the last acquisition).
    pipeline_timeout_s: float = 300.0
    #: Address space a pipeline worker may add to what it had at start (RLIMIT_AS); 0 = no limit.
    #: With :attr:`max_connections` it fits the shipped 16 GiB pod: 4 x 3 GiB + the server
    #: (docs/deployment.md, "Memory").
    memory_limit_bytes: int = 3072 * MB
    #: Connections served at once; more are answered with an error text and close.
    max_connections: int = 4
    #: A client that sends nothing for this long is disconnected.
    idle_timeout_s: float = 120.0
    #: The config and the XML header must have arrived this long after the connection opened.
    header_timeout_s: float = 30.0
    #: After the header, the data must arrive at this average rate (bytes/s since the header),
    #: checked once the data phase is longer than the idle timeout; 0 = no minimum.
    min_data_rate: float = 1024.0
    #: A connection still sending this long after it opened is ended; 0 = no deadline.
    scan_deadline_s: float = 0.0
    #: Largest XML header accepted; it is parsed in a child process (``mrzero.server.header_check``).
    max_header_bytes: int = 1 * MB
    #: A header that takes longer to parse is refused.
    header_parse_timeout_s: float = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything ``mrzero serve`` configures."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path("mrd-journal")
    limits: Limits = field(default_factory=Limits)
    #: Torch intra-op threads of each pipeline worker; 0 = CPU cores / max connections (at
    #: least 1), so that concurrent scans do not oversubscribe the cores (OpenMP threads spin).
    pipeline_threads: int = 0
    #: Extra modules (chosen by the site, never by a client) that register pipelines.
    pipeline_modules: tuple[str, ...] = ()
    #: Deployed bundles (``mrzero deploy --store``) the MRzero pipelines look scans up in; None: none.
    bundle_store: Path | None = None
    #: Data a connection's journal holds in memory that are not on disk yet (queued or being
    #: written); the connection waits for the disk beyond it. A batch is at most half of it, or
    #: what arrived within the flush interval of its first item (a flush of the crash-consistent
    #: writer costs more than a write: few large batches).
    journal_buffer_bytes: int = 32 * MB  # mrzero.server.memory_budget.JOURNAL_BUFFER_BYTES
    journal_flush_interval_s: float = 0.05
    #: Start of every journal file name (e.g. the pod name), so that servers can share one volume.
    journal_prefix: str = ""
    #: Port of the health and metrics HTTP endpoint (``mrzero.server.health``) on ``host``; None: none.
    health_port: int | None = None
    #: After SIGTERM, scans in progress get this long to finish before they are ended with an error.
    drain_timeout_s: float = 90.0
    #: Torch device of the pipelines (``cpu``, ``cuda``, ``cuda:N``); None: each pipeline picks.
    device: str | None = None
    #: Below this free space in ``data_dir``, /readyz is not ready and new scans are refused; 0: no check.
    min_free_bytes: int = 0
    #: Journal retention: the oldest closed journals are removed beyond this total; 0: no limit.
    journal_max_bytes: int = 0
    #: Journal retention: closed journals older than this are removed; 0: kept forever.
    journal_keep_days: float = 0.0
    #: Client networks allowed to connect; empty: everyone.
    allow: tuple[IPNetwork, ...] = ()
    #: PEM certificate chain and key of the MRD port's TLS; None: plain TCP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Pipeline for config names that are not registered; None: an unknown name is an error.
    fallback_pipeline: str | None = None
    #: Every returned image is also written here as DICOM, one folder per scan (``pipelines/dicom.py``).
    dicom_dir: Path | None = None

    def worker_threads(self) -> int:
        """The thread count each pipeline worker uses."""
        if self.pipeline_threads > 0:
            return self.pipeline_threads
        return max(1, (os.cpu_count() or 1) // max(1, self.limits.max_connections))
