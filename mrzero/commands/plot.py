"""``mrzero plot``: the sequence diagram of a ``.seq`` file (RF, ADC, gradients, k-space) as a PNG."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mrzero.commands.output_checks import UsageError, check_input_file, check_output_file

log = logging.getLogger("mrzero.plot")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a .seq file's sequence diagram (RF, ADC, gradients, k-space) as a PNG",
        description="Read a Pulseq file as the digital twin does (docs/pulseq.md) and draw RF magnitude (uT) "
        "with the ADC samples, the gradients on x, y and z (mT/m) against time (ms), and the "
        "imaging samples' k-space (cycles/FOV).",
    )
    p.add_argument("file", help="the Pulseq .seq file")
    p.add_argument("-o", "--out", default=None, help="PNG to write (default: FILE with .png beside it)")
    p.add_argument(
        "--time-range",
        nargs=2,
        type=float,
        metavar=("START", "END"),
        help="time window of the diagram in ms (default: the whole file)",
    )
    p.add_argument(
        "--fov",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help="FOV in mm for files that define none (k-space in cycles/FOV needs it)",
    )
    p.add_argument("--max-blocks", type=int, default=200_000, help="refuse larger files (blocks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    check_input_file(path)
    if args.max_blocks < 1:
        raise UsageError(f"--max-blocks {args.max_blocks}: must be >= 1")
    from mrzero.sequences.pulseq.diagram import plot_sequence
    from mrzero.sequences.pulseq.file_check import ImportLimits

    out = Path(args.out) if args.out else path.with_suffix(".png")
    check_output_file(out)
    fov = tuple(1e-3 * f for f in args.fov) if args.fov else None
    try:
        summary = plot_sequence(path, out, args.time_range, ImportLimits(max_blocks=args.max_blocks), fov)
    except (ValueError, OSError) as err:
        log.debug("plot failed", exc_info=True)
        raise UsageError(str(err).strip().splitlines()[0]) from None
    print(
        f"{summary.path}: {summary.start_ms:.3f}..{summary.end_ms:.3f} ms, {summary.n_pulses} RF pulse(s), "
        f"{summary.n_samples} k-space samples, peak B1 {summary.peak_b1_ut:.2f} uT, peak gradients "
        + " / ".join(f"{g:.2f}" for g in summary.peak_grad_mt_m)
        + " mT/m (x / y / z)"
    )
    return 0
