"""``mrzero scan BUNDLE``: a digital-twin scan of a bundle's .seq file, streamed to an MRD server."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mrzero.commands.arguments import COILS, PORT, SNR
from mrzero.commands.output_checks import check_output_dir, check_server
from mrzero.commands.tls_options import add_tls_options, tls_of
from mrzero.server.limits import DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger("mrzero.scan")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="digital-twin scan: simulate a bundle's .seq on a phantom, stream it to a server",
        description="Simulate BUNDLE's Pulseq file (read through the Pulseq import, as a scanner reads it) "
        "on a phantom, build MRD raw data with a realistic header (encoding, coils, noise-adjust "
        "scans, counters from the file's labels, the Pulseq signature), stream it to an MRD "
        "server and save what comes back. The server must have the bundle deployed "
        "(mrzero deploy BUNDLE --store STORE; mrzero serve --bundle-store STORE). "
        "See docs/scanner.md.",
    )
    p.add_argument(
        "bundle",
        help="bundle directory, or the name of a shipped bundle (learned_gre, rare96_sar, t1_mapping)",
    )
    p.add_argument("--phantom", default="brain", help="brain, sparse or a NIfTI file (default %(default)s)")
    p.add_argument("--coils", type=COILS, default=1, help="receive coils (default %(default)s)")
    p.add_argument(
        "--noise",
        type=SNR,
        default=None,
        metavar="SNR",
        help="add noise at this SNR (RMS signal / noise std) with noise-adjust scans (default: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of the simulation: auto, cpu, cuda, cuda:N (default cpu)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="MRD server address (default %(default)s)")
    p.add_argument("--port", type=PORT, default=DEFAULT_PORT, help="MRD server port (default %(default)s)")
    p.add_argument("--config", default=None, help="pipeline name (default: the bundle's pipeline)")
    p.add_argument(
        "--parameters",
        default=None,
        metavar="JSON",
        help='JSON parameters for the pipeline, e.g. \'{"output": "float"}\'',
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("scan-output"),
        help="directory for raw.h5 (what was sent), images.h5 and png/ (default %(default)s)",
    )
    add_tls_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.core.bundles import BundleError
    from mrzero.core.device import select_device
    from mrzero.sequences.digital_twin import bundle_dir, twin_scan
    from mrzero.twin_demo import save_scan, stream_scan

    try:
        bundle = bundle_dir(args.bundle)
    except BundleError as exc:
        print(f"mrzero scan: {exc}", file=sys.stderr)
        return 2
    check_output_dir(args.out)  # both before minutes of simulation
    check_server(args.host, args.port)
    try:
        parameters = json.loads(args.parameters) if args.parameters else None
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError("--parameters must be a JSON object")
        scan = twin_scan(
            bundle,
            phantom=args.phantom,
            n_coils=args.coils,
            snr=args.noise,
            seed=args.seed,
            device=select_device(args.device, source="--device"),  # a DeviceError is a ValueError
            progress=True,
        )
        reply = stream_scan(
            scan,
            args.host,
            args.port,
            config=args.config,
            parameters=parameters,
            progress=True,
            tls=tls_of(args),
        )
    except (BundleError, ValueError, OSError) as exc:
        print(f"mrzero scan: {exc}", file=sys.stderr)
        return 2
    saved = save_scan(scan, reply, args.out)
    for error in reply.errors:
        print(error)
    for label, path in saved.items():
        print(f"{label + ':':14s}{path}")
    return 1 if reply.errors or not reply.images else 0
