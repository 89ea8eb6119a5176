"""``mrzero demo``: the default main job, end to end on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrzero.commands.arguments import COILS, MATRIX, SNR
from mrzero.commands.output_checks import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="digital-twin scans of the shipped bundles through the server; images to demo-output/",
        description="Deploy the shipped bundles (a 16x16 GRE with learned flips, a 64x64 GRE learned from "
        "zero, the T1-mapping sequence with its MLP and a SAR-reduced 96x96 RARE) "
        "to a temporary store, start the server on a free 127.0.0.1 port, scan the brain "
        "phantom with each bundle's .seq file in the digital twin, stream the raw data, and "
        "write raw data, returned images (MRD HDF5) and PNGs per bundle. With --shepp-logan: "
        "multi-coil Shepp-Logan raw data from Debian's ISMRMRD tools through the default "
        "pipeline instead.",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("demo-output"),
        help="where to write raw data, journal and images (default %(default)s)",
    )
    p.add_argument("--coils", type=COILS, default=None, help="receiver coils (default 4; Shepp-Logan 8)")
    p.add_argument(
        "--bundle",
        action="append",
        default=None,
        metavar="NAME",
        help="shipped bundle or bundle directory to scan (repeatable; default: all shipped)",
    )
    p.add_argument(
        "--noise",
        type=SNR,
        default=100.0,
        metavar="SNR",
        help="twin scan SNR, RMS signal over noise std (default %(default)g)",
    )
    p.add_argument(
        "--shepp-logan",
        action="store_true",
        help="the Cartesian Shepp-Logan demo (Debian's ISMRMRD tools) instead of the twin",
    )
    p.add_argument(
        "--matrix", type=MATRIX, default=128, help="Shepp-Logan image matrix (default %(default)s)"
    )
    p.add_argument("--config", default=None, help="Shepp-Logan pipeline name (default: the server's default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.output_dir)
    if args.shepp_logan:
        from mrzero.shepp_logan_demo import run_demo

        result = run_demo(args.output_dir, args.matrix, args.coils or 8, args.config)
        print(f"raw data:      {result.raw}")
        print(f"journal:       {result.journal_dir}/")
        print(f"images (MRD):  {result.images_h5}")
        print("images (PNG):  " + ", ".join(str(p) for p in result.pngs))
        return 0
    from mrzero.sequences.digital_twin import SHIPPED_BUNDLES
    from mrzero.twin_demo import run_twin_demo

    bundles = tuple(args.bundle or sorted(p.parent.name for p in SHIPPED_BUNDLES.glob("*/protocol.json")))
    result = run_twin_demo(args.output_dir, bundles, args.coils or 4, args.noise)
    print(f"journal:          {result.journal_dir}/")
    for name, saved in result.saved.items():
        for label, path in saved.items():
            print(f"{name + ' ' + label + ':':32s}{path}")
    for name, comparison in result.errors.items():
        print(f"{name + ' against the truth:':32s}{comparison}")
    return 0
