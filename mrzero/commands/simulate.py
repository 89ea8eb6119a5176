"""``mrzero simulate``: simulate a target sequence on a phantom; write raw MRD, a PNG and timings."""

from __future__ import annotations

import argparse
import logging

from mrzero.core.units import deg_to_rad, ms_to_s

log = logging.getLogger("mrzero.simulate")

SEQUENCES = ("gre", "radial", "rare", "t1", "mgre")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="simulate a sequence on a phantom: raw MRD HDF5, image PNG, timings",
        description="Build one of the papers' target sequences, simulate it on a phantom with a "
                    "differentiable engine, write the raw signal as MRD HDF5 and the reconstructed "
                    "image(s) as PNG into OUT, and print how long each step took. Times in ms and "
                    "angles in degrees here; defaults per sequence are the papers' protocols "
                    "(see docs/sequences.md).")
    p.add_argument("--sequence", required=True, choices=SEQUENCES,
                   help="gre: Cartesian spoiled GRE; radial: radial GRE; rare: single-shot RARE; "
                        "t1: inversion-prepared GRE blocks; mgre: multi-echo GRE")
    p.add_argument("--matrix", type=int, default=64, help="matrix size N (N x N, default 64)")
    p.add_argument("--phantom", default="brain",
                   help="brain (embedded, default), sparse (seed's synthetic sample) or a NIfTI file")
    p.add_argument("--slice", type=int, default=None, help="phantom slice (brain: 0..7, default 3)")
    p.add_argument("--coils", type=int, default=1, help="receive coils (loop model, default 1)")
    p.add_argument("--engine", default="fast", help="simulation engine: fast (default) or isochromat")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="complex noise standard deviation added to the signal (adds noise-adjust scans)")
    p.add_argument("--recon", default="adjoint", choices=("adjoint", "iterative", "cg"),
                   help="image reconstruction from the sequence's trajectory (default adjoint)")
    p.add_argument("--iterations", type=int, default=10, help="iterations of iterative/cg (default 10)")
    p.add_argument("--te", type=float, help="echo time (first echo for mgre), ms")
    p.add_argument("--tr", type=float, help="repetition time, ms")
    p.add_argument("--echo-spacing", type=float, help="echo spacing of rare/mgre, ms")
    p.add_argument("--flip", type=float, help="excitation flip angle, degrees")
    p.add_argument("--order", choices=("linear", "centric"), help="phase-encoding order")
    p.add_argument("--spokes", type=int, help="radial spokes (default: matrix)")
    p.add_argument("--seed", type=int, default=0, help="seed of noise and sparse phantoms")
    p.add_argument("--no-progress", action="store_true", help="hide the simulation's progress bar")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.set_defaults(func=run)


def builder_options(args: argparse.Namespace) -> dict[str, float | str | int]:
    """The sequence options given on the command line, in SI units and the builders' names."""
    te_name = "te_first" if args.sequence == "mgre" else "te"
    given = {te_name: args.te and ms_to_s(args.te), "tr": args.tr and ms_to_s(args.tr),
             "echo_spacing": args.echo_spacing and ms_to_s(args.echo_spacing),
             "flip": args.flip and deg_to_rad(args.flip), "order": args.order, "spokes": args.spokes}
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from mrzero.sequences.builder_scan import simulate_scan

    try:
        result = simulate_scan(args.sequence, args.matrix, args.out, phantom=args.phantom, engine=args.engine,
                               device=args.device, n_coils=args.coils, slice=args.slice, noise_std=args.noise,
                               recon=args.recon, iterations=args.iterations, seed=args.seed,
                               progress=not args.no_progress, **builder_options(args))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        log.error("%s", err)
        print(f"mrzero simulate: error: {err}")
        return 2
    print(result.sequence.summary())
    print(f"phantom: {result.phantom.name}, {result.phantom.n_coils} coil(s)")
    print(f"raw MRD: {result.raw_path}")
    print(f"image:   {result.png_path}")
    for step, seconds in result.timings.items():
        print(f"time {step:12s} {seconds:8.3f} s")
    return 0
