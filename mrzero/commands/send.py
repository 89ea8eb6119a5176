"""``mrzero send``: stream an MRD HDF5 file to an MRD server and save the images it returns."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mrzero.commands.arguments import PORT, WAIT_SECONDS
from mrzero.commands.output_checks import (
    UsageError,
    check_input_file,
    check_output_dir,
    check_output_file,
    check_server,
)
from mrzero.commands.tls_options import add_tls_options, tls_of
from mrzero.server.limits import DEFAULT_HOST, DEFAULT_PORT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send",
        help="stream an MRD HDF5 file to an MRD server, save the returned images",
        description="Stream the acquisitions and waveforms (or, if it has none, the images) of an MRD "
        "HDF5 file to any MRD v1 server, with the file's header, and save the images that "
        "come back. A journal written by `mrzero serve` replays with its recorded config "
        "name and parameters unless --config/--parameters are given.",
    )
    p.add_argument("file", type=Path, help="MRD HDF5 file (ismrmrd.Dataset layout, group 'dataset')")
    p.add_argument(
        "--config",
        default=None,
        help="pipeline (config) name; default: the journal's, else the server's default",
    )
    p.add_argument(
        "--parameters",
        default=None,
        metavar="JSON",
        help='JSON text message sent before the header, e.g. \'{"parameters": {"config": "cartesian"}}\'',
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="server address (default %(default)s)")
    p.add_argument("--port", type=PORT, default=DEFAULT_PORT, help="server port (default %(default)s)")
    p.add_argument("-o", "--output", type=Path, default=None, help="MRD HDF5 file for the returned images")
    p.add_argument("--png", type=Path, default=None, metavar="DIR", help="also write PNGs of the images here")
    p.add_argument(
        "--dicom",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the images as DICOM (MR Image Storage, one file per plane) here",
    )
    p.add_argument(
        "--timeout",
        type=WAIT_SECONDS,
        default=600.0,
        metavar="SECONDS",
        help="give up when the server is silent this long (default %(default)g)",
    )
    add_tls_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.client import open_mrd, send_file

    check_input_file(args.file)  # every check before the scan is streamed
    try:
        open_mrd(args.file)  # an HDF5 file with an MRD header
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.output is not None:
        check_output_file(args.output)
    for folder in (args.png, args.dicom):
        if folder is not None:
            check_output_dir(folder)
    check_server(args.host, args.port)
    try:
        reply = send_file(
            args.file,
            host=args.host,
            port=args.port,
            config=args.config,
            parameters=args.parameters,
            output=None,  # written below, only when images came back
            timeout_s=args.timeout,
            tls=tls_of(args),
        )
    except ConnectionError as exc:
        print(f"mrzero send: cannot talk to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # missing or non-MRD file, bad --parameters
        print(f"mrzero send: {exc}", file=sys.stderr)
        return 2
    for text in reply.texts:
        if not text.startswith("ERROR"):  # errors: logged once by the client
            print(f"server: {text}")
    print(f"{len(reply.images)} images received")
    if reply.images:
        _save(reply.images, args)
    if reply.errors or not reply.closed:
        logging.getLogger("mrzero.send").error("the server reported errors or did not close cleanly")
        return 1
    return 0


def _save(images: list, args: argparse.Namespace) -> None:
    """Write the returned images where the options ask, printing each place."""
    from mrzero.pipelines.dicom import write_dicom
    from mrzero.pipelines.image_files import write_images_h5, write_pngs
    from mrzero.pipelines.offline import read_header

    stem = args.file.stem
    if args.output is not None:
        print(f"images (MRD):   {write_images_h5(images, args.output)}")
    if args.png is not None:
        print(f"images (PNG):   {len(write_pngs(images, args.png, stem))} files in {args.png}/")
    if args.dicom is not None:
        paths = write_dicom(images, args.dicom, stem, read_header(args.file), args.config or "")
        print(f"images (DICOM): {len(paths)} files in {args.dicom}/")
