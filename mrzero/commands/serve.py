"""``mrzero serve``: run the MRD streaming reconstruction server.

The deployment options take their defaults from ``MRZERO_*`` environment variables (what the
container images, the systemd unit and the Kubernetes manifests set); the command line wins.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import sys
from pathlib import Path

from mrzero.commands.output_checks import check_output_dir
from mrzero.commands.server_options import (
    POSITIVE_SECONDS,
    SECONDS,
    add_worker_options,
    bounded,
    worker_settings,
)
from mrzero.environment import BadEnvironment, EnvOption, resolve
from mrzero.server.limits import DEFAULT_HOST, DEFAULT_PORT, MB, Limits, Settings

LOG_LEVELS = ("debug", "info", "warning", "error")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("not a host name or address")
    return text


def port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError("not a TCP port (an integer 0-65535; 0 picks a free one)")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError("not a number of seconds (0 or more)")
    return value


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address or network (e.g. 10.1.2.0/24)"
        ) from None


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    return path


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"not a log level ({', '.join(LOG_LEVELS)})")
    return text.lower()


def device(text: str) -> str:
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError("not a device (auto, cpu, cuda or cuda:N)")
    return text


def journal_prefix(text: str) -> str:
    if not _PREFIX.match(text):
        raise argparse.ArgumentTypeError(
            "not a file-name prefix (up to 100 letters, digits, '.', '_', '-', "
            "starting with a letter or digit)"
        )
    return text


ENVIRONMENT = (
    EnvOption("host", "MRZERO_HOST", host, DEFAULT_HOST),
    EnvOption("port", "MRZERO_PORT", port, DEFAULT_PORT),
    EnvOption("health_port", "MRZERO_HEALTH_PORT", port, None),
    EnvOption("data_dir", "MRZERO_DATA_DIR", Path, Settings().data_dir),
    EnvOption("bundle_store", "MRZERO_BUNDLE_STORE", Path, None),
    EnvOption("dicom_dir", "MRZERO_DICOM_DIR", Path, None),
    EnvOption("drain_timeout", "MRZERO_DRAIN_TIMEOUT", seconds, Settings().drain_timeout_s),
    EnvOption("journal_prefix", "MRZERO_JOURNAL_PREFIX", journal_prefix, None),
    EnvOption("log_level", "MRZERO_LOG_LEVEL", log_level, "info"),
    EnvOption("device", "MRZERO_DEVICE", device, "auto"),
)
_ENV = {option.dest: option for option in ENVIRONMENT}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the MRD streaming reconstruction server",
        description="Serve MRD v1 streaming clients (scanner/FIRE, mrzero send, python-ismrmrd-server "
        "clients): journal every connection's raw data, reconstruct with the pipeline its "
        "config name selects (see `mrzero pipelines`), stream images back. On SIGTERM or "
        "Ctrl-C: stop accepting, let running scans finish (--drain-timeout), then exit.",
        epilog="Options marked 'env' take their default from that environment variable (an empty "
        "one counts as unset); the command line overrides it. See docs/deployment.md.",
    )
    p.add_argument(
        "--host",
        default=None,
        type=host,
        help=_ENV["host"].help("address to bind, also of the health port; 0.0.0.0 accepts remote scanners"),
    )
    p.add_argument("--port", type=port, default=None, help=_ENV["port"].help("MRD TCP port"))
    p.add_argument(
        "--health-port",
        type=port,
        default=None,
        metavar="PORT",
        help=_ENV["health_port"].help(
            "HTTP port of /healthz, /readyz and /metrics; none: no health endpoint"
        ),
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=_ENV["data_dir"].help("directory of the raw-data journal, one MRD HDF5 file per connection"),
    )
    p.add_argument(
        "--journal-prefix",
        type=journal_prefix,
        default=None,
        metavar="PREFIX",
        help=_ENV["journal_prefix"].help(
            "start of every journal file name (e.g. the pod name), "
            "so that servers can share one journal volume"
        ),
    )
    p.add_argument(
        "--drain-timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help=_ENV["drain_timeout"].help(
            "after SIGTERM, scans in progress get this long to finish; then they end with an error"
        ),
    )
    p.add_argument(
        "--bundle-store",
        type=Path,
        default=None,
        metavar="STORE",
        help=_ENV["bundle_store"].help(
            "bundle store (mrzero deploy --store) where the MRzero "
            "pipelines find a scan's trajectory and head by bundle "
            "name or Pulseq signature"
        ),
    )
    p.add_argument(
        "--dicom-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=_ENV["dicom_dir"].help(
            "also write every returned image as DICOM (MR Image Storage) to DIR/<time>-<scan>/, "
            "e.g. for a PACS import folder"
        ),
    )
    p.add_argument(
        "--device",
        type=device,
        default=None,
        help=_ENV["device"].help(
            "torch device of the MRzero pipelines; auto: CUDA when present "
            "(a client's or bundle's 'device' still wins)"
        ),
    )
    p.add_argument(
        "--log-level",
        type=log_level,
        default=None,
        help=_ENV["log_level"].help(f"one of {', '.join(LOG_LEVELS)}; -v means debug"),
    )
    add_worker_options(
        p,
        timeout_example=", e.g. after the last acquisition",
        idle_help="disconnect a client that sends nothing for this long",
        served="connections",
    )
    d = Limits()
    p.add_argument(
        "--max-message-mb",
        type=bounded(float, 0.001, 1 << 20, "a number of MB"),
        default=d.max_message_bytes / MB,
        help="largest single message accepted, refused before allocating (default %(default)g)",
    )
    p.add_argument(
        "--max-header-kb",
        type=bounded(float, 1, 1 << 20, "a number of KB"),
        default=d.max_header_bytes / 1024,
        help="largest XML header accepted; headers are parsed in a child process with a time "
        "limit (default %(default)g)",
    )
    p.add_argument(
        "--header-timeout",
        type=POSITIVE_SECONDS,
        default=d.header_timeout_s,
        metavar="SECONDS",
        help="the config and XML header must arrive this long after connecting (default %(default)g)",
    )
    p.add_argument(
        "--min-data-rate",
        type=bounded(float, 0, 1e7, "a rate in KB/s"),
        default=d.min_data_rate / 1024,
        metavar="KB_PER_S",
        help="after the header, data must arrive at this average rate, checked once the data "
        "phase is longer than --idle-timeout; 0 = no minimum (default %(default)g)",
    )
    p.add_argument(
        "--scan-deadline",
        type=SECONDS,
        default=d.scan_deadline_s,
        metavar="SECONDS",
        help="end a connection still sending this long after it opened; 0 = none (default %(default)g)",
    )
    p.add_argument(
        "--min-free-mb",
        type=bounded(float, 0, 1 << 40, "a number of MB"),
        default=500,
        help="below this free space for the journal, /readyz is not ready and new scans are "
        "refused with an error text; 0 = no check (default %(default)g)",
    )
    p.add_argument(
        "--journal-max-gb",
        type=bounded(float, 0, 1 << 30, "a number of GB"),
        default=0,
        help="remove the oldest closed journals beyond this total; 0 = no limit (default %(default)g)",
    )
    p.add_argument(
        "--journal-keep-days",
        type=bounded(float, 0, 36500, "a number of days"),
        default=0,
        help="remove closed journals older than this; 0 = keep (default %(default)g)",
    )
    p.add_argument(
        "--journal-flush-s",
        type=bounded(float, 0.001, 60, "a number of seconds"),
        default=Settings().journal_flush_interval_s,
        metavar="SECONDS",
        help="the journal is flushed at least this often; after a crash (SIGKILL, power "
        "cut of the process) at most this interval's data are missing (default %(default)g)",
    )
    p.add_argument(
        "--journal-buffer-mb",
        type=bounded(float, 1, 1 << 20, "a number of MB"),
        default=Settings().journal_buffer_bytes / MB,
        metavar="MB",
        help="data of a connection the journal holds in memory before they are on disk; the "
        "connection waits for a slow disk beyond it (default %(default)g)",
    )
    p.add_argument(
        "--allow",
        type=network,
        action="append",
        default=[],
        metavar="CIDR",
        help="accept connections only from this network (repeatable; default: from anywhere "
        "--host reaches); others are closed before any byte is read",
    )
    p.add_argument(
        "--tls-cert",
        type=readable_file,
        default=None,
        metavar="PEM",
        help="serve MRD over TLS with this certificate chain (needs --tls-key)",
    )
    p.add_argument(
        "--tls-key", type=readable_file, default=None, metavar="PEM", help="private key of --tls-cert"
    )
    p.add_argument(
        "--fallback-pipeline",
        default=None,
        metavar="NAME",
        help="pipeline for config names that are not registered (python-ismrmrd-server's "
        "behaviour); default: an unknown name is an error",
    )
    p.set_defaults(func=run)


def _check_device(name: str) -> str | None:
    """The device for ``Settings.device`` (None for auto); ``ValueError`` if torch cannot use it."""
    from mrzero.core.device import select_device

    return None if name == "auto" else str(select_device(name, source="--device / MRZERO_DEVICE"))


def run(args: argparse.Namespace) -> int:
    import ssl

    from mrzero.pipelines.registry import UnknownPipelineError
    from mrzero.server.listener import Server

    if args.log_level is None and getattr(args, "verbose", 0):
        args.log_level = "debug"  # -v is on the command line: it beats MRZERO_LOG_LEVEL
    try:
        resolve(args, ENVIRONMENT)
        settings_device = _check_device(args.device)
    except (BadEnvironment, ValueError) as exc:
        print(f"mrzero serve: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(args.log_level.upper())
    if args.bundle_store is not None and not args.bundle_store.is_dir():
        logging.getLogger("mrzero.serve").warning(
            "bundle store %s does not exist (yet): MRzero pipelines find no bundle until "
            "`mrzero deploy BUNDLE --store %s`",
            args.bundle_store,
            args.bundle_store,
        )
    if args.dicom_dir is not None:
        check_output_dir(args.dicom_dir)  # a UsageError: one line, exit 2 (mrzero/cli.py)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("mrzero serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    limits = dict(
        max_header_bytes=int(args.max_header_kb * 1024),
        header_timeout_s=args.header_timeout,
        min_data_rate=args.min_data_rate * 1024,
        scan_deadline_s=args.scan_deadline,
    )
    settings = worker_settings(
        args,
        max_message_bytes=int(args.max_message_mb * MB),
        limits=limits,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        health_port=args.health_port,
        drain_timeout_s=args.drain_timeout,
        journal_prefix=args.journal_prefix or "",
        device=settings_device,
        min_free_bytes=int(args.min_free_mb * MB),
        journal_max_bytes=int(args.journal_max_gb * 1e9),
        journal_keep_days=args.journal_keep_days,
        journal_flush_interval_s=args.journal_flush_s,
        journal_buffer_bytes=int(args.journal_buffer_mb * MB),
        allow=tuple(args.allow),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        fallback_pipeline=args.fallback_pipeline,
        dicom_dir=args.dicom_dir,
    )
    try:
        clean = Server(settings).serve_forever()
    except (OSError, ssl.SSLError, UnknownPipelineError) as exc:  # ports taken, bad certificate...
        print(f"mrzero serve: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0 if clean else 1
