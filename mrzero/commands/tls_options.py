"""The client TLS options ``mrzero send`` and ``mrzero scan`` share (servers started with
``mrzero serve --tls-cert``)."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path


def add_tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS to the server (mrzero serve --tls-cert), trusting the system's CAs",
    )
    p.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="trust this CA bundle or the server's self-signed certificate; implies --tls",
    )


def tls_of(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client TLS context the options ask for; None for plain TCP. ``OSError``/``ssl.SSLError``
    for an unreadable --tls-ca."""
    from mrzero.client import tls_context

    if args.tls_ca is None and not args.tls:
        return None
    return tls_context(args.tls_ca)
