"""``mrzero demo``: the default main job, end to end on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="Shepp-Logan raw data through the server; images to demo-output/",
        description="Generate multi-coil Shepp-Logan raw data with Debian's ISMRMRD tools, start the "
                    "server on a free 127.0.0.1 port, stream the data with the default pipeline, and "
                    "write the returned images as MRD HDF5 and PNG.")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("demo-output"),
                   help="where to write raw data, journal and images (default %(default)s)")
    p.add_argument("--matrix", type=int, default=128, help="image matrix (default %(default)s)")
    p.add_argument("--coils", type=int, default=8, help="receiver coils (default %(default)s)")
    p.add_argument("--config", default=None, help="pipeline name (default: the server's default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    result = run_demo(args.output_dir, args.matrix, args.coils, args.config)
    print(f"raw data:      {result.raw}")
    print(f"journal:       {result.journal_dir}/")
    print(f"images (MRD):  {result.images_h5}")
    print("images (PNG):  " + ", ".join(str(p) for p in result.pngs))
    return 0
