"""``mrzero send``: stream an MRD HDF5 file to an MRD server and save the images it returns."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mrzero.server.limits import DEFAULT_HOST, DEFAULT_PORT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send", help="stream an MRD HDF5 file to an MRD server, save the returned images",
        description="Stream the acquisitions and waveforms (or, if it has none, the images) of an MRD "
                    "HDF5 file to any MRD v1 server, with the file's header, and save the images that "
                    "come back. A journal written by `mrzero serve` replays with its recorded config "
                    "name and parameters unless --config/--parameters are given.")
    p.add_argument("file", type=Path, help="MRD HDF5 file (ismrmrd.Dataset layout, group 'dataset')")
    p.add_argument("--config", default=None,
                   help="pipeline (config) name; default: the journal's, else the server's default")
    p.add_argument("--parameters", default=None, metavar="JSON",
                   help="JSON text message sent before the header, "
                        "e.g. '{\"parameters\": {\"config\": \"cartesian\"}}'")
    p.add_argument("--host", default=DEFAULT_HOST, help="server address (default %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    p.add_argument("-o", "--output", type=Path, default=None, help="MRD HDF5 file for the returned images")
    p.add_argument("--png", type=Path, default=None, metavar="DIR", help="also write PNGs of the images here")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="give up when the server is silent this long (default %(default)g)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.client import send_file
    from mrzero.pipelines.image_files import write_pngs

    try:
        reply = send_file(args.file, host=args.host, port=args.port, config=args.config,
                          parameters=args.parameters, output=args.output, timeout_s=args.timeout)
    except ConnectionError as exc:
        print(f"mrzero send: cannot talk to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # missing or non-MRD file, bad --parameters
        print(f"mrzero send: {exc}", file=sys.stderr)
        return 2
    for text in reply.texts:
        print(f"server: {text}")
    if args.png is not None:
        write_pngs(reply.images, args.png)
    where = f" -> {args.output}" if args.output else ""
    print(f"{len(reply.images)} images received{where}")
    if reply.errors or not reply.closed:
        logging.getLogger("mrzero.send").error("the server reported errors or did not close cleanly")
        return 1
    return 0
