"""``mrzero recon``: reconstruct twix or MRD raw files offline with a registered pipeline."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mrzero.commands.output_checks import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recon",
        help="reconstruct twix .dat / MRD .h5 files (or a folder of them) to images on disk",
        description="Reconstruct raw data offline with exactly the pipeline the server runs inline. "
        "INPUT is a twix .dat file, an MRD HDF5 raw-data file, or a folder (every .dat and "
        ".h5 file below it, with a progress bar; a file that fails is reported and skipped). "
        "Each file's MRD images, NIfTI volumes and PNG previews (and, with --dicom, DICOM files) "
        "go to OUTDIR/<name>/. "
        "Ends with a summary; the exit status is 1 if any file failed.",
    )
    p.add_argument("input", type=Path, help="twix .dat file, MRD .h5 file, or folder")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--pipeline",
        default="",
        metavar="NAME",
        help="registered pipeline (see `mrzero pipelines`; default: the server's default)",
    )
    p.add_argument(
        "--parameters",
        default=None,
        metavar="JSON",
        help='pipeline parameters as JSON, e.g. \'{"output": "float"}\'',
    )
    p.add_argument(
        "--bundle-store",
        type=Path,
        default=None,
        metavar="STORE",
        help="bundle store (mrzero deploy --store) where the MRzero pipelines find a scan's "
        "trajectory and head, as for `mrzero serve --bundle-store` (default: none)",
    )
    p.add_argument(
        "--dicom",
        action="store_true",
        help="also write DICOM (MR Image Storage, one file per plane) to OUTDIR/<name>/dicom/",
    )
    p.add_argument("-f", "--force", action="store_true", help="replace existing output folders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.pipelines.registry import UnknownPipelineError
    from mrzero.pipelines.reprocess import reprocess

    log = logging.getLogger("mrzero.recon")
    check_output_dir(args.output)
    try:
        parameters = json.loads(args.parameters) if args.parameters else {}
        if not isinstance(parameters, dict):
            raise ValueError("must be a JSON object")
    except ValueError as exc:
        log.error("--parameters: %s", exc)
        return 2
    try:
        summary = reprocess(
            args.input,
            args.output,
            args.pipeline,
            parameters,
            force=args.force,
            dicom=args.dicom,
            progress=not args.no_progress,
            bundle_store=args.bundle_store,
        )
    except (FileNotFoundError, UnknownPipelineError) as exc:
        log.error("%s", exc)
        return 2
    print(summary.report())
    return 0 if summary.outcomes and not summary.failed else 1
