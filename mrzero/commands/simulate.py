"""``mrzero simulate``: simulate a target sequence or any ``.seq`` file on a phantom; write raw MRD,
a PNG and timings."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mrzero.commands.output_checks import UsageError, check_output_dir
from mrzero.core.units import deg_to_rad, ms_to_s

log = logging.getLogger("mrzero.simulate")

SEQUENCES = ("gre", "radial", "rare", "t1", "mgre")
ENGINE_NAMES = ("fast", "isochromat")
BRAIN_SLICES = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a sequence or a .seq file on a phantom: raw MRD HDF5, image PNG, timings",
        description="Simulate one of the papers' target sequences (--sequence) or any Pulseq file (FILE.seq) "
        "on a phantom with a differentiable engine, write the raw signal as MRD HDF5 and the "
        "reconstructed image(s) as PNG into OUT, and print how long each step took. Times in ms "
        "and angles in degrees here; defaults per sequence are the papers' protocols (see "
        "docs/sequences.md). A .seq file is imported as docs/pulseq.md describes (RF use guessed "
        "for old files, off-resonant pulses as played out); the phantom takes the file's FOV "
        "and its nominal matrix unless --matrix is given.",
    )
    p.add_argument("file", nargs="?", help="a Pulseq .seq file to simulate (instead of --sequence)")
    p.add_argument(
        "--sequence",
        choices=SEQUENCES,
        help="gre: Cartesian spoiled GRE; radial: radial GRE; rare: single-shot RARE; "
        "t1: inversion-prepared GRE blocks; mgre: multi-echo GRE",
    )
    p.add_argument(
        "--matrix",
        type=int,
        default=None,
        help="matrix size N (N x N; default 64, for a .seq file its own matrix)",
    )
    p.add_argument(
        "--phantom",
        default="brain",
        help="brain (embedded, default), sparse (seed's synthetic sample), water_fat (three discs: "
        "water, fat, both; a fat species at -3.4 ppm) or a NIfTI file",
    )
    p.add_argument(
        "--slice", type=int, default=None, help=f"phantom slice (brain: 0..{BRAIN_SLICES - 1}, default 3)"
    )
    p.add_argument("--coils", type=int, default=1, help="receive coils (loop model, default 1)")
    p.add_argument("--engine", default="fast", help="simulation engine: fast (default) or isochromat")
    p.add_argument("--device", default="cpu", help="torch device: auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="complex noise standard deviation added to the signal (adds noise-adjust scans)",
    )
    p.add_argument(
        "--recon",
        default="adjoint",
        choices=("adjoint", "iterative", "cg"),
        help="image reconstruction from the sequence's trajectory (default adjoint)",
    )
    p.add_argument("--iterations", type=int, default=10, help="iterations of iterative/cg (default 10)")
    p.add_argument("--te", type=float, help="echo time (first echo for mgre), ms")
    p.add_argument("--tr", type=float, help="repetition time, ms")
    p.add_argument("--echo-spacing", type=float, help="echo spacing of rare/mgre, ms")
    p.add_argument("--flip", type=float, help="excitation flip angle, degrees")
    p.add_argument("--order", choices=("linear", "centric"), help="phase-encoding order")
    p.add_argument("--spokes", type=int, help="radial spokes (default: matrix)")
    p.add_argument(
        "--max-blocks", type=int, default=200_000, help=".seq import: refuse larger files (blocks)"
    )
    p.add_argument(
        "--max-samples", type=int, default=4_000_000, help=".seq import: refuse files with more ADC samples"
    )
    p.add_argument(
        "--field-strength",
        type=float,
        default=None,
        help=".seq import: B0 in T for ppm offsets (default: the file's B0 definition, else 3)",
    )
    p.add_argument(
        "--fov",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help=".seq import: FOV in mm for files that define none",
    )
    p.add_argument(
        "--diffusion",
        action="store_true",
        help=".seq import: simulate diffusion: the brain phantom gets its tissues' ADCs (a NIfTI "
        "phantom its adc volume) and the file's gradients are split at their corners so that its "
        "b-values are reproduced (more events, slower); without it a diffusing phantom is refused",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of noise and sparse phantoms")
    p.add_argument("--no-progress", action="store_true", help="hide the simulation's progress bar")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.set_defaults(func=run)


def builder_options(args: argparse.Namespace) -> dict[str, float | str | int]:
    """The sequence options given on the command line, in SI units and the builders' names."""
    te_name = "te_first" if args.sequence == "mgre" else "te"
    given = {
        te_name: args.te and ms_to_s(args.te),
        "tr": args.tr and ms_to_s(args.tr),
        "echo_spacing": args.echo_spacing and ms_to_s(args.echo_spacing),
        "flip": args.flip and deg_to_rad(args.flip),
        "order": args.order,
        "spokes": args.spokes,
    }
    return {k: v for k, v in given.items() if v is not None}


def argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments (checked before anything is loaded or simulated), or None."""
    if (args.file is None) == (args.sequence is None):
        return "give either a .seq FILE or --sequence NAME (one of them)"
    if args.file is not None:
        if not Path(args.file).is_file():
            return f"{args.file}: no such file"
        builder_only = [
            f"--{k.replace('_', '-')}"
            for k in ("te", "tr", "echo_spacing", "flip", "order", "spokes")
            if getattr(args, k) is not None
        ]
        if builder_only:
            return f"{', '.join(builder_only)} set(s) a builder's protocol; a .seq file has its own"
    checks = [
        (args.engine not in ENGINE_NAMES, f"--engine {args.engine}: choose one of {', '.join(ENGINE_NAMES)}"),
        (
            args.matrix is not None and not 2 <= args.matrix <= 1024,
            f"--matrix {args.matrix}: must be 2..1024",
        ),
        (args.coils < 1 or args.coils > 64, f"--coils {args.coils}: must be 1..64"),
        (
            args.phantom == "brain" and args.slice is not None and not 0 <= args.slice < BRAIN_SLICES,
            f"--slice {args.slice}: the brain phantom has slices 0..{BRAIN_SLICES - 1}",
        ),
        (args.slice is not None and args.slice < 0, f"--slice {args.slice}: must be >= 0"),
        (args.noise < 0, f"--noise {args.noise}: must be >= 0"),
        (
            args.diffusion and args.file is None,
            "--diffusion applies to .seq files only",
        ),
        (
            args.diffusion and args.phantom in ("sparse", "water_fat"),
            f"--diffusion: the {args.phantom} phantom has no diffusion map; use brain or a NIfTI with adc",
        ),
        (
            args.diffusion and args.engine == "isochromat",
            "--diffusion needs --engine fast (the isochromat engine's spins do not move)",
        ),
        (args.iterations < 1, f"--iterations {args.iterations}: must be >= 1"),
        (args.max_blocks < 1 or args.max_samples < 1, "--max-blocks and --max-samples must be >= 1"),
        (args.fov is not None and min(args.fov) <= 0, f"--fov {args.fov}: three positive lengths in mm"),
        (
            args.field_strength is not None and args.field_strength <= 0,
            f"--field-strength {args.field_strength}: must be > 0 (T)",
        ),
        (
            args.phantom not in ("brain", "sparse", "water_fat")
            and not args.phantom.endswith((".nii", ".nii.gz")),
            f"--phantom {args.phantom}: use brain, sparse, water_fat or a .nii/.nii.gz file",
        ),
        (
            args.phantom.endswith((".nii", ".nii.gz")) and not Path(args.phantom).is_file(),
            f"--phantom {args.phantom}: no such file",
        ),
    ]
    for bad, message in checks:
        if bad:
            return message
    return None


def run(args: argparse.Namespace) -> int:
    problem = argument_error(args)
    if problem:
        raise UsageError(problem)
    check_output_dir(Path(args.out))
    from mrzero.core.device import DeviceError, select_device
    from mrzero.sequences.builder_scan import simulate_scan
    from mrzero.sequences.pulseq.file_check import ImportLimits
    from mrzero.sequences.pulseq.file_scan import simulate_file

    try:
        device = select_device(args.device, source="--device")
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
    common = dict(
        phantom=args.phantom,
        engine=args.engine,
        device=device,
        n_coils=args.coils,
        slice=args.slice,
        noise_std=args.noise,
        recon=args.recon,
        iterations=args.iterations,
        seed=args.seed,
        progress=not args.no_progress,
    )
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if args.file is not None:
            limits = ImportLimits(max_blocks=args.max_blocks, max_samples=args.max_samples)
            result = simulate_file(
                args.file,
                args.out,
                matrix=args.matrix,
                limits=limits,
                field_strength=args.field_strength,
                fov=tuple(1e-3 * f for f in args.fov) if args.fov else None,
                diffusion=args.diffusion,
                **common,
            )
        else:
            result = simulate_scan(
                args.sequence, args.matrix or 64, args.out, **common, **builder_options(args)
            )
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as err:
        log.debug("simulate failed", exc_info=True)
        raise UsageError(str(err).strip().splitlines()[0]) from None
    print(result.sequence.summary())
    print(f"phantom: {result.phantom.name}, {result.phantom.n_coils} coil(s)")
    print(f"raw MRD: {result.raw_path}")
    print(f"image:   {result.png_path}")
    for step, seconds in result.timings.items():
        print(f"time {step:12s} {seconds:8.3f} s")
    return 0
